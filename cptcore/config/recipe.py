"""Config sections of recipes, stages and forgetting mitigation (progressive and dynamic mix, EWC, YaRN).

What they train is worked out in cptcore/plan.py.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .sections import MixConfig, SourceConfig, _Section, as_sources

RECIPE_NAMES = ("cpt", "cpt_then_it", "pit", "pit_plus", "knowledge_instruct")  # described in cptcore/recipes.py


class StageDataConfig(_Section):
    """Sources a stage uses instead of the run's data; a role left out keeps the run's sources."""
    domain: list[SourceConfig] | None = Field(None, description="This stage's domain sources.")
    replay: list[SourceConfig] | None = Field(None, description="This stage's replay sources.")
    instruct: list[SourceConfig] | None = Field(None, description="This stage's instruction sources.")

    @field_validator("domain", "replay", "instruct", mode="before")
    @classmethod
    def _as_list(cls, v: Any) -> Any:
        return None if v is None else as_sources(v)


class StageConfig(_Section):
    """One stage of a multi-stage run: its own data, mix, LR, budget and loss masking on the same model."""
    name: str = Field(description="Stage name, written with the stage boundary into the metric stream.")
    budget: float | None = Field(
        None, gt=0, le=1, description="Share of train.max_steps this stage trains. Stages with neither budget "
        "nor max_steps split the remaining steps equally.",
    )
    max_steps: int | None = Field(None, gt=0, description="Optimizer steps of this stage (instead of budget).")
    data: StageDataConfig = Field(default_factory=StageDataConfig, description="Sources replacing the run's.")
    mix: MixConfig | None = Field(None, description="Shares of this stage, in the run's mix.unit (default: the "
                                  "run's mix).")
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
        0.3, gt=0, lt=1, description="Share of the steps in the QA-only stage (cpt_then_it: last; pit_plus: first).",
    )
    qa_share: float = Field(
        0.3, gt=0, lt=1, description="pit, pit_plus: share of QA (in mix.unit) in the stage that trains the QA "
        "pairs together with their own documents.",
    )
    test_docs_budget: float = Field(
        0.5, gt=0, lt=1, description="pit, pit_plus: share of the steps in the last stage, on the documents that "
        "have no QA pairs (Jiang et al. 2024's test documents, whose questions are never trained).",
    )
    @model_validator(mode="before")
    @classmethod
    def _removed_fields(cls, v: Any) -> Any:
        """final_it_budget (a final QA stage of the old pit recipe) is gone: 0 is read as absent."""
        if isinstance(v, dict) and "final_it_budget" in v:
            v = dict(v)
            if v.pop("final_it_budget") not in (0, 0.0, None):
                raise ValueError("final_it_budget was removed: pit now ends with the documents that have no QA "
                                 "(Jiang et al. 2024, variant 7); for a final QA stage use recipe cpt_then_it or "
                                 "explicit stages")
        return v

    qa_lr_ratio: float = Field(
        1 / 6, gt=0, le=10, description="LR of QA stages relative to train.lr: Jiang et al. 2024 train QA at 5e-6 "
        "and documents at 3e-5, 1/6.",
    )


class ProgressiveConfig(_Section):
    """Progressive training: the domain share ramps from start_domain to mix.domain, the others follow."""
    enabled: bool = Field(False, description="Ramp the domain share over each document stage.")
    start_domain: float = Field(0.3, ge=0, le=1, description="Domain share (in mix.unit) of the first sequences.")
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
    general_loss_pct: float = Field(1.0, gt=0, description="Decline: ln(replay_ppl) at least this % above "
                                    "step 0, significantly (95% paired CI excludes 0), as the warnings decide.")
    if_drop_points: float = Field(2.0, gt=0, description="Decline: IFEval prompt-level strict at least this many "
                                  "points below step 0, significantly (95% paired CI excludes 0).")


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
        None, description="Context extension factor (> 1), e.g. 4 turns a 2k window into 8k; empty: no scaling.",
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
