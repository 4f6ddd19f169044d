"""Checks before a run starts: the seed's pitfalls on a config and its plan, each with the reason it matters.

Never imports streamlit or torch; the Launch page renders what these return. Data files are checked by
cptcore/data/inspect.py.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import fmt
from .config import RunConfig
from .plan import Plan

# Peak LR ranges per (model kind, method). Full fine-tuning of instruct models in the CPT papers uses
# 5e-6..3e-5 at 7B; small models tolerate a little more. LoRA wants about 10x the full rate (Biderman et al.
# 2024 sweep 1e-5..5e-4); base models tolerate more than instruct models (no chat behaviour to lose).
LR_RANGES = {
    ("instruct", "full"): (1e-5, 5e-5),
    ("base", "full"): (3e-5, 1e-4),
    ("instruct", "lora"): (1e-4, 5e-4),
    ("base", "lora"): (3e-4, 1e-3),
}
MAX_PASSES = 10.0  # Jiang et al. 2024 train 10 epochs over the documents; beyond that it memorises and forgets
MIN_REPLAY = 0.05  # Ibrahim et al. 2024: 5% replay for a mild shift, 25% for a strong one
INSTRUCT_STEPS = 500  # the config's own guidance: 100-500 steps keep an instruct model's chat behaviour


@dataclass
class Finding:
    """One pre-launch warning: a short message and the reason it matters."""
    code: str
    level: str  # "warning" (likely to spoil the run) or "info" (worth knowing)
    message: str
    reason: str


def recommended_lr(kind: str, method: str) -> tuple[float, float]:
    return LR_RANGES[(kind, method)]


# --- pitfalls --------------------------------------------------------------------------------
def check_config(cfg: RunConfig, plan: Plan) -> list[Finding]:
    """The seed's pitfalls on a config and its plan, warnings first. Shares are the whole run's planned shares
    (every stage); passes need a plan whose sources were counted (plan.plan(..., count=...))."""
    out: list[Finding] = []
    kind, method, lr = cfg.model.kind, cfg.train.method, cfg.train.lr
    lo, hi = recommended_lr(kind, method)
    evals = set(cfg.eval.evaluators)
    share = plan.requested
    steps = plan.steps
    if share["domain"] == 0:
        out.append(Finding("no_domain", "warning", "mix.domain is 0: the run trains on no domain text.",
                           "Nothing new is learned; the run only measures drift."))
    if share["replay"] == 0:
        out.append(Finding(
            "no_replay", "warning", "No replay data (mix.replay = 0).",
            "Without general text the model forgets fastest; 5% replay suffices for a mild shift and 25% for a "
            "strong one (Ibrahim et al. 2024), and small models need more."))
    elif share["replay"] < MIN_REPLAY:
        out.append(Finding("low_replay", "info", f"Replay is {share['replay']:.0%}, below {MIN_REPLAY:.0%}.",
                           "Even 1% helps, but 5-25% is what limits forgetting in Ibrahim et al. 2024."))
    if lr > hi:
        who = "an instruct model" if kind == "instruct" else "a base model"
        out.append(Finding(
            "lr_high", "warning", f"LR {fmt.lr(lr)} is above the {fmt.lr(lo)} .. {fmt.lr(hi)} range for {who} with {method} training.",
            "A higher peak LR adapts more and forgets more (Ibrahim et al. 2024)"
            + ("; instruct models lose instruction following first." if kind == "instruct" else ".")))
    elif lr < lo:
        out.append(Finding("lr_low", "info", f"LR {fmt.lr(lr)} is below the {fmt.lr(lo)} .. {fmt.lr(hi)} range for {kind}/{method}.",
                           "The run may barely move the domain metrics."
                           + (" LoRA wants about 10x the full fine-tuning LR." if method == "lora" else "")))
    domain = plan.roles.get("domain")
    passes = domain.passes if domain else None
    if passes is not None and passes > MAX_PASSES:
        out.append(Finding(
            "too_many_passes", "warning", f"{passes:.1f} passes over the domain documents (more than {MAX_PASSES:g}).",
            "Repeating the same documents many times memorises them and drives forgetting; add documents or "
            "paraphrases, or lower train.max_steps or mix.domain."))
    elif passes is not None and 0 < passes < 1:
        out.append(Finding("under_one_pass", "info", f"Only {passes:.0%} of the domain tokens will be trained on.",
                           "Facts in documents the run never reaches cannot be learned."))
    if not evals:
        out.append(Finding(
            "no_eval", "warning", "No evaluation (eval.evaluators is empty).",
            "Without a step-0 baseline and evaluations you cannot see domain gain or forgetting."))
    else:
        if kind == "instruct" and "ifeval" not in evals:
            out.append(Finding(
                "no_if_eval", "warning", "Instruct model without the ifeval evaluator.",
                "Instruction following is what CPT of an instruct model loses first; without IFEval its loss is "
                "invisible."))
        if "replay_ppl" not in evals and "ifeval" not in evals:
            out.append(Finding("no_general_eval", "warning", "No general evaluator (replay_ppl or ifeval).",
                               "Forgetting cannot be measured."))
        if not evals & {"domain_ppl", "knowledge_qa"}:
            out.append(Finding("no_domain_eval", "info", "No domain evaluator (domain_ppl or knowledge_qa).",
                               "The domain gain cannot be measured."))
        if cfg.eval.every_steps >= steps:
            out.append(Finding("sparse_eval", "info", "Evaluations only at step 0 and at the end.",
                               f"eval.every_steps ({cfg.eval.every_steps}) >= the run's {steps} steps: "
                               "no curve in between."))
    if kind == "instruct" and share["instruct"] == 0:
        out.append(Finding(
            "no_instruct_data", "warning", "Instruct model trained without instruction data (mix.instruct = 0).",
            "A few instruction examples in the mix keep the answer format usable (Jiang et al. 2024)."))
    if kind == "instruct" and steps > INSTRUCT_STEPS:
        out.append(Finding("long_instruct_run", "info", f"{steps} steps on an instruct model.",
                           f"Up to {INSTRUCT_STEPS} steps usually keeps instruction following; watch IFEval."))
    return sorted(out, key=lambda f: f.level != "warning")
