"""CPT Studio home: the runs table.  Start it with:  streamlit run app.py

Pages render; cptcore computes (frames, charts, checks) and runs things (cptcore.runs: launch, liveness, table).
"""
import streamlit as st

from cptcore.runs import Run, cpt_home, list_runs, newest_first
from cptcore.runs.liveness import refresh_all
from cptcore.runs.table import runs_table as build_runs_table

st.set_page_config(page_title="CPT Studio", page_icon="📈", layout="wide")
HOME = cpt_home()

st.title("CPT Studio")
st.caption(f"Continued pre-training runs in `{HOME.resolve()}` (set CPT_HOME to use another folder).")

runs = list_runs(HOME)
if not runs:
    st.info("No runs yet. Open **Launch** in the sidebar and press **Launch** to start the demo "
            "(the default model, data and mix are preselected).\n\n"
            "Or from a shell: `cpt launch experiments/demo.yaml`, then come back here.")
    st.page_link("pages/1_Launch.py", label="Go to Launch", icon="🚀")
    st.stop()

active = any(r.status().get("status") in ("queued", "running") for r in runs)


@st.fragment(run_every=5 if active else None)
def runs_table() -> None:
    """The table refreshes by itself while runs are queued or running."""
    table = build_runs_table(refresh_all(HOME))  # refresh marks runs whose process died as failed
    st.dataframe(
        table, hide_index=True, width="stretch",
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
            "lr": st.column_config.NumberColumn("LR", format="%.1e"),
            "mix": st.column_config.TextColumn(
                "mix % of input tokens (domain/replay/instruct)", help="The whole run's planned shares of "
                "input tokens, every stage included (from its plan: `cpt plan`, which also shows the shares of "
                "loss tokens)."),
            "domain gain": st.column_config.NumberColumn(
                "domain gain", format="%+.1f", help="Latest domain perplexity drop vs step 0 on the same documents, "
                "in % of the step-0 perplexity, higher is better (or, without domain_ppl, the QA multiple-choice "
                "accuracy change in points). The CI column names the metric and unit."),
            "domain gain CI": st.column_config.TextColumn(
                "domain gain 95% CI", help="95% paired bootstrap CI of that change (same items as step 0). "
                "'no paired CI': the record carries no paired delta (a run from before they were recorded)."),
            "IF change": st.column_config.NumberColumn(
                "IF change", format="%+.1f", help="Latest IFEval prompt-level strict vs step 0 on the same "
                "prompts, in points, higher is better."),
            "IF change CI": st.column_config.TextColumn(
                "IF change 95% CI", help="95% paired bootstrap CI of the IF change, in points."),
            "tokens": st.column_config.NumberColumn("tokens seen", format="%d"),
            "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
        })


runs_table()

ids = newest_first(runs)
selected = st.multiselect("Select runs", ids, default=[i for i in st.session_state.get("selected_runs", []) if i in ids],
                          help="Pick one run to monitor, or several to compare.")
st.session_state["selected_runs"] = selected
c1, c2, _ = st.columns([1, 1, 4])
if c1.button("Open in Monitor", disabled=len(selected) < 1, key="open_monitor"):
    st.session_state["monitor_run"] = selected[0]
    st.switch_page("pages/2_Monitor.py")
if c2.button("Compare", disabled=len(selected) < 2, key="open_compare"):
    st.session_state["compare_runs"] = selected
    st.switch_page("pages/3_Compare.py")

with st.expander("Tags and note"):
    run_id = st.selectbox("Run", ids, key="meta_run")
    run = Run.open(HOME, run_id)
    meta = run.meta()
    tags = st.text_input("Tags (comma separated)", value=", ".join(meta.get("tags", [])), key=f"tags_{run_id}")
    note = st.text_area("Note", value=meta.get("note", ""), key=f"note_{run_id}")
    if st.button("Save tags and note", key="save_meta"):
        run.set_tags([t.strip() for t in tags.split(",") if t.strip()])
        run.set_note(note.strip())
        st.success(f"Saved for {run_id}.")
