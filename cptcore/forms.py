"""The Launch form without Streamlit: RunConfig fields -> widget specs, form values -> config overrides, and the
plan's numbers as table rows. views/1_Launch.py draws what this returns.

Every widget's key is the config key it sets (`train.lr`) and its help is that field's description; the form's
values become {"section.key": value} changes applied with RunConfig.with_overrides, the same path as
`cpt train --set`. Presets are the YAML files under experiments/ (a recipe is a stage plan: cptcore/recipes.py).
Imports no torch and no streamlit.
"""
from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ROLES, MixConfig, RunConfig
from .plan import Plan

MIX_KEYS = tuple(f"mix.{r}" for r in ROLES)
DATA_KEYS = tuple(f"data.{r}" for r in ROLES)
PERCENT_STEP = 0.5  # mix sliders move in half points: exact in binary floating point, so sums are exactly 100


@dataclass
class WidgetSpec:
    """What to draw for one config key."""
    key: str
    kind: str  # select, multiselect, radio, checkbox, int, float, text, percent
    label: str
    help: str
    options: list | None = None
    min_value: float | None = None
    max_value: float | None = None


def field_info(key: str):
    section, _, name = key.rpartition(".")
    cls = RunConfig.model_fields[section].annotation if section else RunConfig
    return cls.model_fields[name]


def widget_spec(key: str, label: str | None = None, options: list | None = None, multi: bool = False) -> WidgetSpec:
    """The widget for a config key, chosen from the field's type, with its bounds and description as help."""
    info = field_info(key)
    label = label or key.rpartition(".")[2].replace("_", " ")
    help_ = form_help(info.description or "")
    ann = info.annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if key in MIX_KEYS:
        return WidgetSpec(key, "percent", label, help_, min_value=0.0, max_value=100.0)
    if options is not None:
        return WidgetSpec(key, "multiselect" if multi else "select", label, help_, options=list(options))
    if typing.get_origin(ann) is typing.Literal:
        opts = list(typing.get_args(ann))
        return WidgetSpec(key, "radio" if len(opts) <= 3 else "select", label, help_, options=opts)
    if ann is bool:
        return WidgetSpec(key, "checkbox", label, help_)
    if ann is int or args == [int]:
        lo = next((m.ge if getattr(m, "ge", None) is not None else m.gt + 1 for m in info.metadata
                   if getattr(m, "ge", None) is not None or getattr(m, "gt", None) is not None), None)
        hi = next((m.le for m in info.metadata if getattr(m, "le", None) is not None), None)
        return WidgetSpec(key, "int", label, help_, min_value=lo, max_value=hi)
    if ann is float or args == [float]:
        return WidgetSpec(key, "float", label, help_)
    return WidgetSpec(key, "text", label, help_)


def form_help(description: str) -> str:
    """A field description as the form's help: an unset optional value (None in the config) is an empty box."""
    text = re.sub(r"(^|[.:;]\s+)None\b", lambda m: f"{m.group(1)}Empty", description)
    return re.sub(r"\bNone\b", "empty", text)


def widget_value(cfg: RunConfig, key: str) -> Any:
    """What a widget shows for a config value (mix in %, a role's sources as comma-separated paths)."""
    value = cfg.to_dict()
    for part in key.split("."):
        value = value[part]
    if key in MIX_KEYS:
        return round(value * 100 / PERCENT_STEP) * PERCENT_STEP
    if key in DATA_KEYS:
        return ", ".join(s["path"] for s in value)
    return value


def changes(values: dict[str, Any], base: RunConfig) -> dict[str, Any]:
    """Form values -> {"section.key": value} overrides of the base config (mix from %, sources from paths;
    a role's sources left as they were keep the preset's source settings: format, text_field, ...)."""
    out = {}
    for key, value in values.items():
        if key in MIX_KEYS:
            value = value / 100
        elif key in DATA_KEYS:
            paths = [p.strip() for p in str(value).split(",") if p.strip()]
            if paths == [s.path for s in getattr(base.data, key.split(".")[1])]:
                continue
            value = paths
        out[key] = value
    return out


def rebalance_percent(shares: dict[str, float], changed: str, value: float) -> dict[str, float]:
    """Set one role's slider and rescale the other two in proportion (MixConfig.rebalanced), in half points
    that sum to exactly 100."""
    units = round(100 / PERCENT_STEP)
    v = min(units, max(0, round(value / PERCENT_STEP)))
    others = [r for r in ROLES if r != changed]
    rest = units - v
    if not sum(shares.get(r, 0) for r in others):  # the others were at 0 (one slider at 100): split evenly
        w = [1.0, 1.0]
    else:
        target = MixConfig(**_as_fractions(shares)).rebalanced({changed: v / units})
        w = [getattr(target, r) for r in others]
    first = round(rest * w[0] / sum(w)) if sum(w) else (rest + 1) // 2
    return {changed: v * PERCENT_STEP, others[0]: first * PERCENT_STEP, others[1]: (rest - first) * PERCENT_STEP}


def _as_fractions(shares: dict[str, float]) -> dict[str, float]:
    total = sum(shares.get(r, 0) for r in ROLES) or 1
    return {r: shares.get(r, 0) / total for r in ROLES}


def steps_for_tokens(tokens: int, plan: Plan) -> int:
    """Optimizer steps that train at least `tokens` tokens (every process's batch counts)."""
    return max(1, -(-int(tokens) // plan.tokens_per_step))


def budget_rows(plan: Plan) -> list[dict]:
    """The plan's token budget, one row per stage and role: what the Launch page's table shows. Shares in both
    units; the loss share is an estimate from the sources' loss fraction (the manifest has the exact count)."""
    rows = []
    for s in plan.stages:
        for role, b in s.roles.items():
            loss = None if s.loss_shares is None else round(100 * s.loss_shares[role], 2)
            rows.append({"stage": f"{s.index + 1}. {s.name}", "steps": f"{s.first_step + 1}-{s.first_step + s.steps}",
                         "role": role, "share of input tokens %": round(100 * s.shares[role], 2),
                         "share of loss tokens % (≈)": loss, "sequences": b.sequences,
                         "input tokens trained": b.tokens, "loss tokens trained (≈)": b.loss_tokens,
                         "input tokens in sources (one pass)": b.available,
                         "passes": None if b.passes is None else round(b.passes, 2)})
    return rows


def presets(experiments: Path) -> dict[str, Path | None]:
    """The YAML presets under experiments/ (demo first), then the built-in defaults."""
    found = {str(p.relative_to(experiments)): p for p in
             sorted(experiments.glob("*.yaml")) + sorted(experiments.glob("recipes/*.yaml"))}
    first = {"demo.yaml": found.pop("demo.yaml")} if "demo.yaml" in found else {}
    return first | found | {"built-in defaults": None}


def config_file_name(run_name: str) -> str:
    """A YAML file name from a run name the user typed (no folders, no leading dots)."""
    return (re.sub(r"[^A-Za-z0-9_.-]+", "-", run_name).strip(".-")[:80] or "run") + ".yaml"


ADVICE_KEYS = ("model.kind", "recipe", "train.method", "train.lr", *MIX_KEYS)


def advice_form(overrides: dict[str, Any], recipe: str, experiments: Path) -> dict[str, Any]:
    """What the Advisor's "Use these settings" puts in the Launch page's session state: the preset of the advised
    recipe (experiments/recipes/<recipe>.yaml, else the first preset) and the advice's values as the form's
    values (the Launch page's _launch_values); every other field keeps the preset's value."""
    options = presets(experiments)
    preset = f"recipes/{recipe}.yaml" if f"recipes/{recipe}.yaml" in options else next(iter(options))
    base = RunConfig.load(options[preset]) if options[preset] else RunConfig()
    cfg = base.with_overrides({k: v for k, v in overrides.items() if k in ADVICE_KEYS})
    return {"launch_recipe": preset, "_launch_values": {k: widget_value(cfg, k) for k in ADVICE_KEYS}}



PILOT_PREFIX = "pilot: "  # a "Start from" choice that is a pilot group's base config (CPT_HOME/groups/<group>)


def start_points(experiments: Path, home: Path) -> list[str]:
    """The Launch page's "Start from" choices: the presets, then every pilot group's base config (newest first),
    so a mix recommended from a pilot launches with exactly the config the pilots ran."""
    from .runs.groups import list_groups

    return list(presets(experiments)) + [PILOT_PREFIX + g for g in list_groups(home, "pilot")]


def start_config(choice: str | None, experiments: Path, home: Path) -> RunConfig:
    """The config a "Start from" choice names (a preset file, a pilot group's base config, else the defaults)."""
    if choice and choice.startswith(PILOT_PREFIX):
        from .runs.groups import read_group

        return RunConfig.from_dict(read_group(choice.removeprefix(PILOT_PREFIX), home)["config"])
    path = presets(experiments).get(choice)
    return RunConfig.load(path) if path else RunConfig()


def mixlaw_form(group: str, mix: dict[str, float], name: str) -> dict[str, Any]:
    """What the Mix law view's "Launch this mix" puts in the Launch page's session state: the pilot's base config
    as the starting point and the recommended mix (and a run name that says so) as the form's values."""
    values = {f"mix.{r}": round(100 * float(mix[r]) / PERCENT_STEP) * PERCENT_STEP for r in ROLES}
    drift = 100 - sum(values.values())  # the sliders' half-point grid: the largest share absorbs the rounding
    values[max(values, key=values.get)] += drift
    return {"launch_recipe": PILOT_PREFIX + group, "_launch_values": values | {"name": name}}
