"""The model advisor: a short questionnaire -> model kind, recipe, method, LR range and replay share, with reasons.

    cpt advise                                   # asks the questions
    cpt advise --keep-chat yes --goal knowledge --has-qa yes --model-size small --json

The rules restate the seed's "choose base when / choose instruct when" with the numbers of the papers
(docs: ../shared/notes/research.md); every recommendation carries the reason and its source. Imports no torch.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field

from . import fmt
from .errors import UsageError

QUESTIONS = (  # key, question, options (the first is the default)
    ("keep_chat", "Must the model still chat and follow instructions after training?", ("yes", "no")),
    ("goal", "What should it gain?", ("knowledge", "domain_language", "new_language")),
    ("has_qa", "Do you have question-answer pairs about your documents (or can generate them)?", ("yes", "no")),
    ("domain_tokens", "How much domain text do you have?", ("under_10m", "10m_to_1b", "over_1b")),
    ("model_size", "How big is the model?", ("small", "medium", "large")),  # <1B, 1-10B, >10B
    ("compute", "Can you afford full fine-tuning (about 16 bytes of GPU memory per parameter)?", ("yes", "no")),
    ("general_data", "Do you have general text like the model's pre-training data?", ("yes", "no")),
)
OPTION_HELP = {
    "knowledge": "answer questions about new facts", "domain_language": "write and read a field's text",
    "new_language": "a language or code the model barely knows", "under_10m": "< 10M tokens",
    "10m_to_1b": "10M-1B tokens", "over_1b": "> 1B tokens", "small": "< 1B parameters",
    "medium": "1-10B parameters", "large": "> 10B parameters",
}


@dataclass
class Advice:
    model_kind: str
    recipe: str
    method: str
    lr_range: tuple[float, float]
    replay_share: float
    instruct_share: float
    reasons: list[dict] = field(default_factory=list)  # {"topic", "text", "source"}

    def overrides(self) -> dict:
        """Config values to start from (`cpt train CONFIG --set ...`)."""
        lo, hi = self.lr_range
        instruct = self.instruct_share
        return {"model.kind": self.model_kind, "recipe": self.recipe, "train.method": self.method,
                "train.lr": float(f"{(lo * hi) ** 0.5:.1g}"), "mix.replay": self.replay_share,
                "mix.instruct": instruct, "mix.domain": round(1 - self.replay_share - instruct, 4)}


def normalize(answers: dict[str, str]) -> dict[str, str]:
    """Fill defaults and reject unknown keys or options with a message naming them."""
    known = {k: opts for k, _, opts in QUESTIONS}
    out = {}
    for key, value in answers.items():
        if key not in known:
            raise ValueError(f"unknown question {key!r} (questions: {', '.join(known)})")
        if value not in known[key]:
            raise ValueError(f"--{key.replace('_', '-')}: {value!r} is not one of {', '.join(known[key])}")
        out[key] = value
    return {k: out.get(k, opts[0]) for k, opts in known.items()}


def advise(answers: dict[str, str]) -> Advice:
    """The recommendation for a set of answers (missing answers take the first option)."""
    a = normalize(answers)
    why: list[dict] = []

    def reason(topic: str, text: str, source: str) -> None:
        why.append({"topic": topic, "text": text, "source": source})

    # model kind: the seed's "choose instruct when you need chat afterwards, base when you will re-tune anyway"
    if a["keep_chat"] == "yes":
        kind = "instruct"
        reason("model", "You need chat afterwards: start from the instruct model, keep an instruction share and "
               "a low LR so instruction following survives.", "seed guidance; Ibrahim et al. 2024 (re-warming "
               "the LR causes forgetting)")
    else:
        kind = "base"
        reason("model", "No chat needed (or you will instruction-tune afterwards): a base model tolerates a "
               "higher LR and has no chat behaviour to lose.", "seed guidance")
    method = "full" if a["compute"] == "yes" else "lora"
    if method == "lora":
        reason("method", "LoRA learns less but forgets less than full fine-tuning, and wants about 10x the LR "
               "(forgetting score 0.617 LoRA vs 0.545 full).", "Biderman et al. 2024")
    else:
        reason("method", "Full fine-tuning learns the most (HumanEval 0.263 full vs 0.224 LoRA at 20B tokens) "
               "and forgets the most: pair it with replay.", "Biderman et al. 2024")
    # recipe
    if a["goal"] == "knowledge" and a["has_qa"] == "yes":
        recipe = "pit_plus"
        reason("recipe", "Facts to recall and QA pairs to teach the format: QA first, then QA with documents "
               "(PIT++ 48.1 EM vs CPT->IT 30.3 vs CPT 27.6 on Llama-2 7B).", "Jiang et al. 2024")
    elif a["goal"] == "knowledge":
        recipe = "knowledge_instruct"
        reason("recipe", "Facts to recall but no QA: turn the documents' facts into instructions with "
               "paraphrases (81.8 vs 4.2 for raw CPT on fictional companies), or write QA pairs with "
               "`cpt synth --kind qa` and use pit_plus.", "Ovadia et al. 2025; Jiang et al. 2024")
    elif kind == "base" and a["keep_chat"] == "no":
        recipe = "cpt"
        reason("recipe", "Language or style, not recall: plain continued pre-training; instruction-tune "
               "afterwards (cpt_then_it) if you later need chat.", "Ibrahim et al. 2024")
    else:
        recipe = "cpt"
        reason("recipe", "Language or style with chat kept: continued pre-training with an instruction share "
               "in the mix.", "Jiang et al. 2024 (64 QA pairs mixed into CPT keep the answer format usable)")
    # replay share
    strong = a["goal"] == "new_language"
    replay = 0.25 if strong else 0.05
    reason("replay", f"{'A strong shift (a new language)' if strong else 'A mild shift'}: replay "
           f"{replay:.0%} of general text ({'25% for English->German' if strong else '5% suffices, even 1% helps'}).",
           "Ibrahim et al. 2024")
    if a["model_size"] == "small":
        replay = max(replay, 0.15)
        reason("replay", "Small models tolerate less domain share (critical mixture ratio ~30% at 460M vs ~48% "
               "at 3.1B): give them generous replay.", "D-CPT Law, Que et al. 2024")
    if a["domain_tokens"] == "over_1b":
        reason("budget", "With over 1B domain tokens the run is long: prefer a warmup-stable-decay schedule "
               "(train.schedule=wsd) so it can stop or extend at any point.", "Ibrahim et al. 2024")
    elif a["domain_tokens"] == "under_10m" and a["goal"] != "knowledge":
        reason("budget", "Under 10M tokens, several passes are needed and memorisation starts after ~10: "
               "watch domain perplexity against replay perplexity.", "Jiang et al. 2024 (10 epochs)")
    if a["general_data"] == "no":
        reason("replay", "No general data: let the starting model write its own rehearsal text "
               "(builtin:replay is made this way).", "Self-Synthesized Rehearsal (research notes)")
    from .checks import recommended_lr  # one table of LR ranges for the advisor and the pre-launch checks

    instruct = 0.05 if kind == "instruct" else 0.0
    lo, hi = recommended_lr(kind, method)
    reason("lr", f"Peak LR {fmt.lr(lo)}..{fmt.lr(hi)} for {kind} + {method}: full fine-tunes in these papers use "
           "5e-6..3e-5 at 7-8B; smaller models tolerate the upper end; LoRA about 10x.",
           "research notes: learning rates")
    return Advice(kind, recipe, method, (lo, hi), replay, instruct, why)


def set_args(overrides: dict) -> str:
    """`--set key=value` arguments of the advice, the LR written as people write it (2e-5)."""
    return " ".join(f"--set {k}={fmt.lr(v) if k == 'train.lr' else v}" for k, v in overrides.items())


def format_advice(adv: Advice) -> str:
    lo, hi = adv.lr_range
    lines = [f"model kind   {adv.model_kind}", f"recipe       {adv.recipe}", f"method       {adv.method}",
             f"peak LR      {fmt.lr(adv.overrides()['train.lr'])} (range {fmt.lr(lo)} .. {fmt.lr(hi)})",
             f"replay share {fmt.pct(adv.replay_share)}", f"instruct     {fmt.pct(adv.instruct_share)}", "", "why:"]
    lines += [f"  [{r['topic']}] {r['text']} ({r['source']})" for r in adv.reasons]
    lines += ["", f"start with: cpt train experiments/recipes/{adv.recipe}.yaml {set_args(adv.overrides())}"]
    return "\n".join(lines)


def cmd_advise(args) -> int:
    answers = {}
    for key, question, options in QUESTIONS:
        value = getattr(args, key)
        if value is None and sys.stdin.isatty() and not args.json:
            shown = ", ".join(f"{o} ({OPTION_HELP[o]})" if o in OPTION_HELP else o for o in options)
            value = input(f"{question} [{shown}; default {options[0]}] ").strip() or options[0]
        if value is not None:
            answers[key] = value
    try:
        adv = advise(answers)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(json.dumps(asdict(adv) | {"overrides": adv.overrides()}, indent=1) if args.json else format_advice(adv))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("advise", help="recommend model kind, recipe, LR and replay share from a few questions")
    for key, question, options in QUESTIONS:
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, choices=options, help=question)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_advise)
