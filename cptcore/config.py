"""RunConfig: the one contract between the dashboard's forms, YAML files, the `cpt` CLI and the trainer.

Field descriptions are user-facing help: the dashboard shows them next to each widget.
Imports no torch, so the dashboard starts fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ROLES = ("domain", "replay", "instruct")


class ConfigError(ValueError):
    """A config problem the user can fix; the message names the field and what is allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class ModelConfig(_Section):
    """Which pretrained model to continue training."""
    name: str = Field(
        "smollm2-135m-instruct",
        description="Built-in name (smollm2-135m-instruct: the offline default; tiny-random-llama: for tests), "
        "a Hugging Face hub id, a local model folder, or a .gguf file.",
    )
    kind: Literal["base", "instruct"] = Field(
        "instruct",
        description="base: plain-text prompts, higher LR tolerated. instruct: chat template for instruction data, "
        "2-5x lower LR to keep instruction following.",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) for hub ids.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype for training: auto = bfloat16 on GPUs that support it, else float32."
    )
    trust_remote_code: bool = Field(
        False, description="Run model code shipped with a hub model. Only enable for repositories you trust."
    )


class SourceConfig(_Section):
    """One data source: a file, a folder of files, a bundled set or a hub dataset."""
    path: str = Field(
        description="Local .txt/.jsonl/.json/.parquet/.csv file or folder, 'builtin:NAME' for bundled data, "
        "or a hub dataset id."
    )
    format: Literal["auto", "text", "chat"] = Field(
        "auto", description="text: raw documents, trained on every token. chat: messages or prompt/response records, "
        "trained on assistant tokens only. auto: decided from the columns."
    )
    text_field: str = Field("text", description="Column holding the raw text (text format).")
    split: str = Field("train", description="Split of a hub dataset.")
    subset: str | None = Field(None, description="Configuration name of a hub dataset.")
    streaming: bool = Field(False, description="Stream a hub dataset instead of downloading it whole.")
    max_rows: int | None = Field(None, gt=0, description="Read at most this many rows (useful for big hub datasets).")


class DataConfig(_Section):
    """Sources for each role of the mix."""
    domain: list[SourceConfig] = Field(
        default_factory=lambda: [SourceConfig(path="builtin:knowledge_docs")],
        description="New domain documents the model should learn (raw text; chat records are allowed too).",
    )
    replay: list[SourceConfig] = Field(
        default_factory=lambda: [SourceConfig(path="builtin:replay")],
        description="General text like the model's original pre-training data, replayed to limit forgetting.",
    )
    instruct: list[SourceConfig] = Field(
        default_factory=lambda: [SourceConfig(path="builtin:instruct")],
        description="Instruction/chat examples that keep the model's instruction following.",
    )
    qa: list[SourceConfig] = Field(
        default_factory=lambda: [SourceConfig(path="builtin:knowledge_qa_train")],
        description="Question-answer pairs about training documents (never the evaluation questions): the "
        "instruction data of the QA stages of the cpt_then_it, pit and pit_plus recipes.",
    )
    facts: list[SourceConfig] = Field(
        default_factory=list,
        description="Fact instructions for the knowledge_instruct recipe (write them with `cpt synth DOCS "
        "--kind facts`). Empty: facts are cut from the sentences of data.domain.",
    )
    seq_len: int = Field(
        256, ge=16, le=131072,
        description="Tokens per packed training sequence. Documents are packed end to end with EOS separators, "
        "so no padding is wasted and no document is truncated.",
    )

    @field_validator("qa", "facts", mode="before")
    @classmethod
    def _recipe_sources_as_list(cls, v: Any) -> Any:
        return _sources(v)

    @field_validator("domain", "replay", "instruct", mode="before")
    @classmethod
    def _one_source_as_list(cls, v: Any) -> Any:
        if isinstance(v, (str, dict)):
            v = [v]
        if isinstance(v, list):
            return [{"path": s} if isinstance(s, str) else s for s in v]
        return v


class MixConfig(_Section):
    """Each role's share of trained *tokens* (not rows: documents differ in length)."""
    domain: float = Field(0.85, ge=0, le=1, description="Share of new domain text.")
    replay: float = Field(
        0.10, ge=0, le=1,
        description="Share of general text replayed to limit forgetting: 5-10% for a mild domain shift, "
        "up to 25% for a strong one (Ibrahim et al. 2024); small models need more.",
    )
    instruct: float = Field(
        0.05, ge=0, le=1, description="Share of instruction data that keeps chat behaviour (1-5% is typical)."
    )

    @model_validator(mode="after")
    def _sums_to_one(self) -> "MixConfig":
        total = self.domain + self.replay + self.instruct
        if abs(total - 1) > 1e-6:
            raise ValueError(f"mix.domain + mix.replay + mix.instruct must sum to 1, got {total:.3f}")
        return self

    def shares(self) -> dict[str, float]:
        return {r: getattr(self, r) for r in ROLES}


class TrainConfig(_Section):
    """Optimisation and budget."""
    method: Literal["full", "lora"] = Field(
        "full", description="full: update every weight (learns most, forgets most). "
        "lora: low-rank adapters (learns less, forgets less; wants ~10x the full fine-tune LR)."
    )
    lr: float = Field(
        5e-5, gt=0, le=1,
        description="Peak learning rate. Full fine-tuning: instruct 1e-5..5e-5, base 3e-5..1e-4; "
        "LoRA about 10x higher.",
    )
    schedule: Literal["constant", "cosine", "linear", "wsd"] = Field(
        "cosine", description="LR schedule after warm-up. cosine decays to min_lr_ratio of the peak; "
        "wsd (warmup-stable-decay) holds the peak and decays over the last decay_ratio of steps."
    )
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Fraction of steps spent warming up the LR (re-warming).")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final LR as a fraction of the peak (cosine, wsd).")
    decay_ratio: float = Field(0.2, gt=0, le=1, description="Fraction of steps in the final decay (wsd only).")
    max_steps: int = Field(50, gt=0, description="Optimizer steps. Instruct models: 100-500 keeps instruction following.")
    batch_size: int = Field(8, gt=0, description="Sequences per device per forward pass.")
    grad_accum: int = Field(1, gt=0, description="Forward passes accumulated per optimizer step.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    seed: int = Field(0, description="Seed for data order, mixing and initialisation.")
    log_every_steps: int = Field(1, gt=0, description="Write training metrics every N steps.")
    save_every_steps: int | None = Field(
        None, gt=0, description="Checkpoint every N steps (default: only at the end)."
    )
    save_total_limit: int = Field(2, gt=0, description="Keep at most this many checkpoints.")
    resume_from: str | None = Field(
        None, description="Checkpoint folder to resume from, or 'last' for this run's latest checkpoint."
    )
    report_to: list[str] = Field(
        default_factory=list, description="Also report to these trackers (tensorboard, wandb, mlflow)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available, else CPU.")

    @field_validator("report_to", mode="before")
    @classmethod
    def _str_to_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip() and s.strip() != "none"]
        return v

    def tokens_per_step(self, seq_len: int) -> int:
        return self.batch_size * self.grad_accum * seq_len


class LoraConfig(_Section):
    """LoRA adapter settings (used when train.method = lora)."""
    r: int = Field(16, gt=0, le=4096, description="Adapter rank. Higher learns more; Biderman et al. 2024 use 256.")
    alpha: int = Field(32, gt=0, description="Scaling numerator; alpha = 2r is a common choice.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] | str = Field(
        "all-linear", description="Modules that get adapters: 'all-linear' or a list such as [q_proj, v_proj]."
    )
    train_embeddings: bool = Field(
        False, description="Also train the input embeddings and lm_head fully (helps with new vocabulary/domain)."
    )
    embedding_lr_ratio: float = Field(
        0.1, gt=0, le=1, description="LR of embeddings/lm_head relative to train.lr (2-10x smaller is usual)."
    )


EVALUATORS = ("domain_ppl", "replay_ppl", "knowledge_qa", "ifeval", "coherence")
GENERATION_EVALUATORS = ("knowledge_qa", "ifeval", "coherence")  # slow: run every generate_every-th evaluation


def _source(v: Any) -> Any:
    return {"path": v} if isinstance(v, str) else v


class EvalConfig(_Section):
    """What to evaluate during training, and how often. Every run evaluates its starting model at step 0."""
    evaluators: list[str] = Field(
        default_factory=lambda: ["domain_ppl", "replay_ppl"],
        description="Evaluators run at step 0, during training and at the end: domain_ppl, replay_ppl (cheap), "
        "knowledge_qa, ifeval, coherence (generate text: slower).",
    )
    every_steps: int = Field(25, gt=0, description="Run cheap evaluators (perplexities) every N steps.")
    generate_every: int = Field(
        4, gt=0, description="Run generation-based evaluators (knowledge_qa, ifeval, coherence) every Nth "
        "evaluation; always at step 0 and at the end.",
    )
    max_docs: int = Field(32, gt=0, description="Held-out documents per perplexity evaluation.")
    qa_limit: int = Field(32, gt=0, description="Closed-book questions per knowledge_qa evaluation.")
    ifeval_limit: int = Field(
        25, gt=0, description="IFEval prompts per evaluation (the bundled suite's first 25 cover all 25 "
        "instruction types; google/IFEval has 541). The 95% CI on 25 prompts is about +-18 points.",
    )
    max_new_tokens: int = Field(96, gt=0, le=4096, description="Cap on generated tokens per IFEval/coherence response.")
    qa_max_new_tokens: int = Field(24, gt=0, le=1024, description="Cap on generated tokens per QA answer.")
    batch_size: int = Field(8, gt=0, description="Prompts (or documents) per forward pass during evaluation.")
    domain_heldout: SourceConfig = Field(
        default_factory=lambda: SourceConfig(path="builtin:knowledge_heldout"),
        description="Held-out domain documents for domain_ppl (never trained on).",
    )
    replay_heldout: SourceConfig = Field(
        default_factory=lambda: SourceConfig(path="builtin:replay_heldout"),
        description="Held-out general text for replay_ppl (general-capability retention).",
    )
    qa_source: SourceConfig = Field(
        default_factory=lambda: SourceConfig(path="builtin:knowledge_qa_test"),
        description="Closed-book questions (fields question, answer) about documents the run trains on.",
    )
    ifeval_source: Literal["bundled", "google"] = Field(
        "bundled", description="bundled: the offline suite shipped with CPT Studio (75 prompts, all 25 "
        "instruction types). google: google/IFEval from the hub (541 prompts; needs network).",
    )
    warn_general_loss_pct: float = Field(
        3.0, gt=0, description="Warn when the general (replay) loss, ln(replay_ppl), rises more than this % "
        "above step 0 (D-CPT Law uses a 3% cap).",
    )
    warn_if_drop_points: float = Field(
        2.0, gt=0, description="Warn when IFEval prompt-level strict accuracy falls more than this many "
        "points below step 0.",
    )
    warn_distinct2_drop: float = Field(
        0.10, gt=0, le=1, description="Warn when distinct-2 of generated responses (coherence) falls more than "
        "this below step 0 (repetitive, degenerate text).",
    )
    stop_on_warning: bool = Field(
        False, description="Stop training at the first warning; the event names the last checkpoint that "
        "did not breach.",
    )

    @field_validator("evaluators", mode="before")
    @classmethod
    def _str_to_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @field_validator("evaluators")
    @classmethod
    def _known_evaluators(cls, v: list[str]) -> list[str]:
        unknown = [name for name in v if name not in EVALUATORS]
        if unknown:
            raise ValueError(f"unknown evaluator {unknown[0]!r} (allowed: {', '.join(EVALUATORS)})")
        return list(dict.fromkeys(v))  # keep order, drop repeats

    @field_validator("domain_heldout", "replay_heldout", "qa_source", mode="before")
    @classmethod
    def _path_as_source(cls, v: Any) -> Any:
        return _source(v)


class LaunchConfig(_Section):
    """How a run's processes start: one local process, or torchrun/accelerate with N processes (DDP or FSDP)."""
    launcher: Literal["local", "torchrun", "accelerate"] = Field(
        "local", description="local: one process. torchrun / accelerate: nproc processes on this machine "
        "(for many nodes, write a Slurm script with `cpt slurm`).",
    )
    nproc: int = Field(1, gt=0, le=1024, description="Processes per node for torchrun/accelerate (usually one per GPU).")
    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp", description="ddp: every process holds the whole model. fsdp: parameters, gradients and optimizer "
        "state sharded across processes (for models that do not fit one GPU).",
    )


# --- recipes, stages and forgetting mitigation (issue 6) -------------------------------------
RECIPE_NAMES = ("cpt", "cpt_then_it", "pit", "pit_plus", "knowledge_instruct")  # described in cptcore/recipes.py


def _sources(v: Any) -> Any:
    """One path, a list of paths or source mappings -> a list of sources; '' or None -> no sources."""
    if v in (None, ""):
        return []
    if isinstance(v, (str, dict)):
        v = [v]
    return [_source(s) for s in v] if isinstance(v, list) else v


class StageDataConfig(_Section):
    """Sources a stage uses instead of the run's data; a role left out keeps the run's sources."""
    domain: list[SourceConfig] | None = Field(None, description="This stage's domain sources.")
    replay: list[SourceConfig] | None = Field(None, description="This stage's replay sources.")
    instruct: list[SourceConfig] | None = Field(None, description="This stage's instruction sources.")

    @field_validator("domain", "replay", "instruct", mode="before")
    @classmethod
    def _as_list(cls, v: Any) -> Any:
        return None if v is None else _sources(v)


class StageConfig(_Section):
    """One stage of a multi-stage run: its own data, mix, LR, budget and loss masking on the same model."""
    name: str = Field(description="Stage name, written with the stage boundary into the metric stream.")
    budget: float | None = Field(
        None, gt=0, le=1, description="Share of train.max_steps this stage trains. Stages with neither budget "
        "nor max_steps split the remaining steps equally.",
    )
    max_steps: int | None = Field(None, gt=0, description="Optimizer steps of this stage (instead of budget).")
    data: StageDataConfig = Field(default_factory=StageDataConfig, description="Sources replacing the run's.")
    mix: MixConfig | None = Field(None, description="Token shares of this stage (default: the run's mix).")
    lr: float | None = Field(None, gt=0, le=1, description="Peak LR of this stage (default: train.lr); "
                             "every stage re-warms and re-decays with train.schedule.")
    loss_on: Literal["answers", "all"] = Field(
        "answers", description="answers: chat records train on assistant tokens only (QA stages). "
        "all: also on the prompt tokens. Raw text always trains on every token.",
    )
    domain_as: Literal["as_is", "facts"] = Field(
        "as_is", description="facts: turn each domain document into 'Tell me a fact about X' instructions, "
        "one per sentence that names its entity (Knowledge-Instruct without a model; `cpt synth --kind facts` "
        "writes model-made paraphrases instead).",
    )

    @model_validator(mode="after")
    def _one_budget(self) -> "StageConfig":
        if self.budget is not None and self.max_steps is not None:
            raise ValueError(f"stage {self.name!r}: set budget or max_steps, not both")
        return self


class RecipeOptionsConfig(_Section):
    """Knobs of the built-in recipes (Jiang et al. 2024; Ovadia et al. 2025). Budgets are shares of train.max_steps."""
    qa_budget: float = Field(
        0.3, gt=0, lt=1, description="Share of the steps in the QA-only stage (cpt_then_it: last; pit, pit_plus: first).",
    )
    qa_share: float = Field(
        0.3, gt=0, lt=1, description="pit_plus: token share of QA in the stage that trains QA and documents together.",
    )
    final_it_budget: float = Field(
        0.0, ge=0, lt=1, description="pit: share of the steps in a final QA instruction-tuning stage (0 = none).",
    )
    qa_lr_ratio: float = Field(
        1.0, gt=0, le=10, description="LR of QA stages relative to train.lr (Jiang et al.: 5e-6 vs 3e-5, about 1/6).",
    )


class ProgressiveConfig(_Section):
    """Progressive training: the domain share ramps from start_domain to mix.domain, the others follow."""
    enabled: bool = Field(False, description="Ramp the domain share over each document stage.")
    start_domain: float = Field(0.3, ge=0, le=1, description="Domain share of the first sequences.")
    ramp_ratio: float = Field(
        0.5, gt=0, le=1, description="Fraction of a stage's steps over which the shares ramp linearly; "
        "they then hold at the target. Replay and instruct keep their target proportions.",
    )


class DynamicMixConfig(_Section):
    """Dynamic mixing: shift share to replay when general text gets worse, to instruct when IFEval drops."""
    enabled: bool = Field(False, description="React to each evaluation (needs replay_ppl and/or ifeval).")
    step: float = Field(0.05, gt=0, le=0.5, description="Share moved from domain per evaluation showing "
                        "decline, and moved back per evaluation after recovery.")
    max_replay: float = Field(0.5, gt=0, le=1, description="Upper bound of the replay share.")
    max_instruct: float = Field(0.3, gt=0, le=1, description="Upper bound of the instruct share.")
    general_loss_pct: float = Field(1.0, gt=0, description="Decline: ln(replay_ppl) this % above step 0.")
    if_drop_points: float = Field(2.0, gt=0, description="Decline: IFEval prompt-level strict this many "
                                  "points below step 0.")


class EWCConfig(_Section):
    """Elastic weight consolidation: a pull towards the starting weights, weighted by their Fisher information."""
    enabled: bool = Field(False, description="Add λ/2 Σ F (θ - θ0)² to the loss, F from general (replay) text.")
    log10_lambda: float = Field(
        0.0, ge=-8, le=8, description="log10 of λ. The Fisher is normalized to mean 1, so sweep λ on a log "
        "scale (e.g. -3 .. 2) and watch train/ewc_penalty against train/loss.",
    )
    fisher_sequences: int = Field(16, gt=0, le=4096, description="Replay sequences whose squared gradients "
                                  "are averaged into the Fisher.")
    clip_quantile: float = Field(0.999, gt=0.5, le=1, description="Fisher values above this quantile are "
                                 "clipped (a few huge entries would otherwise freeze their weights).")


class LongContextConfig(_Section):
    """Long-context extension with YaRN rope scaling (set data.seq_len beyond the original window)."""
    yarn_factor: float | None = Field(
        None, description="Context extension factor (> 1), e.g. 4 turns a 2k window into 8k. None: no scaling.",
    )
    original_max_position_embeddings: int | None = Field(
        None, gt=0, description="The window the model was trained with (default: its max_position_embeddings).",
    )

    @field_validator("yarn_factor")
    @classmethod
    def _extends(cls, v: float | None) -> float | None:
        if v is not None and v <= 1:
            raise ValueError("YaRN factor must be > 1 (it multiplies the context window)")
        return v


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
    def _recipe_is_runnable(self) -> "RunConfig":
        """Stages, EWC and dynamic mixing checked before anything loads (messages name the key to change)."""
        from .recipes import plan  # imports no torch

        plan(self)
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

    # --- YAML ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> "RunConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (model, data, mix, train, ...)")
        return cls.from_dict(apply_overrides(raw, overrides or []), source=str(path))

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
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.to_yaml(), encoding="utf-8")
        tmp.replace(path)
        return path

    def with_overrides(self, overrides: list[str] | dict[str, Any]) -> "RunConfig":
        if isinstance(overrides, dict):
            overrides = [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
                         for k, v in overrides.items()]
        return self.from_dict(apply_overrides(self.to_dict(), overrides), source="--set")


TOP_LEVEL_KEYS = ("name", "recipe", "stages")  # the only --set keys without a section


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` strings; values are parsed as YAML (so 2e-5, true, [a, b] work)."""
    import copy

    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if (len(parts) < 2 and parts[0] not in TOP_LEVEL_KEYS) or not all(parts):
            raise ConfigError(f"--set {item!r}: key must look like section.key (e.g. train.lr=2e-5)")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        if parts[0] == "data" and parts[1] in ROLES and len(parts) == 2:
            parsed = [] if parsed in (None, "", []) else ([{"path": str(parsed)}] if isinstance(parsed, (str, int, float)) else parsed)
        node = raw
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {item!r}: {p} is not a section")
            node = nxt
        node[parts[-1]] = parsed
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
