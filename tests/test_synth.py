"""Synthetic QA and facts: grounded in their document, deduplicated, with provenance."""
import json
from pathlib import Path

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
