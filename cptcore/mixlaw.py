"""The mix advisor: fit a mixing law on a pilot sweep and recommend the share that learns most within a
forgetting budget, with an interval for every prediction, or refuse when the pilot cannot tell shares apart.

    cpt sweep experiments/demo.yaml --pilot replay=0,0.1,0.2,0.4,0.6
    cpt mixlaw GROUP [--objective qa_mc_acc] [--budget general_kl=0.05] [--json]

The law, per metric, of the pilot share r (the swept role's share) and s = tokens seen / the pilots' last
evaluated tokens, for the paired change from step 0 in the metric's additive unit y (loss drop in nats/token for
perplexities, points for scores, minus the KL in nats/token for general_kl; higher is better):

    y(r, s) = s^alpha * (c + k * (exp(b * r) - 1) / b)          ((exp(b r) - 1) / b -> r as b -> 0)

- In r it is the Data Mixing Laws form (Ye et al. 2024: loss exponential in the mixture proportion, c + k e^(b r)),
  written so that b = 0 is the straight line instead of a degenerate pair of parameters.
- In tokens it is a power of the tokens seen (the D-CPT Law's D^beta term), shared by every share: every
  evaluation along each run is a point of the fit, not only the final one. At s = 0 it is 0, as a change
  from step 0 must be.
- Four parameters. For fixed (b, alpha) the law is linear in (c, k): a grid over b and alpha with weighted least
  squares for (c, k) finds the global optimum every time (no starting point, no local minima), in numpy.
  Weights are 1 / the point's item-bootstrap variance.

Uncertainty: a bootstrap that redraws the evaluation items (the same draw for every run and step, so changes
stay paired) and the pilot runs (with replacement, keeping at least 3 distinct shares), refitting each time.
Each fit reports its leave-one-run-out error (fit on the other runs, predict the left-out run's every
evaluation) next to the metric's noise (the median half-width of the pilot points' paired 95% CIs) and next to
the error of the share-free law y = c * s^alpha. A law is **usable** only when
  1. the share effect, y(max share) - y(min share) at s = 1, has a 95% bootstrap interval that excludes 0, and
  2. its leave-one-run-out error is below the share-free law's, i.e. it predicts an unseen share better than
     ignoring the share.
Otherwise it is no better than the noise and the advisor refuses to recommend from it.

Recommendation: the share in the pilots' range (no extrapolation) that maximizes the objective's predicted gain
while every budget holds at the pessimistic end of its 95% interval (a budget is the largest allowed decline,
in the gain unit the dashboard shows: % ppl rise, points, nats/token of KL).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .evaluate.stats import lower_is_better

LAW_METRICS = ("eval/qa_mc_acc", "eval/domain_ppl", "eval/if_prompt_strict", "eval/general_kl", "eval/replay_ppl")
DOMAIN = ("eval/qa_mc_acc", "eval/domain_ppl")
RETENTION = ("eval/if_prompt_strict", "eval/general_kl", "eval/replay_ppl")
B_GRID = np.linspace(-12.0, 12.0, 97)  # curvature of the share term, per unit of share (step 0.25)
ALPHA_GRID = np.round(np.arange(0.1, 2.51, 0.05), 2)  # the tokens exponent
N_BOOT = 400
SHARE_GRID_POINTS = 101
MIN_SHARES = 4  # 3 share parameters, and leave-one-run-out must fit them on the rest


class MixLawError(ValueError):
    """A pilot group that cannot be fitted (too few runs, no evaluations): one line for the user."""


# --- units -------------------------------------------------------------------------------------
def law_value(ratio, base_ratio, kind: str, metric: str):
    """The fitted quantity y from an evaluation's items ratio sum(num)/sum(den) and its step-0 ratio: loss drop
    (nats/token) for perplexities, points for % scores, the sign-flipped change in the metric's unit else."""
    if kind == "exp":
        return base_ratio - ratio
    scale = 100.0 if kind == "percent" else 1.0
    sign = -1.0 if lower_is_better(metric) else 1.0
    return sign * scale * (ratio - base_ratio)


def to_gain(y, kind: str):
    """y -> the dashboard's gain (frames.gain_unit): a loss drop becomes the % ppl drop, 100 (1 - e^-y)."""
    y = np.asarray(y, dtype="float64")
    return 100.0 * -np.expm1(-y) if kind == "exp" else y


def from_gain(g, kind: str):
    g = np.asarray(g, dtype="float64")
    return -np.log1p(-g / 100.0) if kind == "exp" else g


def short(metric: str) -> str:
    return metric.removeprefix("eval/")


def full(metric: str) -> str:
    return metric if metric.startswith("eval/") else f"eval/{metric}"


# --- the law -----------------------------------------------------------------------------------
def share_term(b, r):
    """(exp(b r) - 1) / b, and r where b = 0; broadcasts."""
    b, r = np.asarray(b, dtype="float64"), np.asarray(r, dtype="float64")
    small = np.abs(b) < 1e-9
    safe = np.where(small, 1.0, b)
    return np.where(small, r + 0 * b, np.expm1(safe * r) / safe)


def law(params, r, s):
    """y at shares r and token fractions s for params (c, k, b, alpha)."""
    c, k, b, alpha = params
    s = np.maximum(np.asarray(s, dtype="float64"), 0.0)
    return s ** alpha * (c + k * share_term(b, r))


def fit_law(r, s, y, w=None, with_share: bool = True) -> tuple[np.ndarray, float]:
    """Weighted least squares over the (b, alpha) grid, closed form in (c, k): (params, weighted SSE).

    with_share False fits the share-free law c * s^alpha (k = 0, b = 0)."""
    r, s, y = (np.asarray(v, dtype="float64") for v in (r, s, y))
    w = np.ones_like(y) if w is None else np.asarray(w, dtype="float64")
    A = np.maximum(s, 0.0)[None, :] ** ALPHA_GRID[:, None]  # [alpha, point]
    wA = w * A
    S11 = (wA * A).sum(1)  # [alpha]
    t1 = (wA * y).sum(1)
    yy = float((w * y * y).sum())
    if not with_share or len(np.unique(r)) < 2:
        c = np.divide(t1, S11, out=np.zeros_like(t1), where=S11 > 0)
        sse = yy - c * t1 + 1e-12 * (ALPHA_GRID - 1) ** 2  # ties (all s equal): alpha = 1
        j = int(np.argmin(sse))
        return np.array([c[j], 0.0, 0.0, ALPHA_GRID[j]]), float(max(sse[j], 0.0))
    phi = share_term(B_GRID[:, None], r[None, :])  # [b, point]
    wA2 = wA * A  # [alpha, point]
    S12 = wA2 @ phi.T  # [alpha, b]
    S22 = wA2 @ (phi * phi).T
    t2 = (wA * y) @ phi.T
    det = S11[:, None] * S22 - S12 ** 2
    ok = det > 1e-12 * np.maximum(S11[:, None] * S22, 1e-300)
    det = np.where(ok, det, 1.0)
    c = np.where(ok, (S22 * t1[:, None] - S12 * t2) / det, 0.0)
    k = np.where(ok, (S11[:, None] * t2 - S12 * t1[:, None]) / det, 0.0)
    sse = np.where(ok, yy - (c * t1[:, None] + k * t2), np.inf)
    sse = sse + 1e-12 * ((ALPHA_GRID[:, None] - 1) ** 2 + B_GRID[None, :] ** 2)  # ties: alpha 1, b 0
    j, i = np.unravel_index(int(np.argmin(sse)), sse.shape)
    return np.array([c[j, i], k[j, i], B_GRID[i], ALPHA_GRID[j]]), float(max(sse[j, i], 0.0))


# --- pilot observations ------------------------------------------------------------------------
@dataclass
class Points:
    """One metric's pilot observations: every evaluation after step 0 of every run, with its items."""
    metric: str
    kind: str
    run: np.ndarray  # index into PilotData.runs, per point
    share: np.ndarray
    tokens: np.ndarray
    step: np.ndarray
    num: np.ndarray  # [point, item]: the items' numerators at that evaluation
    den: np.ndarray
    base_num: np.ndarray  # [point, item]: the same run's step-0 items
    base_den: np.ndarray

    def y(self, items: np.ndarray | None = None) -> np.ndarray:
        """y of every point on the given item indices (columns; all items when None), paired with step 0."""
        idx = slice(None) if items is None else items
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = self.num[..., idx].sum(-1) / self.den[..., idx].sum(-1)
            base = self.base_num[..., idx].sum(-1) / self.base_den[..., idx].sum(-1)
        return law_value(ratio, base, self.kind, self.metric)

    def y_boot(self, n_boot: int, rng) -> np.ndarray:
        """[boot, point]: y on items redrawn with replacement, one draw for every point (changes stay paired)."""
        n = self.num.shape[-1]
        return np.stack([self.y(rng.integers(0, n, n)) for _ in range(n_boot)])

    def select(self, mask: np.ndarray) -> "Points":
        """The points where mask is True (e.g. every run but one, for a held-out check)."""
        return Points(self.metric, self.kind, *(getattr(self, f)[mask] for f in (
            "run", "share", "tokens", "step", "num", "den", "base_num", "base_den")))


@dataclass
class PilotData:
    group: str
    role: str
    runs: list[dict]  # id, share, status, mix
    points: dict[str, Points] = field(default_factory=dict)
    tokens_ref: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why it is not fitted
    warnings: list[str] = field(default_factory=list)  # pilots that are not comparable (different evaluation data)


def collect(group: str, home: Path | str | None = None, metrics=LAW_METRICS) -> PilotData:
    """Read a pilot group's runs: shares from their configs, items from eval/*-stepN.scores.json, tokens from
    the metric stream."""
    from .compare import measured_on
    from .evaluate.suite import load_scores
    from .frames import load_metrics
    from .runs.groups import group_runs, read_group

    record = read_group(group, home)
    if record.get("kind") != "pilot":
        raise MixLawError(f"group {group} is a {record.get('kind', 'plain')} sweep, not a pilot: start one with "
                          "cpt sweep CONFIG --pilot replay=0,0.05,0.1,0.2,0.4")
    role = record["role"]
    runs = group_runs(group, home)
    data = PilotData(group, role, [])
    data.warnings = [f"{line}: a pilot's runs must evaluate the same data" for line in measured_on(
        [r for r in runs if r.manifest().get("evaluations")])[1]]  # runs still queued have measured nothing yet
    rows: dict[str, list] = {m: [] for m in metrics}
    for i, run in enumerate(runs):
        cfg = run.config()
        data.runs.append({"id": run.id, "share": float(getattr(cfg.mix, role)), "status": run.status().get("status"),
                          "mix": {k: float(v) for k, v in cfg.mix.shares().items()}})
        m = load_metrics(run)
        base = load_scores(run.dir / "eval", 0)
        for metric in metrics:
            series = m.series(metric)
            if metric not in base or not len(series):
                continue
            base_items, kind = base[metric]
            for step, tokens in zip(series["step"].to_numpy(), series["tokens"].to_numpy()):
                if int(step) == 0:
                    continue
                now = load_scores(run.dir / "eval", int(step)).get(metric)
                if now is not None and now[1] == kind:
                    rows[metric].append((i, float(tokens), int(step), now[0], base_items, kind))
    shares_by_run = np.array([r["share"] for r in data.runs])
    for metric, found in rows.items():
        if not found:
            data.skipped[metric] = "not evaluated after step 0 by the pilot runs"
            continue
        common = set(found[0][3]) & set(found[0][4])
        for *_, now, base, _k in found:
            common &= set(now) & set(base)
        ids = sorted(common, key=str)
        kinds = {f[5] for f in found}
        if not ids or len(kinds) > 1:
            data.skipped[metric] = "the pilot runs share no evaluation items" if not ids else "mixed score kinds"
            continue
        arr = lambda items, j: np.array([[float(it[k][j]) for k in ids] for it in items])  # noqa: E731
        data.points[metric] = Points(
            metric, kinds.pop(), np.array([f[0] for f in found]), shares_by_run[[f[0] for f in found]],
            np.array([f[1] for f in found]), np.array([f[2] for f in found]),
            arr([f[3] for f in found], 0), arr([f[3] for f in found], 1),
            arr([f[4] for f in found], 0), arr([f[4] for f in found], 1))
    all_tokens = [p.tokens.max() for p in data.points.values()]
    data.tokens_ref = float(max(all_tokens)) if all_tokens else 0.0
    return data


# --- fitting one metric ------------------------------------------------------------------------
def fit_metric(points: Points, tokens_ref: float, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """The law's fit on one metric: parameters, bootstrap parameters, noise, leave-one-run-out errors, verdict."""
    rng = np.random.default_rng(seed)
    s = points.tokens / tokens_ref
    y = points.y()
    n_items = points.num.shape[-1]
    y_boot = points.y_boot(n_boot, rng)  # item noise, paired with step 0
    sd = y_boot.std(axis=0)
    var = np.maximum(sd ** 2, max(float(np.median(sd ** 2)) * 0.1, 1e-12))
    w = 1.0 / var
    params, _ = fit_law(points.share, s, y, w)
    run_ids = np.unique(points.run)
    shares = {int(i): float(points.share[points.run == i][0]) for i in run_ids}
    # bootstrap over items and runs: each refit sees redrawn items and, per run, the residual of a run drawn
    # with replacement (between-run noise and misfit; the design, every share, stays as the pilot ran it)
    resid = y - law(params, points.share, s)
    rows = [np.flatnonzero(points.run == i) for i in run_ids]
    same_length = len({len(r) for r in rows}) == 1
    boot = []
    for b in range(n_boot):
        y_star = y_boot[b].copy()
        if same_length:
            for target, source in zip(rows, rng.choice(len(rows), size=len(rows), replace=True)):
                y_star[target] += resid[rows[source]] - resid[target]
        boot.append(fit_law(points.share, s, y_star, w)[0])
    boot = np.array(boot)
    # noise: the median half-width of the points' paired 95% CIs, in the gain unit
    g_boot = to_gain(y_boot, points.kind)
    half = (np.percentile(g_boot, 97.5, axis=0) - np.percentile(g_boot, 2.5, axis=0)) / 2
    noise = float(np.median(half))
    # leave one run out: the law vs the share-free law, errors in the gain unit
    err, err_null, per_run = [], [], []
    for i in run_ids:
        out, keep = points.run == i, points.run != i
        if len(np.unique(points.share[keep])) < 3:
            continue
        p_law = fit_law(points.share[keep], s[keep], y[keep], w[keep])[0]
        p_null = fit_law(points.share[keep], s[keep], y[keep], w[keep], with_share=False)[0]
        obs = to_gain(y[out], points.kind)
        e = to_gain(law(p_law, points.share[out], s[out]), points.kind) - obs
        e0 = to_gain(law(p_null, points.share[out], s[out]), points.kind) - obs
        err.extend(e), err_null.extend(e0)
        per_run.append({"run": int(i), "share": shares[int(i)], "error": float(np.sqrt(np.mean(e ** 2)))})
    loro = float(np.sqrt(np.mean(np.square(err)))) if err else math.nan
    loro_null = float(np.sqrt(np.mean(np.square(err_null)))) if err_null else math.nan
    # the share effect over the pilots' range at s = 1
    lo_r, hi_r = float(points.share.min()), float(points.share.max())
    eff = lambda p: float(to_gain(law(p, hi_r, 1.0), points.kind) - to_gain(law(p, lo_r, 1.0), points.kind))  # noqa: E731
    effect = eff(params)
    effect_boot = np.array([eff(p) for p in boot])
    effect_ci = (float(np.percentile(effect_boot, 2.5)), float(np.percentile(effect_boot, 97.5)))
    reasons = []
    if len(set(shares.values())) < MIN_SHARES:
        reasons.append(f"{len(set(shares.values()))} distinct shares; the law needs at least {MIN_SHARES}")
    if effect_ci[0] <= 0 <= effect_ci[1]:
        reasons.append(f"the share effect across the pilots ({effect:+.3g}, 95% CI {effect_ci[0]:+.3g} .. "
                       f"{effect_ci[1]:+.3g}) includes 0: the pilots do not tell the shares apart")
    if not (loro < loro_null):
        reasons.append(f"leave-one-run-out error {loro:.3g} is not below the share-free law's {loro_null:.3g}")
    return {"metric": points.metric, "kind": points.kind, "params": [float(v) for v in params],
            "boot": boot.tolist(), "n_points": int(len(y)), "n_runs": int(len(run_ids)), "n_items": int(n_items),
            "noise": noise, "loro": loro, "loro_null": loro_null, "loro_runs": per_run,
            "effect": effect, "effect_ci": list(effect_ci), "usable": not reasons, "reasons": reasons,
            "observed": [{"run": int(r), "share": float(sh), "tokens": float(t), "step": int(st), "s": float(si),
                          "gain": float(g), "gain_low": float(lo), "gain_high": float(hi)}
                         for r, sh, t, st, si, g, lo, hi in zip(
                             points.run, points.share, points.tokens, points.step, s, to_gain(y, points.kind),
                             np.percentile(g_boot, 2.5, axis=0), np.percentile(g_boot, 97.5, axis=0))]}


def predict(fit: dict, r, s=1.0) -> dict:
    """The fitted gain at shares r (token fraction s) with its 95% bootstrap interval, in the gain unit."""
    r = np.atleast_1d(np.asarray(r, dtype="float64"))
    point = to_gain(law(fit["params"], r, s), fit["kind"])
    boot = np.array([to_gain(law(p, r, s), fit["kind"]) for p in fit["boot"]])
    return {"share": r, "gain": point, "low": np.percentile(boot, 2.5, axis=0),
            "high": np.percentile(boot, 97.5, axis=0)}


# --- recommendation ----------------------------------------------------------------------------
def parse_budget(items: list[str] | dict | None) -> dict[str, float]:
    """['general_kl=0.05', 'if_prompt_strict=2'] -> {'eval/general_kl': 0.05, ...}: the largest allowed decline in
    the gain unit (% ppl rise, points, nats/token of KL)."""
    if isinstance(items, dict):
        return {full(k): float(v) for k, v in items.items()}
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        metric = full(name.strip())
        try:
            out[metric] = float(value)
        except ValueError:
            raise MixLawError(f"--budget {item!r}: expected METRIC=MAX_DECLINE, e.g. general_kl=0.05") from None
        if not sep or metric not in RETENTION + DOMAIN:
            raise MixLawError(f"--budget {item!r}: the metric must be one of "
                              f"{', '.join(short(m) for m in RETENTION + DOMAIN)}")
        if out[metric] < 0:
            raise MixLawError(f"--budget {item!r}: a budget is a largest decline, >= 0")
    return out


def budget_text(metric: str, limit: float) -> str:
    """'IF prompt-level strict: drop <= 2 points', 'general KL: <= 0.05 nats/token', 'replay ppl: rise <= 5 %'."""
    from .frames import label

    if "_kl" in metric:
        return f"{label(metric)} <= {limit:g} nats/token"
    if "ppl" in metric:
        return f"{label(metric)} rise <= {limit:g} %"
    return f"{label(metric)} drop <= {limit:g} points"


DEFAULT_BUDGETS = {"eval/if_prompt_strict": 2.0, "eval/general_kl": 0.05, "eval/replay_ppl": 5.0}


def budget_label(metric: str) -> str:
    """The budget box's label: 'largest IF drop (points)', 'largest KL (nats/token)', 'largest ppl rise (%)'."""
    if "_kl" in metric:
        return "largest KL (nats/token)"
    return "largest ppl rise (%)" if "ppl" in metric else "largest drop (points)"


def budget_floor(metric: str, limit: float) -> float:
    """The lowest allowed gain for a budget: a ppl rise of X % is a gain (% drop) of -X, KL <= X a gain of -X."""
    return -float(limit)


def recommend(fits: dict[str, dict], shares: list[float], objective: str, budget: dict[str, float],
              s: float = 1.0, skipped: dict[str, str] | None = None) -> dict:
    """The share in [min, max] of the pilots' shares that maximizes the objective's predicted gain with every
    budget met at the pessimistic end of its 95% interval; or a refusal with its reason (`skipped`: why a metric
    has no fit)."""
    objective, budget = full(objective), {full(m): float(v) for m, v in budget.items()}
    grid = np.linspace(min(shares), max(shares), SHARE_GRID_POINTS)
    out = {"objective": objective, "budget": budget, "s": s, "share": None, "refused": [], "predictions": {}}
    for metric in [objective, *budget]:
        fit = fits.get(metric)
        if fit is None:
            why = (skipped or {}).get(metric, "not evaluated by the pilots")
            out["refused"].append(f"{short(metric)} has no law yet: {why}")
        elif not fit["usable"]:
            out["refused"].append(f"{short(metric)}: " + "; ".join(fit["reasons"]))
    if out["refused"]:
        return out
    ok = np.ones_like(grid, dtype=bool)
    for metric, limit in budget.items():
        ok &= predict(fits[metric], grid, s)["low"] >= budget_floor(metric, limit) - 1e-12
    if not ok.any():
        best = {m: float(predict(fits[m], grid, s)["low"].max()) for m in budget}
        out["refused"].append("no share in the pilots' range meets the budget at the pessimistic end of its 95% "
                              "interval (best: " + ", ".join(f"{short(m)} {v:+.3g}" for m, v in best.items()) + ")")
        return out
    gain = predict(fits[objective], grid, s)["gain"]
    best = int(np.flatnonzero(ok)[np.argmax(gain[ok])])
    out["share"] = float(grid[best])
    out["feasible"] = [float(grid[ok].min()), float(grid[ok].max())]
    for metric, fit in fits.items():
        p = predict(fit, grid[best], s)
        out["predictions"][metric] = {"gain": float(p["gain"][0]), "low": float(p["low"][0]),
                                      "high": float(p["high"][0]), "usable": fit["usable"]}
    return out


# --- a group's fit on disk ---------------------------------------------------------------------
def _stamp(group: str, home) -> list:
    """What the fit depends on: each run's metric stream and score files (name, size, mtime)."""
    from .runs.groups import group_path, group_runs

    files = [group_path(group, home)]
    for run in group_runs(group, home):
        files.append(run.metrics_path)
        files.extend(sorted((run.dir / "eval").glob("*.scores.json")))
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file()]


def fit_group(group: str, home: Path | str | None = None, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Every law metric's fit on a pilot group, cached in groups/<group>/mixlaw.json (refit when a run wrote
    anything new)."""
    from .runs.groups import group_path, read_group
    from .runs.store import cached_file

    path = group_path(group, home, "mixlaw.json")
    stamp = _stamp(group, home)
    cached = cached_file(path, json.loads)  # parsed once per size and mtime: Compare reads it on every rerun
    cached = cached if isinstance(cached, dict) else {}
    if cached.get("stamp") == json.loads(json.dumps(stamp)) and cached.get("n_boot") == n_boot \
            and cached.get("seed") == seed:
        return dict(cached)  # a copy: advise() adds to it before saving
    data = collect(group, home)
    shares = sorted({r["share"] for r in data.runs})
    if len(shares) < MIN_SHARES:
        raise MixLawError(f"group {group}: {len(shares)} distinct {data.role} shares; a mixing law needs at least "
                          f"{MIN_SHARES}")
    if not data.points:
        raise MixLawError(f"group {group}: no pilot run has an evaluation after step 0 yet "
                          f"({', '.join(r['status'] or '?' for r in data.runs)})")
    fits = {}
    for metric, points in data.points.items():
        seen = len(np.unique(points.share))
        if seen < MIN_SHARES:
            data.skipped[metric] = (f"evaluated after step 0 at {seen} of {len(shares)} shares so far; the law needs "
                                    f"at least {MIN_SHARES}")
        else:
            fits[metric] = fit_metric(points, data.tokens_ref, n_boot, seed)
    result = {"group": group, "role": data.role, "created": time.time(), "stamp": stamp, "n_boot": n_boot,
              "seed": seed, "runs": data.runs, "shares": shares, "tokens_ref": data.tokens_ref,
              "base_config": read_group(group, home).get("config"), "fits": fits, "skipped": data.skipped,
              "warnings": data.warnings,
              "recommendations": cached.get("recommendations", []) if cached.get("group") == group else []}
    save(result, path)
    return result


def save(result: dict, path: Path) -> None:
    from .files import atomic_write, dumps

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, dumps(result, indent=1))


def default_objective(fits: dict) -> str:
    """The first usable domain metric (multiple-choice accuracy, then domain ppl), else the first fitted one."""
    for m in DOMAIN:
        if m in fits and fits[m]["usable"]:
            return m
    return next((m for m in DOMAIN if m in fits), DOMAIN[0])


def advise(group: str, home: Path | str | None = None, objective: str | None = None,
           budget: dict[str, float] | None = None, record: bool = True) -> tuple[dict, dict]:
    """(the group's fit, a recommendation for the objective and budget). With `record`, the recommendation is
    appended to mixlaw.json's `recommendations` with its time, so every choice stays reviewable."""
    from .runs.groups import group_path

    result = fit_group(group, home)
    rec = recommend(result["fits"], result["shares"], objective or default_objective(result["fits"]),
                    budget or {}, skipped=result.get("skipped"))
    if rec["share"] is not None:
        rec["mix"] = recommended_mix(result, rec["share"])
    if record:
        rec["time"] = time.time()
        result["recommendations"] = [*result.get("recommendations", []), rec][-50:]
        save(result, group_path(group, home, "mixlaw.json"))
    return result, rec


def recommended_mix(result: dict, share: float) -> dict[str, float]:
    """The three shares of the recommended mix: the pilot role at `share`, the others rescaled as the pilot did."""
    from .config import RunConfig

    cfg = RunConfig.from_dict(result["base_config"])
    mix = cfg.mix.rebalanced({result["role"]: round(share, 4)})
    return {k: round(float(v), 4) for k, v in mix.shares().items()}


def recommended_config(result: dict, rec: dict):
    """The pilot's base config with the recommended mix: what "Launch this mix" and --launch start."""
    from .config import RunConfig

    cfg = RunConfig.from_dict(result["base_config"])
    return cfg.with_overrides({f"mix.{k}": v for k, v in rec["mix"].items()}
                              | {"name": f"{cfg.name}-{result['role']}{rec['share']:.3g}"})


# --- cpt mixlaw --------------------------------------------------------------------------------
def law_text(fit: dict) -> str:
    """'y = s^0.70 (1.96 - 6.62 (e^(-3.5 r) - 1) / -3.5)' in the fit's own unit."""
    c, k, b, alpha = fit["params"]
    term = "r" if abs(b) < 1e-9 else f"(e^({b:g} r) - 1) / {b:g}"
    return f"s^{alpha:.2f} ({c:.3g} {'+' if k >= 0 else '-'} {abs(k):.3g} {term})"


def law_unit(fit: dict) -> str:
    return "loss drop, nats/token" if fit["kind"] == "exp" else (
        "points" if fit["kind"] == "percent" else "nats/token, sign flipped")


def report_lines(result: dict, rec: dict) -> list[str]:
    from . import fmt
    from .frames import gain_unit, label

    runs = result["runs"]
    done = sum(r["status"] == "completed" for r in runs)
    lines = [f"pilot {result['group']}: {result['role']} at {', '.join(f'{s:g}' for s in result['shares'])} "
             f"({len(runs)} runs, {done} completed); s = tokens / {fmt.tokens(result['tokens_ref'])} "
             f"(the pilots' last evaluation)", *(f"warning: {w}" for w in result.get("warnings", [])), ""]
    lines.append(f"{'METRIC':22} {'GAIN UNIT':28} {'LOO-RUN ERR':>11} {'NOISE ±':>8} {'NO-SHARE ERR':>12}  "
                 f"{'SHARE EFFECT (95% CI)':28} VERDICT")
    for metric, fit in result["fits"].items():
        effect = f"{fit['effect']:+.3g} ({fit['effect_ci'][0]:+.3g} .. {fit['effect_ci'][1]:+.3g})"
        lines.append(f"{short(metric):22} {gain_unit(metric)[:28]:28} {fit['loro']:11.3g} {fit['noise']:8.3g} "
                     f"{fit['loro_null']:12.3g}  {effect:28} {'usable' if fit['usable'] else 'REFUSED'}")
    for metric, why in result.get("skipped", {}).items():
        lines.append(f"{short(metric):22} not fitted: {why}")
    lines.append("")
    for metric, fit in result["fits"].items():
        lines.append(f"  {short(metric)}: y = {law_text(fit)}   (y in {law_unit(fit)}, r = {result['role']} share, "
                     f"{fit['n_points']} points from {fit['n_runs']} runs, {fit['n_items']} items)")
        for why in fit["reasons"]:
            lines.append(f"    refused: {why}")
    lines.append("")
    budget = "; ".join(budget_text(m, v) for m, v in rec["budget"].items()) or "no forgetting budget"
    if rec["share"] is None:
        lines.append(f"no recommendation for {short(rec['objective'])} within {budget}:")
        lines.extend(f"  {why}" for why in rec["refused"])
        return lines
    mix = "/".join(f"{100 * rec['mix'][k]:.1f}" for k in ("domain", "replay", "instruct"))
    lines.append(f"recommended: {result['role']} = {rec['share']:.3g} (mix domain/replay/instruct {mix} %), the "
                 f"highest predicted {label(rec['objective'])} within {budget}")
    lines.append(f"  shares meeting the budget: {rec['feasible'][0]:.3g} .. {rec['feasible'][1]:.3g}")
    for metric, p in rec["predictions"].items():
        if not p["usable"]:
            lines.append(f"  {short(metric):22} {'—':>8} no prediction: its law is no better than the noise")
            continue
        lines.append(f"  {short(metric):22} {p['gain']:+8.3g} {gain_unit(metric):30} (95% CI {p['low']:+.3g} .. "
                     f"{p['high']:+.3g})")
    return lines


def cmd_mixlaw(args) -> int:
    from .errors import UsageError
    from .files import dumps
    from .runs import cpt_home

    try:
        result, rec = advise(args.group, cpt_home(), args.objective, parse_budget(args.budget))
    except MixLawError as e:
        raise UsageError(str(e)) from None
    if args.launch:
        if rec["share"] is None:
            raise UsageError("no recommendation to launch: " + "; ".join(rec["refused"]))
        from .runs.launch import launch

        run = launch(recommended_config(result, rec), cpt_home(), tags=[f"mixlaw:{args.group}"])
        rec["launched"] = run.id
    if args.json:
        slim = {k: v for k, v in result.items() if k not in ("stamp", "recommendations")}
        slim["fits"] = {m: {k: v for k, v in f.items() if k != "boot"} for m, f in result["fits"].items()}
        print(dumps({**slim, "recommendation": rec}, indent=1))
    else:
        print("\n".join(report_lines(result, rec)))
        if rec.get("launched"):
            print(f"launched {rec['launched']} (follow it with: cpt logs {rec['launched']} --follow)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("mixlaw", help="fit a mixing law on a pilot sweep and recommend a share within a "
                       "forgetting budget")
    p.add_argument("group", help="a pilot group (cpt sweep CONFIG --pilot replay=0,0.05,0.1,0.2,0.4)")
    p.add_argument("--objective", help="the domain metric to maximize: qa_mc_acc or domain_ppl (default: the first "
                   "whose law is usable)")
    p.add_argument("--budget", action="append", default=[], metavar="METRIC=MAX_DECLINE",
                   help="largest allowed decline, in the dashboard's gain unit: if_prompt_strict=2 (points), "
                   "general_kl=0.05 (nats/token), replay_ppl=5 (%% ppl rise); repeatable")
    p.add_argument("--launch", action="store_true", help="launch the recommended mix (the pilot's config otherwise)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_mixlaw)


# --- what the Compare view draws -----------------------------------------------------------------
LAW_TEXT = ("gain(r, s) = s^alpha (c + k (e^(b r) - 1) / b), r the share and s the tokens seen over the pilots' last "
            "evaluation, in loss drop (nats/token) for perplexities, points for scores, nats/token for KL")


def fit_table(result: dict):
    """One row per fitted metric: its law, leave-one-run-out error next to the noise and the share-free law's,
    the share effect with its 95% interval, and the verdict with its reasons."""
    import pandas as pd

    from .frames import gain_unit, label

    rows = []
    for metric, fit in result["fits"].items():
        rows.append({"metric": label(metric), "unit": gain_unit(metric), "law": law_text(fit),
                     "leave-one-run-out error": fit["loro"], "noise (±, paired 95% CI)": fit["noise"],
                     "share-free law's error": fit["loro_null"], "share effect": fit["effect"],
                     "effect 95% CI": f"{fit['effect_ci'][0]:+.3g} .. {fit['effect_ci'][1]:+.3g}",
                     "n runs": fit["n_runs"], "n evaluations": fit["n_points"], "n items": fit["n_items"],
                     "verdict": "usable" if fit["usable"] else
                     "refused: " + "; ".join(fit["reasons"])})
    return pd.DataFrame(rows)
def curves(result: dict, points: int = 61, s: float = 1.0) -> dict:
    """metric -> {share, gain, low, high} (arrays) of every fitted law over the pilots' share range at s."""
    grid = np.linspace(min(result["shares"]), max(result["shares"]), points)
    return {m: predict(fit, grid, s) for m, fit in result["fits"].items()}


def final_points(fit: dict) -> list[dict]:
    """Each run's last evaluation of a fit (the points drawn against the law at s = 1)."""
    last: dict[int, dict] = {}
    for p in fit["observed"]:
        if p["run"] not in last or p["step"] > last[p["run"]]["step"]:
            last[p["run"]] = p
    return [last[k] for k in sorted(last)]
