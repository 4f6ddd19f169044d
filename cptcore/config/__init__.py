"""RunConfig: the one contract between the dashboard's forms, YAML files, the `cpt` CLI and the trainer.

Field descriptions are user-facing help: the dashboard shows them next to each widget. Imports no torch, so
the dashboard starts fast. What a config trains (stages, steps, tokens per role) is cptcore/plan.py's job.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from ..files import atomic_write
from .recipe import (RECIPE_NAMES, DynamicMixConfig, EWCConfig, LongContextConfig, ProgressiveConfig,
                     RecipeOptionsConfig, StageConfig, StageDataConfig)
from .sections import (EVALUATORS, GENERATION_EVALUATORS, ROLES, ConfigError, DataConfig, EvalConfig, LaunchConfig,
                       LoraConfig, MixConfig, ModelConfig, SourceConfig, TrainConfig, _Section, as_source, as_sources,
                       evaluator_names)

__all__ = ["RunConfig", "ConfigError", "ROLES", "EVALUATORS", "GENERATION_EVALUATORS", "RECIPE_NAMES", "ModelConfig",
           "SourceConfig", "DataConfig", "MixConfig", "TrainConfig", "LoraConfig", "EvalConfig", "LaunchConfig",
           "StageConfig", "StageDataConfig", "RecipeOptionsConfig", "ProgressiveConfig", "DynamicMixConfig",
           "EWCConfig", "LongContextConfig", "as_source", "as_sources", "evaluator_names", "parse_sets", "override", "help_text",
           "format_validation_error"]


class RunConfig(_Section):
    """One experiment: model, data, mix, training, adapters, evaluation."""
    name: str = Field("run", description="A short name for the run (shown in the runs table).")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    mix: MixConfig = Field(default_factory=MixConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    recipe: str = Field(
        "cpt", description="Training recipe: cpt, cpt_then_it, pit, pit_plus or knowledge_instruct "
        "(`cpt recipes` describes them and prints a config's stages).",
    )
    stages: list[StageConfig] | None = Field(
        None, description="Explicit stages, in order; they replace the recipe's stages. Budgets are shares "
        "of train.max_steps.",
    )
    recipe_options: RecipeOptionsConfig = Field(default_factory=RecipeOptionsConfig)
    progressive: ProgressiveConfig = Field(default_factory=ProgressiveConfig)
    dynamic_mix: DynamicMixConfig = Field(default_factory=DynamicMixConfig)
    ewc: EWCConfig = Field(default_factory=EWCConfig)
    long_context: LongContextConfig = Field(default_factory=LongContextConfig)

    @model_validator(mode="after")
    def _roles_have_data(self) -> "RunConfig":
        for role in ROLES:
            if getattr(self.mix, role) > 0 and not getattr(self.data, role):
                raise ValueError(f"mix.{role} is {getattr(self.mix, role)} but data.{role} lists no sources")
        return self

    @model_validator(mode="after")
    def _one_mix_unit(self) -> "RunConfig":
        """Stage mixes are read in the run's mix.unit (plan.plan): their copies say so, so a saved config
        never shows a stage in a unit it does not train in."""
        for s in self.stages or []:
            if s.mix is not None and s.mix.unit != self.mix.unit:
                s.mix = s.mix.model_copy(update={"unit": self.mix.unit})
        return self

    @field_validator("recipe")
    @classmethod
    def _known_recipe(cls, v: str) -> str:
        if v not in RECIPE_NAMES:
            raise ValueError(f"unknown recipe (allowed: {', '.join(RECIPE_NAMES)})")
        return v

    @field_validator("stages")
    @classmethod
    def _stages_not_empty(cls, v: list | None) -> list | None:
        if v is not None and not v:
            raise ValueError("the stage list is empty: list at least one stage, or remove `stages` to use the recipe")
        return v

    @model_validator(mode="after")
    def _mitigation_is_runnable(self) -> "RunConfig":
        """EWC and dynamic mixing checked before anything loads (messages name the key to change); stages are
        checked by plan.plan(), which every entry point calls before it creates a run."""
        if self.ewc.enabled and not self.data.replay:
            raise ValueError("ewc.enabled needs general text in data.replay (the Fisher is computed on it)")
        d = self.dynamic_mix
        if d.enabled:
            signals = [e for e in ("replay_ppl", "ifeval") if e in self.eval.evaluators]
            if not signals:
                raise ValueError("dynamic_mix.enabled needs replay_ppl or ifeval in eval.evaluators "
                                 "(the evaluations it reacts to)")
            if self.launch.nproc > 1:
                raise ValueError("dynamic_mix.enabled works with one process only (launch.nproc=1)")
            for role, key in (("replay", "replay_ppl"), ("instruct", "ifeval")):
                if key in signals and not getattr(self.data, role):
                    raise ValueError(f"dynamic_mix.enabled with {key} needs data.{role} sources to raise "
                                     f"the {role} share")
        return self

    # --- YAML and overrides ------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | dict[str, Any] | None = None) -> "RunConfig":
        """Parse a YAML file, apply `--set` overrides, validate; ConfigError names file, line or key."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
        if raw is None:  # an empty file silently meaning "the default model on the bundled data" misleads
            raise ConfigError(f"{path}: the config file is empty (start from experiments/demo.yaml, or write "
                              "`{}` to mean every default)")
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (model, data, mix, train, ...)")
        changes = overrides if isinstance(overrides, dict) else parse_sets(overrides or [])
        cls.from_dict(raw, source=str(path))  # the file's own problems are the file's
        return cls.from_dict(override(raw, changes), source=f"{path} with --set" if changes else str(path))

    @classmethod
    def from_dict(cls, raw: dict, source: str = "config") -> "RunConfig":
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            raise ConfigError(f"{source}: {format_validation_error(e)}") from None

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write(path, self.to_yaml())

    def with_overrides(self, changes: dict[str, Any] | list[str]) -> "RunConfig":
        """The one way to change a config: forms, `--set`, sweep points and advice all pass
        {"section.key": value} (a list of `section.key=value` strings is parsed into that first)."""
        if not isinstance(changes, dict):
            changes = parse_sets(changes)
        return self.from_dict(override(self.to_dict(), changes), source="--set")


TOP_LEVEL_KEYS = ("name", "recipe", "stages")  # the only keys without a section


def parse_sets(items: list[str]) -> dict[str, Any]:
    """`section.key=value` strings -> {"section.key": value}; values are YAML (so 2e-5, true, [a, b] work)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def override(raw: dict, changes: dict[str, Any]) -> dict:
    """A copy of a config mapping with {"section.key": value} changes applied."""
    raw = copy.deepcopy(raw)
    for key, value in changes.items():
        parts = key.split(".")
        if (len(parts) < 2 and parts[0] not in TOP_LEVEL_KEYS) or not all(parts):
            raise ConfigError(f"--set {key}: key must look like section.key (e.g. train.lr=2e-5)")
        node = raw
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p} is not a section")
        node[parts[-1]] = copy.deepcopy(value)
    return raw


def format_validation_error(e: ValidationError) -> str:
    """One line per problem, each naming the YAML key ('train.lr: must be > 0, got -1')."""
    msgs = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], (dict, list)):
            msg = f"{msg}, got {err['input']!r}"
        msgs.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(msgs)


def help_text(section: str, field: str) -> str:
    """The description of RunConfig.<section>.<field>, for UI help."""
    cls = RunConfig.model_fields[section].annotation
    return cls.model_fields[field].description or ""
