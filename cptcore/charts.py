"""Plotly figures for the dashboard. Pure builders: frames in, figures out; never imports streamlit.

Every figure carries a stable `uirevision`, so a live refresh keeps the user's zoom; long series are drawn
with Scattergl and arrive already downsampled (frames.curve). Figures are assembled as plain dicts and
validated once (plotly's incremental update_layout/add_hline deep-copy the figure on every call).
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from . import compare, frames
from .config import ROLES

ROLE_COLORS = {"domain": "#1f77b4", "replay": "#2ca02c", "instruct": "#ff7f0e"}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]
X_TITLES = {"step": "step", "tokens": "tokens seen", "time": "wall time (s)"}
GL_POINTS = 500  # above this many points a trace is drawn with WebGL
MARGIN = dict(l=50, r=20, t=50, b=40)


def _figure(data: list[dict], layout: dict):
    import plotly.graph_objects as go

    return go.Figure(data=data, layout=layout)


def _line(n_points: int, x, y, name: str, color: str, width: float = 1.5, dash: str = "solid", **kw) -> dict:
    kind = "scattergl" if n_points > GL_POINTS else "scatter"
    mode = kw.pop("mode", "lines+markers" if len(x) <= 60 else "lines")  # markers: a 1-point run stays visible
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


def _change_hover(c: pd.DataFrame, name: str) -> list[str]:
    """Per point: the change with its paired 95% CI and n, or why it has no band; the value itself."""
    u = frames.CHANGE_UNITS[frames.unit(name)]
    n = c["delta_n"].to_numpy(dtype=float) if "delta_n" in c else np.full(len(c), np.nan)
    out = []
    for k, (ch, lo, hi, paired, v, step) in enumerate(zip(c["change"], c["change_low"], c["change_high"], c["paired"],
                                                          c["value"], c["step"])):
        if paired:
            ci = f"95% paired CI {lo:+.2f} .. {hi:+.2f}" + (f", n={int(n[k])}" if np.isfinite(n[k]) else "")
        elif k == 0 and int(step) == int(c["baseline_step"].iloc[0]):
            ci = "step-0 baseline"
        else:
            ci = "no paired CI: the record carries no delta (written before paired changes)"
        out.append(f"{ch:+.2f} {u} ({ci})<br>value {v:.4g}")
    return out


def _change_traces(m: frames.Metrics, names, x: str, axis: str, color_offset: int = 0,
                   max_points: int = 1000, nats_axis: str | None = None) -> list[dict]:
    """Change-from-step-0 lines with their 95% paired CI bands (frames.baseline_change: from the records'
    delta_ci_*; anchored at 0 at step 0; no band where a record has no delta). Metrics in nats/token go on
    `nats_axis` when given."""
    data = []
    for i, name in enumerate(n for n in names if len(m.series(n))):
        c = frames.change_curve(m, name, max_points)
        color = PALETTE[(i + color_offset) % len(PALETTE)]
        label = frames.change_label(name)
        ax = nats_axis if nats_axis and frames.unit(name) == "nats" else axis
        xs = c[x].to_numpy()
        band = c["paired"].to_numpy(dtype=bool)
        if band.any():
            bx, hi, lo = xs[band], c["change_high"].to_numpy()[band], c["change_low"].to_numpy()[band]
            if not band[0]:  # the baseline: the change is exactly 0 there
                bx, hi, lo = np.r_[xs[0], bx], np.r_[0.0, hi], np.r_[0.0, lo]
            data.append(dict(type="scatter", x=np.concatenate([bx, bx[::-1]]), y=np.concatenate([hi, lo[::-1]]),
                             fill="toself", fillcolor=color, opacity=0.15, line=dict(width=0), hoverinfo="skip",
                             showlegend=False, name=f"{label} 95% paired CI", xaxis=f"x{axis}", yaxis=f"y{ax}"))
        data.append(dict(type="scatter", x=xs, y=c["change"].to_numpy(), name=label, mode="lines+markers",
                         line=dict(color=color), text=_change_hover(c, name), xaxis=f"x{axis}", yaxis=f"y{ax}",
                         hovertemplate="%{text}"))
    return data


def _units_title(names) -> str:
    units = []
    for n in names:
        u = frames.CHANGE_UNITS[frames.unit(n)]
        if u not in units:
            units.append(u)
    return "change from step 0: " + ", ".join(units) if units else "change from step 0"


def baseline_figure(m: frames.Metrics, x: str = "tokens", revision: str = "baseline"):
    """Domain metrics (left) and general metrics (right) as change from step 0, with 95% paired CI bands.

    Perplexities in % change (lower is better), scores in points (higher is better), log-probs and KL in
    nats/token on each panel's right axis (KL: lower is better); every legend entry names its unit and
    direction."""
    names = set(m.names())
    dom = [n for n in frames.DOMAIN_METRICS if n in names]
    gen = [n for n in frames.GENERAL_METRICS if n in names]
    if not dom and not gen:
        return empty("Domain vs general", "no eval/* records yet (is eval.evaluators empty?)", revision)
    nats = {n for n in dom + gen if frames.unit(n) == "nats"}
    data = (_change_traces(m, dom, x, "", nats_axis="3") +
            _change_traces(m, gen, x, "2", color_offset=len(dom), nats_axis="4"))
    xt = dict(text=X_TITLES.get(x, x))
    titles = [dict(text=t, x=cx, y=1.08, xref="paper", yref="paper", xanchor="center", yanchor="bottom",
                   showarrow=False, font=dict(size=14))
              for t, cx in (("Domain: change from step 0", 0.225), ("General: change from step 0", 0.775))]
    (s1, n1), (s2, n2) = event_marks(m, x, "x"), event_marks(m, x, "x2")
    layout = dict(
        xaxis=dict(domain=[0, 0.45], title=xt), xaxis2=dict(domain=[0.55, 1], title=xt, anchor="y2"),
        yaxis=dict(anchor="x", title=dict(text=_units_title([n for n in dom if n not in nats]))),
        yaxis2=dict(anchor="x2", title=dict(text=_units_title([n for n in gen if n not in nats]))),
        annotations=titles + n1 + n2, uirevision=revision,
        height=380, shapes=[_hline(0), _hline(0, xref="x2", yref="y2")] + s1 + s2, margin=MARGIN,
        legend=dict(orientation="h", y=-0.25))
    for ax, over, group in (("yaxis3", "y", dom), ("yaxis4", "y2", gen)):
        if any(n in nats for n in group):
            layout[ax] = dict(overlaying=over, side="right", anchor="x" if over == "y" else "x2", showgrid=False,
                              zeroline=True, title=dict(text="nats/token"))
    return _figure(data, layout)


def knowledge_figure(m: frames.Metrics, x: str = "tokens", revision: str = "knowledge"):
    """Knowledge QA scores as values, % of questions (higher is better), each with its records' 95% CI, and
    the multiple-choice chance level (dashed, from the qa_mc_acc records' `chance`)."""
    data = []
    for i, name in enumerate(n for n in frames.KNOWLEDGE_METRICS if len(m.series(n))):
        c = frames.curve(m, name)
        scale = frames.points_scale(name, frames.record_unit(c))
        color = PALETTE[i % len(PALETTE)]
        xs, label = c[x].to_numpy(), f"{frames.label(name)}, %"
        if "ci_low" in c and c["ci_low"].notna().any():
            ok = c["ci_low"].notna().to_numpy() & c["ci_high"].notna().to_numpy()
            data.append(dict(type="scatter", x=np.concatenate([xs[ok], xs[ok][::-1]]),
                             y=np.concatenate([c["ci_high"].to_numpy()[ok], c["ci_low"].to_numpy()[ok][::-1]]) * scale,
                             fill="toself", fillcolor=color, opacity=0.15, line=dict(width=0), hoverinfo="skip",
                             showlegend=False, name=f"{label} 95% CI"))
        data.append(_line(len(c), xs, c["value"].to_numpy(dtype=float) * scale, label, color))
        if name == "eval/qa_mc_acc" and "chance" in c and c["chance"].notna().any():
            ok = c["chance"].notna().to_numpy()
            data.append(_line(len(c), xs[ok], c["chance"].to_numpy(dtype=float)[ok], "multiple-choice chance, %",
                              "#777", 1.5, dash="dash", mode="lines",
                              hovertemplate="chance %{y:.1f}% (1 / choices)<extra></extra>"))
    title = "Knowledge QA, % of questions (higher is better; dashed: multiple-choice chance)"
    if not data:
        return empty("Knowledge QA", "no knowledge_mc / knowledge_qa records (add them to eval.evaluators)", revision)
    shapes, notes = event_marks(m, x)
    return _figure(data, _layout(title, x, "% of questions (higher is better)", revision, shapes=shapes,
                                 annotations=notes))


def series_figure(m: frames.Metrics, names: list[str], title: str, x: str = "step", revision: str = "series"):
    data = []
    for i, name in enumerate(names):
        c = frames.curve(m, name)
        if len(c):
            data.append(_line(len(c), c[x], c["value"], name, PALETTE[i % len(PALETTE)]))
    return _figure(data, _layout(title, x, "", revision)) if data else empty(title, "no records yet", revision)


# --- compare ---------------------------------------------------------------------------------
def compare_figure(curves: dict[str, pd.DataFrame], metric: str, x: str = "step", revision: str = "compare",
                   change: bool = False):
    """One metric, one line per run: values (frames.curve: smoothed, downsampled) or, with change, the change
    from step 0 (frames.change_curve, or baseline_change of the curves given) with its 95% paired CI band."""
    data = []
    unit_seen = None
    for i, (label, c) in enumerate(curves.items()):
        if not len(c):
            continue
        color = PALETTE[i % len(PALETTE)]
        unit_seen = unit_seen or frames.record_unit(c)
        if not change:
            data.append(_line(len(c), c[x], c["value"], label, color))
            continue
        c = c if "change" in c else frames.baseline_change(c, metric)
        xs, band = c[x].to_numpy(), c["paired"].to_numpy(dtype=bool)
        if band.any():
            bx, hi, lo = xs[band], c["change_high"].to_numpy()[band], c["change_low"].to_numpy()[band]
            if not band[0]:
                bx, hi, lo = np.r_[xs[0], bx], np.r_[0.0, hi], np.r_[0.0, lo]
            data.append(dict(type="scatter", x=np.concatenate([bx, bx[::-1]]), y=np.concatenate([hi, lo[::-1]]),
                             fill="toself", fillcolor=color, opacity=0.15, line=dict(width=0), hoverinfo="skip",
                             showlegend=False, name=f"{label} 95% paired CI"))
        data.append(_line(len(c), xs, c["change"], label, color, text=_change_hover(c, metric),
                          hovertemplate=f"{label}<br>%{{text}}<extra></extra>"))
    if not data:
        return empty(metric, f"none of the selected runs has {metric}", revision)
    if change:
        ytitle = f"change from step 0: {frames.change_label(metric)}"
        title = f"{frames.label(metric)}: change from step 0 (bands: 95% paired CI)"
    else:
        ytitle, title = frames.value_label(metric, unit_seen), metric
    return _figure(data, _layout(title, x, ytitle, revision, height=380, hovermode="closest"))


def tradeoff_figure(points: pd.DataFrame, x_label: str, y_label: str, hover: dict[str, str] | None = None,
                    trajectories: bool = True, revision: str = "tradeoff", frontier: pd.DataFrame | None = None):
    """Domain gain (x) against retention (y), higher is better on both. Final points carry error bars: each
    run's 95% paired CI of its change from step 0 on both axes. `frontier` (compare.tradeoff_frontier) marks
    the final points no other run dominates by compare.pareto_mask's rule (paired run-vs-run differences);
    without it no dominance is claimed (every final point is on the frontier). Hovering a point shows its
    run's config."""
    if not len(points):
        return empty("Trade-off", "no run has both metrics at a common step yet", revision)
    hover = hover or {}
    data = []
    for i, (run_id, g) in enumerate(points.groupby("run", sort=False)):
        shown = g if trajectories else g[g["final"]]
        color = PALETTE[i % len(PALETTE)]
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
                             name=f"{run_id} 95% paired CI", legendgroup=run_id, showlegend=False, text=text,
                             hovertemplate=f"{run_id}<br>%{{text}}<extra>change from step 0</extra>"))
    if frontier is None:
        frontier = points[points["final"]].reset_index(drop=True)
        frontier = frontier.assign(frontier=compare.pareto_mask(frontier["x"], frontier["y"],
                                                                np.zeros((len(frontier),) * 2, dtype=bool)))
    front = frontier[frontier["frontier"].astype(bool)].sort_values("x")
    if len(front):
        data.append(dict(type="scatter", x=front["x"].to_numpy(), y=front["y"].to_numpy(), mode="lines+markers",
                         name="Pareto frontier", line=dict(color="black", dash="dash", width=2),
                         marker=dict(symbol="star", size=14, color="gold", line=dict(color="black", width=1)),
                         text=[hover.get(r, r) for r in front["run"]],
                         hovertemplate="%{text}<extra>no run better on both axes beyond noise</extra>"))
    layout = dict(title=dict(text="Trade-off: domain gain vs retention (up and right is better; bars: 95% paired CI)"),
                  xaxis=dict(title=dict(text=x_label)), yaxis=dict(title=dict(text=y_label)), uirevision=revision,
                  height=460, hovermode="closest", margin=MARGIN,
                  shapes=[_hline(0, "#bbb"), dict(type="line", yref="y domain", y0=0, y1=1, xref="x", x0=0, x1=0,
                                                   line=dict(color="#bbb", width=1))])
    return _figure(data, layout)


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
