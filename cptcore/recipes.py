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
    "pit": "Pre-instruction-tuning: QA pairs together with their own documents, then the documents that have "
           "no QA (Jiang et al. 2024, variant 7).",
    "pit_plus": "PIT++: QA pairs alone, then QA with their own documents, then the documents that have no QA "
                "(Jiang et al. 2024's best recipe, variant 8).",
    "knowledge_instruct": "Knowledge-Instruct: the documents' facts as instructions, mixed with general "
                          "instructions, in one stage (Ovadia et al. 2025).",
}


def _qa_stage(cfg: RunConfig, name: str, budget: float) -> StageConfig:
    """Instruction tuning on QA pairs (answer tokens only), keeping the run's replay share."""
    replay = cfg.mix.replay
    return StageConfig(name=name, budget=budget, data=StageDataConfig(instruct=cfg.data.qa),
                       mix=MixConfig(domain=0.0, replay=replay, instruct=1.0 - replay),
                       lr=cfg.train.lr * cfg.recipe_options.qa_lr_ratio, loss_on="answers")


def qa_subjects(cfg: RunConfig) -> tuple[str, list[str]]:
    """(field, values): what the QA pairs of data.qa are about, by entity_id (else entity name)."""
    from .data.sources import DataError, read_records

    if not cfg.data.qa:
        raise ConfigError(f"recipe {cfg.recipe}: data.qa is empty: the recipe trains QA pairs about the training "
                          "documents")
    try:
        rows = [r for src in cfg.data.qa for r in read_records(src)]
    except DataError as e:
        raise ConfigError(f"recipe {cfg.recipe}: data.qa: {e}") from None
    if rows and all(r.get("document_key") and str(r.get("entity_id")) == r["document_key"] for r in rows):
        return "document_key", sorted({r["document_key"] for r in rows})  # `cpt synth` QA of documents without ids
    for field in ("entity_id", "entity"):
        values = sorted({str(r[field]) for r in rows if r.get(field) is not None})
        if values:
            return field, values
    raise ConfigError(f"recipe {cfg.recipe}: the QA pairs of data.qa name no entity_id or entity, so the documents "
                      "they are about cannot be told from the test documents (add the field, or use cpt_then_it)")


def split_documents(cfg: RunConfig) -> tuple[list, list]:
    """data.domain as (documents whose entity has QA pairs in data.qa, the others): Jiang et al.'s train and
    test documents. The test documents' questions are never trained; they measure knowledge absorption."""
    field, values = qa_subjects(cfg)
    with_qa = [s.model_copy(update={"keep": {**(s.keep or {}), field: values}}) for s in cfg.data.domain]
    without = [s.model_copy(update={"drop": {**(s.drop or {}), field: values}}) for s in cfg.data.domain]
    return with_qa, without


def recipe_stages(cfg: RunConfig) -> list[StageConfig]:
    """The stages of cfg.recipe (explicit cfg.stages win)."""
    if cfg.stages is not None:
        return list(cfg.stages)
    o, m = cfg.recipe_options, cfg.mix
    if cfg.recipe == "cpt":
        return [StageConfig(name="documents", budget=1.0)]
    if cfg.recipe == "cpt_then_it":
        return [StageConfig(name="documents", budget=1 - o.qa_budget), _qa_stage(cfg, "qa", o.qa_budget)]
    if cfg.recipe in ("pit", "pit_plus"):
        domain = 1 - m.replay - o.qa_share
        if domain <= 0:
            raise ConfigError(f"recipe {cfg.recipe}: mix.replay + recipe_options.qa_share must be < 1, got "
                              f"{m.replay + o.qa_share:g}")
        first = o.qa_budget if cfg.recipe == "pit_plus" else 0.0
        rest = 1 - first - o.test_docs_budget
        if rest <= 0:
            raise ConfigError(f"recipe {cfg.recipe}: recipe_options.qa_budget + test_docs_budget must be < 1, got "
                              f"{first + o.test_docs_budget:g}")
        train_docs, test_docs = split_documents(cfg)
        # each QA pair is trained beside its own document (Jiang et al.: QA before documents helps absorption)
        both = StageConfig(name="qa+train_docs", budget=rest,
                           data=StageDataConfig(domain=train_docs, instruct=cfg.data.qa),
                           mix=MixConfig(domain=domain, replay=m.replay, instruct=o.qa_share))
        last = StageConfig(name="test_docs", budget=o.test_docs_budget, data=StageDataConfig(domain=test_docs))
        return ([_qa_stage(cfg, "qa", o.qa_budget)] if cfg.recipe == "pit_plus" else []) + [both, last]
    # knowledge_instruct: facts (synthesized, or cut from the documents) in the domain role
    if cfg.data.facts:
        return [StageConfig(name="facts", budget=1.0, data=StageDataConfig(domain=cfg.data.facts))]
    return [StageConfig(name="facts", budget=1.0, domain_as="facts")]
