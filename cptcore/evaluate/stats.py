"""Honest numbers: every score carries its n and a 95% confidence interval.

Proportions use the Wilson interval (good at small n and near 0 or 1); means and ratios use a seeded
percentile bootstrap over items, so the same items always give the same interval.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

Z95 = 1.959963984540054
N_BOOT = 2000


def loss_rise_pct(ppl: float, base_ppl: float) -> float:
    """How much the loss, ln(ppl), rose above the baseline's, in % (the D-CPT Law's cap is 3 %). The one
    definition of "general loss up" that warnings and dynamic mixing use; 0 when undefined."""
    if base_ppl <= 1 or ppl <= 0:
        return 0.0
    return (math.log(ppl) / math.log(base_ppl) - 1) * 100


@dataclass
class Score:
    """One reported number: the metric name as written to the stream, its value, n and 95% CI."""
    name: str
    value: float
    n: int
    ci_low: float
    ci_high: float
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(d.pop("extra"))
        return d


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for k successes out of n."""
    if n <= 0:
        return (math.nan, math.nan)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if k == 0 else lo, 1.0 if k == n else hi)  # exact ends, not 0.9999999999999999


def proportion(name: str, outcomes: Sequence[bool], scale: float = 1.0, **extra) -> Score:
    """Share of True outcomes with a Wilson CI; scale=100 reports points."""
    n, k = len(outcomes), sum(bool(o) for o in outcomes)
    lo, hi = wilson(k, n)
    value = k / n if n else math.nan
    return Score(name, value * scale, n, lo * scale, hi * scale, extra)


def bootstrap(values: Sequence, statistic: Callable[[list], float], seed: int = 0,
              n_boot: int = N_BOOT) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of statistic(items), resampling items with a fixed seed."""
    values = list(values)
    if len(values) < 2:
        v = statistic(values) if values else math.nan
        return (v, v)
    rng = random.Random(seed)
    n = len(values)
    stats = sorted(statistic([values[rng.randrange(n)] for _ in range(n)]) for _ in range(n_boot))
    return (stats[int(0.025 * n_boot)], stats[min(n_boot - 1, int(0.975 * n_boot))])


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def mean_score(name: str, values: Sequence[float], seed: int = 0, **extra) -> Score:
    """Mean over items with a bootstrap CI."""
    lo, hi = bootstrap(values, mean, seed)
    return Score(name, mean(values), len(values), lo, hi, extra)


def ratio_score(name: str, pairs: Sequence[tuple[float, float]], transform: Callable[[float], float] = float,
                seed: int = 0, **extra) -> Score:
    """transform(sum(a) / sum(b)) over items (a, b) with a bootstrap CI that resamples whole items.

    Used for perplexity (a = summed token loss, b = token count per document: long documents weigh more)
    and for instruction-level accuracy (a = passed, b = instructions per prompt: prompts are the unit).
    """
    def stat(items: list) -> float:
        den = sum(b for _, b in items)
        return transform(sum(a for a, _ in items) / den) if den else math.nan

    lo, hi = bootstrap(pairs, stat, seed)
    return Score(name, stat(list(pairs)), len(pairs), lo, hi, extra)


def paired_difference(before: dict, after: dict, seed: int = 0) -> dict:
    """after - before on the items both results share (keyed by item id), with a bootstrap CI.

    Comparing the same items removes the between-item variance that makes headline numbers on small
    suites look different when they are not.
    """
    keys = [k for k in before if k in after]
    if not keys:
        raise ValueError("paired difference: the two result sets share no items")
    diffs = [float(after[k]) - float(before[k]) for k in keys]
    lo, hi = bootstrap(diffs, mean, seed)
    return {"mean_diff": mean(diffs), "ci_low": lo, "ci_high": hi, "n": len(keys),
            "better": sum(d > 0 for d in diffs), "worse": sum(d < 0 for d in diffs),
            "same": sum(d == 0 for d in diffs)}


def item_values(rows: list[dict], field: str) -> dict:
    """id -> value of one per-item field (e.g. prompt_strict, em, f1, loss) from an eval/*.jsonl file's rows,
    ready for paired_difference between two steps or two runs."""
    return {r["id"]: float(r[field]) for r in rows if r.get(field) is not None}
