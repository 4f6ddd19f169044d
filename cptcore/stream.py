"""The Trainer's side of the metric stream: per-role loss, realized mix, throughput.

The loss is computed here (not by the model) so each sequence's loss can be credited to its role on the
very steps that trained it; the total is normalised exactly like the Trainer's own causal-LM loss. With
train.fused_kernels the per-token losses come from the lm_head itself (FusedLinearHead), never as logits.

The mix within the current stage, in two units, every logging step and per role:
    mix/<role>                   realized share of the input tokens trained (exact: sequences of seq_len)
    mix/requested/<role>         the share of input tokens the scheduler targeted for the same sequences
    mix_loss/<role>              realized share of the loss tokens (label positions != -100, from the labels)
    mix_loss/requested/<role>    the targeted share of loss tokens, only where mix.unit=loss_tokens
The prefix names the unit (mix: input tokens, mix_loss: loss tokens); requested/ is what was asked of it.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from transformers import ProgressCallback, Trainer, TrainerCallback

from .config import ROLES
from .data.mix import MixedData
from .runs.metrics import MetricWriter


class MixDataset(torch.utils.data.Dataset):
    """Map-style view of MixedData; the sequential sampler keeps the mix order.

    per_document (train.attention): each row also carries position_ids restarting at every document, from which
    transformers builds a block-diagonal causal mask (SDPA, eager, flash attention), so no token attends to
    another document of the same packed sequence."""

    def __init__(self, data: MixedData, per_document: bool = False):
        self.data, self.per_document = data, per_document

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids, labels, role = self.data.fetch(i)  # an online mix picks the role now
        row = {"input_ids": torch.from_numpy(ids).long(), "labels": torch.from_numpy(labels).long(),
               "role": torch.tensor(role)}
        if self.per_document:
            row["position_ids"] = torch.from_numpy(self.data.positions(i)).long()
        return row


def fused_token_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                     bias: torch.Tensor | None = None) -> torch.Tensor:
    """Per-token cross-entropy of (hidden @ weight.T + bias) against targets (-100: no loss), fp32, without
    building the (tokens, vocabulary) logits: Liger's fused linear cross-entropy, reduction none (its backward
    recomputes the logits chunk by chunk, the price of keeping per-sequence losses for each role)."""
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    return liger_fused_linear_cross_entropy(hidden, weight, targets, bias, ignore_index=-100, reduction="none")


class FusedLinearHead(torch.nn.Linear):
    """An lm_head that, while `targets` is set, returns per-token losses (batch, seq_len - 1) in place of the
    logits (fused_token_loss). The class of the loaded lm_head is swapped in place (use_fused_head), so weights,
    tying, checkpoints and DDP/FSDP wrapping stay as they were, and the loss is computed inside the model's own
    forward; with `targets` unset (evaluation, generation) it is the plain linear layer."""

    targets: torch.Tensor | None = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.targets is None:
            return super().forward(hidden)
        targets, self.targets = self.targets, None  # one forward per setting: a stale target never leaks
        h = hidden[:, :-1]  # position t predicts token t + 1
        loss = fused_token_loss(h.reshape(-1, h.size(-1)), self.weight, targets.reshape(-1), self.bias)
        return loss.view(targets.shape)


def use_fused_head(model) -> FusedLinearHead:
    """Swap the model's lm_head (a plain nn.Linear) to FusedLinearHead in place; returns it."""
    head = model.get_output_embeddings()
    if type(head) is not torch.nn.Linear:
        raise TypeError(f"train.fused_kernels: the output layer of {type(model).__name__} is a "
                        f"{type(head).__name__}, not a plain Linear: fused cross-entropy cannot replace it")
    head.__class__ = FusedLinearHead
    return head


class RoleLossMeter:
    """Sums token losses and counts per role between two log events."""

    def __init__(self):
        self.ewc_penalty: float | None = None  # the last EWC penalty added to the loss
        self.reset()

    def reset(self) -> None:
        self.loss_sum = torch.zeros(len(ROLES), dtype=torch.float64)
        self.tokens = torch.zeros(len(ROLES), dtype=torch.float64)

    def add(self, roles: torch.Tensor, seq_loss_sum: torch.Tensor, seq_tokens: torch.Tensor) -> None:
        r = roles.cpu().long()
        self.loss_sum.index_add_(0, r, seq_loss_sum.detach().double().cpu())
        self.tokens.index_add_(0, r, seq_tokens.detach().double().cpu())

    def means(self) -> dict[str, float]:
        """Mean loss per role since the last reset, summed over all processes."""
        sums, toks = self.loss_sum.clone(), self.tokens.clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            both = torch.stack([sums, toks])
            torch.distributed.all_reduce(both)
            sums, toks = both[0], both[1]
        self.reset()
        return {r: float(s / t) for r, s, t in zip(ROLES, sums, toks) if t > 0}


def make_trainer_class():
    """A Trainer whose loss also feeds the per-role meter."""

    class CPTTrainer(Trainer):
        def __init__(self, *args, role_meter: RoleLossMeter, ewc=None, lr_lambda=None,
                     fused_head: FusedLinearHead | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.role_meter = role_meter
            self.fused_head = fused_head  # train.fused_kernels: the lm_head computes the per-token loss
            self.ewc = ewc              # EWCPenalty or None
            self.lr_lambda = lr_lambda  # step -> LR factor across stages, or None for the HF schedule

        def create_scheduler(self, num_training_steps: int, optimizer=None):
            if self.lr_lambda is None or self.lr_scheduler is not None:
                return super().create_scheduler(num_training_steps, optimizer)
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, self.lr_lambda)
            self._created_lr_scheduler = True
            return self.lr_scheduler

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            roles = inputs.pop("role")
            labels = inputs.pop("labels")
            targets = labels[:, 1:]
            extra = {"position_ids": inputs["position_ids"]} if "position_ids" in inputs else {}
            fused = (self.fused_head is not None and model.training
                     and not isinstance(model, torch.nn.DataParallel))  # its replicas would not see the targets
            if fused:
                self.fused_head.targets = targets
            # use_cache=False: with a cache transformers ignores position_ids when it builds the mask, so
            # per-document attention would silently become packed attention
            outputs = model(input_ids=inputs["input_ids"], use_cache=False, **extra)
            if fused:
                token_loss = outputs.logits.float()
            else:
                logits = outputs.logits[:, :-1, :]
                token_loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                                             ignore_index=-100, reduction="none").view(targets.shape)
            counted = (targets != -100).sum(dim=1)
            self.role_meter.add(roles, token_loss.sum(dim=1), counted)
            total = token_loss.sum()
            if num_items_in_batch is not None:  # normalised over the whole accumulated batch, as HF does
                loss = total / num_items_in_batch
                if self.args.average_tokens_across_devices:
                    loss = loss * self.accelerator.num_processes
                self.loss_is_scaled_for_ga = True
            else:
                loss = total / counted.sum().clamp(min=1)
                self.loss_is_scaled_for_ga = False
            if self.ewc is not None:  # once per optimizer step in total, whatever the accumulation
                penalty = self.ewc(model)
                self.role_meter.ewc_penalty = self.ewc.last
                loss = loss + (penalty / self.current_gradient_accumulation_steps
                               if self.loss_is_scaled_for_ga else penalty)
            return (loss, outputs) if return_outputs else loss

    return CPTTrainer


class MetricStream(TrainerCallback):
    """Writes train/*, mix/* and mix_loss/* records at every logging step (main process only)."""

    def __init__(self, writer: MetricWriter | None, meter: RoleLossMeter, data: MixedData,
                 seqs_per_step: int, tokens_per_step: int):
        self.writer, self.meter, self.data = writer, meter, data
        self.seqs_per_step, self.tokens_per_step = seqs_per_step, tokens_per_step
        self._last_step, self._busy, self._step_t0 = None, 0.0, 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_step, self._busy = state.global_step, 0.0
        if self.writer is not None and self.writer.attempt > 1:  # the stream says where an attempt took over
            step = state.global_step
            self.writer.event("event/resume", f"attempt {self.writer.attempt} resumed at step {step}", step,
                              step * self.tokens_per_step, resumed_step=step)

    # throughput counts time inside optimizer steps only: evaluations and checkpoints run between them
    def on_step_begin(self, args, state, control, **kwargs):
        self._step_t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._busy += time.perf_counter() - self._step_t0

    def on_log(self, args, state, control, logs=None, **kwargs):
        role_loss = self.meter.means()  # collective in DDP: every rank calls it
        if logs and "loss" in logs:
            _check_finite_logs(logs, state.global_step)  # the logged loss is the same on every rank
        if self.writer is None or not logs or "loss" not in logs:
            return
        step = state.global_step
        tokens = step * self.tokens_per_step
        w = self.writer
        w.write("train/loss", logs["loss"], step, tokens)
        if "learning_rate" in logs:
            w.write("train/lr", logs["learning_rate"], step, tokens)
        if logs.get("grad_norm") is not None:
            w.write("train/grad_norm", logs["grad_norm"], step, tokens)
        for role, value in role_loss.items():
            w.write(f"train/loss/{role}", value, step, tokens)
        if step > self._last_step:
            tps = (step - self._last_step) * self.tokens_per_step / max(self._busy, 1e-9)
            w.write("train/tokens_per_second", tps, step, tokens)
        if self.meter.ewc_penalty is not None:
            w.write("train/ewc_penalty", self.meter.ewc_penalty, step, tokens)
        trained = step * self.seqs_per_step
        stage = self.data.stage_of(trained - 1)
        online = self.data.online is not None
        for prefix, unit in (("mix", "tokens"), ("mix_loss", "loss_tokens")):  # shares within the current stage
            realized = self.data.realized_shares(trained, start=stage.first_seq, unit=unit)
            targeted = unit == "tokens" or stage.unit == unit
            requested = self.data.requested_shares(trained, start=stage.first_seq, unit=unit) if targeted else {}
            for role, share in realized.items():
                if stage.shares.get(role, 0) > 0 or (online and share > 0):
                    w.write(f"{prefix}/{role}", share, step, tokens)
                    if targeted:
                        w.write(f"{prefix}/requested/{role}", requested[role], step, tokens)
        self._last_step, self._busy = step, 0.0


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN or infinite: the run fails at that step instead of going on."""


def _check_finite_logs(logs: dict, step: int) -> None:
    bad = {k: logs.get(k) for k in ("loss", "grad_norm")
           if logs.get(k) is not None and not math.isfinite(float(logs[k]))}
    if bad:
        got = ", ".join(f"{k} {v}" for k, v in bad.items())
        raise TrainingDiverged(f"training diverged at step {step}: {got} (lower train.lr, raise train.warmup_ratio "
                               "or check the data; the newest checkpoint before this step is the last good model)")


class QuietProgress(ProgressCallback):
    """The Trainer's progress bar with loss and LR in its postfix instead of a printed dict per step."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs and "loss" in logs:
            self.training_bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs.get('learning_rate', 0):.2e}")


class StageCallback(TrainerCallback):
    """Stage boundaries: an event/stage record, and a fresh optimizer state, as separate runs would have."""

    def __init__(self, stages: list, writer: MetricWriter | None, tokens_per_step: int):
        self.stages, self.writer, self.tokens_per_step = stages, writer, tokens_per_step

    def _event(self, stage: dict, step: int) -> None:
        if self.writer is None:
            return
        self.writer.event("event/stage", f"stage {stage.index + 1}/{len(self.stages)} {stage.name}: "
                          f"{stage.steps} steps, lr {stage.lr:g}, mix {stage.mix_text()}", step,
                          step * self.tokens_per_step, stage=stage.name, index=stage.index, steps=stage.steps,
                          shares=stage.shares, loss_shares=stage.loss_shares, unit=stage.unit, lr=stage.lr,
                          loss_on=stage.loss_on)

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step == 0 and self.stages:
            self._event(self.stages[0], 0)

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        for stage in self.stages[1:]:
            if state.global_step == stage.first_step:
                inner = getattr(optimizer, "optimizer", optimizer)
                if inner is not None:
                    inner.state.clear()  # AdamW moments of the previous stage's data do not carry over
                self._event(stage, state.global_step)


class TappedWriter(MetricWriter):
    """A MetricWriter that also hands every record to listeners (dynamic mixing reads evaluations here)."""

    def __init__(self, *args, **kwargs):
        self.listeners: list = []  # first: the parent may write a record (event/stream_repaired) while opening
        super().__init__(*args, **kwargs)

    def write(self, name, value, step, tokens, **extra):
        rec = super().write(name, value, step, tokens, **extra)
        for listen in self.listeners:
            listen(rec)
        return rec


class DynamicMixer:
    """Raises the replay share when general text gets worse (replay_ppl) and the instruct share when IFEval
    drops, by dynamic_mix.step per evaluation within bounds; steps back once the signal recovers. "Worse" is
    the warnings' rule: a significant paired decline from step 0 of at least the threshold."""

    SIGNALS = {"eval/replay_ppl": "replay", "eval/if_prompt_strict": "instruct"}

    def __init__(self, cfg, data: MixedData, writer: MetricWriter, seqs_per_step: int, tokens_per_step: int):
        self.cfg, self.data, self.writer = cfg, data, writer
        self.seqs_per_step, self.tokens_per_step = seqs_per_step, tokens_per_step
        self.bounds = {"replay": cfg.max_replay, "instruct": cfg.max_instruct}

    def decline(self, name: str, rec: dict) -> tuple[bool, str]:
        """The warnings' rule (evaluate.stats.decline): a paired, significant decline of at least the threshold."""
        from .evaluate.stats import decline

        if name == "eval/replay_ppl":
            key, threshold, unit = "general_loss_pct", self.cfg.general_loss_pct, "% of the general loss"
        else:
            key, threshold, unit = "if_drop_points", self.cfg.if_drop_points, " IFEval points"
        worse, size = decline(name, rec, threshold)
        ci = (f", paired 95% CI of the change {rec['delta_ci_low']:+.3g} .. {rec['delta_ci_high']:+.3g}"
              if rec.get("delta_ci_low") is not None else "")
        return worse, (f"{'worse' if worse else 'not significantly worse'} by {size or 0:.3g}{unit} vs step 0"
                       f"{ci} (threshold dynamic_mix.{key}={threshold:g})")

    def __call__(self, rec: dict) -> None:
        name, value = rec.get("name"), rec.get("value")
        if name not in self.SIGNALS or value is None:
            return
        step = int(rec["step"])
        if step == 0:
            return
        role = self.SIGNALS[name]
        online = self.data.online
        nxt = step * self.seqs_per_step
        shares = online.current_shares(nxt)
        shift = online.shift[role]
        base = shares[role] - min(shift, shares[role])
        worse, why = self.decline(name, rec)
        if worse:
            new = min(shift + self.cfg.step, max(0.0, self.bounds[role] - base), shift + shares["domain"])
        else:
            new = max(0.0, shift - self.cfg.step)
        if abs(new - shift) < 1e-9:
            return
        online.set_shift(role, new)
        after = online.current_shares(nxt)
        verb = "raised" if new > shift else "lowered"
        self.writer.event("event/mix_change", f"{role} share {verb} {shares[role]:.2f} -> {after[role]:.2f}: {why}",
                          step, step * self.tokens_per_step, role=role, share_from=shares[role],
                          share_to=after[role], shares=after, metric=name, value_now=value,
                          delta=rec.get("delta"), delta_ci_low=rec.get("delta_ci_low"),
                          delta_ci_high=rec.get("delta_ci_high"))
