"""Plotly figures for the dashboard. Pure builders: frames in, figures out; never imports streamlit.

Every figure carries a stable `uirevision` and every trace a stable name (and `uid`, which exported HTML keeps;
Streamlit drops it on the wire), in a fixed order; KEEP_VIEW_HTML replays the user's zoom, pan and legend
choices on the fresh element Streamlit draws at each refresh. Long series are drawn with Scattergl and arrive
already downsampled (frames.curve). Figures are assembled as plain dicts and validated once (plotly's incremental
update_layout/add_hline deep-copy the figure on every call).

Colours are fixed: a metric always has the colour of METRIC_COLORS (or of a hash of its name), a run the
colour run_colors gave it, so nothing is recoloured when a metric or a run appears. Every change from step 0
is drawn as a gain (frames.gain_unit: signed so that higher is better), as Home's table and the trade-off show it.
"""
from __future__ import annotations

import math
import os
import re
import zlib

import numpy as np
import pandas as pd

from . import compare, frames
from .config import ROLES

ROLE_COLORS = {"domain": "#1f77b4", "replay": "#2ca02c", "instruct": "#ff7f0e"}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]
EXTRA_COLORS = ["#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354"]
METRIC_COLORS = {  # one colour per metric, whatever else the run has
    "eval/domain_ppl": "#1f77b4", "eval/qa_mc_acc": "#ff7f0e", "eval/qa_em": "#2ca02c", "eval/qa_f1": "#d62728",
    "eval/qa_contains": "#9467bd", "eval/qa_answer_logprob": "#8c564b", "eval/replay_ppl": "#e377c2",
    "eval/general_kl": "#7f7f7f", "eval/if_prompt_strict": "#bcbd22", "eval/if_prompt_loose": "#17becf",
    "eval/if_inst_strict": "#393b79", "eval/if_inst_loose": "#637939", "eval/coherence_distinct2": "#8c6d31",
    "eval/coherence_distinct1": "#843c39", "eval/coherence_repetition": "#7b4173",
    "train/loss": "#444444", "train/lr": "#1f77b4", "train/grad_norm": "#d62728",
    "train/tokens_per_second": "#2ca02c", "train/ewc_penalty": "#9467bd",
}
X_TITLES = {"step": "step", "tokens": "tokens seen", "time": "wall time (s)"}
GL_POINTS = 500  # above this many points a trace is drawn with WebGL
MARGIN = dict(l=50, r=20, t=50, b=40)


def metric_color(name: str) -> str:
    """A metric's colour: fixed for the known metrics, a hash of the name (crc32, the same in every process)
    for the others. Never depends on which other metrics a run has."""
    return METRIC_COLORS.get(name) or hashed_color(name)


def hashed_color(key: str) -> str:
    colors = PALETTE + EXTRA_COLORS
    return colors[zlib.crc32(str(key).encode()) % len(colors)]


def run_colors(run_ids, keep: dict[str, str] | None = None) -> dict[str, str]:
    """Run id -> colour for the runs shown together: a run keeps the colour it had (`keep`, the previous
    call's answer) while it stays selected; a new run takes the first palette colour no shown run holds, so
    adding a run never recolours the others (without `keep`: by position in run_ids)."""
    keep = keep or {}
    colors = PALETTE + EXTRA_COLORS
    out: dict[str, str] = {}
    for r in run_ids:
        if keep.get(r) in colors and keep[r] not in out.values():
            out[r] = keep[r]
    for r in run_ids:
        if r not in out:
            free = [c for c in colors if c not in out.values()]
            out[r] = free[0] if free else hashed_color(r)
    return {r: out[r] for r in run_ids}


def trace_uid(key: str) -> str:
    """A trace's stable uid from its key (metric or run id, "... 95% paired CI"): plotly matches traces across
    refreshes by uid and uses it in CSS selectors, so only letters, digits, _ and -, plus a hash for uniqueness."""
    return "t" + re.sub(r"[^A-Za-z0-9_-]+", "_", str(key)).strip("_")[:60] + f"-{zlib.crc32(str(key).encode()):08x}"


def _figure(data: list[dict], layout: dict):
    import plotly.graph_objects as go

    for d in data:
        if "uid" in d:
            d["uid"] = trace_uid(d["uid"])
    return go.Figure(data=data, layout=layout)


def _line(n_points: int, x, y, name: str, color: str, width: float = 1.5, dash: str = "solid", **kw) -> dict:
    kind = "scattergl" if n_points > GL_POINTS else "scatter"
    mode = kw.pop("mode", "lines+markers" if len(x) <= 60 else "lines")  # markers: a 1-point run stays visible
    kw.setdefault("uid", name)  # stable: plotly matches traces across refreshes by uid (legend choices)
    return dict(type=kind, x=np.asarray(x), y=np.asarray(y), name=name, mode=mode,
                line=dict(color=color, width=width, dash=dash), **kw)


def _hline(y: float, color: str = "#999", dash: str = "solid", xref: str = "x", yref: str = "y") -> dict:
    return dict(type="line", xref=f"{xref} domain", x0=0, x1=1, yref=yref, y0=y, y1=y,
                line=dict(color=color, width=1, dash=dash))


MARKED_EVENTS = {"event/stage": "stage", "event/mix_change": "mix"}  # events that change what is trained


def event_marks(m: frames.Metrics, x: str, xref: str = "x") -> tuple[list[dict], list[dict]]:
    """Dotted vertical lines (shapes) and hoverable labels (annotations) where a stage began (after the first)
    or the dynamic mix changed, so a jump in a curve can be read against its cause."""
    ev = m.events
    if not len(ev):
        return [], []
    ev = ev[ev["name"].isin(list(MARKED_EVENTS)) & ((ev["name"] != "event/stage") | (ev["step"] > 0))]
    yref = xref.replace("x", "y") + " domain"  # full height of the subplot whatever its y range
    shapes, notes = [], []
    for _, e in ev.iterrows():
        at = float(e[x])
        shapes.append(dict(type="line", xref=xref, x0=at, x1=at, yref=yref, y0=0, y1=1,
                           line=dict(color="#888", width=1, dash="dot")))
        notes.append(dict(x=at, xref=xref, y=1, yref=yref, yanchor="bottom", text=MARKED_EVENTS[e["name"]],
                          showarrow=False, font=dict(size=10, color="#666"),
                          hovertext=str(e.get("message") or e["name"])))
    return shapes, notes


def _layout(title: str, x: str, y: str, revision: str, height: int = 320, **kw) -> dict:
    return dict(title=dict(text=title), xaxis=dict(title=dict(text=X_TITLES.get(x, x))),
                yaxis=dict(title=dict(text=y)), uirevision=revision, height=height, margin=MARGIN,
                legend=dict(orientation="h", y=-0.2), hovermode=kw.pop("hovermode", "x unified"), **kw)


def empty(title: str, message: str, revision: str = "empty"):
    """A figure that says why it has no data (no made-up points)."""
    return _figure([], dict(title=dict(text=title), height=220, uirevision=revision, xaxis=dict(visible=False),
                            yaxis=dict(visible=False), annotations=[dict(text=message, showarrow=False, x=0.5, y=0.5,
                                                                         xref="paper", yref="paper")]))


# --- monitor ---------------------------------------------------------------------------------
def loss_figure(m: frames.Metrics, x: str = "tokens", smoothing: float = 0.0, revision: str = "loss"):
    """Training loss, total and per role, on the steps that trained each role."""
    data = []
    for name, label, color in [("train/loss", "total", "#444")] + [
            (f"train/loss/{r}", r, ROLE_COLORS[r]) for r in ROLES]:
        c = frames.curve(m, name, smoothing)
        if len(c):
            data.append(_line(len(c), c[x], c["value"], label, color, 2 if label == "total" else 1.5))
    if not data:
        return empty("Training loss", "no train/loss records yet", revision)
    shapes, notes = event_marks(m, x)
    return _figure(data, _layout("Training loss", x, "loss", revision, shapes=shapes, annotations=notes))


MIX_UNITS = {"tokens": ("mix", "input tokens"), "loss_tokens": ("mix_loss", "loss tokens")}  # unit -> prefix, label


def mix_figure(m: frames.Metrics, x: str = "tokens", revision: str = "mix", unit: str = "tokens"):
    """Realized share per role (solid) of the input tokens (`mix/*`) or of the loss tokens (`mix_loss/*`)
    against the share requested of the same sequences (dotted, `.../requested/*`: per stage, with progressive
    ramps and dynamic-mix shifts; loss tokens have one only where the run targets them, mix.unit=loss_tokens)."""
    prefix, label = MIX_UNITS[unit]
    data, shapes = [], []
    for r in ROLES:
        c = frames.curve(m, f"{prefix}/{r}")
        if not len(c):
            continue
        data.append(_line(len(c), c[x], c["value"].to_numpy() * 100, f"{r} realized", ROLE_COLORS[r]))
        q = frames.curve(m, f"{prefix}/requested/{r}")
        if len(q):
            data.append(_line(len(q), q[x], q["value"].to_numpy() * 100, f"{r} requested", ROLE_COLORS[r],
                              dash="dot"))
    title = f"Realized mix, share of {label}"
    if not data:
        return empty(title, f"no {prefix}/* records yet", revision)
    marks, notes = event_marks(m, x)
    return _figure(data, _layout(f"{title} (dotted: requested)", x, f"share of {label} (%)", revision,
                                 shapes=shapes + marks, annotations=notes))


def _gain_hover(c: pd.DataFrame, name: str) -> list[str]:
    """Per point: the gain with its paired 95% CI and n (frames.gain_text: the words a warning quotes), or
    why it has no band; then the value itself against its step-0 value."""
    n = c["delta_n"].to_numpy(dtype=float) if "delta_n" in c else np.full(len(c), np.nan)
    out = []
    cols = ("gain", "gain_low", "gain_high", "paired", "value", "baseline", "step")
    for k, (g, lo, hi, paired, v, base, step) in enumerate(zip(*(c[col] for col in cols))):
        if paired:
            head = frames.gain_text(name, g, lo, hi) + (f", n={int(n[k])}" if np.isfinite(n[k]) else "")
        elif k == 0 and int(step) == int(c["baseline_step"].iloc[0]):
            head = f"{frames.format_gain(name, g)} {frames.gain_unit(name)} (step-0 baseline)"
        else:
            head = (f"{frames.format_gain(name, g)} {frames.gain_unit(name)} (no paired CI: the record carries no "
                    "delta, written before paired changes)")
        out.append(f"{head}<br>{frames.label(name)} {v:.4g} (step 0: {base:.4g})")
    return out


def gain_traces(c: pd.DataFrame, name: str, label: str, color: str, x: str, axis: str = "",
                uid: str | None = None, **line_kw) -> list[dict]:
    """One gain-from-step-0 curve (frames.baseline_change of one metric of one run) and its 95% paired CI band
    (the records' delta_ci_*, anchored at 0 at step 0; no band where a record has no delta), on subplot
    `axis` ("" for the first, "2", ...)."""
    uid = uid or label
    c = c if "gain" in c else frames.baseline_change(c, name)
    xs, band = c[x].to_numpy(), c["paired"].to_numpy(dtype=bool)
    data = []
    if band.any():
        bx, hi, lo = xs[band], c["gain_high"].to_numpy()[band], c["gain_low"].to_numpy()[band]
        if not band[0]:  # the baseline: the gain is exactly 0 there
            bx, hi, lo = np.r_[xs[0], bx], np.r_[0.0, hi], np.r_[0.0, lo]
        data.append(dict(type="scatter", x=np.concatenate([bx, bx[::-1]]), y=np.concatenate([hi, lo[::-1]]),
                         fill="toself", fillcolor=color, opacity=0.15, line=dict(width=0), mode="lines",
                         hoverinfo="skip", showlegend=False, name=f"{label} 95% paired CI", uid=f"{uid} 95% paired CI",
                         legendgroup=uid, xaxis=f"x{axis}", yaxis=f"y{axis}"))
    data.append(_line(len(c), xs, c["gain"].to_numpy(), label, color, uid=uid, legendgroup=uid,
                      text=_gain_hover(c, name), hovertemplate=f"{label}<br>%{{text}}<extra></extra>",
                      xaxis=f"x{axis}", yaxis=f"y{axis}", **line_kw))
    return data


SUBPLOT_ROW_PX = 230  # one row of small multiples
SUBPLOT_GAP_PX = 95   # between rows: the two-line subplot titles, the x ticks and the bottom row's x title


def _subplot_title(group: str, name: str) -> str:
    """"<b>Domain</b> · domain ppl<br>% drop (higher is better)": frames.gain_label on two lines, so that three
    subplots fit side by side."""
    label = frames.label(name)
    return f"<b>{group}</b> · " + frames.gain_label(name).replace(f"{label}, ", f"{label}<br>", 1)


def baseline_figure(m: frames.Metrics, x: str = "tokens", revision: str = "baseline", cols: int = 3,
                    empty_note: str | None = None):
    """Domain metrics, then general metrics, as small multiples: one metric per subplot, each its gain from
    step 0 (frames.gain_unit: % drop for perplexities, points for scores, sign-flipped nats/token for KL;
    higher is better in every subplot, 0 is the starting model) with its 95% paired CI band. The subplot
    title names the metric, its unit and direction (frames.gain_label: the words of Home's table and
    Compare's axes), the y axis its unit; the x axes are linked (zooming one zooms all)."""
    from plotly.subplots import make_subplots

    names = set(m.names())
    panels = ([("Domain", n) for n in frames.DOMAIN_METRICS if n in names] +
              [("General", n) for n in frames.GENERAL_METRICS if n in names])
    if not panels:
        return empty("Domain vs general", empty_note or "no eval/* records yet (the step-0 evaluation writes them "
                     "when it ends; eval.evaluators lists what runs)", revision)
    ncols = max(1, min(cols, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    plot_px = nrows * SUBPLOT_ROW_PX + (nrows - 1) * SUBPLOT_GAP_PX
    grid = make_subplots(rows=nrows, cols=ncols, horizontal_spacing=0.07,
                         vertical_spacing=SUBPLOT_GAP_PX / plot_px if nrows > 1 else 0.0,
                         subplot_titles=[_subplot_title(group, n) for group, n in panels])
    layout = grid.layout.to_plotly_json()
    for a in layout.get("annotations", []):
        a["font"] = dict(size=12)
    data, shapes, notes = [], [], []
    for i, (_, name) in enumerate(panels):
        axis = "" if i == 0 else str(i + 1)
        c = frames.change_curve(m, name)
        data += gain_traces(c, name, frames.label(name), metric_color(name), x, axis, uid=name)
        xa, ya = layout.setdefault(f"xaxis{axis}", {}), layout.setdefault(f"yaxis{axis}", {})
        ya.update(title=dict(text=frames.gain_axis_title(name), font=dict(size=11)), zeroline=False)
        if i:
            xa["matches"] = "x"
        if i + ncols >= len(panels):  # the lowest subplot of its column names the x axis
            xa["title"] = dict(text=X_TITLES.get(x, x), font=dict(size=11))
        shapes.append(_hline(0, xref=f"x{axis}", yref=f"y{axis}"))
        s, n = event_marks(m, x, f"x{axis}")
        shapes += s
        notes += n if i == 0 else []  # the marks' labels once, on the first subplot
    for k in range(len(panels) + 1, nrows * ncols + 1):  # the empty cells of the last row
        layout[f"xaxis{k}"] = dict(layout.get(f"xaxis{k}", {}), visible=False)
        layout[f"yaxis{k}"] = dict(layout.get(f"yaxis{k}", {}), visible=False)
    layout.update(title=dict(text="Domain and general metrics: gain from step 0 (higher is better in every "
                                  "panel; bands: 95% paired CI)"),
                  annotations=layout.get("annotations", []) + notes, shapes=shapes, uirevision=revision,
                  showlegend=False, hovermode="closest", height=plot_px + 130, margin=dict(l=60, r=20, t=100, b=50))
    return _figure(data, layout)


def knowledge_figure(m: frames.Metrics, x: str = "tokens", revision: str = "knowledge",
                     empty_note: str | None = None):
    """Knowledge QA scores as values, % of questions (higher is better), each with its records' 95% CI, and
    the multiple-choice chance level (dashed, from the qa_mc_acc records' `chance`)."""
    data = []
    for i, name in enumerate(n for n in frames.KNOWLEDGE_METRICS if len(m.series(n))):
        c = frames.curve(m, name)
        scale = frames.points_scale(name, frames.record_unit(c))
        color = metric_color(name)
        xs, label = c[x].to_numpy(), f"{frames.label(name)}, %"
        if "ci_low" in c and c["ci_low"].notna().any():
            ok = c["ci_low"].notna().to_numpy() & c["ci_high"].notna().to_numpy()
            data.append(dict(type="scatter", x=np.concatenate([xs[ok], xs[ok][::-1]]),
                             y=np.concatenate([c["ci_high"].to_numpy()[ok], c["ci_low"].to_numpy()[ok][::-1]]) * scale,
                             fill="toself", fillcolor=color, opacity=0.15, line=dict(width=0), mode="lines",
                             hoverinfo="skip", showlegend=False, name=f"{label} 95% CI", uid=f"{label} 95% CI"))
        data.append(_line(len(c), xs, c["value"].to_numpy(dtype=float) * scale, label, color))
        if name == "eval/qa_mc_acc" and "chance" in c and c["chance"].notna().any():
            ok = c["chance"].notna().to_numpy()
            data.append(_line(len(c), xs[ok], c["chance"].to_numpy(dtype=float)[ok], "multiple-choice chance, %",
                              "#777", 1.5, dash="dash", mode="lines",
                              hovertemplate="chance %{y:.1f}% (1 / choices)<extra></extra>"))
    title = "Knowledge QA, % of questions (higher is better; dashed: multiple-choice chance)"
    if not data:
        return empty("Knowledge QA", empty_note or "no knowledge_mc / knowledge_qa records yet (they run when "
                     "eval.evaluators lists them and the run has questions about its documents)", revision)
    shapes, notes = event_marks(m, x)
    return _figure(data, _layout(title, x, "% of questions (higher is better)", revision, shapes=shapes,
                                 annotations=notes))


def series_figure(m: frames.Metrics, names: list[str], title: str, x: str = "step", revision: str = "series"):
    data = []
    for name in names:
        c = frames.curve(m, name)
        if len(c):
            data.append(_line(len(c), c[x], c["value"], name, metric_color(name)))
    layout = _layout(title, x, "", revision)
    if "train/lr" in names:  # 5e-5, as everywhere else: not plotly's SI prefix (50µ)
        layout["yaxis"].update(exponentformat="e", tickformat="~e")
    return _figure(data, layout) if data else empty(title, "no records yet", revision)


# --- compare ---------------------------------------------------------------------------------
def compare_figure(curves: dict[str, pd.DataFrame], metric: str, x: str = "step", revision: str = "compare",
                   change: bool = False, colors: dict[str, str] | None = None):
    """One metric, one line per run in its colour (`colors`, from run_colors; by position without): values
    (frames.curve: smoothed, downsampled) or, with change, the gain from step 0 (frames.change_curve, or
    baseline_change of the curves given: the sign and unit of Home's table and Monitor's panels) with its 95%
    paired CI band."""
    colors = colors or run_colors(list(curves))
    data = []
    unit_seen = None
    for label, c in curves.items():
        if not len(c):
            continue
        color = colors.get(label) or hashed_color(label)
        unit_seen = unit_seen or frames.record_unit(c)
        if change:
            data += gain_traces(c, metric, label, color, x)
        else:
            data.append(_line(len(c), c[x], c["value"], label, color, legendgroup=label))
    if not data:
        return empty(metric, f"none of the selected runs has {metric}", revision)
    if change:
        ytitle = f"{frames.label(metric)}: {frames.gain_axis_title(metric)}"
        title = f"{frames.gain_label(metric)}: gain from step 0 (bands: 95% paired CI)"
    else:
        ytitle, title = frames.value_label(metric, unit_seen), metric
    layout = _layout(title, x, ytitle, revision, height=380, hovermode="closest")
    if metric == "train/lr" and not change:  # ticks and hover as fmt.lr writes it (5e-5), not 50µ
        layout["yaxis"].update(exponentformat="e", tickformat="~e", hoverformat="~e")
    return _figure(data, layout)


def tradeoff_figure(points: pd.DataFrame, x_label: str, y_label: str, hover: dict[str, str] | None = None,
                    trajectories: bool = True, revision: str = "tradeoff", frontier: pd.DataFrame | None = None,
                    colors: dict[str, str] | None = None):
    """Domain gain (x) against retention (y), higher is better on both. Final points carry error bars: each
    run's 95% paired CI of its change from step 0 on both axes. `frontier` (compare.tradeoff_frontier) marks
    the final points no other run dominates by compare.pareto_mask's rule (paired run-vs-run differences);
    without it no dominance is claimed (every final point is on the frontier). Hovering a point shows its
    run's config."""
    if not len(points):
        return empty("Trade-off", "no run has both metrics at a common step yet", revision)
    hover = hover or {}
    colors = colors or run_colors(list(dict.fromkeys(points["run"])))
    data = []
    for run_id, g in points.groupby("run", sort=False):
        shown = g if trajectories else g[g["final"]]
        color = colors.get(run_id) or hashed_color(run_id)
        data.append(_line(
            len(points), shown["x"], shown["y"], run_id, color, 1,
            mode="lines+markers" if trajectories else "markers",
            marker=dict(size=np.where(shown["final"].to_numpy(), 11, 5), color=color),
            customdata=shown["step"].to_numpy(), legendgroup=run_id,
            hovertemplate=f"{hover.get(run_id, run_id)}<br>step %{{customdata}}<br>x %{{x:.2f}}, "
                          "y %{y:.2f}<extra></extra>"))
        last = g[g["final"]]
        if len(last) and np.isfinite(last[["x_low", "x_high", "y_low", "y_high"]].to_numpy(dtype=float)).any():
            ex = dict(type="data", symmetric=False, array=(last["x_high"] - last["x"]).to_numpy(dtype=float),
                      arrayminus=(last["x"] - last["x_low"]).to_numpy(dtype=float), color=color, thickness=1.5)
            ey = dict(type="data", symmetric=False, array=(last["y_high"] - last["y"]).to_numpy(dtype=float),
                      arrayminus=(last["y"] - last["y_low"]).to_numpy(dtype=float), color=color, thickness=1.5)
            text = [f"x 95% paired CI {a:+.2f} .. {b:+.2f}<br>y 95% paired CI {c:+.2f} .. {d:+.2f}"
                    for a, b, c, d in last[["x_low", "x_high", "y_low", "y_high"]].to_numpy(dtype=float)]
            data.append(dict(type="scatter", x=last["x"].to_numpy(dtype=float), y=last["y"].to_numpy(dtype=float),
                             mode="markers", marker=dict(size=1, color=color), error_x=ex, error_y=ey,
                             name=f"{run_id} 95% paired CI", uid=f"{run_id} 95% paired CI", legendgroup=run_id,
                             showlegend=False, text=text,
                             hovertemplate=f"{run_id}<br>%{{text}}<extra>change from step 0</extra>"))
    if frontier is None:
        frontier = points[points["final"]].reset_index(drop=True)
        frontier = frontier.assign(frontier=compare.pareto_mask(frontier["x"], frontier["y"],
                                                                np.zeros((len(frontier),) * 2, dtype=bool)))
    front = frontier[frontier["frontier"].astype(bool)].sort_values("x")
    if len(front):
        data.append(dict(type="scatter", x=front["x"].to_numpy(), y=front["y"].to_numpy(), mode="lines+markers",
                         name="Pareto frontier", uid="Pareto frontier", line=dict(color="black", dash="dash", width=2),
                         marker=dict(symbol="star", size=14, color="gold", line=dict(color="black", width=1)),
                         text=[hover.get(r, r) for r in front["run"]],
                         hovertemplate="%{text}<extra>no run better on both axes beyond noise</extra>"))
    layout = dict(title=dict(text="Trade-off: domain gain vs retention (up and right is better; bars: 95% paired CI)"),
                  xaxis=dict(title=dict(text=x_label)), yaxis=dict(title=dict(text=y_label)), uirevision=revision,
                  height=460, hovermode="closest", margin=MARGIN,
                  shapes=[_hline(0, "#bbb"), dict(type="line", yref="y domain", y0=0, y1=1, xref="x", x0=0, x1=0,
                                                   line=dict(color="#bbb", width=1))])
    return _figure(data, layout)


# --- views that survive a refresh ----------------------------------------------------------------
# Streamlit gives a chart a new element (a fresh plotly div) whenever its figure changes, so plotly's own
# uirevision cannot carry the user's zoom, pan or hidden traces across a live refresh by itself. This script
# (st.html on Monitor and Compare) keeps them per chart: keyed by the chart's Streamlit key and the figure's
# uirevision, it records each relayout (axis ranges; autorange drops them) and legend click (visible, by trace
# name), and replays them on the chart's next element. A new uirevision (another run, axis or metric) starts
# a fresh view.
KEEP_VIEW_HTML = """<script>
(() => {
  const w = window;
  if (w.__cptKeepView) return;
  w.__cptKeepView = true;
  const views = new Map();
  const AXIS = /^([xy]axis\\d*)\\.(range|range\\[([01])\\]|autorange)$/;
  const keyOf = (gd) => {
    const box = gd.closest('[class*="st-key-"]');
    const m = box && String(box.className).match(/st-key-(\\S+)/);
    return m ? m[1] + "|" + String((gd.layout || {}).uirevision) : null;
  };
  const apply = (gd, view, tries) => {
    if (!gd.isConnected) return;
    if (!gd._fullLayout || !gd._fullData || !w.Plotly) {
      if (tries < 40) setTimeout(() => apply(gd, view, tries + 1), 50);
      return;
    }
    const ranges = {};
    for (const [ax, r] of Object.entries(view.axes)) {
      const now = (gd._fullLayout[ax] || {}).range || [];
      if (r[0] != null && r[1] != null && (now[0] !== r[0] || now[1] !== r[1])) ranges[ax + ".range"] = [r[0], r[1]];
    }
    if (Object.keys(ranges).length) w.Plotly.relayout(gd, ranges);
    const idx = [], vis = [];
    gd.data.forEach((t, i) => {
      if (t.name in view.visible && (t.visible === undefined ? true : t.visible) !== view.visible[t.name]) {
        idx.push(i); vis.push(view.visible[t.name]);
      }
    });
    if (idx.length) w.Plotly.restyle(gd, {visible: vis}, idx);
  };
  const attach = (gd) => {
    if (gd.__cptView || typeof gd.on !== "function") return;
    const key = keyOf(gd);
    if (!key) return;
    gd.__cptView = true;
    if (!views.has(key)) views.set(key, {axes: {}, visible: {}});
    const view = views.get(key);
    gd.on("plotly_relayout", (ev) => {
      for (const [k, v] of Object.entries(ev || {})) {
        const m = k.match(AXIS);
        if (!m) continue;
        const ax = m[1];
        if (m[2] === "autorange") { if (v) delete view.axes[ax]; }
        else if (m[3] === undefined) { if (Array.isArray(v)) view.axes[ax] = [v[0], v[1]]; }
        else { (view.axes[ax] = view.axes[ax] || [null, null])[Number(m[3])] = v; }
      }
    });
    gd.on("plotly_restyle", (ev) => {
      const [upd, idx] = ev || [];
      if (!upd || !("visible" in upd)) return;
      const list = idx === undefined ? gd.data.map((_, i) => i) : [].concat(idx);
      list.forEach((i, j) => {
        const v = Array.isArray(upd.visible) ? upd.visible[j % upd.visible.length] : upd.visible;
        if (gd.data[i]) view.visible[gd.data[i].name] = v;
      });
    });
    apply(gd, view, 0);
  };
  let queued = false;
  const scan = () => {
    queued = false;
    document.querySelectorAll(".js-plotly-plot").forEach(attach);
  };
  new MutationObserver(() => { if (!queued) { queued = true; requestAnimationFrame(scan); } })
    .observe(document.body, {childList: true, subtree: true, attributes: true, attributeFilter: ["class"]});
  scan();
})();
</script>"""


# --- export ----------------------------------------------------------------------------------
def png_export_available() -> bool:
    """PNG export needs kaleido and a Chrome/Chromium it can drive (both work offline once installed)."""
    import importlib.util
    import shutil

    if importlib.util.find_spec("kaleido") is None:
        return False
    browsers = ("chromium", "chromium-browser", "google-chrome", "chrome")
    return bool(os.environ.get("BROWSER_PATH")) or any(shutil.which(b) for b in browsers)


def to_png(fig) -> bytes:
    return fig.to_image(format="png", width=1200, height=fig.layout.height or 500, scale=1)


def to_html(fig) -> str:
    """A standalone file (plotly.js inlined: opens offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True)


# --- mix law -------------------------------------------------------------------------------------
def mixlaw_figure(result: dict, rec: dict | None = None, hover: dict[str, str] | None = None,
                  revision: str = "mixlaw", cols: int = 3):
    """The mix advisor's view, one metric per subplot against the pilot share: each pilot run's last evaluation
    (its gain from step 0 with the 95% paired CI), the fitted law at the pilots' token count with its 95%
    bootstrap band (grey and dashed when the law is refused: no better than the noise), the budget's floor on
    the budgeted metrics and the recommended share as a vertical line."""
    from plotly.subplots import make_subplots

    from . import mixlaw

    fits = result.get("fits") or {}
    names = [m for m in mixlaw.LAW_METRICS if m in fits]
    if not names:
        return empty("Mix law", "no metric of the pilot group could be fitted yet", revision)
    hover = hover or {}
    rec = rec or {}
    budget = {mixlaw.full(k): v for k, v in (rec.get("budget") or {}).items()}
    ncols = max(1, min(cols, len(names)))
    nrows = math.ceil(len(names) / ncols)
    plot_px = nrows * SUBPLOT_ROW_PX + (nrows - 1) * SUBPLOT_GAP_PX

    def title(name: str) -> str:
        group = "Domain" if name in mixlaw.DOMAIN else "Retention"
        verdict = "" if fits[name]["usable"] else " · <i>law refused</i>"
        return _subplot_title(group, name) + verdict

    grid = make_subplots(rows=nrows, cols=ncols, horizontal_spacing=0.07,
                         vertical_spacing=SUBPLOT_GAP_PX / plot_px if nrows > 1 else 0.0,
                         subplot_titles=[title(n) for n in names])
    layout = grid.layout.to_plotly_json()
    for a in layout.get("annotations", []):
        a["font"] = dict(size=12)
    lines = mixlaw.curves(result)
    data, shapes = [], []
    for i, name in enumerate(names):
        axis = "" if i == 0 else str(i + 1)
        fit, curve = fits[name], lines[name]
        usable = fit["usable"]
        color = metric_color(name) if usable else "#999"
        xs = curve["share"]
        data.append(dict(type="scatter", x=np.concatenate([xs, xs[::-1]]),
                         y=np.concatenate([curve["high"], curve["low"][::-1]]), fill="toself", fillcolor=color,
                         opacity=0.15, line=dict(width=0), mode="lines", hoverinfo="skip", showlegend=False,
                         name=f"{name} law 95% band", uid=f"{name} law band", xaxis=f"x{axis}", yaxis=f"y{axis}"))
        text = [f"{result['role']} {x:.3g}: {frames.gain_text(name, g, lo, hi).replace('paired 95% CI', '95% CI')}"
                for x, g, lo, hi in zip(xs, curve["gain"], curve["low"], curve["high"])]
        data.append(dict(type="scatter", x=xs, y=curve["gain"], mode="lines", name=f"{frames.label(name)} law",
                         uid=f"{name} law", line=dict(color=color, width=2, dash="solid" if usable else "dash"),
                         text=text, showlegend=False, xaxis=f"x{axis}", yaxis=f"y{axis}",
                         hovertemplate="%{text}<extra>" + ("law" if usable else "law refused") + "</extra>"))
        pts = mixlaw.final_points(fit)
        run_ids = [result["runs"][p["run"]]["id"] for p in pts]
        px_ = np.array([p["share"] for p in pts])
        py = np.array([p["gain"] for p in pts])
        lo = np.array([p["gain_low"] for p in pts])
        hi = np.array([p["gain_high"] for p in pts])
        ptext = [f"{hover.get(rid, rid)}<br>step {p['step']}: "
                 f"{frames.gain_text(name, p['gain'], p['gain_low'], p['gain_high'])}" for rid, p in zip(run_ids, pts)]
        data.append(dict(type="scatter", x=px_.tolist(), y=py.tolist(), mode="markers",
                         name=f"{frames.label(name)} pilots",
                         uid=f"{name} pilots", marker=dict(size=9, color=metric_color(name),
                                                            line=dict(color="black", width=1)),
                         error_y=dict(type="data", symmetric=False, array=(hi - py).tolist(),
                                      arrayminus=(py - lo).tolist(),
                                      color=metric_color(name), thickness=1.5),
                         text=ptext, customdata=run_ids, showlegend=False, xaxis=f"x{axis}", yaxis=f"y{axis}",
                         hovertemplate="%{text}<extra>pilot run</extra>"))
        xa, ya = layout.setdefault(f"xaxis{axis}", {}), layout.setdefault(f"yaxis{axis}", {})
        ya.update(title=dict(text=frames.gain_axis_title(name), font=dict(size=11)), zeroline=False)
        if i:
            xa["matches"] = "x"
        if i + ncols >= len(names):
            xa["title"] = dict(text=f"{result['role']} share", font=dict(size=11))
        shapes.append(_hline(0, xref=f"x{axis}", yref=f"y{axis}"))
        if name in budget:
            floor = mixlaw.budget_floor(name, budget[name])
            shapes.append(_hline(floor, "#d62728", "dash", xref=f"x{axis}", yref=f"y{axis}"))
            layout.setdefault("annotations", []).append(dict(
                x=1, xref=f"x{axis} domain", y=floor, yref=f"y{axis}", xanchor="right", yanchor="top",
                text="budget", hovertext=mixlaw.budget_text(name, budget[name]), showarrow=False,
                font=dict(size=10, color="#d62728")))
        if rec.get("share") is not None:
            shapes.append(dict(type="line", xref=f"x{axis}", x0=rec["share"], x1=rec["share"],
                               yref=f"y{axis} domain", y0=0, y1=1, line=dict(color="black", width=1.5, dash="dot")))
            if name == rec.get("objective"):
                p = rec["predictions"][name]
                data.append(dict(type="scatter", x=[rec["share"]], y=[p["gain"]], mode="markers",
                                 name="recommended", uid="recommended",
                                 marker=dict(symbol="star", size=16, color="gold", line=dict(color="black", width=1)),
                                 text=[f"recommended {result['role']} {rec['share']:.3g}: "
                                       f"{frames.gain_text(name, p['gain'], p['low'], p['high'])}"],
                                 showlegend=False, xaxis=f"x{axis}", yaxis=f"y{axis}",
                                 hovertemplate="%{text}<extra></extra>"))
    for k in range(len(names) + 1, nrows * ncols + 1):
        layout[f"xaxis{k}"] = dict(layout.get(f"xaxis{k}", {}), visible=False)
        layout[f"yaxis{k}"] = dict(layout.get(f"yaxis{k}", {}), visible=False)
    layout.update(title=dict(text=f"Mix law: gain from step 0 against the {result['role']} share (higher is better "
                                  "in every panel)"),
                  shapes=shapes, uirevision=revision, showlegend=False, hovermode="closest", height=plot_px + 130,
                  margin=dict(l=60, r=20, t=100, b=50))
    return _figure(data, layout)
