"""Honest numbers: every score carries its n and a 95% confidence interval.

Proportions use the Wilson interval (good at small n and near 0 or 1); means and ratios use a seeded
percentile bootstrap over items, so the same items always give the same interval.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

Z95 = 1.959963984540054
N_BOOT = 2000


def loss_rise_pct(ppl: float, base_ppl: float) -> float:
    """How much the loss, ln(ppl), rose above the baseline's, in % (the D-CPT Law's cap is 3 %). The one
    definition of "general loss up" that warnings and dynamic mixing use; 0 when undefined."""
    if base_ppl <= 1 or ppl <= 0:
        return 0.0
    return (math.log(ppl) / math.log(base_ppl) - 1) * 100


TRANSFORMS = {  # value = transform(sum(num) / sum(den)) over a score's items; vectorized for the bootstrap
    "mean": lambda x: x,
    "percent": lambda x: 100 * x,
    "exp": lambda x: np.exp(np.minimum(x, 700.0)),
}


@dataclass
class Score:
    """One reported number: the metric name as written to the stream, its value, n and 95% CI.

    `items` keeps each item's (numerator, denominator) under its id and `kind` how they become the value, so
    a later evaluation on the same items gives a *paired* change (`paired_change`) instead of two intervals
    that overlap whatever happened.
    """
    name: str
    value: float
    n: int
    ci_low: float
    ci_high: float
    extra: dict = field(default_factory=dict)
    items: dict = field(default_factory=dict, repr=False)
    kind: str = "mean"

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("items"), d.pop("kind")
        d.update(d.pop("extra"))
        return d

    def items_record(self) -> dict:
        """JSON-ready items (ids, num, den, kind): what a later evaluation or another run pairs with."""
        ids = list(self.items)
        return {"kind": self.kind, "ids": ids, "num": [self.items[i][0] for i in ids],
                "den": [self.items[i][1] for i in ids]}


def items_from_record(rec: dict) -> tuple[dict, str]:
    """Inverse of Score.items_record: ({id: (num, den)}, kind)."""
    return {i: (a, b) for i, a, b in zip(rec["ids"], rec["num"], rec["den"])}, rec.get("kind", "mean")


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


def _ids(ids, n: int) -> list:
    ids = list(range(n)) if ids is None else list(ids)
    if len(ids) != n or len(set(map(str, ids))) != n:
        raise ValueError(f"item ids must be {n} distinct values, got {len(ids)} ({len(set(map(str, ids)))} distinct)")
    return ids


def proportion(name: str, outcomes: Sequence[bool], scale: float = 1.0, ids=None, **extra) -> Score:
    """Share of True outcomes with a Wilson CI; scale=100 reports points."""
    n, k = len(outcomes), sum(bool(o) for o in outcomes)
    lo, hi = wilson(k, n)
    value = k / n if n else math.nan
    items = {i: (float(bool(o)), 1.0) for i, o in zip(_ids(ids, n), outcomes)}
    return Score(name, value * scale, n, lo * scale, hi * scale, extra, items, "percent" if scale == 100 else "mean")


def _resample(n: int, seed: int, n_boot: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _ratio_stat(num: np.ndarray, den: np.ndarray, idx: np.ndarray, kind: str) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return TRANSFORMS[kind](num[idx].sum(axis=-1) / den[idx].sum(axis=-1))


def _percentiles(stats: np.ndarray) -> tuple[float, float]:
    stats = np.sort(stats)
    n_boot = len(stats)
    return float(stats[int(0.025 * n_boot)]), float(stats[min(n_boot - 1, int(0.975 * n_boot))])


def bootstrap(values: Sequence, statistic: Callable[[list], float], seed: int = 0,
              n_boot: int = N_BOOT) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of statistic(items), resampling items with a fixed seed."""
    values = list(values)
    if len(values) < 2:
        v = statistic(values) if values else math.nan
        return (v, v)
    idx = _resample(len(values), seed, n_boot)
    return _percentiles(np.array([statistic([values[i] for i in row]) for row in idx]))


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def ratio_score(name: str, pairs: Sequence[tuple[float, float]], kind: str = "mean", seed: int = 0, ids=None,
                **extra) -> Score:
    """transform(sum(a) / sum(b)) over items (a, b) with a bootstrap CI that resamples whole items.

    Used for perplexity (a = summed token loss, b = token count per document: long documents weigh more,
    kind "exp"), for instruction-level accuracy (a = passed, b = instructions per prompt: prompts are the
    unit, kind "percent") and, with b = 1, for plain means.
    """
    if kind not in TRANSFORMS:
        raise ValueError(f"ratio_score: unknown kind {kind!r} (known: {', '.join(TRANSFORMS)})")
    pairs = [(float(a), float(b)) for a, b in pairs]
    items = dict(zip(_ids(ids, len(pairs)), pairs))
    num, den = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    if not pairs:
        return Score(name, math.nan, 0, math.nan, math.nan, extra, items, kind)
    value = float(_ratio_stat(num, den, np.arange(len(pairs)), kind))
    lo, hi = (value, value) if len(pairs) < 2 else _percentiles(_ratio_stat(num, den, _resample(len(pairs), seed, N_BOOT), kind))
    return Score(name, value, len(pairs), lo, hi, extra, items, kind)


def mean_score(name: str, values: Sequence[float], seed: int = 0, ids=None, **extra) -> Score:
    """Mean over items with a bootstrap CI."""
    return ratio_score(name, [(v, 1.0) for v in values], "mean", seed, ids, **extra)


def paired_change(now: dict, before: dict, kind: str, seed: int = 0, n_boot: int = N_BOOT) -> dict | None:
    """value(now) - value(before) on the items both share, with a 95% paired percentile bootstrap CI.

    Items are {id: (num, den)}; each resample draws the same item ids for both sides, so the variance
    between items (most of it on small suites) cancels and only changes on the same items remain.
    None when the two share no item.
    """
    keys = [k for k in now if k in before]
    if not keys:
        return None
    a1, b1 = (np.array([now[k][j] for k in keys], dtype="float64") for j in (0, 1))
    a0, b0 = (np.array([before[k][j] for k in keys], dtype="float64") for j in (0, 1))
    every = np.arange(len(keys))
    delta = float(_ratio_stat(a1, b1, every, kind) - _ratio_stat(a0, b0, every, kind))
    if len(keys) < 2:
        lo = hi = delta
    else:
        idx = _resample(len(keys), seed, n_boot)
        lo, hi = _percentiles(_ratio_stat(a1, b1, idx, kind) - _ratio_stat(a0, b0, idx, kind))
    return {"delta": delta, "delta_ci_low": lo, "delta_ci_high": hi, "delta_n": len(keys)}


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


def lower_is_better(name: str) -> bool:
    """Perplexities, losses, KL and repetition: a rise is a decline."""
    return any(k in name for k in ("ppl", "loss", "_kl", "repetition"))


def decline(name: str, rec: dict, min_effect: float) -> tuple[bool, float | None]:
    """Is an evaluation record a real decline from step 0? The one rule of warnings, stop_on_warning and
    dynamic mixing.

    Real = the 95% paired CI of the change excludes 0 on the bad side (two-sided 5%: at most 2.5% false
    alarms per evaluation when nothing changed) AND the estimated decline is at least `min_effect`, in the
    threshold's unit: % rise of the loss ln(ppl) for perplexities, the metric's own unit otherwise (points
    for IFEval). Returns (fires, size of the decline); size None when the record has no paired change.
    """
    if rec.get("delta") is None or rec.get("delta_ci_low") is None:
        return False, None
    value, delta = float(rec["value"]), float(rec["delta"])
    if lower_is_better(name):
        significant = rec["delta_ci_low"] > 0
        size = loss_rise_pct(value, value - delta) if "ppl" in name else delta
    else:
        significant = rec["delta_ci_high"] < 0
        size = -delta
    return bool(significant and size >= min_effect), size
