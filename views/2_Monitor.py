"""Monitor one run live: loss per role, realized mix, domain vs general metrics against step 0, warnings,
generations, status, ETA, stop/resume and the log. Only the live panel refreshes (a fragment)."""
import streamlit as st

from cptcore import charts, compare, frames
from cptcore.runs import Run, RunError, cpt_home, list_runs, newest_first
from cptcore.runs import launch
from cptcore.runs.liveness import log_tail, refresh
from cptcore.runs.store import FINAL_STATUSES

st.set_page_config(page_title="Monitor · CPT Studio", page_icon=":material/monitoring:", layout="wide")
HOME = cpt_home()
REFRESH_S = 3
WARNINGS_PX = 200  # the opened warnings box: fixed, it scrolls

st.title("Monitor")
runs = list_runs(HOME)
if not runs:
    st.info("No runs to monitor yet. Start one on the **Launch** page (or `cpt launch experiments/demo.yaml`).")
    st.stop()

ids = newest_first(runs)
wanted = st.query_params.get("run") or st.session_state.get("monitor_run")
run_id = st.selectbox("Run", ids, index=ids.index(wanted) if wanted in ids else 0, key="monitor_select")
st.session_state["monitor_run"] = run_id
c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
x = c1.radio("x axis", ["tokens", "step", "time"], horizontal=True, key="monitor_x")
smoothing = c2.slider("loss smoothing (EMA)", 0.0, 0.99, 0.0, 0.01, key="monitor_smooth")
mix_unit = c3.radio("mix as share of", list(charts.MIX_UNITS), horizontal=True, key="monitor_mix_unit",
                    format_func=lambda u: charts.MIX_UNITS[u][1],
                    help="input tokens: every token trained (mix/*). loss tokens: the tokens that carry loss "
                    "(mix_loss/*); chat data trains on assistant tokens only, so its share of the loss is smaller.")
live = refresh(Run.open(HOME, run_id)).get("status") in ("queued", "running")
auto = c4.toggle("live refresh", value=True, key="monitor_live", disabled=not live,
                 help=f"While the run is queued or running, refresh the panel every {REFRESH_S} s without "
                 "reloading the page.")


@st.fragment(run_every=REFRESH_S if auto and live else None)
def live_panel(run_id: str) -> None:
    run = Run.open(HOME, run_id)
    status = refresh(run)
    cfg = run.config_dict()
    m = frames.load_metrics(run)
    max_steps = status.get("max_steps") or (cfg.get("train") or {}).get("max_steps")
    state = status.get("status", "unknown")

    from cptcore.progress import run_progress

    prog = run_progress(run, m, status, cfg)  # what it does now, ETA with the evaluations left, queue place
    s1, s2, s3, s4 = st.columns(4)
    s1.metric("status", state)
    s2.metric("step", f"{m.last_step} / {max_steps or '?'}")
    s3.metric("ETA", prog.eta_text, help=prog.detail or None)
    loss = m.series("train/loss")
    s4.metric("tokens seen", f"{int(loss['tokens'].iloc[-1]):,}" if len(loss) else "0")
    if max_steps:
        st.progress(min(1.0, m.last_step / max_steps))
    # one line of constant height under the bar (nothing below it moves): the evaluation running now with its
    # own small bar, a queued run's place in line, or how the ETA was made
    now = st.container(height=64, border=False, key="monitor_now")
    if prog.evaluating:
        now.progress(prog.eval_fraction or 0.0, text=prog.phase_text, width=420)
    elif prog.queue_text:
        now.markdown(f":material/hourglass_top: {prog.queue_text}")
    elif prog.detail and state == "running":
        now.caption(f"ETA: {prog.detail}.")
    if status.get("error"):
        st.error(f"{state}: {status['error']}")

    b1, b2, _ = st.columns([1, 1, 4])
    if b1.button("Stop", disabled=state not in ("queued", "running"), key="stop",
                 help="Checkpoint, then end the run as stopped."):
        try:
            launch.request_stop(run)
            st.toast("Stop requested: the run checkpoints and ends.")
        except RunError as e:
            st.error(str(e))
    in_flight = state in ("failed", "stopped") and launch.resume_in_flight(run)
    if b2.button("Resume", disabled=state not in ("failed", "stopped") or in_flight, key="resume",
                 help="A resume of this run is in progress." if in_flight else
                 "Continue from the last usable checkpoint."):
        try:
            _, skipped = launch.resume(run)
            st.session_state["resume_note"] = "Resumed." + (f" Skipped: {'; '.join(skipped)}" if skipped else "")
            st.rerun(scope="app")  # start the live refresh
        except RunError as e:
            st.error(str(e))

    if st.session_state.get("resume_note"):
        st.toast(st.session_state.pop("resume_note"))
    # Warnings in one always-present expander, collapsed, of constant height (opened: a fixed-height scrolling
    # box): a warning arriving changes its label, never moves the charts below it.
    warnings = m.events[m.events["name"] == "event/warning"] if len(m.events) else m.events
    with st.expander(f"Warnings ({len(warnings)})" + (f": latest at step {int(warnings['step'].iloc[-1])}"
                                                       if len(warnings) else ": none"),
                     icon=":material/warning:" if len(warnings) else ":material/check_circle:",
                     key="monitor_warnings"):
        with st.container(height=WARNINGS_PX, border=False):
            if not len(warnings):
                st.caption("No warnings: no evaluation has shown a real decline from step 0.")
            for _, w in warnings.iloc[::-1].iterrows():  # newest first
                st.warning(f"Step {int(w['step'])}: {w['message']}")
    rev = f"{run_id}:{x}"  # same uirevision across refreshes (a new x axis starts a new view): zoom, pan survive
    g1, g2 = st.columns(2)
    g1.plotly_chart(charts.loss_figure(m, x, smoothing, revision=rev), key="loss_chart")
    g2.plotly_chart(charts.mix_figure(m, x, revision=rev, unit=mix_unit), key="mix_chart")
    waiting = prog.eval_note if prog.evaluating else None  # the evaluation is running: say so, not "configure it"
    st.plotly_chart(charts.baseline_figure(m, x, revision=rev, empty_note=waiting), key="baseline_chart")
    unpaired = frames.unpaired_metrics(m, frames.DOMAIN_METRICS + frames.GENERAL_METRICS)
    st.caption("Every panel: the gain from step 0, signed so that higher is better (a perplexity drop is up; "
               "Home's domain gain and Compare's curves read the same). Bands: 95% paired bootstrap CI of the "
               "change from step 0, on the same items (the records' delta)."
               + (f" No band for {', '.join(frames.label(n) for n in unpaired)}: those records carry no paired "
                  "delta (written before paired changes were recorded)." if unpaired else ""))
    reused = frames.baseline_reuse_caption(m)
    if reused:
        st.caption(reused)
    measured = run.manifest().get("evaluations") or {}  # what each evaluator measured (the training process's)
    general = [f"{n}: {w}" for n, w in measured.items() if n in ("domain_ppl", "replay_ppl", "general_kl")]
    if general:
        st.caption("Measured on: " + "; ".join(general) + ".")
    st.plotly_chart(charts.knowledge_figure(m, x, revision=rev, empty_note=waiting), key="knowledge_chart")
    knowledge = [f"{n}: {w}" for n, w in measured.items() if n in ("knowledge_mc", "knowledge_qa")]
    if knowledge:
        st.caption("Measured on: " + "; ".join(knowledge) + ".")
    has_ewc = len(m.series("train/ewc_penalty")) > 0
    with st.expander("Learning rate, gradient norm, throughput" + (", EWC penalty" if has_ewc else "")):
        t1, t2, t3 = st.columns(3)
        t1.plotly_chart(charts.series_figure(m, ["train/lr"], "learning rate", x, rev), key="lr_chart")
        t2.plotly_chart(charts.series_figure(m, ["train/grad_norm"], "gradient norm", x, rev), key="gn_chart")
        t3.plotly_chart(charts.series_figure(m, ["train/tokens_per_second"], "tokens / s", x, rev), key="tps_chart")
        if has_ewc:  # EWC runs: the pull back toward the starting weights
            st.plotly_chart(charts.series_figure(m, ["train/ewc_penalty"], "EWC penalty", x, rev), key="ewc_chart")

    st.subheader("Recent generations")
    tab_if, tab_qa, tab_mc = st.tabs(["IFEval prompts", "Knowledge QA", "Knowledge multiple choice"])
    for tab, evaluator in ((tab_if, "ifeval"), (tab_qa, "knowledge_qa"), (tab_mc, "knowledge_mc")):
        g = compare.generations(run, evaluator)
        if not len(g):
            listed = evaluator in ((cfg.get("eval") or {}).get("evaluators") or [])
            tab.caption(waiting if waiting else f"No {evaluator} results yet" + (
                "." if listed else f" ({evaluator} is not in this run's eval.evaluators)."))
        else:
            passed = f": {int(g['passed'].fillna(False).sum())} of {len(g)} passed" if "passed" in g else ""
            tab.caption(f"Step {int(g['step'].iloc[0])}{passed}")
            tab.dataframe(g.drop(columns="step"), hide_index=True, width="stretch",
                          column_config={"passed": st.column_config.CheckboxColumn("passed")})
    other = m.events[m.events["name"] != "event/warning"] if len(m.events) else m.events
    if len(other):
        with st.expander(f"Events ({len(other)})"):
            st.dataframe(other[["step", "name", "message"]], hide_index=True)
    with st.expander("Log tail", expanded=state == "failed"):
        st.code("\n".join(log_tail(run, 40)) or "(no log yet)", language=None)
    if live and state in FINAL_STATUSES:
        st.rerun(scope="app")  # the run just ended: redraw once without the timer


live_panel(run_id)
st.html(charts.KEEP_VIEW_HTML, unsafe_allow_javascript=True)  # zoom, pan and legend choices survive refreshes
