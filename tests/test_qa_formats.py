"""QA files in the formats people already have: as evaluation items (qa_items) and as chat training data."""
import json

import pytest

from cptcore.config import ModelConfig, SourceConfig
from cptcore.data.cache import cached_source
from cptcore.data.formats import IGNORE, detect_format, encode_rows
from cptcore.data.qa import qa_items
from cptcore.data.sources import DataError, read_records
from cptcore.evaluate.knowledge_qa import gold_answers
from cptcore.models import load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(ModelConfig(name="tiny-random-llama"))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


USER_ASSISTANT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
                  {"role": "assistant", "content": "Paris"}]
FORMATS = {
    "question/answer": {"question": "Capital of France?", "answer": "Paris"},
    "question/answers strings": {"question": "Capital of France?", "answers": ["Paris", "paris, France"]},
    "question/answers squad": {"question": "Capital of France?",
                               "answers": [{"text": "Paris", "answer_start": 3}, {"text": "paris, France",
                                                                                   "answer_start": 3}]},
    "question/answers hub": {"question": "Capital of France?",
                             "answers": {"text": ["Paris", "paris, France"], "answer_start": [3, 3]}},
    "prompt/completion": {"prompt": "Capital of France?", "completion": " Paris"},
    "messages": {"messages": USER_ASSISTANT},
}


@pytest.mark.parametrize("name", FORMATS)
def test_each_format_reads_as_evaluation_items(tmp_path, name):
    f = write_jsonl(tmp_path / "qa.jsonl", [{**FORMATS[name], "id": "q1"}])
    [item] = qa_items(read_records(SourceConfig(path=str(f))), str(f))
    assert item["question"] == "Capital of France?" and item["answer"] == "Paris" and item["id"] == "q1"
    assert item["answers"][0] == "Paris" and all(isinstance(a, str) for a in item["answers"])
    expected = ["Paris", "paris, France"] if "answers" in name else ["Paris"]
    assert gold_answers(item) == expected  # what knowledge_qa scores against


@pytest.mark.parametrize("name", FORMATS)
def test_each_format_trains_as_chat_with_loss_on_the_answer(tmp_path, tok, name):
    f = write_jsonl(tmp_path / "qa.jsonl", [FORMATS[name]] * 3)
    source = SourceConfig(path=str(f))
    rows = read_records(source)
    assert detect_format(rows, source) == "chat"
    ids, labels = encode_rows(rows, "chat", source, tok, "base")[0]
    trained = tok.decode([t for t in labels if t != IGNORE], skip_special_tokens=True)
    assert trained.strip() == "Paris"  # the answer (the first one), not the question
    assert "France?" in tok.decode(ids)
    _, entry = cached_source(source, tok, "base")
    assert entry["format"] == "chat" and entry["examples"] == 3


def test_question_answer_keeps_both_fields_and_the_other_answers():
    [item] = qa_items([{"question": "Q?", "answer": "A", "answers": ["a", "A", "B"], "entity_id": "e1"}], "x")
    assert item["answer"] == "A" and item["answers"] == ["A", "a", "B"] and item["entity_id"] == "e1"


def test_messages_must_be_one_user_and_one_assistant_turn():
    two = USER_ASSISTANT + [{"role": "user", "content": "And Spain?"}, {"role": "assistant", "content": "Madrid"}]
    with pytest.raises(DataError, match=r"^qa\.jsonl: row 2: 'messages' must hold one user turn and one assistant"):
        qa_items([{"messages": USER_ASSISTANT}, {"messages": two}], "qa.jsonl")


def test_unrecognizable_rows_are_a_one_line_error_naming_file_row_and_fields(tmp_path):
    f = write_jsonl(tmp_path / "qa.jsonl", [{"question": "Q?", "answer": "A"}, {"query": "Q?", "reply": "A"}])
    with pytest.raises(DataError) as e:
        qa_items(read_records(SourceConfig(path=str(f))), str(f))
    msg = str(e.value)
    assert msg == (f"{f}: row 2: no recognizable QA fields (question/answer, question/answers, prompt/completion, "
                   "messages); found: query, reply")
    assert "\n" not in msg


def test_row_numbers_follow_the_evaluation_samples_source_index():
    with pytest.raises(DataError, match=r"^qa: row 8: no recognizable QA fields .*found: text$"):
        qa_items([{"question": "Q?", "answer": "A", "_row": 0}, {"text": "doc", "_row": 7}], "qa")


def test_empty_answer_is_an_error_but_empty_answers_is_unanswerable(capsys):
    with pytest.raises(DataError, match=r"^x: row 1: empty answer$"):
        qa_items([{"question": "Q?", "answer": " "}], "x")
    items = qa_items([{"question": "Q?", "answers": []}, {"question": "R?", "answers": ["B"]}], "x")
    assert [it["answer"] for it in items] == ["B"]
    assert capsys.readouterr().err.strip() == "warning: x: skipped 1 of 2 unanswerable questions"


# --- SQuAD JSON files ----------------------------------------------------------------------
def squad_file(path, version2=True):
    """Two articles, three paragraphs (one repeated), five questions of which two are unanswerable in v2."""
    def qa(i, text, impossible=False):
        q = {"id": f"q{i}", "question": f"Question {i}?",
             "answers": [] if impossible else [{"text": text, "answer_start": 0}, {"text": text.lower(),
                                                                                    "answer_start": 0}]}
        if version2:
            q["is_impossible"] = impossible
            if impossible:
                q["plausible_answers"] = [{"text": text, "answer_start": 0}]
        return q

    data = {"version": "v2.0" if version2 else "1.1", "data": [
        {"title": "Rivers", "paragraphs": [
            {"context": "The Arno flows through Florence.", "qas": [qa(1, "Florence"), qa(2, "Pisa", version2)]},
            {"context": "The Tiber flows through Rome.", "qas": [qa(3, "Rome")]}]},
        {"title": "Again", "paragraphs": [
            {"context": "The Tiber flows through Rome.", "qas": [qa(4, "Rome")]},
            {"context": "Nothing is known here.", "qas": [qa(5, "Nowhere", version2)]}]},
    ]}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_squad_v1_every_question_is_a_row(tmp_path, capsys):
    f = squad_file(tmp_path / "train-v1.1.json", version2=False)
    rows = read_records(SourceConfig(path=str(f)))
    assert [r["id"] for r in rows] == ["q1", "q2", "q3", "q4", "q5"]
    assert rows[0] == {"id": "q1", "question": "Question 1?", "answer": "Florence", "answers": ["Florence", "florence"],
                       "context": "The Arno flows through Florence.", "title": "Rivers"}
    assert capsys.readouterr().err == ""
    assert [it["answers"] for it in qa_items(rows, str(f))][0] == ["Florence", "florence"]


def test_squad_v2_skips_and_counts_unanswerable_questions(tmp_path, capsys):
    f = squad_file(tmp_path / "dev-v2.0.json")
    rows = read_records(SourceConfig(path=str(f)))
    assert [r["id"] for r in rows] == ["q1", "q3", "q4"]
    assert capsys.readouterr().err.strip() == f"warning: {f}: skipped 2 of 5 unanswerable questions"
    items = qa_items(rows, str(f))
    assert gold_answers(items[1]) == ["Rome", "rome"]


def test_squad_v2_trains_as_chat(tmp_path, tok):
    f = squad_file(tmp_path / "dev-v2.0.json")
    shard, entry = cached_source(SourceConfig(path=str(f)), tok, "base")
    assert entry["format"] == "chat" and entry["examples"] == 3
    labels = next(shard.examples())[1]
    assert tok.decode([int(t) for t in labels if t != IGNORE], skip_special_tokens=True).strip() == "Florence"


def test_squad_without_answerable_questions_is_an_error(tmp_path):
    f = tmp_path / "none.json"
    f.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [{"context": "c", "qas": [
        {"id": "a", "question": "?", "answers": [], "is_impossible": True},
        {"id": "b", "question": "?", "answers": [], "is_impossible": True}]}]}]}), encoding="utf-8")
    with pytest.raises(DataError, match=r"none\.json: SQuAD file has no answerable questions \(0 of 2\)"):
        read_records(SourceConfig(path=str(f)))


def test_squad_contexts_are_domain_documents(tmp_path, tok, capsys):
    f = squad_file(tmp_path / "dev-v2.0.json")
    source = SourceConfig(path=str(f), text_field="context")
    rows = read_records(source)
    assert rows == [{"context": "The Arno flows through Florence.", "title": "Rivers"},
                    {"context": "The Tiber flows through Rome.", "title": "Rivers"},
                    {"context": "Nothing is known here.", "title": "Again"}]
    assert capsys.readouterr().err == ""  # documents: nothing is skipped
    shard, entry = cached_source(source, tok, "base")
    assert entry["format"] == "text" and entry["examples"] == 3
    assert tok.decode(list(shard.examples())[1][0].tolist(), skip_special_tokens=True) == "The Tiber flows through Rome."
