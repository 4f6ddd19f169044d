"""Compare runs: overlaid curves, the domain-gain vs retention trade-off with paired CIs and its noise-aware
Pareto frontier, the config diff, paired per-item results of any evaluator, and exports."""
import streamlit as st

from cptcore import charts, compare, fmt, forms, frames, mixlaw
from cptcore.config import ConfigError
from cptcore.runs import Run, RunError, cpt_home, list_runs, newest_first, sweep
from cptcore.runs.groups import list_groups

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

# --- mix law ------------------------------------------------------------------------------------
st.subheader("Mix law: which share, within a forgetting budget?")
pilots = list_groups(HOME, "pilot")
if not pilots:
    st.caption("A pilot sweep is 4-6 short runs that differ only in one share; the Mix law view fits a law of that "
               "share and tokens seen to their evaluations and recommends a share. Queue one from a selected run's "
               "config (or: cpt sweep CONFIG --pilot replay=0,0.05,0.1,0.2,0.4).")
else:
    in_selection = [g for g in pilots if any(r.meta().get("group") == g for r in chosen_runs)]
    group = st.selectbox("pilot group", pilots, index=pilots.index(in_selection[0]) if in_selection else 0,
                         key="mixlaw_group")
    try:
        result = mixlaw.fit_group(group, HOME)
    except (mixlaw.MixLawError, RunError, ConfigError) as e:
        result = None
        st.info(str(e))
    for line in (result or {}).get("warnings", []):
        st.warning(line)
    if result is not None and not result["fits"]:
        st.info(f"No law yet for pilot group {group}: " + "; ".join(
            f"{frames.label(m)}: {why}" for m, why in result["skipped"].items()) + ". Compare refits as runs finish.")
        result = None
    if result is not None:
        fits = result["fits"]
        objectives = [m for m in mixlaw.DOMAIN if m in fits]
        budgets = sorted((m for m in mixlaw.RETENTION if m in fits), key=lambda m: not fits[m]["usable"])
        m1, m2, m3 = st.columns([2, 2, 1])
        objective = m1.selectbox("maximize", objectives, key="mixlaw_objective", format_func=frames.gain_label,
                                 index=objectives.index(mixlaw.default_objective(fits))
                                 if mixlaw.default_objective(fits) in objectives else 0) if objectives else None
        budget_metric = m2.selectbox("forgetting budget on", budgets, key="mixlaw_budget_metric",
                                     format_func=frames.gain_label) if budgets else None
        limit = m3.number_input(mixlaw.budget_label(budget_metric) if budget_metric else "budget", min_value=0.0,
                                value=mixlaw.DEFAULT_BUDGETS.get(budget_metric, 1.0), format="%g",
                                key=f"mixlaw_limit_{budget_metric}", disabled=budget_metric is None,
                                help="The largest decline allowed, in the gain unit of the dashboard: points for "
                                "IFEval, nats/token for general KL, % rise for perplexities. It must hold at the "
                                "pessimistic end of the prediction's 95% interval.")
        budget = {budget_metric: float(limit)} if budget_metric else {}
        if objective is None:
            st.info("The pilots evaluated no domain metric (domain_ppl or knowledge_mc), so there is nothing to "
                    "maximize.")
            rec = None
        else:
            rec = mixlaw.recommend(fits, result["shares"], objective, budget, skipped=result.get("skipped"))
        done = sum(r["status"] == "completed" for r in result["runs"])
        if done < len(result["runs"]):
            st.info(f"{done} of {len(result['runs'])} pilot runs have completed; the fit uses the evaluations "
                    "written so far and refits as they finish.")
        if rec is not None and rec["share"] is not None:
            rec["mix"] = mixlaw.recommended_mix(result, rec["share"])
            p = rec["predictions"]
            r1, r2, r3 = st.columns(3)
            r1.metric(f"recommended {result['role']} share", f"{rec['share']:.3g}",
                      help="The share in the pilots' range with the highest predicted gain of the maximized metric "
                      "whose budget holds at the pessimistic end of its 95% interval. Mix domain/replay/instruct: "
                      + "/".join(f"{100 * rec['mix'][k]:.1f}" for k in ("domain", "replay", "instruct")) + " %.")
            n_of = lambda m: (f"law fitted on {fits[m]['n_points']} evaluations of {fits[m]['n_runs']} pilot "  # noqa: E731
                              f"runs, {fits[m]['n_items']} items each")
            r2.metric(f"predicted {frames.label(objective)}",
                      f"{frames.format_gain(objective, p[objective]['gain'])} {frames.gain_unit(objective)}",
                      help=f"95% interval {frames.format_gain(objective, p[objective]['low'])} .. "
                      f"{frames.format_gain(objective, p[objective]['high'])}, gain from step 0 at "
                      f"{fmt.tokens(result['tokens_ref'])} tokens (the pilots' length); {n_of(objective)}.")
            if budget_metric:
                r3.metric(f"predicted {frames.label(budget_metric)}",
                          f"{frames.format_gain(budget_metric, p[budget_metric]['gain'])} "
                          f"{frames.gain_unit(budget_metric)}",
                          help=f"95% interval {frames.format_gain(budget_metric, p[budget_metric]['low'])} .. "
                          f"{frames.format_gain(budget_metric, p[budget_metric]['high'])}; budget: "
                          f"{mixlaw.budget_text(budget_metric, limit)}; {n_of(budget_metric)}.")
            st.caption("Predicted at the recommended share (gain from step 0, 95% interval from refits on redrawn "
                       "items and runs): " + "; ".join(
                           f"{frames.label(m)} {frames.gain_text(m, v['gain'], v['low'], v['high'])}".replace(
                               "paired 95% CI", "95%") if v["usable"] else f"{frames.label(m)}: no prediction (law "
                           "refused)" for m, v in p.items()) + ".")
            if st.button("Launch this mix", type="primary", key="mixlaw_launch",
                         help="Fills the Launch page with the pilots' config and the recommended mix, and saves this "
                         "recommendation with the group (groups/GROUP/mixlaw.json)."):
                _, saved = mixlaw.advise(group, HOME, objective, budget)
                st.session_state.update(forms.mixlaw_form(group, saved["mix"],
                                                          mixlaw.recommended_config(result, saved).name))
                st.switch_page("views/1_Launch.py")
        elif rec is not None:
            st.warning("No recommendation: " + " ".join(rec["refused"]))
        mixlaw_fig = charts.mixlaw_figure(result, rec, compare.pilot_hover(
            result, {r.id: r for r in list_runs(HOME)}), revision=f"mixlaw:{group}")
        st.plotly_chart(mixlaw_fig, key="mixlaw_chart")
        st.caption("Points: each pilot run's last evaluation, its gain from step 0 with the 95% paired CI; lines: "
                   "the law fitted on every evaluation of every run, at the pilots' token count, with its 95% "
                   "bootstrap band; grey dashed: a law refused as no better than the noise. Red dashed: the budget; "
                   "dotted: the recommended share. Hover a point for its run's config diff.")
        st.dataframe(mixlaw.fit_table(result), hide_index=True, width="stretch", key="mixlaw_table")
        st.caption("A law is usable when its share effect's 95% interval excludes 0 and it predicts a left-out run "
                   "better than the share-free law; the noise is the median half-width of the pilots' paired 95% "
                   f"CIs. The law: {mixlaw.LAW_TEXT}.")
with st.expander("Queue a pilot sweep from a selected run's config"):
    q1, q2, q3 = st.columns([2, 1, 2])
    source = q1.selectbox("config of", chosen, key="pilot_source")
    prole = q2.selectbox("vary the share of", ["replay", "domain", "instruct"], key="pilot_role")
    pshares = q3.text_input("shares", "0, 0.05, 0.1, 0.2, 0.4", key="pilot_shares_compare",
                            help="At least 4 (5 are better); the other roles are rescaled to keep the sum 1.")
    if st.button("Queue pilot", key="pilot_queue"):
        try:
            pgroup, queued = sweep.sweep(Run.open(HOME, source).config(), {}, HOME,
                                         pilot=sweep.parse_pilot(f"{prole}={pshares}"))
        except (ConfigError, RunError, ValueError) as e:
            st.error(str(e))
        else:
            st.success(f"Queued {len(queued)} runs as pilot group {pgroup}; they run one after another.")

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
