"""A data source before a run: format, rows, tokens and the problems found; uploads."""
import json

import pytest

from cptcore.config import ModelConfig, SourceConfig
from cptcore.data import inspect
from cptcore.tokenizer import load_text_tokenizer


def test_inspect_reports_malformed_empty_and_duplicate_lines(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join([json.dumps({"text": "alpha beta"}), "{broken", json.dumps({"text": "  "}),
                               json.dumps({"text": "alpha beta"}), json.dumps({"text": "gamma"})]) + "\n")
    r = inspect.inspect_source(SourceConfig(path=str(path)))
    assert r.format == "text" and r.rows == 4
    assert any(p.startswith("line 2: malformed JSON") for p in r.problems)
    assert "line 3: empty text" in r.problems
    assert "line 4: duplicate of line 1" in r.problems


def test_inspect_detects_chat_and_counts_tokens(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Q{i}?", "response": f"A{i}."}) + "\n" for i in range(3)))
    r = inspect.inspect_source(SourceConfig(path=str(path)), tokenizer=load_text_tokenizer(ModelConfig(name="tiny-random-llama")))
    assert r.format == "chat" and r.rows == 3 and not r.problems and r.tokens > 0


def test_uploads_stay_in_the_data_folder(tmp_path):
    p = inspect.save_upload(tmp_path, "../../etc/evil name.jsonl", b'{"text": "x"}\n')
    assert p.parent == (tmp_path / "data").resolve() and p.name == "evil_name.jsonl"
    assert inspect.save_upload(tmp_path, "..\\..\\x.txt", b"hi").parent == (tmp_path / "data").resolve()
    again = inspect.save_upload(tmp_path, "evil name.jsonl", b"other")
    assert again != p and p.read_bytes() == b'{"text": "x"}\n'  # never overwrites a different file
    with pytest.raises(ValueError, match="unsupported file type"):
        inspect.save_upload(tmp_path, "run.py", b"import os")
    with pytest.raises(ValueError, match="upload limit"):
        inspect.save_upload(tmp_path, "big.txt", b"x" * 11, max_bytes=10)
    assert {f.name for f in inspect.user_files(tmp_path)} == {"evil_name.jsonl", "x.txt", again.name}


def test_an_upload_never_follows_a_planted_temp_file_symlink(tmp_path):
    from cptcore.data.inspect import save_upload

    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    (tmp_path / "home" / "data").mkdir(parents=True)
    (tmp_path / "home" / "data" / ".docs.txt.part").symlink_to(outside)  # the old fixed temp name
    dest = save_upload(tmp_path / "home", "docs.txt", b"uploaded")
    assert dest.read_bytes() == b"uploaded" and outside.read_text() == "keep me"
    assert not dest.is_symlink()


def test_the_data_page_reads_only_bundled_sets_hub_ids_and_allowed_folders(tmp_path, monkeypatch):
    from cptcore.data.inspect import DATA_DIRS_ENV, MAX_WALK_FILES, readable_path

    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "mine.jsonl").write_text("{}\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    (home / "data" / "link.txt").symlink_to(secret)
    monkeypatch.delenv(DATA_DIRS_ENV, raising=False)
    assert readable_path("builtin:knowledge_docs", home) is None
    assert readable_path("org/dataset", home) is None
    assert readable_path(str(home / "data" / "mine.jsonl"), home) is None
    for bad in (str(secret), str(home / "data" / "link.txt"), str(home / "data" / ".." / ".." / "secret.txt"),
                "/etc/hostname"):
        assert "outside the folders" in readable_path(bad, home), bad
    monkeypatch.setenv(DATA_DIRS_ENV, str(tmp_path))
    assert readable_path(str(secret), home) is None  # the user listed its folder
    big = tmp_path / "big"
    big.mkdir()
    for i in range(MAX_WALK_FILES + 1):
        (big / f"{i}.txt").touch()
    assert "more than" in readable_path(str(big), home)


def test_upload_names_keep_letters_of_any_language_and_avoid_reserved_names():
    from cptcore.data.inspect import safe_upload_name

    assert safe_upload_name("Übersicht café 中文.jsonl") == "Übersicht_café_中文.jsonl"
    assert safe_upload_name("CON.txt") == "CON_.txt" and safe_upload_name("lpt1.csv") == "lpt1_.csv"
    assert safe_upload_name("../../x?.md") == "x.md"


def test_document_report_counts_duplicates_long_documents_held_out_and_passes(tmp_path):
    from cptcore.data.heldout import HOLDOUT_FLOOR

    docs = [f"Document {w} talks about the {w} valley and its people." for w in
            ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
             "upsilon").split()]  # 20 distinct documents
    docs += ["DOCUMENT alpha   talks about the alpha valley and its people.",  # exact: case and spaces
             "Document beta talks about the beta valley and its people!",      # exact: punctuation (document_key)
             "Document gamma 7 talks about the gamma valley and its people.",  # near: a digit
             "long " * 25_000]                                               # 125,000 characters
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    r = inspect.document_report(SourceConfig(path=str(path)), tokens=50_000, budget_tokens=1_000_000,
                                domain_share=0.85)
    assert r.documents == 24 and r.distinct == 22
    assert r.exact_duplicates == [(21, 1), (22, 2)] and r.near_duplicates == [(23, 3)]
    assert r.long_documents == [24]
    assert r.holdout == HOLDOUT_FLOOR and r.holdout_rows in (HOLDOUT_FLOOR, HOLDOUT_FLOOR + 1)
    assert "held out for domain_ppl" in r.holdout_note
    assert r.passes == pytest.approx(17.0)  # 1,000,000 x 0.85 / 50,000
    assert inspect.document_report(SourceConfig(path=str(path))).passes is None  # tokens not counted


def test_document_report_says_when_there_are_too_few_documents_to_hold_out(tmp_path):
    path = tmp_path / "few.jsonl"
    path.write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(5)))
    r = inspect.document_report(SourceConfig(path=str(path)), tokens=10)
    assert r.holdout is None and "5 distinct document(s), too few to hold out" in r.holdout_note
    bundled = inspect.document_report(SourceConfig(path="builtin:knowledge_docs"))
    assert bundled.documents > 0 and bundled.holdout is None and "bundled" in bundled.holdout_note


def test_save_qa_writes_only_kept_pairs_under_the_data_folder(tmp_path):
    recs = [{"question": f"Who is {i}?", "answer": f"Person {i}", "attribute": "who", "entity_id": f"d{i % 3}",
             "doc_row": i % 3 + 1, "id": f"q{i}", "split": "test" if i % 3 == 0 else "train"} for i in range(6)]
    train, test = inspect.save_qa(tmp_path, "../my docs", recs, keep=[True, False, True, True, True, True])
    assert train == (tmp_path / "data" / "my_docs.qa_train.jsonl").resolve() and test.name == "my_docs.qa_test.jsonl"
    rows = [json.loads(l) for l in train.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["q2", "q4", "q5"]
    tests = [json.loads(l) for l in test.read_text().splitlines()]
    assert all("Person 1" not in r["distractors"] for r in tests)  # an unticked pair is no distractor either
    with pytest.raises(ValueError, match="no qa_test pairs left"):
        inspect.save_qa(tmp_path, "x", recs, keep=[False, True, True, False, True, True])
