"""The one deficit scheduler: which role each next packed sequence comes from.

Every packed sequence holds seq_len tokens of one role, so input-token shares equal sequence shares. For each next
sequence the scheduler picks the role furthest below its expected count (the sum of the target shares so
far); after n sequences every role is within one sequence of its target, deterministically. The same object
serves a constant mix, a stage of a multi-stage run, a progressive ramp (a target per sequence) and dynamic
mixing (targets known only when the trainer fetches the sequence). Imports no torch.

A constant target (every stage without a progressive ramp) is scheduled in integers: its shares as whole
numbers over a denominator D (exact for shares with up to 6 decimals or simple fractions, else rounded to
1/10,000), so the picks repeat every D sequences and a stage of any length costs one period of the loop and a
np.tile: train.max_steps=10,000,000 plans in well under a second. A ramp is scheduled sequence by sequence
(MAX_RAMP_SEQUENCES bounds it).

Targets are always input-token shares. A mix in loss tokens (mix.unit=loss_tokens) is converted first with
each role's loss fraction (loss tokens per input token): input_shares() and its inverse loss_shares().
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

ROLES = ("domain", "replay", "instruct")  # the order of a target vector (as cptcore.config.ROLES)
MAX_RAMP_SEQUENCES = 1 << 24   # a progressive ramp is scheduled one sequence at a time (~1 s per million)
ROUNDED_DENOMINATOR = 10_000   # shares that are no simple fraction are rounded to 1/10,000 (0.01 points)


def integer_shares(target: Sequence[float]) -> tuple[list[int], int]:
    """The shares as whole numbers over a common denominator: (numerators, D), sum(numerators) == D.
    Exact when every share is a fraction with a denominator up to 1,000,000 within 1e-9; otherwise
    largest-remainder rounding to 1/10,000."""
    t = np.asarray(target, dtype=np.float64)
    t = t / t.sum()
    fracs = [Fraction(float(x)).limit_denominator(1_000_000) for x in t]
    if all(abs(float(f) - x) < 1e-9 for f, x in zip(fracs, t)):
        d = math.lcm(*(f.denominator for f in fracs))
        nums = [int(f * d) for f in fracs]
        if d <= 1_000_000 and sum(nums) == d:
            return nums, d
    d = ROUNDED_DENOMINATOR
    raw = t * d
    nums = np.floor(raw).astype(np.int64)
    for j in np.argsort(-(raw - nums), kind="stable")[:d - int(nums.sum())]:
        nums[j] += 1
    return [int(x) for x in nums], d


def constant_order(target: Sequence[float], n: int) -> np.ndarray:
    """Roles of n sequences under one constant target, from a restart: the deficit rule in integers (pick the
    role with the largest p_j * k - D * c_j, ties to the earlier role, never a role with p_j = 0). After D
    sequences every count is exactly p_j, so the picks repeat with period D / gcd."""
    nums, d = integer_shares(target)
    if sum(1 for x in nums if x > 0) == 0:
        raise ValueError("every target share is 0")
    g = math.gcd(*nums)
    nums, d = [x // g for x in nums], d // g
    period = min(n, d)
    out = np.empty(period, dtype=np.int8)
    counts = [0, 0, 0]
    live = [j for j in range(3) if nums[j] > 0]
    for k in range(1, period + 1):
        best = max(live, key=lambda j: (nums[j] * k - d * counts[j], -j))
        counts[best] += 1
        out[k - 1] = best
    if n == period:
        return out
    full = np.empty(n, dtype=np.int8)  # tile by doubling copies: 80M sequences in ~20 ms
    full[:period], k = out, period
    while k < n:
        m = min(k, n - k)
        full[k:k + m] = full[:m]
        k += m
    return full


class DeficitScheduler:
    """Picks roles one sequence at a time; restart() forgets the history (a new stage or a changed mix)."""

    def __init__(self):
        self.restart()

    def restart(self) -> None:
        self.counts = [0, 0, 0]
        self._base = [0.0, 0.0, 0.0]   # expected counts accumulated under earlier targets
        self._target: tuple | None = None
        self._k = 0                    # sequences scheduled under the current target

    def next(self, target: Sequence[float]) -> int:
        """Index into ROLES of the next sequence; a role with target 0 is never picked (ties: earlier role)."""
        t = tuple(float(x) for x in target)
        if t != self._target:
            if self._target is not None:
                self._base = [b + x * self._k for b, x in zip(self._base, self._target)]
            self._target, self._k = t, 0
        self._k += 1
        best, best_deficit = -1, -np.inf
        for j in range(3):
            if t[j] > 0:
                deficit = self._base[j] + t[j] * self._k - self.counts[j]
                if deficit > best_deficit:
                    best, best_deficit = j, deficit
        if best < 0:
            raise ValueError("every target share is 0")
        self.counts[best] += 1
        return best

    def schedule(self, targets: np.ndarray | Sequence[float], n: int) -> np.ndarray:
        """Roles of the next n sequences: targets is one share vector, or one per sequence ((n, 3))."""
        targets = np.asarray(targets, dtype=np.float64)
        if targets.ndim == 1 and self._target is None:  # from a restart: the integer, periodic schedule
            out = constant_order(targets, n)
            self.counts = [int(np.count_nonzero(out == j)) for j in range(3)]
            self._target, self._k = tuple(targets.tolist()), n
            return out
        out = np.empty(n, dtype=np.int8)
        if targets.ndim == 1:
            t = targets.tolist()
            for i in range(n):
                out[i] = self.next(t)
        else:
            for i, t in enumerate(targets.tolist()):
                out[i] = self.next(t)
        return out


def ramp_targets(shares: dict[str, float], start_domain: float, ramp_ratio: float, n: int) -> np.ndarray:
    """(n, 3) targets of progressive mixing: the domain share moves linearly from start_domain to its target
    over ramp_ratio * n sequences, then holds; replay and instruct split the rest in their target proportions."""
    target = np.array([shares[r] for r in ROLES], dtype=np.float64)
    ramp = max(1, round(ramp_ratio * n))
    t = np.minimum(1.0, np.arange(n) / ramp)
    domain = start_domain + (target[0] - start_domain) * t
    rest = target[1:] / target[1:].sum()
    return np.column_stack([domain, np.outer(1 - domain, rest)])


def stage_targets(progressive, shares: dict[str, float], n: int) -> np.ndarray:
    """The per-sequence targets of a stage: a ramp under progressive mixing (stages that train domain text),
    else the stage's shares for every sequence ((3,) vector)."""
    if progressive.enabled and shares["domain"] > 0:
        return ramp_targets(shares, progressive.start_domain, progressive.ramp_ratio, n)
    return np.array([shares[r] for r in ROLES], dtype=np.float64)


def input_shares(loss: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Input-token shares that carry the given loss-token shares (a vector, or one per row of a ramp), when a
    role's tokens carry loss at fractions[j]: share_j is proportional to loss_j / fractions_j."""
    loss = np.asarray(loss, dtype=np.float64)
    out = np.divide(loss, fractions, out=np.zeros_like(loss), where=loss > 0)
    return out / out.sum(axis=-1, keepdims=True)


def loss_shares(shares: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """The loss-token shares of input-token shares (the inverse of input_shares): proportional to share_j x
    fractions_j."""
    loss = np.asarray(shares, dtype=np.float64) * fractions
    total = loss.sum(axis=-1, keepdims=True)
    return np.divide(loss, total, out=np.zeros_like(loss), where=total > 0)
