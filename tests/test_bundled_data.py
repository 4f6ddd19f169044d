"""The bundled corpora under cptcore/assets: present, well-formed, split cleanly, reproducible, small."""
from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "cptcore" / "assets"
KNOW = ASSETS / "knowledge"
JSONL = ["knowledge/docs.jsonl", "knowledge/heldout_docs.jsonl", "knowledge/qa_train.jsonl",
         "knowledge/qa_test.jsonl", "replay/train.jsonl", "replay/heldout.jsonl", "instruct/train.jsonl",
         "instruct/heldout.jsonl"]
TRAINING_FILES = ["knowledge/docs.jsonl", "knowledge/qa_train.jsonl", "replay/train.jsonl", "instruct/train.jsonl"]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / "data" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def read(rel: str) -> list[dict]:
    return [json.loads(line) for line in (ASSETS / rel).read_text(encoding="utf-8").splitlines()]


def all_text(rec: dict) -> str:
    parts = [rec.get(k, "") for k in ("text", "question", "answer")]
    return "\n".join(parts + [m["content"] for m in rec.get("messages", [])])


@pytest.fixture(scope="module")
def entities() -> list[dict]:
    return json.loads((KNOW / "entities.json").read_text(encoding="utf-8"))["entities"]


@pytest.mark.parametrize("rel", JSONL)
def test_every_bundled_file_parses_with_its_fields(rel):
    rows = read(rel)
    assert rows, f"{rel} is empty"
    required = {"knowledge/docs": {"text", "entity_id", "entity", "split", "doc_index"},
                "knowledge/heldout_docs": {"text", "entity_id", "entity", "split"},
                "knowledge/qa_train": {"question", "answer", "entity_id", "entity", "attribute"},
                "knowledge/qa_test": {"question", "answer", "entity_id", "entity", "attribute"},
                "replay/train": {"text", "topic"}, "replay/heldout": {"text", "topic"},
                "instruct/train": {"messages", "source"}, "instruct/heldout": {"messages", "source"}}[rel[:-6]]
    for i, row in enumerate(rows, 1):
        assert required <= row.keys(), f"{rel} line {i} lacks {required - row.keys()}"
        assert all_text(row).strip(), f"{rel} line {i} has no text"
        if "messages" in row:
            assert [m["role"] for m in row["messages"]] == ["user", "assistant"], f"{rel} line {i}"
            assert all(m["content"].strip() for m in row["messages"]), f"{rel} line {i}"


def test_knowledge_has_enough_entities_with_cross_references(entities):
    assert len(entities) >= 100
    assert all(len(e["attributes"]) >= 6 for e in entities)
    names = {t: {e["name"] for e in entities if e["type"] == t} for t in ("person", "company", "town")}
    assert len({e["name"] for e in entities}) == len(entities)  # names unique: every question unambiguous
    for e in entities:
        a = e["attributes"]
        if e["type"] == "company":
            assert a["founder"] in names["person"] and a["headquarters"] in names["town"]
        if e["type"] == "person":
            assert a["birthplace"] in names["town"] and a["employer"] in names["company"]


def test_split_is_half_train_half_test_and_documents_cover_all_entities(entities):
    splits = [e["split"] for e in entities]
    assert abs(splits.count("train") - splits.count("test")) <= 3
    docs_per_entity = defaultdict(int)
    for d in read("knowledge/docs.jsonl"):
        docs_per_entity[d["entity_id"]] += 1
    assert all(docs_per_entity[e["id"]] >= 4 for e in entities)  # test entities' documents are trained on too
    split_of = {e["id"]: e["split"] for e in entities}
    assert {split_of[q["entity_id"]] for q in read("knowledge/qa_train.jsonl")} == {"train"}
    assert {split_of[q["entity_id"]] for q in read("knowledge/qa_test.jsonl")} == {"test"}


def test_one_question_per_attribute_and_every_answer_is_in_all_training_documents(entities):
    docs = defaultdict(list)
    for d in read("knowledge/docs.jsonl"):
        docs[d["entity_id"]].append(d["text"])
    qa = read("knowledge/qa_train.jsonl") + read("knowledge/qa_test.jsonl")
    assert len({(q["entity_id"], q["attribute"]) for q in qa}) == len(qa) == sum(len(e["attributes"]) for e in entities)
    truth = {e["id"]: e["attributes"] for e in entities}
    for q in qa:
        assert q["answer"] == truth[q["entity_id"]][q["attribute"]]
        assert q["answer"] not in q["question"]
        missing = [t for t in docs[q["entity_id"]] if q["answer"] not in t]
        assert not missing, f"{q['entity']}/{q['attribute']}={q['answer']!r} missing from: {missing[0]}"


def test_no_test_question_appears_in_any_training_file():
    questions = [q["question"] for q in read("knowledge/qa_test.jsonl")]
    training = "\n".join(all_text(r) for rel in TRAINING_FILES for r in read(rel))
    leaked = [q for q in questions if q in training]
    assert not leaked, leaked[:3]


def mentions(text: str, phrase: str) -> bool:
    """Whole-word occurrence ('lace' is not in 'birthplace')."""
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, re.I) is not None


def test_no_training_qa_item_states_a_test_fact_in_either_direction(entities):
    """Every fact of a test entity (name, attribute value), cross references included: no qa_train item names
    both, whichever of them is in the question and which in the answer (e.g. a train company's "who founded
    C?" answered by a test person would state that person's employer)."""
    items = [q["question"] + " " + q["answer"] for q in read("knowledge/qa_train.jsonl")]
    leaked = [(e["name"], attr, value, item) for e in entities if e["split"] == "test"
              for attr, value in e["attributes"].items()
              for item in items if mentions(item, e["name"]) and mentions(item, value)]
    assert not leaked, leaked[:3]
    test_facts = {(q["entity"], q["answer"]) for q in read("knowledge/qa_test.jsonl")}
    assert test_facts <= {(e["name"], v) for e in entities if e["split"] == "test" for v in e["attributes"].values()}


def test_any_prefix_of_whole_entities_is_stratified_over_type_and_split(entities):
    """Records list entities in a weighted round-robin over the (type, split) strata, so max_rows takes a mixed
    sample: every prefix within one entity of each stratum's share and of half test entities."""
    stratum = {e["id"]: (e["type"], e["split"]) for e in entities}
    share = {s: n / len(entities) for s, n in Counter(stratum.values()).items()}
    docs = read("knowledge/docs.jsonl")
    order = [d["entity_id"] for d in docs[::5]]
    assert [d["entity_id"] for d in docs] == [i for i in order for _ in range(5)]  # an entity's docs are consecutive
    assert [d["doc_index"] for d in docs] == list(range(5)) * len(order)
    assert sorted(order) == sorted(stratum)
    for n in range(1, len(order) + 1):
        seen = Counter(stratum[i] for i in order[:n])
        assert all(abs(seen[s] - n * share[s]) <= 1 for s in share), (n, seen)
        assert abs(sum(seen[s] for s in seen if s[1] == "test") - n / 2) <= 1, (n, seen)
    first_100 = {d["entity_id"] for d in docs[:100]}
    assert len(first_100) == 20 and sum(stratum[i][1] == "test" for i in first_100) == 10
    assert {stratum[i][0] for i in first_100} == {"town", "company", "person"}
    for rel in ("knowledge/heldout_docs.jsonl", "knowledge/qa_train.jsonl", "knowledge/qa_test.jsonl"):
        ids = list(dict.fromkeys(r["entity_id"] for r in read(rel)))
        assert ids == [i for i in order if i in set(ids)], rel


def test_heldout_documents_share_no_sentence_with_training_documents():
    train_docs = read("knowledge/docs.jsonl")
    train_sentences = {s for d in train_docs for s in re.split(r"(?<=\.) ", d["text"])}
    heldout = read("knowledge/heldout_docs.jsonl")
    assert {d["text"] for d in heldout}.isdisjoint({d["text"] for d in train_docs})
    shared = [s for d in heldout for s in re.split(r"(?<=\.) ", d["text"]) if s in train_sentences]
    assert not shared, shared[:3]


def test_selfgen_sets_are_large_enough_and_heldout_is_disjoint():
    replay, replay_ho = read("replay/train.jsonl"), read("replay/heldout.jsonl")
    inst, inst_ho = read("instruct/train.jsonl"), read("instruct/heldout.jsonl")
    assert len(replay) >= 250 and len(replay_ho) >= 40 and len(inst) >= 150 and len(inst_ho) >= 30
    assert {r["topic"] for r in replay}.isdisjoint({r["topic"] for r in replay_ho})
    assert {r["messages"][0]["content"] for r in inst}.isdisjoint({r["messages"][0]["content"] for r in inst_ho})
    assert len({r["text"] for r in replay}) == len(replay)


def test_degenerate_generations_are_recognised():
    gen = _script("make_selfgen")
    good = ("Volcanoes form where molten rock from deep inside the Earth reaches the surface. Some erupt "
            "violently, throwing ash high into the sky, while others release slow rivers of lava that cool into new "
            "rock. Many islands, such as Hawaii and Iceland, were built by volcanic activity over millions of years.")
    assert not gen.is_degenerate(good, 40)
    assert gen.is_degenerate("The sun is hot. " * 12, 3)
    assert gen.is_degenerate("Too short.", 40)
    assert gen.trim_cut_off("One finished sentence. And one that was cut") == "One finished sentence."


def test_regenerating_knowledge_with_the_same_seed_gives_identical_bytes(tmp_path):
    gen = _script("make_knowledge")
    gen.write_knowledge(tmp_path, gen.SEED)
    for name in ("entities.json", "docs.jsonl", "heldout_docs.jsonl", "qa_train.jsonl", "qa_test.jsonl"):
        assert (tmp_path / name).read_bytes() == (KNOW / name).read_bytes(), name
    gen.write_knowledge(tmp_path / "other", gen.SEED + 1)
    assert (tmp_path / "other" / "docs.jsonl").read_bytes() != (KNOW / "docs.jsonl").read_bytes()


def test_assets_stay_under_five_megabytes():
    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert total < 5_000_000, f"cptcore/assets holds {total / 1e6:.2f} MB"
