"""Launch: pick a recipe, tune model, data, mix, LR and evaluation, check for pitfalls, then launch.

Every widget's key is the config key it sets (`train.lr`), its help is that field's description, and the
config is rebuilt from the widgets with RunConfig.with_overrides — the same path as `cpt train --set`.
"""
import typing
from pathlib import Path

import streamlit as st

from cptcore import checks, launch
from cptcore.config import EVALUATORS, ROLES, ConfigError, RunConfig
from cptcore.runs import cpt_home

st.set_page_config(page_title="Launch · CPT Studio", page_icon="🚀", layout="wide")
HOME = cpt_home()
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
MIX_KEYS = [f"mix.{r}" for r in ROLES]
DATA_KEYS = [f"data.{r}" for r in ROLES]


def recipes() -> dict[str, Path | None]:
    found = {str(p.relative_to(EXPERIMENTS)): p for p in
             sorted(EXPERIMENTS.glob("*.yaml")) + sorted(EXPERIMENTS.glob("recipes/*.yaml"))}
    first = {"demo.yaml": found.pop("demo.yaml")} if "demo.yaml" in found else {}
    return first | found | {"built-in defaults": None}


def base_config() -> RunConfig:
    path = recipes().get(st.session_state.get("launch_recipe"))
    try:
        return RunConfig.load(path) if path else RunConfig()
    except ConfigError as e:
        st.error(str(e))
        return RunConfig()


def field(key: str):
    section, _, name = key.rpartition(".")
    cls = RunConfig.model_fields[section].annotation if section else RunConfig
    return cls.model_fields[name]


def widget_value(cfg: RunConfig, key: str):
    """What a widget shows for a config value (mix in %, a role's sources as comma-separated paths)."""
    value = cfg.to_dict()
    for part in key.split("."):
        value = value[part]
    if key in MIX_KEYS:
        return round(value * 200) / 2
    if key in DATA_KEYS:
        return ", ".join(s["path"] for s in value)
    return value


def load_recipe() -> None:
    """Reset every field to the chosen recipe (a selectbox callback: runs before the widgets are drawn)."""
    cfg = base_config()
    for key in st.session_state.get("_launch_keys", []):
        st.session_state[key] = widget_value(cfg, key)
    st.session_state.pop("_launch_values", None)


def tracked(key: str) -> None:
    """Register a widget key as a config key and give it its value: what the user set, else the recipe's."""
    keys = st.session_state.setdefault("_launch_keys", [])
    if key not in keys:
        keys.append(key)
    if key not in st.session_state:  # first draw, or back from another page (widget state is per page)
        saved = st.session_state.get("_launch_values", {})
        st.session_state[key] = saved[key] if key in saved else widget_value(base_config(), key)


def config_input(key: str, label: str | None = None, options: list | None = None, **kw):
    """A widget chosen from the field's type, with its bounds and its description as help."""
    info = field(key)
    tracked(key)
    label = label or key.rpartition(".")[2].replace("_", " ")
    ann = info.annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    fmt = kw.pop("format", "%g")
    common = dict(key=key, help=info.description, **kw)
    if options is not None:
        multi = isinstance(st.session_state[key], list)
        return (st.multiselect if multi else st.selectbox)(label, options, **common)
    if typing.get_origin(ann) is typing.Literal:
        opts = list(typing.get_args(ann))
        return (st.radio(label, opts, horizontal=True, **common) if len(opts) <= 3 else
                st.selectbox(label, opts, **common))
    if ann is bool:
        return st.checkbox(label, **common)
    if ann is int or args == [int]:
        lo = next((m.ge if getattr(m, "ge", None) is not None else m.gt + 1 for m in info.metadata
                   if getattr(m, "ge", None) is not None or getattr(m, "gt", None) is not None), None)
        hi = next((m.le for m in info.metadata if getattr(m, "le", None) is not None), None)
        return st.number_input(label, min_value=lo, max_value=hi, step=1, **common)
    if ann is float or args == [float]:  # an optional float shows empty for None
        return st.number_input(label, format=fmt, **common)
    return st.text_input(label, **common)


def steps_from_budget() -> None:
    """Turn a token budget into optimizer steps (rounded up) for the current batch shape."""
    budget = st.session_state.get("token_budget") or 0
    per_step = (st.session_state["train.batch_size"] * st.session_state["train.grad_accum"]
                * st.session_state["data.seq_len"])
    if budget > 0 and per_step > 0:
        st.session_state["train.max_steps"] = max(1, -(-int(budget) // per_step))


def rebalance(changed: str) -> None:
    shares = {r: st.session_state[f"mix.{r}"] for r in ROLES}
    for role, value in checks.rebalance_mix(shares, changed, shares[changed]).items():
        st.session_state[f"mix.{role}"] = value


st.title("Launch a run")
names = list(recipes())
st.selectbox("Start from", names, key="launch_recipe", on_change=load_recipe,
             help="A YAML recipe from experiments/ (the same files `cpt train` runs).")
base = base_config()

c1, c2 = st.columns(2)
with c1:
    st.subheader("Model")
    config_input("name", "run name")
    if "recipe" in RunConfig.model_fields:  # training recipes (cpt, pit, ...) where this version has them
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

st.subheader("Mix (share of trained tokens, always 100%)")
cols = st.columns(3)
for col, role in zip(cols, ROLES):
    with col:
        tracked(f"mix.{role}")
        st.slider(f"{role} %", 0.0, 100.0, step=0.5, key=f"mix.{role}", help=field(f"mix.{role}").description,
                  on_change=rebalance, args=(role,))
st.caption(f"Sum: {sum(st.session_state[k] for k in MIX_KEYS):g}%")

st.subheader("Training")
t1, t2, t3, t4 = st.columns(4)
with t1:
    config_input("train.lr", "peak learning rate", format="%.2e", step=1e-6, min_value=0.0)
with t2:
    config_input("train.max_steps", "steps")
    st.number_input("...or a token budget", min_value=0, step=10_000, value=None, key="token_budget",
                    on_change=steps_from_budget, placeholder="tokens",
                    help="Sets the steps to budget / (batch size x gradient accumulation x sequence length), "
                    "rounded up.")
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

# --- the config the widgets describe ------------------------------------------------------------
keys = st.session_state["_launch_keys"]
st.session_state["_launch_values"] = {k: st.session_state[k] for k in keys}
raw = base.to_dict()
for key in keys:
    value = st.session_state[key]
    if key in MIX_KEYS:
        value = value / 100
    elif key in DATA_KEYS:
        paths = [p.strip() for p in str(value).split(",") if p.strip()]
        if paths == [s.path for s in getattr(base.data, key.split(".")[1])]:
            continue  # unchanged: keep the recipe's source settings (format, text_field, ...)
        value = [{"path": p} for p in paths]
    *parents, last = key.split(".")
    node = raw
    for p in parents:
        node = node[p]
    node[last] = value
try:
    cfg, error = RunConfig.from_dict(raw, source="settings"), None
except ConfigError as e:
    cfg, error = None, str(e).removeprefix("settings: ")

if cfg is None:
    st.error(f"Invalid settings: {error}")
    st.stop()

lo, hi = checks.recommended_lr(cfg.model.kind, cfg.train.method)
with t1:
    st.caption(f"Recommended for {cfg.model.kind} / {cfg.train.method}: {lo:g} .. {hi:g}")
    if not lo <= cfg.train.lr <= hi:
        st.warning(f"LR {cfg.train.lr:g} is outside {lo:g} .. {hi:g}")


# --- token budget -------------------------------------------------------------------------------
@st.cache_data(show_spinner="Counting tokens with the model's tokenizer...", max_entries=16)
def count_tokens(cfg_json: str) -> tuple[dict, dict]:
    return checks.source_tokens(RunConfig.model_validate_json(cfg_json))


count_key = cfg.model_dump_json(include={"model", "data", "mix"})
available, counts = None, None
if checks.tokenizer_is_local(cfg.model.name) or st.session_state.get("count_" + count_key):
    try:
        counts, count_errors = count_tokens(cfg.model_dump_json())
        available = {r: sum(e["tokens"] for e in entries) for r, entries in counts.items()}
        for role, message in count_errors.items():
            st.error(f"{role} data: {message}")
    except Exception as e:  # noqa: BLE001 - a data or tokenizer problem is shown, not raised
        st.error(f"Cannot count tokens: {e}")
elif st.button("Count tokens", help="Loads the model's tokenizer (the first time this may download the model)."):
    st.session_state["count_" + count_key] = True
    st.rerun()

st.subheader("Token budget")
budget = checks.token_budget(cfg, available)
st.dataframe([{"role": r, "share %": 100 * b["share"], "tokens trained": b["tokens"],
               "tokens in sources (one pass)": b["available"],
               "passes": None if b["passes"] is None else round(b["passes"], 2)} for r, b in budget.items()],
             hide_index=True)
st.caption(f"{cfg.train.max_steps} steps x {cfg.train.batch_size} x {cfg.train.grad_accum} x {cfg.data.seq_len} "
           f"tokens = {cfg.train.max_steps * cfg.train.tokens_per_step(cfg.data.seq_len):,} tokens")
if counts:
    with st.expander("Sources"):
        st.dataframe([{"role": r, "source": e["path"], "format": e["format"], "rows": e["rows"], "tokens": e["tokens"]}
                      for r, entries in counts.items() for e in entries], hide_index=True)

st.subheader("Pre-launch check")
findings = checks.check_config(cfg, available)
if not findings:
    st.success("No known pitfalls.")
for f in findings:
    (st.warning if f.level == "warning" else st.info)(f"**{f.message}** {f.reason}")

# --- actions ------------------------------------------------------------------------------------
b1, b2, b3 = st.columns(3)
if b1.button("Launch", type="primary", key="launch"):
    try:
        run = launch.launch(cfg, HOME)
    except (ConfigError, OSError) as e:
        st.error(f"Launch failed: {e}")
    else:
        st.session_state["monitor_run"] = run.id
        st.switch_page("pages/2_Monitor.py")
b2.download_button("Save as YAML", cfg.to_yaml(), file_name=checks.config_file_name(cfg.name), mime="text/yaml",
                   help="The same file `cpt train` runs.", on_click="ignore")
if b2.button("Save to CPT_HOME/configs", key="save_yaml"):
    path = cfg.save(HOME / "configs" / checks.config_file_name(cfg.name))
    st.success(f"Saved {path}. Run it with: cpt train {path}")
with b3.expander("Queue sweep (grid over mix and LR)"):
    role = st.selectbox("vary the share of", ["replay", "domain", "instruct"], key="sweep_role")
    shares = st.text_input("shares", "0.05, 0.10, 0.25", key="sweep_shares",
                           help="Comma-separated fractions; the other two roles are rescaled to keep the sum 1.")
    lrs = st.text_input("learning rates", f"{cfg.train.lr:g}, {cfg.train.lr * 2:g}", key="sweep_lrs")
    if st.button("Queue sweep", key="sweep"):
        try:
            grid = launch.parse_grid([f"mix.{role}={shares}", f"train.lr={lrs}"])
            group, queued = launch.sweep(cfg, grid, HOME)
        except (ConfigError, ValueError) as e:
            st.error(str(e))
        else:
            st.success(f"Queued {len(queued)} runs as group {group}; they run one after another.")
