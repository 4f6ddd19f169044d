"""Closed-book QA: SQuAD normalization, EM/F1, answer log-probability, prompts, and batched generation."""
import json

import pytest
import torch

from cptcore.config import ModelConfig, RunConfig
from cptcore.evaluate.generate import format_prompt, generate
from cptcore.evaluate.knowledge_qa import (answer_logprobs, exact_match, first_line, knowledge_qa,
                                           normalize_answer, question_prompt, token_f1)
from cptcore.evaluate.suite import EvalError, Suite
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
    assert [s.name for s in scores] == ["eval/qa_em", "eval/qa_f1", "eval/qa_answer_logprob"]
    assert all(s.n == 2 for s in scores)
    assert {"question", "gold", "response", "prediction", "em", "f1", "answer_logprob"} <= set(rows[0])
    assert scores[2].value == pytest.approx(sum(r["answer_logprob"] for r in rows) / 2)


def test_qa_file_missing_a_field_is_an_error_naming_the_row(tmp_path):
    f = tmp_path / "qa.jsonl"
    f.write_text(json.dumps({"question": "q?", "answer": "a"}) + "\n" + json.dumps({"question": "q2?"}) + "\n")
    cfg = RunConfig().with_overrides({"eval.qa_source": str(f), "eval.qa_limit": 2})
    with pytest.raises(EvalError, match="row 2 has no 'answer'"):
        Suite(cfg).questions()
