"""Runs side by side, for the Compare page: hover text, config diff, the trade-off with its noise-aware Pareto
frontier, and per-item evaluation results (one run's recent generations, two runs paired on the same items).
The home table is runs/table.py.

Never imports streamlit; reads only what runs wrote (config.yaml, manifest.json, eval/*.jsonl,
eval/*.scores.json) through size/mtime-keyed caches.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import fmt
from .frames import Metrics, baseline_change, downsample_index
from .runs import Run
from .runs.metrics import parse_json_lines


# --- hover text ---------------------------------------------------------------------------------
def config_summary(run: Run) -> str:
    """A one-glance description of a run's config (chart hover text)."""
    cfg = run.config_dict()
    mix, tr, model = cfg.get("mix") or {}, cfg.get("train") or {}, cfg.get("model") or {}
    shares = "/".join(f"{100 * float(mix.get(r, 0)):g}" for r in ("domain", "replay", "instruct"))
    return (f"<b>{cfg.get('name', run.id)}</b> ({run.id})<br>{model.get('name', '?')} [{model.get('kind', '')}]"
            f"<br>mix d/r/i {shares}%<br>{tr.get('method', '')} lr {fmt.lr(tr.get('lr'))} "
            f"steps {tr.get('max_steps', '?')}")


# --- config diff -----------------------------------------------------------------------------
def measured_on(runs: list[Run]) -> tuple[list[str], list[str]]:
    """(what each evaluator measured, shared by every run; evaluators whose data differ between the runs, with
    each run's). From the manifests' `evaluations`: values of different data are not comparable."""
    seen: dict[str, dict[str, str]] = {}
    for r in runs:
        for name, where in (r.manifest().get("evaluations") or {}).items():
            seen.setdefault(name, {})[r.id] = where
    same, differ = [], []
    for name, by_run in seen.items():
        if len(set(by_run.values())) == 1 and len(by_run) == len(runs):
            same.append(f"{name}: {next(iter(by_run.values()))}")
        else:
            differ.append(f"{name} measures different data: "
                          + "; ".join(f"{rid}: {by_run.get(rid, 'not recorded')}" for rid in (r.id for r in runs)))
    return same, differ


def _is_lr(key: str) -> bool:
    """train.lr, stages.0.lr, ...: learning rates, not the *_lr_ratio multipliers."""
    name = key.rsplit(".", 1)[-1]
    return name == "lr" or name.endswith("_lr")


def flatten(d, prefix: str = "") -> dict[str, str]:
    """Nested dict → {'train.lr': '5e-5', 'data.domain.0.path': 'builtin:...'} (values as text, LRs as fmt.lr)."""
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(d, list) and any(isinstance(x, (dict, list)) for x in d):
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}.{i}"))
    elif isinstance(d, list):
        out[prefix] = ", ".join(str(x) for x in d)
    elif isinstance(d, (int, float)) and not isinstance(d, bool) and _is_lr(prefix):
        out[prefix] = fmt.lr(d)
    else:
        out[prefix] = "" if d is None else f"{d:g}" if isinstance(d, float) else str(d)
    return out


def config_diff(runs: list[Run]) -> pd.DataFrame:
    """Keys (config and data manifest) whose values differ between the runs; one column per run."""
    flat = {}
    for r in runs:
        f = flatten(r.config_dict())
        f.update(flatten(r.manifest(), "manifest"))
        flat[r.id] = f
    keys = sorted(set().union(*[f.keys() for f in flat.values()]) if flat else [],
                  key=lambda k: (k.startswith("manifest."), k))  # the config first, then the data manifest
    rows = {k: [flat[r].get(k, "—") for r in flat] for k in keys}
    diff = {k: v for k, v in rows.items() if len(set(v)) > 1}
    return pd.DataFrame.from_dict(diff, orient="index", columns=list(flat)).rename_axis("key").reset_index()


def pilot_hover(result: dict, runs: dict[str, Run]) -> dict[str, str]:
    """Hover text of each pilot run on the Mix law view: its id, share and every config key that differs from
    the pilot's base config (for a pilot: the mix alone; anything else would make the law meaningless)."""
    base = flatten(result.get("base_config") or {})
    out = {}
    for r in result["runs"]:
        run = runs.get(r["id"])
        diff = []
        if run is not None:
            mine = flatten(run.config_dict())
            diff = [f"{k} {mine.get(k, '—')} (base {base.get(k, '—')})" for k in sorted(set(mine) | set(base))
                    if k != "name" and mine.get(k) != base.get(k)]
        out[r["id"]] = (f"<b>{r['id']}</b><br>{result['role']} share {r['share']:g}<br>"
                        + ("<br>".join(diff) if diff else "same config as the pilot's base"))
    return out


# --- trade-off across runs -------------------------------------------------------------------
GAIN_COLUMNS = ("gain", "gain_low", "gain_high")


def _run_tradeoff(m: Metrics, x_metric: str, y_metric: str, max_points: int) -> pd.DataFrame | None:
    key = ("tradeoff", x_metric, y_metric, max_points)
    if key in m.memo:
        return m.memo[key]
    x, y = m.series(x_metric), m.series(y_metric)
    out = None
    if len(x) and len(y):
        cx, cy = baseline_change(x, x_metric), baseline_change(y, y_metric)
        gx, gy = cx["gain"].to_numpy(), cy["gain"].to_numpy()
        steps, ix, iy = np.intersect1d(x["step"].to_numpy(), y["step"].to_numpy(), return_indices=True)
        if len(steps):
            keep = np.arange(len(steps))
            if len(steps) > max_points:
                keep = np.union1d(downsample_index(gx[ix], max_points // 2), downsample_index(gy[iy], max_points // 2))
            ix, iy = ix[keep], iy[keep]
            out = pd.DataFrame({"step": steps[keep], "tokens": x["tokens"].to_numpy()[ix],
                                "x": gx[ix], "x_low": cx["gain_low"].to_numpy()[ix], "x_high": cx["gain_high"].to_numpy()[ix],
                                "value_x": x["value"].to_numpy()[ix],
                                "y": gy[iy], "y_low": cy["gain_low"].to_numpy()[iy], "y_high": cy["gain_high"].to_numpy()[iy],
                                "value_y": y["value"].to_numpy()[iy]})
            out["final"] = out["step"] == out["step"].max()
    m.memo[key] = out
    return out


TRADEOFF_COLUMNS = ["run", "step", "tokens", "x", "x_low", "x_high", "value_x", "y", "y_low", "y_high", "value_y",
                    "final"]


def tradeoff_points(metrics: dict[str, Metrics], x_metric: str, y_metric: str,
                    max_points_per_run: int = 200) -> pd.DataFrame:
    """Per run, the gain of x_metric and of y_metric from step 0 (both signed so that higher is better, in
    frames.gain_label's units) at every step both were evaluated, with their 95% paired CIs (x_low/x_high,
    y_low/y_high: from the records' delta_ci_*; NaN where a record has no paired delta), downsampled beyond
    max_points_per_run keeping each axis' extremes; `final` marks each run's last such step."""
    rows = []
    for run_id, m in metrics.items():
        part = _run_tradeoff(m, x_metric, y_metric, max_points_per_run)
        if part is not None:
            rows.append(part.assign(run=run_id))
    return pd.concat(rows, ignore_index=True)[TRADEOFF_COLUMNS] if rows else pd.DataFrame(columns=TRADEOFF_COLUMNS)


def pareto_mask(x, y, separable=None) -> np.ndarray:
    """True for the points no other point dominates (higher x and higher y are better).

    The dominance rule of the trade-off view: run i dominates run j only if
      1. i is better on both axes (x_i >= x_j and y_i >= y_j, one of them strictly), and
      2. the run-vs-run *paired* difference i - j (compare.run_difference: both runs' per-item scores,
         `*.scores.json`, of their final trade-off step, paired on the same items, 95% paired bootstrap)
         excludes 0 in i's favour on at least one axis, and
      3. on the other axis that interval does not show i worse beyond noise (its upper end, in gain units,
         is not below 0).
    `separable[i][j]` carries 2 and 3 (compare.paired_separation); without paired scores it is False, so a
    pair of runs whose difference cannot be told from noise is never called better: both stay on the
    frontier. With separable None the values are taken as exact numbers (1 alone; of two equal points the
    first one represents both)."""
    x, y = np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
    ok = np.isfinite(x) & np.isfinite(y)
    ge = (x[:, None] >= x[None, :]) & (y[:, None] >= y[None, :])  # [i, j]: i at least as good as j on both
    gt = (x[:, None] > x[None, :]) | (y[:, None] > y[None, :])
    if separable is None:
        idx = np.arange(len(x))
        dom = ge & (gt | (idx[:, None] < idx[None, :]))  # duplicates: the first one represents both
    else:
        dom = ge & gt & np.asarray(separable, dtype=bool).reshape(len(x), len(x))
    dom &= ok[:, None] & ok[None, :]
    np.fill_diagonal(dom, False)
    return ok & ~dom.any(axis=0)


_SCORES: dict = {}


def run_scores(run: Run, step: int) -> dict[str, tuple[dict, str]]:
    """{metric: (items, kind)} of every evaluator's `*.scores.json` of a run at a step (suite.load_scores),
    cached on the files' sizes and mtimes."""
    from .evaluate.suite import load_scores

    folder = run.dir / "eval"
    files = sorted(folder.glob(f"*-step{int(step):06d}.scores.json"))
    key = (str(folder), int(step))
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file())
    hit = _SCORES.get(key)
    if hit is None or hit[0] != stamp:
        hit = (stamp, load_scores(folder, int(step)) if files else {})
        _SCORES[key] = hit
    return hit[1]


def run_difference(run_a: Run, step_a: int, run_b: Run, step_b: int, metric: str) -> dict | None:
    """value(B at step_b) - value(A at step_a) of one metric on the items both evaluated (stats.paired_change:
    delta, delta_ci_low, delta_ci_high, delta_n, in the metric's own unit); None without scores files."""
    from .evaluate.stats import paired_change

    a, b = run_scores(run_a, step_a).get(metric), run_scores(run_b, step_b).get(metric)
    if a is None or b is None or a[1] != b[1]:
        return None
    return paired_change(b[0], a[0], b[1])


def _gain_difference(d: dict | None, metric: str, value_other: float) -> tuple[float, float, float]:
    """A run-vs-run paired difference in the trade-off's gain units (higher is better): % of the other run's
    value for perplexities, points for scores, nats/token else; (NaN, NaN, NaN) without one."""
    if d is None:
        return (np.nan, np.nan, np.nan)
    from .frames import lower_is_better, points_scale, unit

    u = unit(metric)
    scale = (100.0 / value_other if value_other else np.nan) if u == "%" else (
        points_scale(metric) if u == "points" else 1.0)
    sign = -1.0 if lower_is_better(metric) else 1.0
    ends = sorted((sign * d["delta_ci_low"] * scale, sign * d["delta_ci_high"] * scale))
    return sign * d["delta"] * scale, ends[0], ends[1]


def paired_separation(final: pd.DataFrame, runs: dict[str, Run], x_metric: str,
                      y_metric: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Conditions 2 and 3 of pareto_mask's rule for every pair of final points (one per run), and the pairs
    whose point estimates say one run is better on both axes, with their run-vs-run paired differences
    (better - other, gain units, 95% CI) and whether the better one dominates.

    Only such pairs are bootstrapped: the others cannot dominate whatever the noise."""
    n = len(final)
    sep = np.zeros((n, n), dtype=bool)
    rows = []
    x, y = final["x"].to_numpy(dtype=float), final["y"].to_numpy(dtype=float)
    for i in range(n):
        for j in range(n):
            if i == j or not (x[i] >= x[j] and y[i] >= y[j] and (x[i] > x[j] or y[i] > y[j])):
                continue
            ri, rj = runs.get(final["run"].iloc[i]), runs.get(final["run"].iloc[j])
            si, sj = int(final["step"].iloc[i]), int(final["step"].iloc[j])
            dx = dy = None
            if ri is not None and rj is not None:
                dx = run_difference(rj, sj, ri, si, x_metric)
                dy = run_difference(rj, sj, ri, si, y_metric)
            gx = _gain_difference(dx, x_metric, float(final["value_x"].iloc[j]))
            gy = _gain_difference(dy, y_metric, float(final["value_y"].iloc[j]))
            known = dx is not None and dy is not None
            sep[i, j] = bool(known and (gx[1] > 0 or gy[1] > 0) and gx[2] >= 0 and gy[2] >= 0)
            rows.append({"better": final["run"].iloc[i], "other": final["run"].iloc[j],
                         "x diff": gx[0], "x 95% CI": _ci_text(gx), "x n": None if dx is None else dx["delta_n"],
                         "y diff": gy[0], "y 95% CI": _ci_text(gy), "y n": None if dy is None else dy["delta_n"],
                         "dominates": bool(sep[i, j])})
    cols = ["better", "other", "x diff", "x 95% CI", "x n", "y diff", "y 95% CI", "y n", "dominates"]
    return sep, pd.DataFrame(rows, columns=cols)


def _ci_text(g: tuple[float, float, float]) -> str:
    return "no paired scores" if not np.isfinite(g[1]) else f"{g[1]:+.2f} .. {g[2]:+.2f}"


def tradeoff_frontier(points: pd.DataFrame, runs: dict[str, Run], x_metric: str,
                      y_metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The final points with `frontier` (no other run dominates it, pareto_mask's rule with run-vs-run paired
    differences) and `dominated_by`, and the pairs table of paired_separation."""
    final = points[points["final"]].reset_index(drop=True) if len(points) else points.copy()
    sep, pairs = paired_separation(final, runs, x_metric, y_metric)
    final = final.assign(frontier=pareto_mask(final["x"], final["y"], sep) if len(final) else [])
    winners = pairs[pairs["dominates"]].groupby("other")["better"].agg(", ".join) if len(pairs) else {}
    final["dominated_by"] = [dict(winners).get(r, "") for r in final["run"]]
    return final, pairs


# --- per-item evaluation results -------------------------------------------------------------
def eval_item_files(run: Run, evaluator: str) -> dict[int, Path]:
    """{step: path} of the per-item files an evaluator wrote (run.dir/eval/<evaluator>-step000025.jsonl)."""
    out = {}
    for p in (run.dir / "eval").glob(f"{evaluator}-step*.jsonl"):
        digits = p.stem.rsplit("-step", 1)[-1]
        if digits.isdigit():
            out[int(digits)] = p
    return dict(sorted(out.items()))


def read_items(path: Path) -> list[dict]:
    """Per-item records; a malformed line (a file still being written) is skipped, not fatal."""
    try:
        return parse_json_lines(Path(path).read_bytes())
    except OSError:
        return []


def item_passed(item: dict, loose: bool = False) -> bool | None:
    """Pass/fail of one item: IFEval prompt-level (all instructions followed), QA exact match or multiple choice."""
    key = "prompt_loose" if loose else "prompt_strict"
    if key in item:
        return bool(item[key])
    follow = item.get("follow_instruction_list_loose" if loose else "follow_instruction_list_strict")
    if isinstance(follow, list):
        return all(bool(f) for f in follow)
    for k in ("em", "exact_match", "correct", "passed"):
        if k in item:
            return bool(item[k])
    return None


def item_key(item: dict) -> str:
    for k in ("key", "id", "prompt", "question"):
        if item.get(k) is not None:
            return str(item[k])
    return json.dumps(item, sort_keys=True)[:200]


GENERATION_COLUMNS = ["passed", "step", "prompt", "response", "gold"]


def _drop_empty(table: pd.DataFrame, keep=()) -> pd.DataFrame:
    """Without the columns no row fills (None or ""): IFEval items have no gold answer, say."""
    empty = [c for c in table.columns if c not in keep and
             table[c].map(lambda v: v is None or (isinstance(v, float) and v != v) or v == "").all()]
    return table.drop(columns=empty)


def generations(run: Run, evaluator: str, step: int | None = None) -> pd.DataFrame:
    """One evaluator's per-item results at a step (default: the latest): passed (first: the verdict to scan),
    step, prompt, response, gold; a column no item of this evaluator fills is left out (IFEval: no gold)."""
    files = eval_item_files(run, evaluator)
    if not files:
        return pd.DataFrame(columns=GENERATION_COLUMNS)
    step = step if step in files else max(files)
    rows = []
    for it in read_items(files[step]):
        gold = it.get("gold", it.get("answer", ""))
        rows.append({"passed": item_passed(it), "step": step, "prompt": str(it.get("prompt", it.get("question", ""))),
                     "response": _response(it),
                     "gold": ", ".join(map(str, gold)) if isinstance(gold, list) else str(gold)})
    table = pd.DataFrame(rows, columns=GENERATION_COLUMNS)
    return _drop_empty(table, keep=("step",)) if len(table) else table


def eval_score_files(run: Run, evaluator: str) -> dict[int, Path]:
    """{step: path} of the per-item score files an evaluator wrote (eval/<evaluator>-step000025.scores.json)."""
    out = {}
    for p in (run.dir / "eval").glob(f"{evaluator}-step*.scores.json"):
        digits = p.name[: -len(".scores.json")].rsplit("-step", 1)[-1]
        if digits.isdigit():
            out[int(digits)] = p
    return dict(sorted(out.items()))


def paired_evaluators(run_a: Run, run_b: Run) -> list[str]:
    """Evaluators both runs wrote per-item scores or per-item rows for, in config order."""
    from .config import EVALUATORS

    def has(run, e):
        return bool(eval_score_files(run, e) or eval_item_files(run, e))

    return [e for e in EVALUATORS if has(run_a, e) and has(run_b, e)]


def _read_score_file(path: Path) -> dict[str, tuple[dict, str]]:
    from .evaluate.stats import items_from_record

    try:
        return {name: items_from_record(rec) for name, rec in json.loads(Path(path).read_text()).items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _response(item: dict) -> str:
    return str(item.get("response", item.get("prediction", item.get("picked", ""))))  # picked: knowledge_mc


PAIRED_COLUMNS = ["metric", "unit", "A", "B", "B - A", "95% CI", "n", "verdict"]


def paired_items(run_a: Run, run_b: Run, evaluator: str = "ifeval", loose: bool = False,
                 step_a: int | None = None, step_b: int | None = None) -> tuple[pd.DataFrame, dict]:
    """Two runs' results on the same items of one evaluator (any evaluator with `*.scores.json` files),
    at step_a / step_b (default: each run's latest evaluation of it).

    Returns the items side by side (from eval/<evaluator>-step*.jsonl; the pass/fail columns first, "change",
    "passed A", "passed B", where items have one, `loose` for IFEval's loose scoring; columns no item fills
    left out) and a summary: step_a, step_b, `metrics` (one row per metric of the
    evaluator: A, B, the paired difference B - A in the metric's own unit, its 95% paired bootstrap CI
    (stats.paired_change), n items paired, and a verdict that names a better run only when the CI excludes
    0), and n / better / worse / same counts of the pass/fail items. Runs without score files fall back to
    the pass/fail items (paired_difference, in points). Empty summary when nothing pairs."""
    from .evaluate.stats import paired_change, paired_difference
    from .frames import direction, label, lower_is_better

    sa, sb = eval_score_files(run_a, evaluator), eval_score_files(run_b, evaluator)
    fa, fb = eval_item_files(run_a, evaluator), eval_item_files(run_b, evaluator)
    steps_a, steps_b = sorted(set(sa) | set(fa)), sorted(set(sb) | set(fb))
    if not steps_a or not steps_b:
        return pd.DataFrame(), {}
    step_a = step_a if step_a in steps_a else steps_a[-1]
    step_b = step_b if step_b in steps_b else steps_b[-1]
    metric_rows = []
    scores_a = _read_score_file(sa[step_a]) if step_a in sa else {}
    scores_b = _read_score_file(sb[step_b]) if step_b in sb else {}
    for metric, (items_a, kind) in scores_a.items():
        if metric not in scores_b or scores_b[metric][1] != kind:
            continue
        items_b = scores_b[metric][0]
        d = paired_change(items_b, items_a, kind)
        if d is None:
            continue
        va, vb = _value(items_a, kind), _value(items_b, kind)
        significant = d["delta_ci_low"] > 0 or d["delta_ci_high"] < 0
        b_better = (d["delta"] < 0) == lower_is_better(metric)
        metric_rows.append({
            "metric": label(metric), "unit": _unit_text(kind, metric), "A": va, "B": vb, "B - A": d["delta"],
            "95% CI": f"{d['delta_ci_low']:+.3g} .. {d['delta_ci_high']:+.3g}", "n": d["delta_n"],
            "verdict": ("B better" if b_better else "A better") if significant else
            f"no difference beyond noise ({direction(metric)})"})
    a = {item_key(i): i for i in read_items(fa[step_a])} if step_a in fa else {}
    b = {item_key(i): i for i in read_items(fb[step_b])} if step_b in fb else {}
    rows = []
    for k in a:
        if k not in b:
            continue
        pa, pb = item_passed(a[k], loose), item_passed(b[k], loose)
        rows.append({"change": "" if pa is None or pb is None else
                     "same" if pa == pb else ("B better" if pb else "A better"),
                     "passed A": pa, "passed B": pb, "prompt": str(a[k].get("prompt", a[k].get("question", k))),
                     "response A": _response(a[k]), "response B": _response(b[k])})
    table = _drop_empty(pd.DataFrame(rows)) if rows else pd.DataFrame(rows)  # pass/fail first, empty ones out
    judged = [r for r in rows if r["passed A"] is not None and r["passed B"] is not None]
    if not metric_rows and judged:  # runs from before per-item scores were written
        d = paired_difference({i: float(r["passed A"]) for i, r in enumerate(judged)},
                              {i: float(r["passed B"]) for i, r in enumerate(judged)})
        significant = d["ci_low"] > 0 or d["ci_high"] < 0
        metric_rows.append({"metric": "items passed (per-item files)", "unit": "points",
                            "A": 100 * sum(bool(r["passed A"]) for r in judged) / len(judged),
                            "B": 100 * sum(bool(r["passed B"]) for r in judged) / len(judged),
                            "B - A": 100 * d["mean_diff"], "95% CI": f"{100 * d['ci_low']:+.3g} .. {100 * d['ci_high']:+.3g}",
                            "n": d["n"], "verdict": ("B better" if d["mean_diff"] > 0 else "A better") if significant
                            else "no difference beyond noise (higher is better)"})
    if not metric_rows and not rows:
        return table, {}
    summary = {"step_a": step_a, "step_b": step_b, "metrics": pd.DataFrame(metric_rows, columns=PAIRED_COLUMNS),
               "n": len(judged), "better": sum(bool(r["passed B"]) and not r["passed A"] for r in judged),
               "worse": sum(bool(r["passed A"]) and not r["passed B"] for r in judged),
               "same": sum(bool(r["passed A"]) == bool(r["passed B"]) for r in judged)}
    return table, summary


def _value(items: dict, kind: str) -> float:
    from .evaluate.stats import TRANSFORMS

    num = sum(a for a, _ in items.values())
    den = sum(b for _, b in items.values())
    return float(TRANSFORMS[kind](num / den)) if den else float("nan")


def _unit_text(kind: str, metric: str) -> str:
    """The unit of a difference in the metric's own scale."""
    if kind == "percent":
        return "points"
    if kind == "exp":
        return "ppl"
    if "logprob" in metric or "_kl" in metric:
        return "nats/token"
    return "fraction" if "coherence" in metric else "points"
