"""Elastic weight consolidation: keep weights that matter for general text close to where they started.

Penalty = λ/2 Σ F_i (θ_i - θ0_i)², F = mean squared gradient of the loss on general (replay) sequences,
clipped at a high quantile and normalized to mean 1 so that λ means the same for any model; sweep it on a log
scale (ewc.log10_lambda). Only trainable parameters take part (LoRA: the adapters).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def fisher_diagonal(model, sequences: list[torch.Tensor], clip_quantile: float = 0.999,
                    sample: int = 1_000_000) -> dict[str, torch.Tensor]:
    """Mean over sequences of the squared gradient of each trainable weight, clipped, mean 1."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    was_training = model.training
    model.eval()  # no dropout: the Fisher of the model as it is
    for ids in sequences:
        model.zero_grad(set_to_none=True)
        ids = ids.view(1, -1).long().to(next(model.parameters()).device)
        logits = model(input_ids=ids).logits[:, :-1].float()
        F.cross_entropy(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1)).backward()
        for n, p in params.items():
            if p.grad is not None:
                fisher[n] += p.grad.detach().float() ** 2 / len(sequences)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    flat = torch.cat([f.flatten() for f in fisher.values()])
    if flat.numel() > sample:  # torch.quantile refuses huge inputs: estimate on a fixed sample
        gen = torch.Generator(device="cpu").manual_seed(0)
        flat = flat[torch.randint(flat.numel(), (sample,), generator=gen).to(flat.device)]
    cap = torch.quantile(flat, clip_quantile) if clip_quantile < 1 else flat.max()
    total, count = 0.0, 0
    for f in fisher.values():
        f.clamp_(max=float(cap))
        total, count = total + float(f.sum()), count + f.numel()
    mean = total / max(count, 1)
    if mean <= 0:
        raise ValueError("ewc: every gradient on the replay data is zero; cannot weigh the weights")
    return {n: f / mean for n, f in fisher.items()}


class EWCPenalty:
    """λ/2 Σ F (θ - θ0)² over the model's trainable weights, θ0 = the weights when it was built."""

    def __init__(self, model, fisher: dict[str, torch.Tensor], lam: float):
        self.lam = lam
        self.names = list(fisher)
        self.fisher = [fisher[n] for n in self.names]
        params = dict(model.named_parameters())
        self.anchor = [params[n].detach().clone().float() for n in self.names]
        self.last = 0.0

    def __call__(self, model) -> torch.Tensor:
        params = dict(model.named_parameters())
        total = None
        for n, f, a in zip(self.names, self.fisher, self.anchor):
            term = (f * (params[n].float() - a) ** 2).sum()
            total = term if total is None else total + term
        value = 0.5 * self.lam * total
        self.last = float(value.detach())
        return value


def build_ewc(cfg, model, tokenizer) -> EWCPenalty:
    """Fisher from the run's replay sources (packed like training sequences), anchored at the current weights."""
    from .data.mix import role_packers

    packer, _ = role_packers(cfg, tokenizer, ["replay"])["replay"]
    sequences = [torch.from_numpy(packer.next()[0]) for _ in range(cfg.ewc.fisher_sequences)]
    fisher = fisher_diagonal(model, sequences, cfg.ewc.clip_quantile)
    return EWCPenalty(model, fisher, 10.0 ** cfg.ewc.log10_lambda)
