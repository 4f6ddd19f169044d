"""Compare runs: overlaid curves, the domain-gain vs retention trade-off with paired CIs and its noise-aware
Pareto frontier, the config diff, paired per-item results of any evaluator, and exports."""
import streamlit as st

from cptcore import charts, compare, frames
from cptcore.runs import Run, cpt_home, list_runs, newest_first

st.set_page_config(page_title="Compare · CPT Studio", page_icon=":material/compare_arrows:", layout="wide")
HOME = cpt_home()
MAX_POINTS = 20_000  # points across all runs of the curves chart; each run keeps its extremes

st.title("Compare runs")
runs = list_runs(HOME)
if not runs:
    st.info("No runs to compare yet. Launch two runs with different mixes on the **Launch** page, then come back.")
    st.stop()

ids = newest_first(runs)
default = [i for i in st.session_state.get("compare_runs", []) if i in ids] or ids[:2]
chosen = st.multiselect("Runs", ids, default=default, key="compare_select")
st.session_state["compare_runs"] = chosen
if not chosen:
    st.info("Pick at least one run.")
    st.stop()
chosen_runs = [Run.open(HOME, i) for i in chosen]
# a run keeps its colour while it stays selected, whatever is added or removed around it
colors = charts.run_colors(chosen, st.session_state.get("compare_colors"))
st.session_state["compare_colors"] = colors
metrics = {r.id: frames.load_metrics(r) for r in chosen_runs}
names = sorted(set().union(*(m.names() for m in metrics.values())))
if not names:
    st.info("The selected runs have no metrics yet.")
    st.stop()

# --- overlaid curves ----------------------------------------------------------------------------
c1, c2, c3, c4 = st.columns([3, 2, 2, 1])
preferred = next((n for n in ("eval/domain_ppl", "train/loss") if n in names), names[0])
metric = c1.selectbox("metric", names, index=names.index(preferred), key="compare_metric")
x = c2.radio("x axis", ["step", "tokens", "time"], horizontal=True, key="compare_x",
             format_func=lambda v: charts.X_TITLES[v])
smoothing = c3.slider("smoothing (EMA)", 0.0, 0.99, 0.0, 0.01, key="compare_smooth",
                      help="Smooths the values; the change view (vs step 0) is drawn unsmoothed with its CI.")
change = c4.checkbox("vs step 0", key="compare_change",
                     help="Plot each run's gain from its step-0 value on the same items (signed so that higher is "
                     "better, as Home and Monitor show it: a perplexity drop is up), with the 95% paired CI the "
                     "records carry (no band for records without one).")
per_run = max(100, MAX_POINTS // len(chosen))
curves = {rid: frames.change_curve(m, metric, per_run) if change else frames.curve(m, metric, smoothing, per_run)
          for rid, m in metrics.items()}
curve_fig = charts.compare_figure(curves, metric, x, revision=f"compare:{metric}:{x}:{change}", change=change,
                                  colors=colors)
st.plotly_chart(curve_fig, key="compare_chart")
same, differ = compare.measured_on(chosen_runs)
if same:
    st.caption("Measured on: " + "; ".join(same) + ".")
for line in differ:
    st.warning(f"{line}. Their values are not comparable.")

# --- trade-off ----------------------------------------------------------------------------------
st.subheader("Trade-off: domain gain vs retention")
dom = [n for n in frames.DOMAIN_METRICS if n in names]
gen = [n for n in frames.GENERAL_METRICS if n in names]
tradeoff_fig = None
if not dom or not gen:
    missing = ("domain (domain_ppl, knowledge_mc or knowledge_qa)" if not dom else
               "general (replay_ppl, general_kl or ifeval)")
    st.info(f"No selected run has recorded a {missing} metric yet, so there is no trade-off to draw. Add the "
            "evaluator to eval.evaluators when launching; if it is there, Monitor's Events show why it failed.")
else:
    t1, t2, t3 = st.columns([2, 2, 1])
    xm = t1.selectbox("domain gain (x)", dom, key="tradeoff_x", format_func=frames.gain_label)
    ym = t2.selectbox("retention (y)", gen, index=gen.index("eval/if_prompt_strict")
                      if "eval/if_prompt_strict" in gen else 0, key="tradeoff_y", format_func=frames.gain_label,
                      help="general KL: how far the model's next-token distributions moved from the starting "
                      "model's (nats/token; plotted negated so that up is better).")
    trajectories = t3.toggle("trajectories", value=True, key="tradeoff_traj",
                             help="Each run's path over its evaluations; off: final points only.")
    points = compare.tradeoff_points(metrics, xm, ym)
    hover = {r.id: compare.config_summary(r) for r in chosen_runs}
    final, pairs = compare.tradeoff_frontier(points, {r.id: r for r in chosen_runs}, xm, ym)
    tradeoff_fig = charts.tradeoff_figure(points, frames.gain_label(xm), frames.gain_label(ym), hover, trajectories,
                                          revision=f"tradeoff:{xm}:{ym}", frontier=final, colors=colors)
    st.plotly_chart(tradeoff_fig, key="tradeoff_chart")
    st.caption("Error bars: each run's 95% paired CI of its change from step 0. A run is marked dominated only "
               "when another is better on both axes and their run-vs-run paired difference (same items, final "
               "points) excludes 0 on one axis without being worse beyond noise on the other.")
    if len(pairs):
        with st.expander(f"Run-vs-run paired differences, better - other in the axes' units ("
                         f"{int(pairs['dominates'].sum())} of {len(pairs)} better-on-both pairs beyond noise)"):
            st.dataframe(pairs, hide_index=True, width="stretch", key="tradeoff_pairs")
    plotted = set(points["run"])
    missing = [rid for rid in chosen if rid not in plotted]
    if missing:
        st.caption(f"Not shown (no {xm} and {ym} at a common step): {', '.join(missing)}")

# --- config diff --------------------------------------------------------------------------------
st.subheader("Config diff")
if len(chosen_runs) < 2:
    st.caption("Select two or more runs to see the keys that differ.")
else:
    diff = compare.config_diff(chosen_runs)
    if len(diff):
        st.dataframe(diff, hide_index=True, width="stretch", key="diff_table")
    else:
        st.success("The selected runs have identical configs and data manifests.")

# --- paired per-item comparison -----------------------------------------------------------------
st.subheader("Paired per-item comparison")
if len(chosen_runs) < 2:
    st.caption("Select two runs to compare their answers to the same prompts.")
else:
    p1, p2, p3, p4 = st.columns([2, 2, 1, 1])
    a = p1.selectbox("run A", chosen, index=0, key="pair_a")
    b = p2.selectbox("run B", chosen, index=1, key="pair_b")
    run_a, run_b = Run.open(HOME, a), Run.open(HOME, b)
    evaluators = compare.paired_evaluators(run_a, run_b) or ["ifeval"]
    evaluator = p3.selectbox("evaluator", evaluators, key="pair_eval",
                             index=evaluators.index("ifeval") if "ifeval" in evaluators else 0)
    loose = p4.checkbox("loose", key="pair_loose", disabled=evaluator != "ifeval",
                        help="IFEval loose scoring of the items table (also accepts the response without first/last "
                        "line or * markup); the metrics table has both.")
    table, summary = compare.paired_items(run_a, run_b, evaluator, loose)
    if not summary:
        st.caption(f"Both runs need {evaluator} per-item results on shared items "
                   f"(eval/{evaluator}-step*.scores.json or .jsonl).")
    else:
        st.caption(f"A at step {summary['step_a']}, B at step {summary['step_b']}: B - A on the same items, in each "
                   "metric's own unit, with its 95% paired bootstrap CI; a run is called better only when the CI "
                   "excludes 0.")
        st.dataframe(summary["metrics"], hide_index=True, width="stretch", key="pair_metrics")
        if summary["n"]:
            m1, m2, m3 = st.columns(3)
            m1.metric("items judged pass/fail", summary["n"])
            m2.metric("B passes, A fails", summary["better"])
            m3.metric("A passes, B fails", summary["worse"])
        if len(table):
            only_changed = st.checkbox("only items that differ", key="pair_changed", disabled="change" not in table)
            shown = table[table["change"].isin(["A better", "B better"])] if only_changed and "change" in table \
                else table
            st.dataframe(shown, hide_index=True, width="stretch", key="pair_table")

# --- export -------------------------------------------------------------------------------------
st.subheader("Export")
e1, e2, e3, e4 = st.columns(4)
e1.download_button("CSV: this metric", lambda: frames.export_frame(metrics, [metric]).to_csv(index=False),
                   file_name=f"compare-{metric.replace('/', '_')}.csv", mime="text/csv", on_click="ignore")
e2.download_button("CSV: all metrics", lambda: frames.export_frame(metrics, names).to_csv(index=False),
                   file_name="compare-all-metrics.csv", mime="text/csv", on_click="ignore")
e3.download_button("Curves chart (HTML)", lambda: charts.to_html(curve_fig), file_name="compare-curves.html",
                   mime="text/html", on_click="ignore")
if tradeoff_fig is not None:
    e4.download_button("Trade-off chart (HTML)", lambda: charts.to_html(tradeoff_fig), file_name="tradeoff.html",
                       mime="text/html", on_click="ignore")
if charts.png_export_available():
    f1, f2, _, _ = st.columns(4)
    f1.download_button("Curves chart (PNG)", lambda: charts.to_png(curve_fig), file_name="compare-curves.png",
                       mime="image/png", on_click="ignore")
    if tradeoff_fig is not None:
        f2.download_button("Trade-off chart (PNG)", lambda: charts.to_png(tradeoff_fig), file_name="tradeoff.png",
                           mime="image/png", on_click="ignore")
else:
    st.caption("PNG export needs the kaleido package and a Chromium browser; HTML export works offline.")
st.html(charts.KEEP_VIEW_HTML, unsafe_allow_javascript=True)  # zoom, pan and legend choices survive reruns
