"""Built-in recipes from the CPT literature: which stages each one trains (a recipe is a stage list; a preset
is a YAML file under experiments/). Steps, sequences and tokens per stage are cptcore/plan.py's job.

    cpt recipes                                  # what each recipe does
    cpt plan experiments/recipes/pit.yaml        # the stages, steps, mixes, LRs and tokens a config will train

Every recipe spends the same budget (train.max_steps), so recipes compare at equal tokens. Imports no torch.
"""
from __future__ import annotations

from .config import ConfigError, MixConfig, RunConfig, StageConfig, StageDataConfig

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
            raise ConfigError(f"recipe pit: recipe_options.qa_budget + final_it_budget must be < 1, got "
                             f"{o.qa_budget + o.final_it_budget:g}")
        stages = [_qa_stage(cfg, "qa", o.qa_budget), StageConfig(name="documents", budget=rest, data=docs_with_qa)]
        if o.final_it_budget > 0:
            stages.append(_qa_stage(cfg, "final_qa", o.final_it_budget))
        return stages
    if cfg.recipe == "pit_plus":
        domain = 1 - m.replay - o.qa_share
        if domain <= 0:
            raise ConfigError(f"recipe pit_plus: mix.replay + recipe_options.qa_share must be < 1, got "
                             f"{m.replay + o.qa_share:g}")
        both = MixConfig(domain=domain, replay=m.replay, instruct=o.qa_share)
        return [_qa_stage(cfg, "qa", o.qa_budget),
                StageConfig(name="qa+documents", budget=1 - o.qa_budget, data=docs_with_qa, mix=both)]
    # knowledge_instruct: facts (synthesized, or cut from the documents) in the domain role
    if cfg.data.facts:
        return [StageConfig(name="facts", budget=1.0, data=StageDataConfig(domain=cfg.data.facts))]
    return [StageConfig(name="facts", budget=1.0, domain_as="facts")]
