"""Built-in recipes from the CPT literature, expanded into stages: the plan a multi-stage run trains.

    cpt recipes                                  # what each recipe does
    cpt recipes experiments/recipes/pit.yaml     # the stages, steps, mixes and LRs a config will train

Every recipe spends the same budget (train.max_steps), so recipes compare at equal tokens. Imports no torch:
the config validator calls plan() to reject a stage without data before anything loads.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import ROLES, MixConfig, RunConfig, SourceConfig, StageConfig, StageDataConfig

RECIPES = {  # name -> one line for the Launch page and `cpt recipes`
    "cpt": "Continued pre-training: one stage on the documents, mixed with replay and instructions.",
    "cpt_then_it": "Documents first, then instruction tuning on QA pairs about training documents "
                   "(Jiang et al. 2024: CPT -> IT).",
    "pit": "Pre-instruction-tuning: QA pairs first, then the documents with train-split QA mixed in "
           "(optionally a final QA stage; Jiang et al. 2024).",
    "pit_plus": "PIT++: QA pairs first, then QA and documents together (Jiang et al. 2024's best recipe).",
    "knowledge_instruct": "Knowledge-Instruct: the documents' facts as instructions, mixed with general "
                          "instructions, in one stage (Ovadia et al. 2025).",
}


@dataclass
class PlannedStage:
    """One stage as it trains: steps counted from the run's start, concrete sources and shares."""
    index: int
    name: str
    first_step: int
    steps: int
    data: dict[str, list[SourceConfig]]
    shares: dict[str, float]
    lr: float
    loss_on: str
    domain_as: str

    def summary(self) -> dict:
        return {"index": self.index, "name": self.name, "first_step": self.first_step, "steps": self.steps,
                "shares": self.shares, "lr": self.lr, "loss_on": self.loss_on, "domain_as": self.domain_as,
                "sources": {r: [s.path for s in self.data[r]] for r in ROLES if self.shares[r] > 0}}


def _qa_stage(cfg: RunConfig, name: str, budget: float) -> StageConfig:
    """Instruction tuning on QA pairs (answer tokens only), keeping the run's replay share."""
    replay = cfg.mix.replay
    return StageConfig(name=name, budget=budget, data=StageDataConfig(instruct=cfg.data.qa),
                       mix=MixConfig(domain=0.0, replay=replay, instruct=1.0 - replay),
                       lr=cfg.train.lr * cfg.recipe_options.qa_lr_ratio, loss_on="answers")


def recipe_stages(cfg: RunConfig) -> list[StageConfig]:
    """The stages of cfg.recipe (explicit cfg.stages win)."""
    if cfg.stages is not None:
        return list(cfg.stages)
    o, m = cfg.recipe_options, cfg.mix
    docs_with_qa = StageDataConfig(instruct=cfg.data.qa)  # train-split QA takes the instruct role
    if cfg.recipe == "cpt":
        return [StageConfig(name="documents", budget=1.0)]
    if cfg.recipe == "cpt_then_it":
        return [StageConfig(name="documents", budget=1 - o.qa_budget), _qa_stage(cfg, "qa", o.qa_budget)]
    if cfg.recipe == "pit":
        rest = 1 - o.qa_budget - o.final_it_budget
        if rest <= 0:
            raise ValueError(f"recipe pit: recipe_options.qa_budget + final_it_budget must be < 1, got "
                             f"{o.qa_budget + o.final_it_budget:g}")
        stages = [_qa_stage(cfg, "qa", o.qa_budget), StageConfig(name="documents", budget=rest, data=docs_with_qa)]
        if o.final_it_budget > 0:
            stages.append(_qa_stage(cfg, "final_qa", o.final_it_budget))
        return stages
    if cfg.recipe == "pit_plus":
        domain = 1 - m.replay - o.qa_share
        if domain <= 0:
            raise ValueError(f"recipe pit_plus: mix.replay + recipe_options.qa_share must be < 1, got "
                             f"{m.replay + o.qa_share:g}")
        both = MixConfig(domain=domain, replay=m.replay, instruct=o.qa_share)
        return [_qa_stage(cfg, "qa", o.qa_budget),
                StageConfig(name="qa+documents", budget=1 - o.qa_budget, data=docs_with_qa, mix=both)]
    # knowledge_instruct: facts (synthesized, or cut from the documents) in the domain role
    if cfg.data.facts:
        return [StageConfig(name="facts", budget=1.0, data=StageDataConfig(domain=cfg.data.facts))]
    return [StageConfig(name="facts", budget=1.0, domain_as="facts")]


def split_steps(stages: list[StageConfig], total: int) -> list[int]:
    """Steps per stage: fixed max_steps, budget shares of `total`, the rest split equally."""
    fixed = [s.max_steps if s.max_steps is not None else (round(s.budget * total) if s.budget else None)
             for s in stages]
    budgeted = [i for i, s in enumerate(stages) if s.budget is not None]
    if budgeted and abs(sum(stages[i].budget for i in budgeted) - 1) < 1e-6:  # shares of the whole: sum exactly
        fixed[budgeted[-1]] = total - sum(fixed[i] for i in budgeted[:-1])
    free = [i for i, f in enumerate(fixed) if f is None]
    left = total - sum(f for f in fixed if f is not None)
    for j, i in enumerate(free):
        fixed[i] = left // len(free) + (1 if j < left % len(free) else 0)
    return fixed


def plan(cfg: RunConfig) -> list[PlannedStage]:
    """The run's stages with steps, sources, shares and LR resolved; ValueError names what to fix."""
    stages = recipe_stages(cfg)
    steps = split_steps(stages, cfg.train.max_steps)
    source = "stages" if cfg.stages is not None else f"recipe {cfg.recipe}"
    out, first = [], 0
    for i, (s, n) in enumerate(zip(stages, steps)):
        where = f"{source}: stage {i + 1} {s.name!r}"
        if n < 1:
            raise ValueError(f"{where} gets {n} steps: raise train.max_steps (now {cfg.train.max_steps}) "
                             f"or this stage's budget")
        shares = (s.mix or cfg.mix).shares()
        data = {r: (getattr(s.data, r) if getattr(s.data, r) is not None else getattr(cfg.data, r)) for r in ROLES}
        for role in ROLES:
            if shares[role] > 0 and not data[role]:
                hint = {"instruct": "data.qa" if s.data.instruct is not None and cfg.stages is None
                        else "data.instruct", "domain": "data.domain", "replay": "data.replay"}[role]
                raise ValueError(f"{where} mixes {role} (share {shares[role]:g}) but has no {role} data "
                                 f"(set {hint}{' or the stage data' if cfg.stages is not None else ''})")
        if cfg.progressive.enabled and 0 < shares["domain"] and shares["domain"] >= 1:
            raise ValueError(f"{where}: progressive.enabled needs a replay or instruct share to ramp from "
                             f"(the domain share is 1)")
        out.append(PlannedStage(i, s.name, first, n, data, shares, s.lr or cfg.train.lr, s.loss_on, s.domain_as))
        first += n
    return out


def total_steps(cfg: RunConfig) -> int:
    """Optimizer steps of the whole run (train.max_steps unless explicit stages fix their own)."""
    return sum(s.steps for s in plan(cfg))


def stage_config(cfg: RunConfig, stage: PlannedStage) -> RunConfig:
    """The run's config as one stage sees it: its sources, shares, LR and steps (not re-validated)."""
    data = cfg.data.model_copy(update={r: stage.data[r] for r in ROLES})
    return cfg.model_copy(update={
        "data": data, "mix": MixConfig(**stage.shares), "stages": None, "recipe": "cpt",
        "train": cfg.train.model_copy(update={"lr": stage.lr, "max_steps": stage.steps})})


def describe(cfg: RunConfig) -> str:
    """A human-readable plan: what each stage trains, for how long, at which LR."""
    tokens = cfg.train.tokens_per_step(cfg.data.seq_len)
    lines = [f"recipe {cfg.recipe if cfg.stages is None else 'custom stages'}: {total_steps(cfg)} steps x "
             f"{tokens:,} tokens"]
    for s in plan(cfg):
        mix = ", ".join(f"{r} {100 * v:g}%" for r, v in s.shares.items() if v > 0)
        src = "; ".join(f"{r}: {', '.join(x.path for x in s.data[r])}" for r in ROLES if s.shares[r] > 0)
        extra = (", loss on prompts too" if s.loss_on == "all" else "") + \
                (", documents as fact instructions" if s.domain_as == "facts" else "")
        lines.append(f"  {s.index + 1}. {s.name:14} steps {s.first_step + 1}-{s.first_step + s.steps} "
                     f"({s.steps * tokens:,} tokens)  lr {s.lr:g}  mix {mix}{extra}\n     {src}")
    return "\n".join(lines)


def cmd_recipes(args) -> int:
    """`cpt recipes [CONFIG]`: the recipes, or the stages a config will train."""
    if args.config is None:
        for name, text in RECIPES.items():
            print(f"{name:20} {text}")
        return 0
    print(describe(RunConfig.load(args.config, args.set)))
    return 0


def add_parser(sub) -> None:
    from pathlib import Path

    p = sub.add_parser("recipes", help="list the built-in recipes, or print the stages a config will train")
    p.add_argument("config", type=Path, nargs="?")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value")
    p.set_defaults(func=cmd_recipes)
