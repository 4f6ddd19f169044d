"""coherence: repetition and distinct-n of generated responses (the "reduced coherence" warning sign).

Forgetting often shows first as degenerate text: loops of the same phrase, shrinking vocabulary. Scores are
averaged per response so they do not depend on how many responses there are. Words are lower-cased \\w+ runs.
"""
from __future__ import annotations

import re

from .stats import Score, mean_score


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def distinct_n(tokens: list[str], n: int) -> float | None:
    """Unique n-grams / all n-grams of one response (None when it has no n-gram)."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def repetition_rate(tokens: list[str], n: int = 4) -> float | None:
    """Share of n-grams that repeat an earlier n-gram of the same response (seq-rep-4, Welleck et al. 2020)."""
    d = distinct_n(tokens, n)
    return None if d is None else 1.0 - d


def coherence(responses: list[str], ids: list | None = None) -> tuple[list[Score], list[dict]]:
    """Mean distinct-1, distinct-2 and 4-gram repetition over responses."""
    ids = ids if ids is not None else list(range(len(responses)))
    rows = []
    for i, text in zip(ids, responses):
        toks = words(text)
        # too short for n-grams: nothing repeats (1.0); empty: the degenerate case (0.0)
        short = 1.0 if toks else 0.0
        d1, d2, rep = distinct_n(toks, 1), distinct_n(toks, 2), repetition_rate(toks)
        rows.append({"id": i, "response": text, "words": len(toks), "distinct1": short if d1 is None else d1,
                     "distinct2": short if d2 is None else d2, "repetition": rep or 0.0})
    ids = [r["id"] for r in rows]
    scores = [mean_score(f"eval/coherence_{m}", [r[m] for r in rows], ids=ids, unit="fraction")
              for m in ("distinct2", "distinct1", "repetition")]
    return scores, rows
