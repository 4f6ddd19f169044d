"""The Trainer's side of the metric stream: per-role loss, realized mix, throughput.

The loss is computed here (not by the model) so each sequence's loss can be credited to its role on the
very steps that trained it; the total is normalised exactly like the Trainer's own causal-LM loss.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from transformers import ProgressCallback, Trainer, TrainerCallback

from .config import ROLES
from .data.mix import MixedData
from .runs import MetricWriter


class MixDataset(torch.utils.data.Dataset):
    """Map-style view of MixedData; the sequential sampler keeps the mix order."""

    def __init__(self, data: MixedData):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.from_numpy(self.data.input_ids[i]).long(),
                "labels": torch.from_numpy(self.data.labels[i]).long(),
                "role": torch.tensor(int(self.data.roles[i]))}


class RoleLossMeter:
    """Sums token losses and counts per role between two log events."""

    def __init__(self):
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
        def __init__(self, *args, role_meter: RoleLossMeter, **kwargs):
            super().__init__(*args, **kwargs)
            self.role_meter = role_meter

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            roles = inputs.pop("role")
            labels = inputs.pop("labels")
            outputs = model(input_ids=inputs["input_ids"])
            logits = outputs.logits[:, :-1, :]
            targets = labels[:, 1:]
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
            return (loss, outputs) if return_outputs else loss

    return CPTTrainer


class MetricStream(TrainerCallback):
    """Writes train/* and mix/* records at every logging step (main process only)."""

    def __init__(self, writer: MetricWriter | None, meter: RoleLossMeter, data: MixedData,
                 seqs_per_step: int, tokens_per_step: int):
        self.writer, self.meter, self.data = writer, meter, data
        self.seqs_per_step, self.tokens_per_step = seqs_per_step, tokens_per_step
        self._t0 = self._last_step = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0, self._last_step = time.time(), state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        role_loss = self.meter.means()  # collective in DDP: every rank calls it
        if self.writer is None or not logs or "loss" not in logs:
            return
        step = state.global_step
        tokens = step * self.tokens_per_step
        now = time.time()
        w = self.writer
        w.write("train/loss", logs["loss"], step, tokens)
        if "learning_rate" in logs:
            w.write("train/lr", logs["learning_rate"], step, tokens)
        if logs.get("grad_norm") is not None:
            w.write("train/grad_norm", logs["grad_norm"], step, tokens)
        for role, value in role_loss.items():
            w.write(f"train/loss/{role}", value, step, tokens)
        if step > self._last_step:
            tps = (step - self._last_step) * self.tokens_per_step / max(now - self._t0, 1e-9)
            w.write("train/tokens_per_second", tps, step, tokens)
        for role, share in self.data.realized_shares(step * self.seqs_per_step).items():
            if self.data.manifest["requested"].get(role, 0) > 0:
                w.write(f"mix/{role}", share, step, tokens)
        self._t0, self._last_step = now, step


class QuietProgress(ProgressCallback):
    """The Trainer's progress bar with loss and LR in its postfix instead of a printed dict per step."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs and "loss" in logs:
            self.training_bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs.get('learning_rate', 0):.2e}")
