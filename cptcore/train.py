"""The one training workflow: RunConfig -> HF Trainer on an exact token mix -> metric stream in the run dir.

    cpt train experiments/smoke.yaml --set mix.replay=0.2
"""
from __future__ import annotations

import errno

import math
import os
import time
import traceback

from .config import ConfigError, RunConfig
from .data.leaks import check_leaks
from .plan import plan as make_plan
from .runs import Run

SCHEDULES = {  # our names -> HF lr_scheduler_type
    "constant": "constant_with_warmup",
    "cosine": "cosine_with_min_lr",
    "linear": "linear",
    "wsd": "warmup_stable_decay",
}


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def schedule_kwargs(t, steps: int) -> dict:
    """HF scheduler arguments for a schedule over `steps` optimizer steps."""
    if t.schedule == "cosine":
        return {"min_lr_rate": t.min_lr_ratio}
    if t.schedule == "wsd":
        return {"num_decay_steps": max(1, round(t.decay_ratio * steps)), "min_lr_ratio": t.min_lr_ratio}
    return {}


def training_args(cfg: RunConfig, run: Run, device: str, progress: bool, max_steps: int | None = None):
    """TrainingArguments from the config; HF names kept where values pass straight through.

    max_steps: the whole run's steps when stages set their own (default train.max_steps)."""
    import torch
    from transformers import TrainingArguments

    t = cfg.train.model_copy(update={"max_steps": max_steps}) if max_steps else cfg.train
    sched_kwargs = schedule_kwargs(t, t.max_steps)
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported() and cfg.model.dtype in ("auto", "bfloat16")
    return TrainingArguments(
        output_dir=str(run.checkpoints_dir),
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.lr,
        lr_scheduler_type=SCHEDULES[t.schedule],
        lr_scheduler_kwargs=sched_kwargs,
        warmup_steps=t.warmup_ratio,  # a float < 1 is a fraction of max_steps
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        logging_steps=t.log_every_steps,
        logging_nan_inf_filter=False,  # a diverged loss must show as NaN/inf (MetricStream fails the run), not as 0
        save_strategy="steps",
        # stop_on_warning keeps the last checkpoint that did not breach: save at every evaluation
        save_steps=t.save_every_steps or (cfg.eval.every_steps if cfg.eval.stop_on_warning else t.max_steps),
        save_total_limit=t.save_total_limit,
        report_to=t.report_to or "none",
        train_sampling_strategy="sequential",  # the mix order is the schedule: do not reshuffle it
        remove_unused_columns=False,
        dataloader_num_workers=0,
        use_cpu=device == "cpu",
        bf16=bf16,
        ddp_backend="gloo" if device == "cpu" and world_size() > 1 else None,
        fsdp=True if cfg.launch.strategy == "fsdp" and world_size() > 1 else None,  # launch.strategy (issue 4)
        disable_tqdm=not progress,
        logging_first_step=True,
        torch_compile=t.compile,  # train.compile
    )


FUSED_KERNELS_HELP = "train.fused_kernels needs CUDA and the liger-kernel package: pip install liger-kernel"


def check_gpu_options(cfg: RunConfig, device: str) -> None:
    """Refuse train.fused_kernels where it cannot run (asked for explicitly: no silent fallback to slower steps)."""
    if not cfg.train.fused_kernels:
        return
    import importlib.util

    if device != "cuda":
        raise ConfigError(f"{FUSED_KERNELS_HELP} (this run trains on {device}; set train.fused_kernels=false)")
    if importlib.util.find_spec("liger_kernel") is None:
        raise ConfigError(f"{FUSED_KERNELS_HELP} (liger-kernel is not installed)")
    import inspect

    from liger_kernel.ops import fused_linear_cross_entropy as flce

    if "token_grad_output" not in inspect.signature(flce.fused_linear_cross_entropy_forward).parameters:
        raise ConfigError(f"{FUSED_KERNELS_HELP} (this liger-kernel cannot backpropagate per-token losses, which "
                          "the per-role loss needs: pip install -U liger-kernel)")


def make_model(cfg: RunConfig, device: str):
    """Load the model (fp32 master weights; bf16 autocast on capable GPUs), YaRN-scale its rope for long
    context if asked, and wrap it in LoRA if asked."""

    from .models import apply_yarn, load_model, pick_dtype

    model, tokenizer = load_model(cfg.model, device=device, dtype=pick_dtype(cfg.model.dtype, device))
    if cfg.long_context.yarn_factor:
        apply_yarn(model, cfg.long_context.yarn_factor, cfg.long_context.original_max_position_embeddings)
    if cfg.train.fused_kernels:  # check_gpu_options: CUDA and liger-kernel are there
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        # RMSNorm, RoPE, SwiGLU. Not Liger's fused cross-entropy: it returns one mean loss, and the per-role
        # meter needs each sequence's loss; stream.FusedLinearHead fuses the lm_head with per-token losses
        _apply_liger_kernel_to_instance(model, fused_linear_cross_entropy=False, cross_entropy=False)
        if cfg.train.method == "full":  # LoRA's all-linear targets would find the head's inner layers
            from .stream import use_fused_head

            use_fused_head(model)
    if cfg.train.method == "lora":
        from peft import LoraConfig, get_peft_model

        lc = cfg.lora
        extra = ["embed_tokens", "lm_head"] if lc.train_embeddings else None
        model = get_peft_model(model, LoraConfig(
            r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=lc.target_modules,
            modules_to_save=extra, task_type="CAUSAL_LM",
            ensure_weight_tying=bool(extra) and bool(model.config.tie_word_embeddings)))
    return model, tokenizer


def make_optimizer(cfg: RunConfig, model):
    """AdamW with embeddings/lm_head at their own LR (LoRA + train_embeddings); None = Trainer's default."""
    if not (cfg.train.method == "lora" and cfg.lora.train_embeddings):
        return None
    import torch

    emb, other = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (emb if ("embed_tokens" in name or "lm_head" in name) else other).append(p)
    groups = [{"params": other, "lr": cfg.train.lr},
              {"params": emb, "lr": cfg.train.lr * cfg.lora.embedding_lr_ratio}]
    return torch.optim.AdamW(groups, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)


def stage_lr_lambda(cfg: RunConfig, stages: list):
    """Step -> LR factor when stages differ: each stage re-warms and re-decays with train.schedule from its
    own peak (stage lr / train.lr), using the HF scheduler of that schedule over the stage's steps."""
    import torch
    from transformers import get_scheduler

    dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    t = cfg.train
    shapes = []
    for s in stages:
        warmup = math.ceil(s.steps * t.warmup_ratio)
        sched = get_scheduler(SCHEDULES[t.schedule], dummy, num_warmup_steps=warmup, num_training_steps=s.steps,
                              scheduler_specific_kwargs=schedule_kwargs(t, s.steps))
        shapes.append((s.first_step, s.lr / t.lr, sched.lr_lambdas[0]))

    def factor(step: int) -> float:
        first, ratio, shape = next(x for x in reversed(shapes) if x[0] <= step)
        return ratio * shape(step - first)

    return factor


def train(cfg: RunConfig, run: Run, progress: bool = True, attempt: int = 1, plan=None) -> dict[str, float]:
    """Continue pre-training cfg.model on the plan's stages (default: plan(cfg) for this many processes);
    everything lands in run.dir."""
    import torch

    from .data.mix import build_mix
    from .models import pick_device
    from transformers import PrinterCallback, ProgressCallback

    from .stream import (DynamicMixer, FusedLinearHead, MetricStream, MixDataset, QuietProgress, RoleLossMeter,
                         StageCallback, TappedWriter, make_trainer_class)

    from .data.heldout import describe_sources, heldout_manifest, resolve

    requested, cfg = cfg, resolve(cfg)  # evaluations follow the data (held-out splits of the user's documents)
    device = pick_device(cfg.train.device)
    check_gpu_options(cfg, device)  # before the model loads: a refusal takes a second, not a minute
    torch.manual_seed(cfg.train.seed)
    model, tokenizer = make_model(cfg, device)
    plan = plan or make_plan(cfg, world_size=world_size())
    data = build_mix(cfg, tokenizer, plan)
    max_steps, seqs_per_step, tokens_per_step = plan.steps, plan.seqs_per_step, plan.tokens_per_step
    main = is_main_process()
    if main:  # what each evaluator measures, and which documents were held out for it (rows, hashes)
        run.write_manifest({**data.manifest, "evaluations": describe_sources(requested),
                            "heldout": heldout_manifest(cfg)})
    args = training_args(cfg, run, device, progress, max_steps=max_steps)

    writer = TappedWriter(run.metrics_path, attempt=attempt) if main else None
    meter = RoleLossMeter()
    callbacks = [StageCallback(plan.stages, writer, tokens_per_step),
                 MetricStream(writer, meter, data, seqs_per_step, tokens_per_step)]
    if cfg.dynamic_mix.enabled and writer is not None:  # evaluations written to the stream steer the mix
        writer.listeners.append(DynamicMixer(cfg.dynamic_mix, data, writer, seqs_per_step, tokens_per_step))
    ewc = None
    if cfg.ewc.enabled:
        from .ewc import build_ewc

        ewc = build_ewc(cfg, model, tokenizer)  # anchored at the starting weights
    lr_lambda = stage_lr_lambda(cfg, plan.stages) if len(plan.stages) > 1 else None
    if cfg.eval.evaluators and main:
        from .evaluate.callback import EvalCallback

        callbacks.append(EvalCallback(requested, run, writer, tokenizer, tokens_per_step))  # it resolves `auto`
    from .supervise import Supervisor

    # on every rank: a stop must end all ranks on the same step (it all-reduces)
    callbacks.append(Supervisor(run, writer, tokens_per_step=tokens_per_step))

    optimizer = make_optimizer(cfg, model)
    Trainer = make_trainer_class()
    head = model.get_output_embeddings()
    trainer = Trainer(model=model, args=args, callbacks=callbacks,
                      train_dataset=MixDataset(data, per_document=cfg.train.attention == "per_document"),
                      processing_class=tokenizer, optimizers=(optimizer, None), role_meter=meter, ewc=ewc,
                      lr_lambda=lr_lambda, fused_head=head if isinstance(head, FusedLinearHead) else None)
    if progress:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(QuietProgress())
    else:  # without a bar the Trainer prints every log dict (the metric stream has them) and saves draw bars
        trainer.remove_callback(PrinterCallback)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    resume = cfg.train.resume_from
    if resume == "last":
        last = run.last_checkpoint()
        resume = str(last) if last else None
    out = trainer.train(resume_from_checkpoint=resume)
    if writer:
        writer.close()
    return {"train_loss": float(out.training_loss), "steps": int(trainer.state.global_step),
            "tokens": int(trainer.state.global_step * tokens_per_step)}


def train_run(run: Run, cfg: RunConfig | None = None, progress: bool = True) -> dict[str, float]:
    """Train a run directory's config (cfg: already parsed by the caller), keeping status.json truthful
    whatever happens."""
    cfg = cfg or run.config()
    prev = run.status()
    attempt = int(prev.get("attempt", 0)) + 1
    main = is_main_process()
    plan = make_plan(cfg, world_size=world_size())  # stages may fix their own steps
    if main:
        run.write_status("running", pid=os.getpid(), attempt=attempt, max_steps=plan.steps,
                         started=time.time(), error=None)
    try:
        check_leaks(cfg, plan)  # before any data is built: the status records the refusal
        result = train(cfg, run, progress=progress, attempt=attempt, plan=plan)
    except KeyboardInterrupt:
        if main:
            run.write_status("stopped", error="interrupted by the user")
        raise
    except BaseException as e:
        if main:
            tb = traceback.format_exc().strip().splitlines()[-12:]
            run.write_status("failed", error=describe_error(e), traceback=tb)
        raise
    if main:
        st = run.status()
        final = "stopped" if st.get("stop_requested") else "completed"
        run.write_status(final, step=result["steps"], result=result)
    return result


def describe_error(e: BaseException) -> str:
    msg = f"{type(e).__name__}: {e}".splitlines()[0][:500]
    if "out of memory" in msg.lower() or isinstance(e, MemoryError):
        return (f"out of memory: {msg} (lower train.batch_size, raising train.grad_accum to keep the same batch, "
                "or lower data.seq_len, or use LoRA)")
    full = "no space left on device" in msg.lower() or "os error 28" in msg.lower()  # also from Rust (safetensors)
    if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or full:
        return f"disk full: {msg} (free space where CPT_HOME and the checkpoints live, then cpt resume)"
    return msg
