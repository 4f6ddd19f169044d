"""CPT Studio: the navigation and the Home page (the runs table).  Start it with:  streamlit run app.py

Pages render; cptcore computes (frames, charts, checks) and runs things (cptcore.runs: launch, liveness, table).
The page files live in views/ (views/1_Launch.py ...; st.switch_page and the URLs /Launch, /Monitor use them), not
in pages/: Streamlit's own pages/ discovery would then compete with st.navigation, and a page opened by its URL
would list the entry script as "app" in the sidebar instead of Home (tests/test_browser.py checks it).
"""
import streamlit as st

from cptcore.runs import Run, cpt_home, list_runs, newest_first
from cptcore.runs.liveness import refresh_all
from cptcore.runs.table import EXTRA_COLUMNS, home_columns, runs_table as build_runs_table

st.set_page_config(page_title="CPT Studio", page_icon=":material/monitoring:", layout="wide")
HOME = cpt_home()

COLUMNS = {  # Home's column labels and units; the numbers come from cptcore/runs/table.py
    "run": st.column_config.TextColumn("run", width="medium",  # a long name must not push the rest off-screen
                                       help="The run's id: creation time, name and a short hash."),
    "status": st.column_config.TextColumn("status"),
    "domain gain": st.column_config.NumberColumn(
        "domain gain", format="%+.1f", help="What the run learned: the latest domain perplexity drop vs step 0 on "
        "the same documents, in % of the step-0 perplexity, higher is better (or, without domain_ppl, the QA "
        "accuracy change in points). The CI column (More columns) names the metric and unit."),
    "IF change": st.column_config.NumberColumn(
        "IF change", format="%+.1f", help="Instruction following kept: the latest IFEval prompt-level strict vs "
        "step 0 on the same prompts, in points, higher is better (negative: it forgot)."),
    "general change": st.column_config.NumberColumn(
        "general ppl change", format="%+.1f", help="General text kept: the latest general (replay) perplexity "
        "drop vs step 0 on the same documents, in % of the step-0 perplexity, higher is better (negative: the "
        "model got worse at general text)."),
    "warnings": st.column_config.NumberColumn("warnings", format="%d", help="Warnings the evaluations raised "
                                              "(Monitor lists them)."),
    "mix": st.column_config.TextColumn(
        "mix %", help="The whole run's planned shares of input tokens, domain/replay/instruct, every stage "
        "included (from its plan: `cpt plan`, which also shows the shares of loss tokens)."),
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
    "step": st.column_config.NumberColumn("step", format="%,d"),
    "max_steps": st.column_config.NumberColumn("steps planned", format="%,d"),
    "tokens": st.column_config.NumberColumn("tokens seen", format="%,d"),
    "time": st.column_config.TextColumn("run time", help="From start to end (so far, while running)."),
    "lr": st.column_config.TextColumn("LR", help="Peak learning rate (train.lr)."),
    "domain gain CI": st.column_config.TextColumn(
        "domain gain 95% CI", help="95% paired bootstrap CI of that change (same items as step 0), with the metric "
        "and unit. 'no paired CI': the record carries no paired delta (a run from before they were recorded)."),
    "IF change CI": st.column_config.TextColumn("IF change 95% CI", help="95% paired bootstrap CI of the IF change."),
    "general change CI": st.column_config.TextColumn(
        "general ppl change 95% CI", help="95% paired bootstrap CI of the general perplexity change."),
    "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
}


@st.fragment(run_every=5)
def live_runs_table(columns: list[str]) -> None:
    """The table while runs are queued or running: it refreshes by itself."""
    runs_table(columns)


def runs_table(columns: list[str]) -> None:
    table = build_runs_table(refresh_all(HOME))  # refresh marks runs whose process died as failed
    st.dataframe(table, hide_index=True, width="stretch", column_order=columns, column_config=COLUMNS,
                 placeholder="—")


def home() -> None:
    st.title("CPT Studio")
    st.caption(f"Continued pre-training runs in `{HOME.resolve()}` (set CPT_HOME to use another folder).")
    runs = list_runs(HOME)
    if not runs:
        st.info("No runs yet. Open **Launch** in the sidebar and press **Launch** to start the demo "
                "(the default model, data and mix are preselected).\n\n"
                "Or from a shell: `cpt launch experiments/demo.yaml`, then come back here.")
        st.page_link("views/1_Launch.py", label="Go to Launch", icon=":material/rocket_launch:")
        return

    extra = st.multiselect("More columns", EXTRA_COLUMNS, key="home_columns", placeholder="progress, tokens, LR...",
                           format_func=lambda c: COLUMNS[c]["label"] if c in COLUMNS else c,
                           help="The table shows what decides between runs; add the other columns here.")
    active = any(r.status().get("status") in ("queued", "running") for r in runs)
    (live_runs_table if active else runs_table)(home_columns(extra))

    ids = newest_first(runs)
    selected = st.multiselect("Select runs", ids, key="home_selected",
                              default=[i for i in st.session_state.get("selected_runs", []) if i in ids],
                              help="Pick one run to monitor, or several to compare.")
    st.session_state["selected_runs"] = selected
    c1, c2, _ = st.columns([1, 1, 4])
    if c1.button("Open in Monitor", disabled=len(selected) < 1, key="open_monitor"):
        st.session_state["monitor_run"] = selected[0]
        st.switch_page("views/2_Monitor.py")
    if c2.button("Compare", disabled=len(selected) < 2, key="open_compare"):
        st.session_state["compare_runs"] = selected
        st.switch_page("views/3_Compare.py")

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


st.navigation([
    st.Page(home, title="Home", icon=":material/home:", default=True),
    st.Page("views/1_Launch.py", title="Launch", icon=":material/rocket_launch:"),
    st.Page("views/2_Monitor.py", title="Monitor", icon=":material/monitoring:"),
    st.Page("views/3_Compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("views/4_Data.py", title="Data", icon=":material/dataset:"),
    st.Page("views/5_Advisor.py", title="Advisor", icon=":material/help:"),
]).run()
