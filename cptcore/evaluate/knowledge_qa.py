"""Closed-book questions about documents the run trained on (questions it never saw).

knowledge_qa generates: exact match and token F1 use SQuAD's answer normalization on the first line of a
greedy answer; `qa_contains` asks whether the normalized gold answer appears anywhere in the response (the
"recall" of Jiang et al. 2024: it separates knowing the fact from answering in the bare-answer format).

knowledge_mc only scores (forward passes, cheap enough for every evaluation): the gold answer ranked against
`eval.qa_mc_distractors` answers of the same attribute taken from other entities, by the mean per-token
log-probability of each answer after the question in the run's chat format. Per-token, not summed: answers
of one attribute differ in token count (names split into 2-5 tokens), and a sum would favour the shortest.
Chance is the mean over items of 1 / (that item's choices): 1 / (distractors + 1) when every item has enough
same-attribute candidates, higher when some have fewer; it is written into the record with the mean and
smallest number of choices. Small models learn a fact's ranking long
before they can produce it (Physics of LMs), so this moves first.
"""
from __future__ import annotations

import re
import string
from collections import Counter

from .generate import eval_mode, format_prompt, generate, model_device, padding_side
import random

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


def contains_answer(response: str, gold: str) -> bool:
    """The normalized gold answer appears in the normalized response as whole words."""
    g = normalize_answer(gold)
    return bool(g) and f" {g} " in f" {normalize_answer(response)} "


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
                    batch_size: int = 8, progress=None) -> list[float]:
    """Mean per-token log-probability of each answer given its prompt (exactly as generation sees it).
    progress(done, total), if given: answers scored so far, before the first batch and after each one."""
    import torch

    rows = []
    for prompt, answer in zip(prompts, answers):
        context = tokenizer(format_prompt(tokenizer, prompt, chat), add_special_tokens=not chat)["input_ids"]
        target = tokenizer(answer if chat else " " + answer, add_special_tokens=False)["input_ids"]
        rows.append((context, target))
    out = []
    device = model_device(model)
    if progress is not None:
        progress(0, len(rows))
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
            if progress is not None:
                progress(len(out), len(rows))
    return out


def knowledge_qa(model, tokenizer, items: list[dict], chat: bool, max_new_tokens: int = 24,
                 batch_size: int = 8, progress=None) -> tuple[list[Score], list[dict]]:
    """EM, F1 and answer log-probability over `items` (fields question, answer; optional answers, id).
    progress(done, total): questions, each half done when answered and whole once its gold answer is scored
    (the two passes: generation, then the answer log-probabilities)."""
    n = len(items)
    gen_progress = lp_progress = None
    if progress is not None:
        gen_progress = lambda done, _total: progress(done // 2, n)  # noqa: E731
        lp_progress = lambda done, _total: progress((n + done) // 2, n)  # noqa: E731
    prompts = [question_prompt(str(it["question"]), chat) for it in items]
    responses = generate(model, tokenizer, prompts, chat=chat, max_new_tokens=max_new_tokens,
                         batch_size=batch_size, progress=gen_progress)
    logprobs = answer_logprobs(model, tokenizer, prompts, [str(it["answer"]) for it in items], chat, batch_size,
                               lp_progress)
    rows = []
    for i, (it, response, lp) in enumerate(zip(items, responses, logprobs)):
        pred, golds = first_line(response), gold_answers(it)
        rows.append({"id": it.get("id", i), "question": it["question"], "gold": it["answer"], "response": response,
                     "prediction": pred, "em": max(exact_match(pred, g) for g in golds),
                     "f1": max(token_f1(pred, g) for g in golds),
                     "contains": any(contains_answer(response, g) for g in golds), "answer_logprob": lp})
    ids = [r["id"] for r in rows]
    scores = [proportion("eval/qa_em", [r["em"] for r in rows], scale=100, ids=ids, unit="%"),
              proportion("eval/qa_contains", [r["contains"] for r in rows], scale=100, ids=ids, unit="%"),
              mean_score("eval/qa_f1", [100 * r["f1"] for r in rows], ids=ids, unit="%"),
              mean_score("eval/qa_answer_logprob", [r["answer_logprob"] for r in rows], ids=ids, unit="nats/token")]
    return scores, rows


# --- multiple choice ---------------------------------------------------------------------------
def mc_choices(items: list[dict], pool: list[dict], distractors: int, seed: int = 0) -> list[list[str]]:
    """Gold answer first, then up to `distractors` answers of the same attribute from other entities.

    A row's own `distractors` list (written by `cpt synth`, drawn from both QA splits) is used first, then the
    pool fills what is missing. Drawn with a generator seeded by (seed, item id), so every evaluation and every
    run with the same eval settings ranks the same choices. Items without an attribute draw from all answers
    in the pool. Fewer candidates than `distractors` give fewer choices (knowledge_mc's chance follows)."""
    by_attr: dict = {}
    for row in pool:
        by_attr.setdefault(row.get("attribute"), []).append(row)
    out = []
    for i, it in enumerate(items):
        golds = {normalize_answer(g) for g in gold_answers(it)}
        seen = set(golds)
        own = []
        for d in it.get("distractors") or []:
            norm = normalize_answer(str(d))
            if norm and norm not in seen:
                seen.add(norm)
                own.append(str(d))
        same = by_attr.get(it.get("attribute"), pool) if it.get("attribute") is not None else pool
        cands = []
        for row in same:
            if row.get("entity_id") is not None and row.get("entity_id") == it.get("entity_id"):
                continue
            norm = normalize_answer(str(row["answer"]))
            if norm and norm not in seen:
                seen.add(norm)
                cands.append(str(row["answer"]))
        rng = random.Random(f"{seed}:{it.get('id', i)}")
        picked = rng.sample(own, min(distractors, len(own))) if own else []
        picked += rng.sample(cands, min(distractors - len(picked), len(cands)))
        out.append([str(it["answer"])] + picked)
    return out


def knowledge_mc(model, tokenizer, items: list[dict], pool: list[dict], chat: bool, distractors: int = 4,
                 seed: int = 0, batch_size: int = 8, progress=None) -> tuple[list[Score], list[dict]]:
    """Multiple-choice accuracy (%): the gold answer must out-score every distractor (ties count as wrong).
    progress(done, total): questions whose every choice is scored, after each batch."""
    choices = mc_choices(items, pool, distractors, seed)
    flat_prompts, flat_answers = [], []
    ends = []  # per question: the number of flat answers up to and including its own
    for it, opts in zip(items, choices):
        prompt = question_prompt(str(it["question"]), chat)
        flat_prompts += [prompt] * len(opts)
        flat_answers += opts
        ends.append(len(flat_answers))
    answers_progress = None
    if progress is not None:
        from bisect import bisect_right

        answers_progress = lambda done, _total: progress(bisect_right(ends, done), len(items))  # noqa: E731
    flat = answer_logprobs(model, tokenizer, flat_prompts, flat_answers, chat, batch_size, answers_progress)
    rows, at = [], 0
    for i, (it, opts) in enumerate(zip(items, choices)):
        lps = flat[at:at + len(opts)]
        at += len(opts)
        best = max(range(len(opts)), key=lambda j: (lps[j], -j))
        rows.append({"id": it.get("id", i), "question": it["question"], "gold": opts[0], "choices": opts,
                     "logprobs": lps, "picked": opts[best], "correct": len(opts) > 1 and all(lps[0] > x for x in lps[1:]),
                     "margin": lps[0] - max(lps[1:]) if len(opts) > 1 else None})
    # per item: 1 / its own number of choices (fewer candidates than `distractors` give fewer); an item with
    # no distractor can never count as correct, so its chance is 0, not 1
    chance = 100 * sum(1 / len(opts) if len(opts) > 1 else 0.0 for opts in choices) / max(1, len(choices))
    counts = [len(opts) for opts in choices]
    score = proportion("eval/qa_mc_acc", [r["correct"] for r in rows], scale=100, ids=[r["id"] for r in rows],
                       unit="%", chance=chance, choices=round(sum(counts) / max(1, len(counts)), 2),
                       choices_min=min(counts, default=0))
    return [score], rows
