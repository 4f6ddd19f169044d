"""The sections of a RunConfig: model, data sources, mix, training, LoRA, evaluation, launch.

Field descriptions are user-facing help: the dashboard shows them next to each widget. Imports no torch.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ROLES = ("domain", "replay", "instruct")


class ConfigError(ValueError):
    """A config problem the user can fix; the message names the field and what is allowed."""


def as_source(v: Any) -> Any:
    """A path -> a source mapping; mappings and SourceConfigs pass through."""
    return {"path": str(v)} if isinstance(v, (str, int, float)) else v


def as_sources(v: Any) -> Any:
    """One path, a list of paths or source mappings -> a list of sources; '', None or [] -> no sources."""
    if v in (None, "", []):
        return []
    if not isinstance(v, list):
        v = [v]
    return [as_source(x) for x in v]


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
        "auto", description="Weights dtype. auto: float32 weights in training and evaluation alike, with bfloat16 "
        "mixed precision while training on GPUs that support it. bfloat16/float16: weights in that dtype "
        "everywhere (half the memory; pure low-precision training)."
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
    streaming: bool = Field(
        False, description="Read the source as a stream (a datasets IterableDataset: a hub dataset, a "
        "save_to_disk folder, or .arrow/.parquet/.jsonl files) and tokenize it as training reads it, instead of "
        "tokenizing it whole into the token cache first. For corpora too big to download or cache; its size "
        "is unknown before one pass, so the plan shows no passes for it.")
    max_rows: int | None = Field(None, gt=0, description="Read at most this many rows (useful for big hub datasets).")
    keep: dict[str, list[str]] | None = Field(
        None, description="Keep only the rows (of the first max_rows) whose FIELD's value is listed, e.g. "
        "{entity_id: [town-000]}. The pit and pit_plus recipes use it to train documents that have QA pairs "
        "apart from those that do not.")
    drop: dict[str, list[str]] | None = Field(None, description="Drop the rows whose FIELD's value is listed.")
    holdout: Literal["all", "train", "heldout"] = Field(
        "all", description="all: every row. train: the rows minus the seeded held-out documents that "
        "evaluation measures; heldout: only those (cptcore/data/heldout.py). Set for you when an evaluation "
        "source is 'auto' and the role's data is your own.")
    holdout_seed: int = Field(0, description="Seed of the held-out documents (the run's eval.seed).")


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
    num_proc: int = Field(
        1, ge=1, le=64,
        description="Processes that tokenize a source the first time it is used (it is cached under "
        "CPT_HOME/cache/tokens afterwards). One process already uses every core on raw text, through the Rust "
        "tokenizer's threads; more help chat records, which are laid out in Python "
        "(experiments/benchmarks/bench_data.py).",
    )

    @field_validator("domain", "replay", "instruct", "qa", "facts", mode="before")
    @classmethod
    def _as_sources(cls, v: Any) -> Any:
        return as_sources(v)


class MixConfig(_Section):
    """Each role's share of the trained tokens in `unit` (not rows: documents differ in length): input tokens
    (every token the model reads) or loss tokens (the tokens that carry loss; chat data trains on assistant
    tokens only, so a share of input tokens is a smaller share of the loss)."""
    domain: float = Field(0.85, ge=0, le=1, description="Share of new domain text (in mix.unit).")
    replay: float = Field(
        0.10, ge=0, le=1,
        description="Share of general text replayed to limit forgetting (in mix.unit): 5-10% of input tokens "
        "for a mild domain shift, up to 25% for a strong one (Ibrahim et al. 2024); small models need more.",
    )
    instruct: float = Field(
        0.05, ge=0, le=1, description="Share of instruction data that keeps chat behaviour (in mix.unit; 1-5% "
        "of input tokens is typical). Chat data carries loss on assistant tokens only.",
    )
    unit: Literal["tokens", "loss_tokens"] = Field(
        "tokens", description="What the shares count. tokens (default): input tokens, the unit of the compute "
        "budget and of the published replay ratios; raw documents carry loss on every token, so for them both "
        "units agree. loss_tokens: tokens that carry loss; each role's input share is then set from its "
        "sources' loss fraction (e.g. 30% of the loss on QA whose answers are 12% of its tokens takes most of "
        "the input). One unit per run: stage mixes follow it; dynamic mixing moves input-token shares.",
    )

    @model_validator(mode="after")
    def _sums_to_one(self) -> "MixConfig":
        total = self.domain + self.replay + self.instruct
        if abs(total - 1) > 1e-6:
            raise ValueError(f"mix.domain + mix.replay + mix.instruct must sum to 1, got {total:.3f}")
        return self

    def shares(self) -> dict[str, float]:
        return {r: getattr(self, r) for r in ROLES}

    def rebalanced(self, fixed: dict[str, float]) -> "MixConfig":
        """Set the given roles' shares and rescale the others in proportion so the three sum to 1."""
        unknown = set(fixed) - set(ROLES)
        if unknown:
            raise ConfigError(f"mix.{sorted(unknown)[0]}: unknown role (roles: {', '.join(ROLES)})")
        fixed = {r: float(v) for r, v in fixed.items()}
        free = {r: v for r, v in self.shares().items() if r not in fixed}
        room, free_total = 1 - sum(fixed.values()), sum(free.values())
        if abs(room) < 1e-9:
            free = {r: 0.0 for r in free}
        elif room < 0 or not free:
            given = " + ".join(f"mix.{r}" for r in fixed)
            raise ConfigError(f"{given} = {sum(fixed.values()):.3f}: the mix cannot be rebalanced to sum to 1")
        elif free_total <= 0:  # nothing to keep in proportion: split the rest equally
            free = {r: room / len(free) for r in free}
        else:
            free = {r: v / free_total * room for r, v in free.items()}
        try:
            return MixConfig(**(free | fixed), unit=self.unit)
        except ValueError as e:
            raise ConfigError(str(e).splitlines()[-1]) from None


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
    attention: Literal["packed", "per_document"] = Field(
        "packed", description="packed: attention crosses document boundaries inside a packed sequence (usual "
        "pre-training practice, fastest). per_document: position ids restart at every document, so each token "
        "attends only to its own document (for corpora of short, unrelated documents)."
    )
    fused_kernels: bool = Field(
        False, description="Liger Triton kernels: RMSNorm, RoPE, SwiGLU and, in full fine-tuning, a fused linear "
        "cross-entropy that never builds the full-vocabulary logits: less memory, faster steps. Needs CUDA and "
        "pip install liger-kernel."
    )
    compile: bool = Field(
        False, description="torch.compile the model: faster steps after a compile of a minute or two at the start."
    )

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


EVALUATORS = ("domain_ppl", "replay_ppl", "knowledge_mc", "general_kl", "knowledge_qa", "ifeval", "coherence")
GENERATION_EVALUATORS = ("knowledge_qa", "ifeval", "coherence")  # slow: run every generate_every-th evaluation


def evaluator_names(v: str | list[str]) -> list[str]:
    """Evaluator names from a list or a comma-separated string: known names only, in order, no repeats."""
    names = [s.strip() for s in v.split(",")] if isinstance(v, str) else list(v)
    names = [n for n in names if n]
    unknown = [n for n in names if n not in EVALUATORS]
    if unknown:
        raise ValueError(f"unknown evaluator {unknown[0]!r} (allowed: {', '.join(EVALUATORS)})")
    return list(dict.fromkeys(names))


class EvalConfig(_Section):
    """What to evaluate during training, and how often. Every run evaluates its starting model at step 0."""
    evaluators: list[str] = Field(
        default_factory=lambda: ["domain_ppl", "replay_ppl", "knowledge_mc", "general_kl"],
        description="Evaluators run at step 0, during training and at the end. Forward passes only (cheap): "
        "domain_ppl, replay_ppl, knowledge_mc (multiple-choice accuracy on held-out questions), general_kl "
        "(KL from the starting model on general text and chat). Generate text (slower): knowledge_qa, ifeval, "
        "coherence.",
    )
    seed: int = Field(
        0, description="Seed of the evaluation samples (stratified over entity type and attribute, topic or "
        "document) and of the multiple-choice distractors. Keep it fixed across runs you compare: the same "
        "seed and sizes give the same items, so differences are paired.",
    )
    every_steps: int = Field(25, gt=0, description="Run cheap evaluators (perplexities) every N steps.")
    generate_every: int = Field(
        4, gt=0, description="Run generation-based evaluators (knowledge_qa, ifeval, coherence) every Nth "
        "evaluation; always at step 0 and at the end.",
    )
    max_docs: int = Field(32, gt=0, description="Held-out documents per perplexity evaluation.")
    qa_limit: int = Field(
        32, gt=0, description="Held-out closed-book questions per knowledge_mc / knowledge_qa evaluation (only "
        "questions about entities whose documents the run trains on, when both name entities).")
    qa_mc_distractors: int = Field(
        4, ge=1, le=50, description="Wrong answers ranked against the gold one in knowledge_mc: answers of the "
        "same attribute from other entities (chance = 1 / (distractors + 1)). More distractors: a finer score "
        "at the cost of more forward passes.")
    ifeval_limit: int = Field(
        25, gt=0, description="IFEval prompts per evaluation, a seeded sample stratified over instruction groups "
        "(the bundled suite has 75 prompts covering all 25 types; google/IFEval has 541). The 95% CI of one "
        "score on 25 prompts is about +-18 points; changes from step 0 are paired and much tighter.",
    )
    max_new_tokens: int = Field(
        320, gt=0, le=4096, description="Cap on generated tokens per IFEval/coherence response. 320: of the default "
        "model's greedy responses to the 75 bundled prompts, 4% that would end are cut at 320 (27% at 64, 9% at "
        "256, 1% at 384); 44% never end (loops, flagged `looping`) and run to any cap. Every response records "
        "`truncated`, every score `truncated_frac`.")
    qa_max_new_tokens: int = Field(24, gt=0, le=1024, description="Cap on generated tokens per QA answer.")
    batch_size: int = Field(8, gt=0, description="Prompts (or documents) per forward pass during evaluation.")
    domain_heldout: SourceConfig = Field(
        default_factory=lambda: SourceConfig(path="auto"),
        description="Held-out domain documents for domain_ppl (never trained on). auto: the bundled held-out "
        "documents when the run trains the bundled ones, else a seeded held-out split of your own domain "
        "documents (5%, at least 8 and at most 200 documents, whole documents, removed from training). none: "
        "domain_ppl is not run.",
    )
    replay_heldout: SourceConfig = Field(
        default_factory=lambda: SourceConfig(path="auto"),
        description="Held-out general text for replay_ppl and general_kl (general-capability retention). auto: "
        "the bundled held-out text with bundled replay data, else a held-out split of your replay data.",
    )
    qa_source: SourceConfig = Field(
        default_factory=lambda: SourceConfig(path="auto"),
        description="Closed-book questions (fields question, answer) about documents the run trains on. auto: "
        "the bundled test questions with the bundled documents; with your own documents, the qa_test file "
        "`cpt synth` wrote next to the data.qa you train on (NAME.qa_train.jsonl -> NAME.qa_test.jsonl), "
        "else knowledge_mc and knowledge_qa are not run (never on questions about other documents).",
    )
    instruct_heldout: SourceConfig = Field(
        default_factory=lambda: SourceConfig(path="builtin:instruct_heldout"),
        description="Held-out conversations for general_kl (assistant tokens are scored; never trained on).",
    )
    kl_top_k: int = Field(
        32, ge=1, le=1024, description="general_kl keeps the starting model's top-k next-token log-probs per "
        "position (the rest is one bucket): a lower bound of the full KL, exact as k reaches the vocabulary.")
    ifeval_source: Literal["bundled", "google"] = Field(
        "bundled", description="bundled: the offline suite shipped with CPT Studio (75 prompts, all 25 "
        "instruction types). google: google/IFEval from the hub (541 prompts; needs network).",
    )
    warn_general_loss_pct: float = Field(
        3.0, gt=0, description="Warn when the general (replay) loss, ln(replay_ppl), is up at least this % from "
        "step 0 and significantly so (the 95% paired CI of the change on the same documents excludes 0; D-CPT "
        "Law uses a 3% cap).",
    )
    warn_if_drop_points: float = Field(
        2.0, gt=0, description="Warn when IFEval prompt-level strict accuracy is down at least this many points "
        "from step 0 and significantly so (95% paired CI on the same prompts excludes 0: with no real change "
        "fewer than 3% of evaluations warn).",
    )
    warn_distinct2_drop: float = Field(
        0.10, gt=0, le=1, description="Warn when distinct-2 of generated responses (coherence) is down at least "
        "this much from step 0, significantly (repetitive, degenerate text).",
    )
    stop_on_warning: bool = Field(
        False, description="Stop training at the first warning; the event names the last checkpoint that "
        "did not breach.",
    )
    reuse_baseline: bool = Field(
        True, description="Reuse the step-0 evaluation of an earlier run when it evaluated the same starting "
        "model (same weight files, dtype, device, attention, rope/YaRN) on the same items with the same "
        "settings: its scores and per-item files are copied from CPT_HOME/cache/baselines/ instead of "
        "spending minutes recomputing identical numbers. Off: every run evaluates its starting model afresh.",
    )

    @field_validator("evaluators", mode="before")
    @classmethod
    def _known_evaluators(cls, v: Any) -> Any:
        return evaluator_names(v) if isinstance(v, (str, list)) else v

    @field_validator("domain_heldout", "replay_heldout", "qa_source", "instruct_heldout", mode="before")
    @classmethod
    def _path_as_source(cls, v: Any) -> Any:
        return as_source(v)


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
