"""knowledge_qa: closed-book questions about documents the run trained on (questions it never saw).

Exact match and token F1 use SQuAD's answer normalization on the first line of a greedy answer; the mean
log-probability of the gold answer moves before exact match does on small models (Physics of LMs).
"""
from __future__ import annotations

import re
import string
from collections import Counter

from .generate import eval_mode, format_prompt, generate, model_device, padding_side
from .stats import Score, mean_score, proportion

CHAT_INSTRUCTION = "Answer with only the answer, in a few words."


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 normalization: lower case, drop punctuation, articles and extra whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(gold)


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def question_prompt(question: str, chat: bool) -> str:
    """Instruct models are asked in their chat template; base models continue 'Question: ...\\nAnswer:'."""
    if chat:
        return f"{question.strip()}\n{CHAT_INSTRUCTION}"
    return f"Question: {question.strip()}\nAnswer:"


def first_line(response: str) -> str:
    """The answer part of a response: base models go on to invent the next question."""
    for line in response.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def gold_answers(item: dict) -> list[str]:
    answers = item.get("answers") or []
    if isinstance(answers, str):
        answers = [answers]
    return [str(item["answer"])] + [str(a) for a in answers if str(a) != str(item["answer"])]


def answer_logprobs(model, tokenizer, prompts: list[str], answers: list[str], chat: bool,
                    batch_size: int = 8) -> list[float]:
    """Mean per-token log-probability of each answer given its prompt (exactly as generation sees it)."""
    import torch

    rows = []
    for prompt, answer in zip(prompts, answers):
        context = tokenizer(format_prompt(tokenizer, prompt, chat), add_special_tokens=not chat)["input_ids"]
        target = tokenizer(answer if chat else " " + answer, add_special_tokens=False)["input_ids"]
        rows.append((context, target))
    out = []
    device = model_device(model)
    with eval_mode(model), padding_side(tokenizer, "right"):
        for start in range(0, len(rows), batch_size):
            part = rows[start:start + batch_size]
            batch = tokenizer.pad({"input_ids": [c + t for c, t in part]}, return_tensors="pt")
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            for r, (context, target) in enumerate(part):
                pos = torch.arange(len(context) - 1, len(context) + len(target) - 1, device=device)
                tok = torch.tensor(target, device=device)
                out.append(float(logprobs[r, pos, tok].mean()) if len(target) else 0.0)
    return out


def knowledge_qa(model, tokenizer, items: list[dict], chat: bool, max_new_tokens: int = 24,
                 batch_size: int = 8) -> tuple[list[Score], list[dict]]:
    """EM, F1 and answer log-probability over `items` (fields question, answer; optional answers, id)."""
    prompts = [question_prompt(str(it["question"]), chat) for it in items]
    responses = generate(model, tokenizer, prompts, chat=chat, max_new_tokens=max_new_tokens,
                         batch_size=batch_size)
    logprobs = answer_logprobs(model, tokenizer, prompts, [str(it["answer"]) for it in items], chat, batch_size)
    rows = []
    for i, (it, response, lp) in enumerate(zip(items, responses, logprobs)):
        pred, golds = first_line(response), gold_answers(it)
        rows.append({"id": it.get("id", i), "question": it["question"], "gold": it["answer"], "response": response,
                     "prediction": pred, "em": max(exact_match(pred, g) for g in golds),
                     "f1": max(token_f1(pred, g) for g in golds), "answer_logprob": lp})
    scores = [proportion("eval/qa_em", [r["em"] for r in rows]),
              mean_score("eval/qa_f1", [r["f1"] for r in rows]),
              mean_score("eval/qa_answer_logprob", [r["answer_logprob"] for r in rows])]
    return scores, rows
