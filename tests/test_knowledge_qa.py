"""Closed-book QA: SQuAD normalization, EM/F1, answer log-probability, prompts, and batched generation."""
import json

import pytest

from cptcore.data.sources import DataError
import torch

from cptcore.config import ModelConfig, RunConfig
from cptcore.evaluate.generate import format_prompt, generate
from cptcore.evaluate.knowledge_qa import (answer_logprobs, exact_match, first_line, knowledge_qa,
                                           normalize_answer, question_prompt, token_f1)
from cptcore.evaluate.suite import Suite
from cptcore.models import load_model


@pytest.mark.parametrize("text, normal", [
    ("The Eiffel Tower!", "eiffel tower"),
    ("  an   apple, a day ", "apple day"),
    ("Theatre", "theatre"),                  # articles only as whole words
    ("1,181.", "1181"),
    ("Zoutamyn's river", "zoutamyns river"),
])
def test_squad_normalization(text, normal):
    assert normalize_answer(text) == normal


@pytest.mark.parametrize("pred, gold, em, f1", [
    ("Paris.", "paris", True, 1.0),
    ("The city of Paris", "Paris", False, 0.5),      # p = 1/3 (city, of, paris), r = 1: 2pr/(p+r) = 0.5
    ("Lyon", "Paris", False, 0.0),
    ("", "Paris", False, 0.0),
    ("the", "a", True, 1.0),                         # both normalize to empty: SQuAD counts a match
])
def test_exact_match_and_token_f1(pred, gold, em, f1):
    assert exact_match(pred, gold) is em
    assert token_f1(pred, gold) == pytest.approx(f1)


def test_first_line_is_the_answer():
    assert first_line("\n  Zoutamyn  \nQuestion: next?") == "Zoutamyn"
    assert first_line("") == ""


def test_base_and_instruct_prompts():
    assert question_prompt("Where is Breskol?", chat=False) == "Question: Where is Breskol?\nAnswer:"
    assert question_prompt("Where is Breskol?", chat=True).startswith("Where is Breskol?\n")


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelConfig(name="tiny-random-llama"))


def test_batched_generation_equals_one_prompt_at_a_time(tiny):
    model, tok = tiny
    prompts = ["Hi", "Tell me about the harbour lantern and the old engineer.", "Why?", "List three rivers."]
    for chat in (True, False):
        batched = generate(model, tok, prompts, chat=chat, max_new_tokens=12, batch_size=4)
        single = [generate(model, tok, [p], chat=chat, max_new_tokens=12, batch_size=1)[0] for p in prompts]
        assert batched == single
    assert tok.padding_side == "right"  # left padding only while generating


def test_answer_logprob_is_the_mean_log_probability_of_the_gold_tokens(tiny):
    model, tok = tiny
    prompt, answer = question_prompt("When was Breskol founded?", chat=True), "1181"
    got = answer_logprobs(model, tok, [prompt, prompt], [answer, "Zoutamyn"], chat=True, batch_size=2)[0]
    context = tok(format_prompt(tok, prompt, True), add_special_tokens=False)["input_ids"]
    target = tok(answer, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([context + target])).logits[0]
    lp = torch.log_softmax(logits.float(), -1)
    expected = sum(lp[len(context) - 1 + i, t].item() for i, t in enumerate(target)) / len(target)
    assert got == pytest.approx(expected, abs=1e-4)


def test_knowledge_qa_scores_and_keeps_per_item_rows(tiny):
    model, tok = tiny
    items = [{"question": "Which province is Breskol in?", "answer": "Zoutamyn"},
             {"question": "When was Breskol founded?", "answer": "1181", "answers": ["in 1181"]}]
    scores, rows = knowledge_qa(model, tok, items, chat=True, max_new_tokens=6)
    assert [s.name for s in scores] == ["eval/qa_em", "eval/qa_contains", "eval/qa_f1", "eval/qa_answer_logprob"]
    assert all(s.n == 2 for s in scores)
    assert {"question", "gold", "response", "prediction", "em", "f1", "contains", "answer_logprob"} <= set(rows[0])
    assert scores[3].value == pytest.approx(sum(r["answer_logprob"] for r in rows) / 2)


def test_contains_answer_matches_whole_normalized_words_anywhere():
    from cptcore.evaluate.knowledge_qa import contains_answer

    assert contains_answer("It was founded in 1181, I believe.", "1181")
    assert contains_answer("The province is Zoutamyn.", "zoutamyn")
    assert not contains_answer("founded in 11812", "1181")
    assert not contains_answer("anything", "")


POOL = [{"question": f"When was E{i} founded?", "answer": str(1100 + i), "attribute": "founded_year",
         "entity_id": f"town-{i:03d}"} for i in range(40)] + \
       [{"question": f"Which province is E{i} in?", "answer": f"Prov{i}", "attribute": "province",
         "entity_id": f"town-{i:03d}"} for i in range(40)]


def test_mc_distractors_share_the_attribute_never_the_entity_and_are_seeded():
    from cptcore.evaluate.knowledge_qa import mc_choices

    items = [dict(POOL[3], id="q3"), dict(POOL[45], id="q45")]
    a, b = mc_choices(items, POOL, 4, seed=0), mc_choices(items, POOL, 4, seed=0)
    assert a == b and [len(c) for c in a] == [5, 5]
    assert a[0][0] == "1103" and all(x.isdigit() and x != "1103" for x in a[0][1:])
    assert a[1][0] == "Prov5" and all(x.startswith("Prov") and x != "Prov5" for x in a[1][1:])
    assert len(set(a[0])) == 5
    assert mc_choices(items, POOL, 4, seed=1) != a


def _fake_logprobs(monkeypatch, score):
    """Replace the model: answer_logprobs returns score(prompt, answer) for each pair."""
    from cptcore.evaluate import knowledge_qa as kq

    monkeypatch.setattr(kq, "answer_logprobs", lambda model, tok, prompts, answers, chat, bs=8, progress=None:
                        [score(p, a) for p, a in zip(prompts, answers)])


def test_mc_accuracy_is_100_for_a_model_that_prefers_the_gold_answer(monkeypatch):
    from cptcore.evaluate.knowledge_qa import knowledge_mc

    gold = {r["answer"] for r in POOL}  # every answer is some item's gold: look it up per question
    by_q = {r["question"]: r["answer"] for r in POOL}
    _fake_logprobs(monkeypatch, lambda p, a: 0.0 if any(q in p and by_q[q] == a for q in by_q) else -5.0)
    items = [dict(r, id=i) for i, r in enumerate(POOL)]
    [score], rows = knowledge_mc(None, None, items, POOL, chat=True, distractors=4)
    assert gold and score.value == 100.0 and score.n == 80 and score.extra["chance"] == pytest.approx(20.0)
    assert all(r["correct"] and r["margin"] == 5.0 for r in rows)


def test_mc_accuracy_is_near_chance_for_an_indifferent_model(monkeypatch):
    import random

    from cptcore.evaluate.knowledge_qa import knowledge_mc

    rng = random.Random(0)
    _fake_logprobs(monkeypatch, lambda p, a: rng.random())
    pool = [{"question": f"Q{i}?", "answer": f"A{i}", "attribute": "x", "entity_id": f"e-{i}"} for i in range(1000)]
    [score], _ = knowledge_mc(None, None, [dict(r, id=i) for i, r in enumerate(pool)], pool, chat=True,
                              distractors=4)
    assert abs(score.value - 20.0) < 4.0  # 1,000 items: sd of the accuracy is 1.3 points
    assert score.ci_low < 20.0 < score.ci_high or abs(score.value - 20) < 4


def test_mc_ties_count_as_wrong(monkeypatch):
    from cptcore.evaluate.knowledge_qa import knowledge_mc

    _fake_logprobs(monkeypatch, lambda p, a: -1.0)
    [score], _ = knowledge_mc(None, None, [dict(r, id=i) for i, r in enumerate(POOL[:10])], POOL, True, 4)
    assert score.value == 0.0


def test_mc_runs_on_a_real_tiny_model(tiny):
    from cptcore.evaluate.knowledge_qa import knowledge_mc

    model, tok = tiny
    [score], rows = knowledge_mc(model, tok, [dict(r, id=i) for i, r in enumerate(POOL[:6])], POOL, True, 3)
    assert score.n == 6 and len(rows[0]["choices"]) == 4 and len(rows[0]["logprobs"]) == 4
    assert score.extra["chance"] == pytest.approx(25.0)


def test_qa_file_missing_a_field_is_an_error_naming_the_row(tmp_path):
    f = tmp_path / "qa.jsonl"
    f.write_text(json.dumps({"question": "q?", "answer": "a"}) + "\n" + json.dumps({"question": "q2?"}) + "\n")
    cfg = RunConfig().with_overrides({"eval.qa_source": str(f), "eval.qa_limit": 2})
    with pytest.raises(DataError, match=r"qa.jsonl: row 2: no recognizable QA fields .*; found: question$"):
        Suite(cfg).questions()
