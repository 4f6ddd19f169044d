"""Evaluations follow the data: a user's documents get their own held-out split, and no evaluator measures the
bundled demo in their place."""
import pytest

from cptcore.config import RunConfig, SourceConfig
from cptcore.data.heldout import (HOLDOUT_FLOOR, describe_sources, document_key, holdout_count, resolve,
                                  split_indices)
from cptcore.data.sources import DataError, read_records
from conftest import write_jsonl


def docs_file(path, n, dup_of=None):
    rows = [{"text": f"Document {i} tells how the copper bridge of harbour {i} was rebuilt in year {1900 + i}."}
            for i in range(n)]
    if dup_of is not None:  # a near-copy (case and punctuation differ) of document dup_of
        rows.append({"text": rows[dup_of]["text"].upper().replace(".", "!")})
    return write_jsonl(path, rows)


def test_the_split_is_seeded_by_document_and_keeps_near_copies_together(tmp_path):
    src = SourceConfig(path=str(docs_file(tmp_path / "d.jsonl", 60, dup_of=3)), holdout="heldout")
    rows = read_records(src.model_copy(update={"holdout": "all"}))
    idx, keys = split_indices(rows, src)
    assert len(set(keys)) == holdout_count(60) == HOLDOUT_FLOOR  # 5% of 60 is 3: the floor of 8 holds
    assert set(keys) == set(split_indices(list(reversed(rows)), src)[1])  # row order does not choose them
    assert document_key(rows[60]["text"]) == document_key(rows[3]["text"])  # case and punctuation aside
    assert (3 in idx) == (60 in idx)  # a near-copy goes where its original goes
    other = split_indices(rows, src.model_copy(update={"holdout_seed": 1}))[1]
    assert set(other) != set(keys)  # another seed, other documents
    held = read_records(src)
    train = read_records(src.model_copy(update={"holdout": "train"}))
    assert len(held) + len(train) == len(rows)
    train_keys = {document_key(r["text"]) for r in train}
    assert not train_keys & {document_key(r["text"]) for r in held}  # no document (or near-copy) on both sides
    assert holdout_count(1000) == 50 and holdout_count(100_000) == 200  # 5%, capped


def test_too_few_documents_to_hold_out_is_one_line_naming_the_file_and_count(tmp_path):
    src = SourceConfig(path=str(docs_file(tmp_path / "few.jsonl", 10)), holdout="train")
    with pytest.raises(DataError, match=r"few.jsonl: 10 distinct document\(s\), too few to hold out 8 .* or to none"):
        read_records(src)


def test_bundled_data_keeps_the_bundled_evaluation_sets():
    r = resolve(RunConfig.load("experiments/demo.yaml"))
    assert r.eval.domain_heldout.path == "builtin:knowledge_heldout"
    assert r.eval.qa_source.path == "builtin:knowledge_qa_test" and "knowledge_mc" in r.eval.evaluators
    assert all(s.holdout == "all" for s in r.data.domain)
    assert resolve(r) == r  # idempotent


def test_own_documents_are_split_and_foreign_questions_are_not_asked(tmp_path):
    docs = docs_file(tmp_path / "mine.jsonl", 40)
    cfg = RunConfig().with_overrides({"data.domain": str(docs), "eval.evaluators": ["domain_ppl", "knowledge_mc"]})
    r = resolve(cfg)
    assert r.data.domain[0].holdout == "train" and r.eval.domain_heldout.holdout == "heldout"
    assert r.eval.domain_heldout.path == str(docs) and r.eval.evaluators == ["domain_ppl"]
    said = describe_sources(cfg)
    assert said["domain_ppl"].startswith(f"held-out split of your domain data {docs}: 8 of 40 documents")
    assert said["knowledge_mc"].startswith("not run: no QA about your documents")
    (tmp_path / "mine.qa_train.jsonl").write_text('{"question": "Q?", "answer": "A"}\n')
    (tmp_path / "mine.qa_test.jsonl").write_text('{"question": "Q2?", "answer": "B"}\n')
    with_qa = cfg.with_overrides({"data.qa": str(tmp_path / "mine.qa_train.jsonl")})
    assert resolve(with_qa).eval.qa_source.path == str(tmp_path / "mine.qa_test.jsonl")
    off = cfg.with_overrides({"eval.domain_heldout": {"path": "none"}})
    assert resolve(off).eval.evaluators == [] and resolve(off).data.domain[0].holdout == "all"


def test_a_run_on_own_documents_measures_them_and_never_trains_on_the_held_out_ones(tiny_cfg, capsys):
    from cptcore.cli import main
    from cptcore.runs import list_runs
    from cptcore.runs.store import cpt_home

    cfg = tiny_cfg.with_overrides({"eval.evaluators": ["domain_ppl", "knowledge_mc"], "train.max_steps": 2,
                                   "eval.every_steps": 2})
    path = cpt_home() / "mine.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg.save(path)
    assert main(["train", str(path), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "domain_ppl: held-out split of your domain data" in err and "knowledge_mc: not run" in err
    (run,) = list_runs(cpt_home())
    man = run.manifest()
    held = man["heldout"]["domain"]
    assert held["documents"] == 8 and held["of"] == 40 and len(held["sha256"]) == 8
    assert man["roles"]["domain"]["sources"][0]["rows"] == 32  # the other 32 documents trained
    trained = read_records(SourceConfig(path=str(tiny_cfg.data.domain[0].path)))
    trained_keys = {document_key(r["text"]) for i, r in enumerate(trained) if i not in set(held["rows"])}
    assert not trained_keys & set(held["sha256"])
    records = run.read_metrics()
    ppl = [r for r in records if r["name"] == "eval/domain_ppl"]
    assert ppl and all(r["n"] == 8 for r in ppl)  # measured on the user's 8 held-out documents
    assert not [r for r in records if r["name"].startswith("eval/qa_")]  # no bundled questions asked
    assert man["evaluations"]["knowledge_mc"].startswith("not run")


def test_evaluation_questions_and_the_leak_guard_read_every_qa_format(tmp_path, tiny_cfg):
    from cptcore.data.leaks import check_leaks
    from cptcore.evaluate.suite import Suite
    from cptcore.plan import plan

    qa = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": f"Which seal does pump P{i} need?",
                                               "completion": f"the {i} mm seal"} for i in range(12)])
    cfg = tiny_cfg.with_overrides({"eval.qa_source": {"path": str(qa)}, "eval.evaluators": ["knowledge_mc"],
                                   "eval.qa_limit": 5})
    items = Suite(cfg).questions()
    assert len(items) == 5 and all(it["question"].startswith("Which seal") and it["answer"].endswith("mm seal")
                                   for it in items)
    leaky = write_jsonl(tmp_path / "leaky.jsonl", [{"text": "Which seal does pump P3 need? the 3 mm seal"}] * 20)
    leaking = cfg.with_overrides({"data.domain": str(leaky)})
    with pytest.raises(DataError, match="contains held-out QA pair"):
        check_leaks(leaking, plan(leaking))


def test_own_documents_to_synth_qa_to_a_pit_run_that_asks_about_them(tmp_path, tiny_cfg):
    """User documents -> `cpt synth` QA split by document -> pit trains on qa_train and its documents -> the
    run's knowledge_mc asks the qa_test questions about those documents (no bundled question)."""
    from cptcore.runs import Run
    from cptcore.runs.store import cpt_home
    from cptcore.synth import qa_from_documents, write_qa
    from cptcore.train import train_run
    from test_synth import person_docs, person_generator

    docs = write_jsonl(tmp_path / "people.jsonl", person_docs(10))
    result = qa_from_documents(read_records(SourceConfig(path=str(docs))), person_generator, "fake",
                               test_share=0.2, seed=0)
    qa_train, qa_test = write_qa(result.records, tmp_path / "people.jsonl")
    cfg = tiny_cfg.with_overrides({"recipe": "pit", "data.domain": str(docs), "data.qa": str(qa_train),
                                   "eval.evaluators": ["knowledge_mc"], "train.max_steps": 6, "eval.every_steps": 6})
    said = describe_sources(cfg)
    assert said["knowledge_mc"] == f"questions about your documents: {qa_test}"
    run = Run.create(cpt_home(), cfg)
    train_run(run, progress=False)
    mc = [r for r in run.read_metrics() if r["name"] == "eval/qa_mc_acc"]
    assert mc and all(r["n"] == 6 for r in mc)  # the 2 test documents' 6 questions, not the bundled 32
    stages = run.manifest()["plan"]["stages"]
    assert [s["name"] for s in stages] == ["qa+train_docs", "test_docs"]
    assert run.manifest()["roles"]["domain"]["sources"][0]["rows"] in (8, 10)  # documents matched by key
