"""Launch: start from a preset, tune model, data, mix, LR and evaluation, read the plan and its pitfalls, launch.

Widgets come from cptcore/forms.py (a config key each, its field description as help); their values become
overrides applied with RunConfig.with_overrides, the same path as `cpt train --set`. The budget table and the
checks read the run's plan (cptcore/plan.py), the numbers the run will train. No torch is imported here.

The mix sliders, the plan they change (budget table, pre-launch checks) and the actions are one fragment drawn
after every other field: a slider reruns just that part, reading every value (its own included) in that rerun.
"""
from pathlib import Path

import streamlit as st

from cptcore import checks, fmt, forms
from cptcore.config import EVALUATORS, ROLES, ConfigError, RunConfig
from cptcore.data.heldout import describe_sources
from cptcore.data.sources import DataError
from cptcore.plan import counter_for, plan as make_plan
from cptcore.runs import RunError, cpt_home, launch, sweep
from cptcore.tokenizer import download_tokenizer

st.set_page_config(page_title="Launch · CPT Studio", page_icon=":material/rocket_launch:", layout="wide")
HOME = cpt_home()
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def base_config() -> RunConfig:
    try:
        return forms.start_config(st.session_state.get("launch_recipe"), EXPERIMENTS, HOME)
    except (ConfigError, RunError) as e:
        st.error(str(e))
        return RunConfig()


def load_preset() -> None:
    """Reset every field to the chosen preset (a selectbox callback: runs before the widgets are drawn)."""
    cfg = base_config()
    for key in st.session_state.get("_launch_keys", []):
        st.session_state[key] = forms.widget_value(cfg, key)
    st.session_state.pop("_launch_values", None)


def tracked(key: str) -> None:
    """Register a widget key as a config key and give it its value: what the user set, else the preset's."""
    keys = st.session_state.setdefault("_launch_keys", [])
    if key not in keys:
        keys.append(key)
    if key not in st.session_state:  # first draw, or back from another page (widget state is per page)
        saved = st.session_state.get("_launch_values", {})
        st.session_state[key] = saved[key] if key in saved else forms.widget_value(base_config(), key)


def config_input(key: str, label: str | None = None, options: list | None = None, **kw):
    """Draw the widget forms.widget_spec chooses for a config key."""
    tracked(key)
    spec = forms.widget_spec(key, label, options, multi=isinstance(st.session_state[key], list))
    fmt = kw.pop("format", "%g")
    common = dict(key=key, help=spec.help, **kw)
    if spec.kind in ("select", "multiselect"):
        return (st.multiselect if spec.kind == "multiselect" else st.selectbox)(spec.label, spec.options, **common)
    if spec.kind == "radio":
        return st.radio(spec.label, spec.options, horizontal=True, **common)
    if spec.kind == "checkbox":
        return st.checkbox(spec.label, **common)
    if spec.kind == "int":
        return st.number_input(spec.label, min_value=spec.min_value, max_value=spec.max_value, step=1, **common)
    if spec.kind == "float":  # an optional float shows empty for None
        return st.number_input(spec.label, format=fmt, **common)
    return st.text_input(spec.label, **common)


def form_config() -> tuple[RunConfig | None, str | None]:
    """The config the widgets describe: the preset with the form's values as overrides."""
    base = base_config()
    values = {k: st.session_state[k] for k in st.session_state.get("_launch_keys", []) if k in st.session_state}
    try:
        return base.with_overrides(forms.changes(values, base)), None
    except ConfigError as e:
        return None, str(e).removeprefix("--set: ")


def steps_from_budget() -> None:
    """Turn a token budget into optimizer steps (rounded up) for the plan's tokens per step."""
    budget = st.session_state.get("token_budget") or 0
    cfg, _ = form_config()
    if budget > 0 and cfg is not None:
        st.session_state["train.max_steps"] = forms.steps_for_tokens(budget, make_plan(cfg))


def rebalance(changed: str) -> None:
    shares = {r: st.session_state[f"mix.{r}"] for r in ROLES}
    for role, value in forms.rebalance_percent(shares, changed, shares[changed]).items():
        st.session_state[f"mix.{role}"] = value


st.title("Launch a run")
st.selectbox("Start from", forms.start_points(EXPERIMENTS, HOME), key="launch_recipe", on_change=load_preset,
             help="A preset: a YAML file from experiments/ (the same files `cpt train` runs), or the config a "
             "pilot sweep ran (pilot: GROUP), which Compare's Mix law view launches with its recommended mix.")

c1, c2 = st.columns(2)
with c1:
    st.subheader("Model")
    config_input("name", "run name")
    from cptcore.config import RECIPE_NAMES

    config_input("recipe", options=list(RECIPE_NAMES))
    config_input("model.name", "model (built-in name, hub id or local path)")
    config_input("model.kind")
    config_input("train.method")
    lora = st.session_state["train.method"] == "lora"
    with st.expander("LoRA settings", expanded=lora):
        for key in ("lora.r", "lora.alpha", "lora.dropout", "lora.train_embeddings", "lora.embedding_lr_ratio"):
            config_input(key, disabled=not lora)
with c2:
    st.subheader("Data")
    for role in ROLES:
        config_input(f"data.{role}", f"{role} sources (comma separated)")
    config_input("data.seq_len", "sequence length (tokens)")

st.subheader("Training")
t1, t2, t3, t4 = st.columns(4)
with t1:
    config_input("train.lr", "peak learning rate", format="%e", step=1e-6, min_value=0.0)  # shows 5e-5
    lo, hi = checks.recommended_lr(st.session_state["model.kind"], st.session_state["train.method"])
    st.caption(f"Recommended for {st.session_state['model.kind']} / {st.session_state['train.method']}: "
               f"{fmt.lr(lo)} .. {fmt.lr(hi)}")
    if st.session_state["train.lr"] is not None and not lo <= st.session_state["train.lr"] <= hi:
        st.warning(f"LR {fmt.lr(st.session_state['train.lr'])} is outside {fmt.lr(lo)} .. {fmt.lr(hi)}")
with t2:
    config_input("train.max_steps", "steps")
    st.number_input("...or a token budget", min_value=0, step=10_000, value=None, key="token_budget",
                    on_change=steps_from_budget, placeholder="tokens",
                    help="Sets the steps to budget / tokens per step (batch size x gradient accumulation x "
                    "processes x sequence length), rounded up.")
    config_input("train.schedule")
with t3:
    config_input("train.batch_size", "batch size")
    config_input("train.grad_accum", "gradient accumulation")
with t4:
    config_input("train.warmup_ratio", "warm-up ratio", step=0.01)
    config_input("train.save_every_steps", "checkpoint every N steps")

st.subheader("Evaluation")
e1, e2, e3 = st.columns(3)
with e1:
    config_input("eval.evaluators", "evaluators", options=list(EVALUATORS))
with e2:
    config_input("eval.every_steps", "evaluate every N steps")
    config_input("eval.generate_every", "generation evals every Nth evaluation")
with e3:
    config_input("eval.ifeval_limit", "IFEval prompts")
    config_input("eval.qa_limit", "QA questions")
    config_input("eval.stop_on_warning", "stop at the first warning")

with st.expander("Forgetting mitigation and long context"):
    f1, f2, f3, f4 = st.columns(4)
    with f1:
        config_input("progressive.enabled", "progressive mix (ramp the domain share)")
        config_input("progressive.start_domain", "domain share at the start", step=0.05,
                     disabled=not st.session_state["progressive.enabled"])
    with f2:
        config_input("dynamic_mix.enabled", "dynamic mix (react to evaluations)")
        config_input("dynamic_mix.step", "share moved per decline", step=0.01,
                     disabled=not st.session_state["dynamic_mix.enabled"])
    with f3:
        config_input("ewc.enabled", "EWC (pull toward the starting weights)")
        config_input("ewc.log10_lambda", "log10 of EWC lambda", step=0.5, disabled=not st.session_state["ewc.enabled"])
    with f4:
        config_input("long_context.yarn_factor", "YaRN factor (empty: off)", step=1.0, min_value=1.0)

# --- mix, the plan it changes, and the actions: one fragment ---------------------------------------
COUNT = st.column_config.NumberColumn(format="%,d")
BUDGET_COLUMNS = {"sequences": COUNT, "input tokens trained": COUNT, "loss tokens trained (≈)": COUNT,
                  "input tokens in sources (one pass)": COUNT, "passes": st.column_config.NumberColumn(format="%.2f")}


@st.fragment
def plan_and_launch() -> None:
    """Mix sliders, then the config every widget describes, its plan, checks and the actions, in one run."""
    st.subheader("Mix (shares always sum to 100%)")
    config_input("mix.unit", "shares count")
    unit_label = {"tokens": "input tokens", "loss_tokens": "loss tokens"}[st.session_state["mix.unit"]]
    cols = st.columns(3)
    for col, role in zip(cols, ROLES):
        with col:
            tracked(f"mix.{role}")
            st.slider(f"{role} % of {unit_label}", 0.0, 100.0, step=forms.PERCENT_STEP, key=f"mix.{role}",
                      help=forms.widget_spec(f"mix.{role}").help, on_change=rebalance, args=(role,))
    st.caption(f"Sum: {sum(st.session_state[k] for k in forms.MIX_KEYS):g}%. Recipes with stages set their own "
               "mix per stage (in the same unit): the token budget below shows each stage's shares of input and "
               "of loss tokens.")

    st.session_state["_launch_values"] = {k: st.session_state[k] for k in st.session_state["_launch_keys"]}
    cfg, error = form_config()
    if cfg is None:
        st.error(f"Invalid settings: {error}")
        return
    counter = counter_for(cfg)  # the tokenizer only (no torch); counts cached per source and tokenizer
    try:
        try:
            with st.spinner("Counting tokens with the model's tokenizer..."):
                plan = make_plan(cfg, count=counter)
        except DataError as e:  # a source that cannot be read: say so, and show the plan without counts
            st.error(f"Data problem: {e}")
            plan = make_plan(cfg)
    except ConfigError as e:
        st.error(f"Invalid settings: {e}")
        return

    st.subheader("Token budget (the plan)")
    if counter is None:
        st.info("Passes over the data need the model's tokenizer, which is not on disk yet.")
        if st.button("Download the tokenizer", help="Fetches the tokenizer files only (a few MB, no weights)."):
            if download_tokenizer(cfg.model) is None:
                st.error(f"Cannot download the tokenizer of {cfg.model.name!r} (offline, or not a hub model).")
            else:
                st.rerun()
    st.dataframe(forms.budget_rows(plan), hide_index=True, column_config=BUDGET_COLUMNS, placeholder="—")
    st.caption(f"{plan.steps} steps x {plan.seqs_per_step} sequences ({cfg.train.batch_size} batch x "
               f"{cfg.train.grad_accum} accumulation x {plan.processes} process{'es' if plan.processes > 1 else ''}) "
               f"x {plan.seq_len} tokens = {fmt.tokens(plan.tokens)} input tokens. Loss tokens: chat data trains on "
               "assistant tokens only, so its share of the loss is smaller than its share of the input (≈: from the "
               f"sources' loss fraction). The scheduler targets shares of {unit_label}. Same numbers as `cpt plan`."
               + (" Dynamic mix: shares move with the evaluations; this is where they start." if plan.online else ""))

    st.subheader("Pre-launch check")
    findings = checks.check_config(cfg, plan)
    if not findings:
        st.success("No known pitfalls.")
    for f in findings:
        (st.warning if f.level == "warning" else st.info)(f"**{f.message}** {f.reason}")

    st.subheader("What the evaluations measure")
    try:
        measured = describe_sources(cfg)
    except (ConfigError, DataError) as e:
        measured = {}
        st.error(f"Evaluation data problem: {e}")
    for name, where in measured.items():
        st.markdown(f"- **{name}**: {where}")
    if any(where.startswith("not run: no QA") for where in measured.values()):
        st.info("Knowledge metrics need questions about your documents. Generate them on the Data page, then train "
                "on NAME.qa_train.jsonl as data.qa: its NAME.qa_test.jsonl is picked up for evaluation.")
        if st.button("Generate QA on the Data page", key="to_data_qa"):
            st.switch_page("views/4_Data.py")

    # --- actions ------------------------------------------------------------------------------------
    b1, b2, b3 = st.columns(3)
    if b1.button("Launch", type="primary", key="launch"):
        try:
            run = launch.launch(cfg, HOME)
        except (ConfigError, DataError, OSError) as e:
            st.error(f"Launch failed: {e}")
        else:
            st.session_state["monitor_run"] = run.id
            st.switch_page("views/2_Monitor.py")
    b2.download_button("Save as YAML", cfg.to_yaml(), file_name=forms.config_file_name(cfg.name), mime="text/yaml",
                       help="The same file `cpt train` runs.", on_click="ignore")
    if b2.button("Save to CPT_HOME/configs", key="save_yaml"):
        path = cfg.save(HOME / "configs" / forms.config_file_name(cfg.name))
        st.success(f"Saved {path}. Run it with: cpt train {path}")
    with b3.expander("Queue sweep (grid over mix and LR, or a pilot for the mix law)"):
        kind = st.radio("kind", ["grid", "pilot"], horizontal=True, key="sweep_kind",
                        format_func={"grid": "grid: shares x LRs", "pilot": "pilot: one share (mix law)"}.get,
                        help="A pilot varies one share and nothing else; Compare's Mix law view fits a law on it "
                        "and recommends a share within a forgetting budget (same as cpt sweep --pilot).")
        role = st.selectbox("vary the share of", ["replay", "domain", "instruct"], key="sweep_role")
        pilot = kind == "pilot"
        shares = st.text_input("shares", "0, 0.05, 0.1, 0.2, 0.4" if pilot else "0.05, 0.10, 0.25",
                               key="pilot_shares" if pilot else "sweep_shares",
                               help="Comma-separated fractions; the other two roles are rescaled to keep the sum 1."
                               + (" At least 4 for a pilot; 5 are better." if pilot else ""))
        lrs = None if pilot else st.text_input("learning rates", f"{fmt.lr(cfg.train.lr)}, {fmt.lr(cfg.train.lr * 2)}",
                                               key="sweep_lrs")
        if st.button("Queue pilot" if pilot else "Queue sweep", key="sweep"):
            try:
                if pilot:
                    group, queued = sweep.sweep(cfg, {}, HOME, pilot=sweep.parse_pilot(f"{role}={shares}"))
                else:
                    grid = sweep.parse_grid([f"mix.{role}={shares}", f"train.lr={lrs}"])
                    group, queued = sweep.sweep(cfg, grid, HOME)
            except (ConfigError, RunError, ValueError) as e:
                st.error(str(e))
            else:
                st.success(f"Queued {len(queued)} runs as group {group}; they run one after another."
                           + (" Compare's Mix law view fits them as they finish." if pilot else ""))


plan_and_launch()
