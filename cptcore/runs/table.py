"""The runs table: one row per run, built the same way for `cpt runs [--json]` and the dashboard's home page.

Rows are read from the run folders on every look (status.json, config.yaml, meta.json, and the metric stream
through frames' size/mtime-keyed cache and parquet sidecar); there is no index to keep in sync.
"""
from __future__ import annotations

from typing import Any

from ..config import ROLES
from .store import Run

# what Home shows by default: the columns that decide (gain, retention, trouble) fit 1280 px without scrolling
DEFAULT_COLUMNS = ("run", "status", "domain gain", "IF change", "general change", "warnings", "mix")
EXTRA_COLUMNS = ("progress", "step", "max_steps", "tokens", "time", "name", "model", "kind", "recipe", "method", "lr",
                 "domain gain CI", "IF change CI", "general change CI", "error", "group", "tags", "note", "created")
HOME_COLUMNS = DEFAULT_COLUMNS + EXTRA_COLUMNS
DOMAIN_GAIN = ("eval/domain_ppl", "eval/qa_mc_acc", "eval/qa_em", "eval/qa_f1")  # the first one a run has
IF_CHANGE = ("eval/if_prompt_strict", "eval/if_inst_strict")
GENERAL_CHANGE = ("eval/replay_ppl",)  # general-text perplexity: retention beyond instruction following


def run_row(run: Run, metrics: bool = True) -> dict[str, Any]:
    """Status, progress, config summary, tags and note of a run; with metrics, also tokens seen, the last value
    of every metric, the domain gain and IF change against step 0 (frames.latest_change: the latest record's
    paired change; "... CI" is its 95% paired CI as text with the metric and unit, "" without a paired delta),
    the general (replay) perplexity change likewise, and the warning count.

    mix: the whole run's planned token shares (every stage) from the plan in its manifest; the config's mix
    until the run has built its data."""
    st, cfg, meta = run.status(), run.config_dict(), run.meta()
    model, tr = cfg.get("model") or {}, cfg.get("train") or {}
    mix = (run.manifest().get("plan") or {}).get("requested") or cfg.get("mix") or {}
    max_steps = st.get("max_steps") or tr.get("max_steps")
    row = {
        "id": run.id, "name": cfg.get("name", run.id), "group": meta.get("group"),
        "status": st.get("status", "unknown"),
        "step": st.get("step"), "max_steps": max_steps, "model": model.get("name", "?"), "kind": model.get("kind", ""),
        "recipe": str(cfg.get("recipe") or ""), "method": tr.get("method", ""),
        "mix": {r: mix.get(r) for r in ROLES}, "lr": tr.get("lr"), "attempt": st.get("attempt"),
        "created": st.get("created"), "started": st.get("started"), "ended": st.get("ended"),
        "error": st.get("error"), "tags": list(meta.get("tags", [])), "note": meta.get("note", ""),
    }
    if metrics:
        row.update(_metric_fields(run, st, max_steps))
    return row


def _metric_fields(run: Run, st: dict, max_steps: int | None) -> dict[str, Any]:
    from ..frames import final_values, latest_change, load_metrics

    m = load_metrics(run)
    step = max(int(st.get("step") or 0), m.last_step)
    loss = m.series("train/loss")
    final = final_values(m)
    final.update({f"result/{k}": v for k, v in (st.get("result") or {}).items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return {
        "step": step, "progress": min(1.0, step / max_steps) if max_steps else 0.0,
        "tokens": int(loss["tokens"].iloc[-1]) if len(loss) else 0,
        "final_metrics": final,
        **_gain_fields("domain gain", latest_change(m, DOMAIN_GAIN)),
        **_gain_fields("IF change", latest_change(m, IF_CHANGE)),
        **_gain_fields("general change", latest_change(m, GENERAL_CHANGE)),
        "warnings": int((m.events["name"] == "event/warning").sum()) if len(m.events) else 0,
    }


def _gain_fields(column: str, c: dict | None) -> dict[str, Any]:
    """The gain from step 0 (frames' one sign convention: signed so that higher is better, a perplexity drop
    is positive), the number Monitor's panel and Compare's "vs step 0" curve draw at the same record; its CI
    text printed as they print it (frames.format_gain) and named as they name it (frames.gain_label)."""
    import math

    from ..frames import format_gain, gain_label

    if c is None:
        return {column: None, f"{column} CI": ""}
    name = c["name"]
    ci = ("no paired CI" if math.isnan(c["gain_low"]) else
          f"{format_gain(name, c['gain_low'])} .. {format_gain(name, c['gain_high'])}")
    return {column: c["gain"], f"{column} CI": f"{ci} · {gain_label(name)}"}


def home_columns(extra=()) -> list[str]:
    """Home's columns in order: DEFAULT_COLUMNS, then the chosen EXTRA_COLUMNS in their listed order."""
    return list(DEFAULT_COLUMNS) + [c for c in EXTRA_COLUMNS if c in set(extra)]


def runs_table(runs: list[Run]):
    """The home page's table: run_row of every run, newest first; mix, tags, LR and run time as text for people
    (cptcore.fmt), gains as numbers (missing: NaN, which the page draws as a dash)."""
    import time

    import pandas as pd

    from .. import fmt

    rows = [run_row(r) for r in runs]
    if not rows:
        return pd.DataFrame(columns=list(HOME_COLUMNS))
    for r in rows:
        r["run"] = r["id"]
        r["mix"] = "/".join(f"{round(100 * float(r['mix'].get(k) or 0), 1):g}" for k in ROLES)
        r["tags"] = ", ".join(map(str, r["tags"]))
        r["error"], r["group"] = r["error"] or "", r["group"] or ""
        r["lr"] = fmt.lr(r["lr"])
        end = r["ended"] or (time.time() if r["status"] == "running" else None)
        r["time"] = fmt.duration(end - r["started"]) if r["started"] and end else fmt.MISSING
    frame = pd.DataFrame(rows, columns=list(HOME_COLUMNS))
    frame = frame.sort_values("created", ascending=False, na_position="last").reset_index(drop=True)
    frame["created"] = pd.to_datetime(frame["created"], unit="s", errors="coerce")
    return frame
