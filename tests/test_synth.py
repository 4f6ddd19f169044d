"""Synthetic QA and facts: grounded in their document, deduplicated, with provenance."""
import json
from pathlib import Path

import pytest

from cptcore.cli import main
from cptcore.synth import facts_from_documents, grounding, parse_qa, synth_facts, synth_qa

from conftest import write_jsonl

ROOT = Path(__file__).resolve().parents[1]

DOCS = [
    {"text": "Velmora is a town in the province of Quessa. Velmora was founded in 1181. The river Thikresk "
             "flows through Velmora.", "entity": "Velmora"},
    {"text": "Brantic Labs is a company in Osterhall. Brantic Labs makes copper lanterns. It employs 412 people.",
     "entity": "Brantic Labs"},
]


def fake_generator(responses_by_doc: dict[str, list[str]]):
    """Returns canned generations keyed by which document the prompt contains (order-independent)."""
    calls = []

    def run(prompts):
        calls.append(len(prompts))
        out = []
        for p in prompts:
            key = "Velmora" if "Velmora" in p else "Brantic"
            queue = responses_by_doc[key]
            out.append(queue.pop(0) if queue else "")
        return out

    run.calls = calls
    return run


def test_qa_output_is_grounded_deduplicated_and_traceable():
    gen = fake_generator({
        "Velmora": ["Q: When was Velmora founded?\nA: 1181\nQ: Which river flows through Velmora?\nA: Thikresk",
                    "Q: when was Velmora founded\nA: in 1181",  # duplicate question (normalized)
                    "Q: Who is the mayor of Velmora?\nA: Ingrid Solberg"],  # not in the document
        "Brantic": ["Q: What does Brantic Labs make?\nA: copper lanterns\nQ: Is Brantic Labs a company?\nA: Brantic Labs",
                    "garbage without pairs", "Q: How many people work at Brantic Labs?\nA: 412 people"],
    })
    records, stats = synth_qa(DOCS, gen, generator="fake-model")
    pairs = {(r["question"], r["answer"]) for r in records}
    assert pairs == {("When was Velmora founded?", "1181"), ("Which river flows through Velmora?", "Thikresk"),
                     ("What does Brantic Labs make?", "copper lanterns"),
                     ("How many people work at Brantic Labs?", "412 people")}
    assert stats["dropped"] == {"ungrounded": 1, "duplicate": 1, "trivial": 1}
    for r in records:
        assert grounding(r["answer"], r["source_doc"]) == 1.0 and r["source_doc"] == DOCS[r["source_index"]]["text"]
        assert r["generator"] == "fake-model" and r["source_doc"] in r["prompt"] and r["kind"] in QA_KINDS
    assert gen.calls == [6]  # one batched call: 2 documents x 3 question kinds


QA_KINDS = ("factual", "reasoning", "summary")


def test_facts_with_a_model_are_paraphrased_grounded_and_deduplicated():
    gen = fake_generator({
        "Velmora": ["- Velmora was founded in 1181.\n- Velmora has a famous castle.\n- The town is old.",
                    "In 1181, Velmora was founded.", "Velmora was founded in 1181.",  # 2nd = duplicate of the fact
                    "Velmora dates from 1181 and has a castle."],  # adds an unsupported word -> ungrounded
        "Brantic": ["Brantic Labs makes copper lanterns.", "Copper lanterns are made by Brantic Labs.",
                    "Brantic Labs makes copper lanterns.", "Lanterns of copper come from Brantic Labs."],
    })
    records, stats = synth_facts(DOCS, gen, generator="fake-model", paraphrases=3)
    texts = [r["response"] for r in records]
    assert "Velmora was founded in 1181." in texts and "In 1181, Velmora was founded." in texts
    assert not any("castle" in t for t in texts) and len(texts) == len(set(texts))
    assert all(r["entity"] in r["response"] and r["entity"] in r["prompt"] for r in records)
    assert {r["kind"] for r in records} == {"fact", "paraphrase"}
    assert stats["dropped"]["duplicate"] >= 2 and stats["dropped"]["ungrounded"] >= 2


def test_rule_facts_keep_sentences_that_name_the_entity():
    facts = facts_from_documents(DOCS + DOCS)  # the same documents twice: no duplicate facts
    assert {f["response"] for f in facts} == {
        "Velmora is a town in the province of Quessa.", "Velmora was founded in 1181.",
        "The river Thikresk flows through Velmora.", "Brantic Labs is a company in Osterhall.",
        "Brantic Labs makes copper lanterns."}
    assert all(f["prompt"].endswith(("?", ".")) and f["entity"] in f["prompt"] for f in facts)


def test_parse_qa_tolerates_numbering_and_stray_lines():
    text = "Here are questions:\n1. Q: Where is X?\nA: In Y.\n\nQuestion: Who?\nAnswer: Z\nA: orphan answer"
    assert parse_qa(text) == [("Where is X?", "In Y."), ("Who?", "Z")]


def test_cpt_synth_facts_cli_writes_a_trainable_dataset(tmp_path, capsys, tiny_cfg):
    docs = write_jsonl(tmp_path / "docs.jsonl", DOCS)
    out = tmp_path / "facts.jsonl"
    assert main(["synth", str(docs), "--kind", "facts", "--model", "rules", "--out", str(out)]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert stats["kept"] == len(rows) == 5 and all(r["source_path"] == str(docs) for r in rows)
    cfg = tiny_cfg.with_overrides({"recipe": "knowledge_instruct", "data.facts": str(out)})
    from cptcore.plan import plan

    assert [s.path for s in plan(cfg).stages[0].data["domain"]] == [str(out)]


def test_cpt_synth_rejects_qa_without_a_model(tmp_path, capsys):
    docs = write_jsonl(tmp_path / "docs.jsonl", DOCS)
    code = main(["synth", str(docs), "--kind", "qa", "--model", "rules", "--out", str(tmp_path / "qa.jsonl")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--kind qa needs a --model" in err and len(err.splitlines()) == 1


def synth_rules(tmp_path, docs, *extra):
    out = tmp_path / "facts.jsonl"
    return main(["synth", str(docs), "--kind", "facts", "--model", "rules", "--out", str(out), *extra]), out


def test_cpt_synth_refuses_documents_of_test_entities_in_one_line(tmp_path, capsys):
    docs = write_jsonl(tmp_path / "docs.jsonl", [DOCS[0] | {"split": "test"}, DOCS[1] | {"split": "train"}])
    code, out = synth_rules(tmp_path, docs)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and not out.exists()
    assert "refused 1 of 2 documents about test entities" in err and "--allow-test-entities" in err


def test_cpt_synth_refuses_entities_the_evaluation_qa_asks_about(tmp_path, capsys):
    docs = write_jsonl(tmp_path / "docs.jsonl", DOCS)  # no split field: the evaluation QA names the entity
    eval_qa = write_jsonl(tmp_path / "eval_qa.jsonl", [{"question": "When was Velmora founded?", "answer": "1181",
                                                        "entity": "Velmora"}])
    code, _ = synth_rules(tmp_path, docs, "--eval-qa", str(eval_qa))
    assert code == 2 and "refused 1 of 2 documents" in capsys.readouterr().err
    code, out = synth_rules(tmp_path, docs, "--eval-qa", str(eval_qa), "--skip-test-entities")
    assert code == 0 and {json.loads(l)["entity"] for l in out.read_text().splitlines()} == {"Brantic Labs"}
    code, out = synth_rules(tmp_path, docs, "--eval-qa", str(eval_qa), "--allow-test-entities")
    assert code == 0 and {json.loads(l)["entity"] for l in out.read_text().splitlines()} == {"Velmora", "Brantic Labs"}


def test_cpt_synth_on_the_bundled_documents_skips_to_train_entities(tmp_path, capsys):
    code, out = synth_rules(tmp_path, "builtin:knowledge_docs", "--limit", "50")
    assert code == 2 and "refused 25 of 50 documents" in capsys.readouterr().err  # the stratified order: half test
    code, out = synth_rules(tmp_path, "builtin:knowledge_docs", "--limit", "50", "--skip-test-entities")
    test_entities = {json.loads(l)["entity"] for l in open(ROOT / "cptcore/assets/knowledge/qa_test.jsonl")}
    made = {json.loads(l)["entity"] for l in out.read_text().splitlines()}
    assert code == 0 and len(made) == 10 and not made & test_entities


# --- QA from a user's documents: split by document, labels, distractors, atomic files ---------------------
PEOPLE = ("Ilsa Varnholt", "Tomas Brec", "Oona Maelstrand", "Pieter Quell", "Rana Oskarth", "Ugo Fennimore",
          "Vera Lindqvast", "Wim Zeeland", "Xara Dolven", "Yusuf Harran")


def person_docs(n: int = 10) -> list[dict]:
    """Documents of 30+ words, one person each: born in a town in a year, works for a company."""
    return [{"text": f"{PEOPLE[i]} was born in the town of Town{i} in the year {1900 + i}. {PEOPLE[i]} works for "
                     f"Company{i} as an engineer and has done so for many years. In spare time {PEOPLE[i]} enjoys "
                     f"sailing on the lake near Town{i} with old friends from school."} for i in range(n)]


def person_generator(prompts: list[str]) -> list[str]:
    """Three grounded pairs per prompt about the person the prompt's document names."""
    out = []
    for p in prompts:
        i = next(k for k, name in enumerate(PEOPLE) if name in p)
        out.append(f"Q: Who works for Company{i}?\nA: {PEOPLE[i]}\nQ: When was {PEOPLE[i]} born?\nA: {1900 + i}\n"
                   f"Q: Where was {PEOPLE[i]} born?\nA: Town{i}")
    return out


def test_question_types_follow_the_wording():
    from cptcore.synth import question_type

    assert [question_type(q) for q in (
        "Who founded it?", "When was X founded?", "In what year was X founded?", "Where is X?",
        "How many people live in X?", "Which river flows through X?", "What does X make?", "How is X governed?",
        "Is X a town?", "Whose company is it?")] == [
        "who", "when", "when", "where", "how many", "which", "what", "how", "other", "who"]


def test_qa_is_split_by_document_seeded_and_stable():
    from cptcore.synth import qa_from_documents

    docs = person_docs(10)
    a = qa_from_documents(docs, person_generator, "fake", test_share=0.2, seed=0)
    b = qa_from_documents(list(reversed(docs)), person_generator, "fake", test_share=0.2, seed=0)
    assert a.problem is None and a.stats["pairs"] == 30 and a.stats["pairs_per_document"] == 3.0
    side = {}
    for r in a.records:
        assert side.setdefault(r["entity_id"], r["split"]) == r["split"]  # a document is on one side only
    assert sorted(side.values()).count("test") == 2  # 20% of 10 documents
    assert a.stats["test"] == {"pairs": 6, "documents": 2, "entities": 2}
    by_text = {r["source_doc"]: r["split"] for r in a.records}
    assert by_text == {r["source_doc"]: r["split"] for r in b.records}  # row order does not move a document
    c = qa_from_documents(docs, person_generator, "fake", test_share=0.2, seed=1)
    assert {r["entity_id"] for r in c.records if r["split"] == "test"} != \
        {r["entity_id"] for r in a.records if r["split"] == "test"}
    two = qa_from_documents(docs[:2], person_generator, "fake", test_share=0.01)
    assert sorted(r["split"] for r in two.records).count("test") == 3  # at least one document on each side


def test_qa_rows_carry_provenance_attribute_entity_and_distractors():
    from cptcore.data.heldout import document_key
    from cptcore.evaluate.knowledge_qa import normalize_answer
    from cptcore.synth import qa_from_documents

    docs = person_docs(10)
    res = qa_from_documents(docs, person_generator, "fake", seed=0)
    for r in res.records:
        doc = docs[r["doc_row"] - 1]["text"]
        assert r["entity_id"] == document_key(doc) == r["document_key"]
        assert r["attribute"] in ("who", "when", "where") and r["split"] in ("train", "test")
        assert doc[r["evidence_start"]:r["evidence_end"]] == r["evidence"] and r["answer"] in r["evidence"]
        assert doc[r["answer_start"]:].startswith(r["answer"])
        if r["split"] == "train":
            assert "distractors" not in r
            continue
        assert len(r["distractors"]) == 8  # 9 other documents, each with an answer of this type
        assert normalize_answer(r["answer"]) not in {normalize_answer(d) for d in r["distractors"]}
        same_type = {o["answer"] for o in res.records if o["attribute"] == r["attribute"]
                     and o["entity_id"] != r["entity_id"]}
        assert set(r["distractors"]) <= same_type
    again = qa_from_documents(docs, person_generator, "fake", seed=0)
    assert [r.get("distractors") for r in again.records] == [r.get("distractors") for r in res.records]


def test_entity_id_of_a_document_that_has_one_is_kept():
    from cptcore.synth import qa_from_documents

    docs = [d | {"entity_id": f"person-{i}"} for i, d in enumerate(person_docs(4))]
    res = qa_from_documents(docs, person_generator, "fake")
    assert {r["entity_id"] for r in res.records} == {f"person-{i}" for i in range(4)}


def test_mc_choices_use_a_rows_distractors_first():
    from cptcore.evaluate.knowledge_qa import mc_choices

    item = {"id": "q1", "question": "When was A born?", "answer": "1901", "attribute": "when", "entity_id": "a",
            "distractors": ["1902", "1903", " 1901 ", "1904"]}  # " 1901 " normalizes to the gold: never offered
    pool = [{"answer": str(1950 + i), "attribute": "when", "entity_id": f"p{i}"} for i in range(10)]
    [choices] = mc_choices([item], pool, 3)
    assert choices[0] == "1901" and sorted(choices[1:]) == ["1902", "1903", "1904"]
    [choices] = mc_choices([item], pool, 5)  # the list first, then the pool fills up
    assert set(choices[1:4]) == {"1902", "1903", "1904"} and all(c.startswith("195") for c in choices[4:])
    plain = dict(item, distractors=None)
    assert all(c.startswith("195") for c in mc_choices([plain], pool, 3)[0][1:])


def test_mc_chance_follows_the_number_of_choices(monkeypatch):
    from cptcore.evaluate import knowledge_qa as kq

    monkeypatch.setattr(kq, "answer_logprobs", lambda model, tok, prompts, answers, chat, bs=8, progress=None: [0.0] * len(answers))
    items = [{"id": "a", "question": "Q?", "answer": "x", "distractors": ["y"]},          # 2 choices: 50%
             {"id": "b", "question": "Q?", "answer": "x", "distractors": ["y", "z", "w"]}]  # 4 choices: 25%
    [score], _ = kq.knowledge_mc(None, None, items, [], chat=True, distractors=3)
    assert score.extra["chance"] == pytest.approx(37.5) and score.extra["choices"] == 3.0
    assert score.extra["choices_min"] == 2


def cli_qa(tmp_path, docs, *extra):
    path = write_jsonl(tmp_path / "docs.jsonl", docs)
    return main(["synth", str(path), "--kind", "qa", "--model", "fake", "--out", str(tmp_path / "mine.jsonl"),
                 "--eval-qa", "none", *extra])


@pytest.fixture
def fake_model(monkeypatch):
    from cptcore import synth

    made = {"fn": person_generator}
    monkeypatch.setattr(synth, "model_generator", lambda name, *a, **k: made["fn"])
    return made


def test_cpt_synth_qa_writes_train_and_test_files_and_a_summary(tmp_path, capsys, fake_model):
    docs = person_docs(10) + [{"text": "Too short to ask about."}, {"text": "Also far too short."}]
    assert cli_qa(tmp_path, docs, "--seed", "3") == 0
    out = capsys.readouterr()
    stats = json.loads(out.out.strip().splitlines()[-1])
    train = [json.loads(l) for l in (tmp_path / "mine.qa_train.jsonl").read_text().splitlines()]
    test = [json.loads(l) for l in (tmp_path / "mine.qa_test.jsonl").read_text().splitlines()]
    assert stats["out"] == {"train": str(tmp_path / "mine.qa_train.jsonl"), "test": str(tmp_path / "mine.qa_test.jsonl")}
    assert stats["documents"] == 12 and stats["documents_used"] == 10 and stats["skipped_short"] == 2
    assert stats["train"]["pairs"] == len(train) == 24 and stats["test"]["pairs"] == len(test) == 6
    assert stats["grounded_share"] == 1.0 and stats["seed"] == 3
    assert "skipped 2 of 12 documents under 20 words" in out.err
    assert not {r["entity_id"] for r in train} & {r["entity_id"] for r in test}
    assert all(r["split"] == "test" and r["distractors"] for r in test) and all(r["split"] == "train" for r in train)
    assert {r["doc_row"] for r in train + test} == set(range(1, 11))
    assert not list(tmp_path.glob(".*part"))
    from cptcore.config import SourceConfig
    from cptcore.data.heldout import qa_test_beside

    assert qa_test_beside([SourceConfig(path=str(tmp_path / "mine.qa_train.jsonl"))]).path == \
        str(tmp_path / "mine.qa_test.jsonl")


@pytest.mark.parametrize("case, message", [
    ("garbage", "wrote no parsable Q:/A: pair for any of 3 documents"),
    ("ungrounded", "0 of 9 generated pairs passed the filters"),
    ("short", "all 3 documents are under 20 words"),
    ("one", "only 1 document yielded QA pairs"),
])
def test_cpt_synth_qa_with_nothing_usable_fails_in_one_line_and_writes_nothing(tmp_path, capsys, fake_model, case,
                                                                             message):
    docs = person_docs(3)
    if case == "garbage":
        fake_model["fn"] = lambda prompts: ["no pairs here"] * len(prompts)
    elif case == "ungrounded":
        fake_model["fn"] = lambda prompts: ["Q: Who is the mayor?\nA: Ingrid Solberg"] * len(prompts)
    elif case == "short":
        docs = [{"text": "A short one."}] * 3
    else:
        docs = person_docs(1) + [{"text": "Nothing " * 30}]  # the second one yields no pair
        fake_model["fn"] = lambda prompts: [person_generator([p])[0] if "Ilsa" in p else "" for p in prompts]
    code = cli_qa(tmp_path, docs)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1] and str(tmp_path / "docs.jsonl") in err[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl"]


def test_qa_files_are_written_atomically(tmp_path, monkeypatch):
    from cptcore import synth

    recs = [{"question": "q", "answer": "a", "split": s} for s in ("train", "test")]
    real = synth.json.dumps

    def failing(row, **k):  # the second file fails half-way: neither file appears, no temporary is left
        if row["split"] == "test":
            raise TypeError("bad row")
        return real(row, **k)

    monkeypatch.setattr(synth.json, "dumps", failing)
    with pytest.raises(TypeError):
        synth.write_qa(recs, tmp_path / "x.jsonl")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(synth.json, "dumps", real)
    (tmp_path / "x.qa_train.jsonl").write_text("old\n")
    assert [p.name for p in synth.write_qa(recs, tmp_path / "x.jsonl")] == ["x.qa_train.jsonl", "x.qa_test.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.qa_test.jsonl", "x.qa_train.jsonl"]
    assert json.loads((tmp_path / "x.qa_train.jsonl").read_text())["split"] == "train"


def test_progress_is_reported_per_call_and_long_documents_are_read_in_passages():
    from cptcore.synth import MAX_PASSAGE_WORDS, passages, synth_qa

    seen = []
    docs = person_docs(5)
    recs, stats = synth_qa(docs, person_generator, "fake", progress=lambda d, t: seen.append((d, t)), per_call=2)
    assert seen == [(2, 5), (4, 5), (5, 5)] and stats["passages"] == 5
    long = " ".join(f"Sentence number {i} says something." for i in range(400))  # 2,000 words
    spans = passages(long)
    assert len(spans) == 6 and all(len(long[a:b].split()) <= MAX_PASSAGE_WORDS for a, b in spans)
    assert " ".join(long[a:b] for a, b in spans) == long
    nopunct = "word " * 800
    assert [len(nopunct[a:b].split()) for a, b in passages(nopunct)] == [350, 350, 100]


def test_distractors_prefer_answers_of_the_gold_answers_length():
    from cptcore.synth import add_distractors

    recs = [{"id": "t", "answer": "Nymigeiv", "attribute": "what", "entity_id": "e0", "split": "test"}]
    recs += [{"id": f"s{i}", "answer": f"The town number {i} is large and old.", "attribute": "what",
              "entity_id": f"e{i}", "split": "train"} for i in range(1, 9)]
    recs += [{"id": f"w{i}", "answer": f"Word{i}", "attribute": "what", "entity_id": f"f{i}", "split": "train"}
             for i in range(3)] + [{"id": "x", "answer": "Other", "attribute": "who", "entity_id": "g", "split": "train"}]
    add_distractors(recs, seed=0, n=5)
    short, long = recs[0]["distractors"][:3], recs[0]["distractors"][3:]
    assert sorted(short) == ["Word0", "Word1", "Word2"] and all(d.startswith("The town") for d in long)
    assert "Other" not in recs[0]["distractors"] and all("distractors" not in r for r in recs[1:])
