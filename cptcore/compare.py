"""Runs side by side, for the Compare page: hover text, config diff, the trade-off with its Pareto frontier, and
per-item evaluation results (one run's recent generations, two runs paired). The home table is runs/table.py.

Never imports streamlit; reads only what runs wrote (config.yaml, manifest.json, eval/*.jsonl) through
size/mtime-keyed caches.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .frames import Metrics, baseline_change, downsample_index
from .runs import Run
from .runs.metrics import parse_records


# --- hover text ---------------------------------------------------------------------------------
def config_summary(run: Run) -> str:
    """A one-glance description of a run's config (chart hover text)."""
    cfg = run.config_dict()
    mix, tr, model = cfg.get("mix") or {}, cfg.get("train") or {}, cfg.get("model") or {}
    shares = "/".join(f"{100 * float(mix.get(r, 0)):g}" for r in ("domain", "replay", "instruct"))
    return (f"<b>{cfg.get('name', run.id)}</b> ({run.id})<br>{model.get('name', '?')} [{model.get('kind', '')}]"
            f"<br>mix d/r/i {shares}%<br>{tr.get('method', '')} lr {tr.get('lr', '?')} steps {tr.get('max_steps', '?')}")


# --- config diff -----------------------------------------------------------------------------
def flatten(d, prefix: str = "") -> dict[str, str]:
    """Nested dict → {'train.lr': '5e-05', 'data.domain.0.path': 'builtin:...'} (values as text)."""
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(d, list) and any(isinstance(x, (dict, list)) for x in d):
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}.{i}"))
    elif isinstance(d, list):
        out[prefix] = ", ".join(str(x) for x in d)
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


# --- trade-off across runs -------------------------------------------------------------------
def _run_tradeoff(m: Metrics, x_metric: str, y_metric: str, max_points: int) -> pd.DataFrame | None:
    key = ("tradeoff", x_metric, y_metric, max_points)
    if key in m.memo:
        return m.memo[key]
    x, y = m.series(x_metric), m.series(y_metric)
    out = None
    if len(x) and len(y):
        gx = baseline_change(x[["step", "tokens", "value"]], x_metric)["gain"].to_numpy()
        gy = baseline_change(y[["step", "value"]], y_metric)["gain"].to_numpy()
        steps, ix, iy = np.intersect1d(x["step"].to_numpy(), y["step"].to_numpy(), return_indices=True)
        if len(steps):
            keep = np.arange(len(steps))
            if len(steps) > max_points:
                keep = np.union1d(downsample_index(gx[ix], max_points // 2), downsample_index(gy[iy], max_points // 2))
            ix, iy = ix[keep], iy[keep]
            out = pd.DataFrame({"step": steps[keep], "tokens": x["tokens"].to_numpy()[ix], "x": gx[ix],
                                "value_x": x["value"].to_numpy()[ix], "y": gy[iy], "value_y": y["value"].to_numpy()[iy]})
            out["final"] = out["step"] == out["step"].max()
    m.memo[key] = out
    return out


def tradeoff_points(metrics: dict[str, Metrics], x_metric: str, y_metric: str,
                    max_points_per_run: int = 200) -> pd.DataFrame:
    """Per run, the gain of x_metric and of y_metric (both higher = better) at every step both were
    evaluated (downsampled beyond max_points_per_run, keeping each axis' extremes); `final` marks each
    run's last such step."""
    rows = []
    for run_id, m in metrics.items():
        part = _run_tradeoff(m, x_metric, y_metric, max_points_per_run)
        if part is not None:
            rows.append(part.assign(run=run_id))
    cols = ["run", "step", "tokens", "x", "value_x", "y", "value_y", "final"]
    return pd.concat(rows, ignore_index=True)[cols] if rows else pd.DataFrame(columns=cols)


def pareto_mask(x, y) -> np.ndarray:
    """True for points no other point beats on both axes (higher x and higher y are better)."""
    x, y = np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
    mask = np.zeros(len(x), dtype=bool)
    order = np.lexsort((-y, -x))  # by x descending, ties by y descending
    best_y = -np.inf
    for i in order:
        if not (np.isfinite(x[i]) and np.isfinite(y[i])):
            continue
        if y[i] > best_y:
            mask[i] = True
            best_y = y[i]
    return mask


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
        return parse_records(Path(path).read_bytes())
    except OSError:
        return []


def item_passed(item: dict, loose: bool = False) -> bool | None:
    """Pass/fail of one item: IFEval prompt-level (all instructions followed) or QA exact match."""
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


def generations(run: Run, evaluator: str, step: int | None = None) -> pd.DataFrame:
    """One evaluator's per-item results at a step (default: the latest) as prompt / response / gold / passed."""
    files = eval_item_files(run, evaluator)
    if not files:
        return pd.DataFrame(columns=["step", "prompt", "response", "gold", "passed"])
    step = step if step in files else max(files)
    rows = []
    for it in read_items(files[step]):
        gold = it.get("gold", it.get("answer", ""))
        rows.append({"step": step, "prompt": str(it.get("prompt", it.get("question", ""))),
                     "response": str(it.get("response", it.get("prediction", ""))),
                     "gold": ", ".join(map(str, gold)) if isinstance(gold, list) else str(gold),
                     "passed": item_passed(it)})
    return pd.DataFrame(rows, columns=["step", "prompt", "response", "gold", "passed"])


def paired_items(run_a: Run, run_b: Run, evaluator: str = "ifeval", loose: bool = False,
                 step_a: int | None = None, step_b: int | None = None) -> tuple[pd.DataFrame, dict]:
    """The two runs' results on the same items side by side, and the paired difference (B - A) with a CI."""
    from .evaluate.stats import paired_difference

    fa, fb = eval_item_files(run_a, evaluator), eval_item_files(run_b, evaluator)
    if not fa or not fb:
        return pd.DataFrame(), {}
    a = {item_key(i): i for i in read_items(fa[step_a if step_a in fa else max(fa)])}
    b = {item_key(i): i for i in read_items(fb[step_b if step_b in fb else max(fb)])}
    rows = []
    for k in a:
        if k not in b:
            continue
        pa, pb = item_passed(a[k], loose), item_passed(b[k], loose)
        rows.append({"prompt": str(a[k].get("prompt", a[k].get("question", k))),
                     "response A": str(a[k].get("response", a[k].get("prediction", ""))),
                     "response B": str(b[k].get("response", b[k].get("prediction", ""))),
                     "passed A": pa, "passed B": pb,
                     "change": "same" if pa == pb else ("B better" if pb else "A better")})
    if not rows:
        return pd.DataFrame(rows), {}
    scores_a = {i: float(bool(r["passed A"])) for i, r in enumerate(rows)}
    scores_b = {i: float(bool(r["passed B"])) for i, r in enumerate(rows)}
    summary = paired_difference(scores_a, scores_b)
    return pd.DataFrame(rows), summary
