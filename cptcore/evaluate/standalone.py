"""Evaluate any model, checkpoint or run without training (`cpt eval`).

    cpt eval --model smollm2-135m-instruct --suite ifeval,knowledge_qa --limit 20 --json
    cpt eval --model RUN_ID            # that run's newest checkpoint (the final one once it completed)

Greedy decoding and seeded intervals: the same model and suite print the same numbers every time.
"""
from __future__ import annotations

from pathlib import Path

from ..config import EVALUATORS, ModelConfig, RunConfig, evaluator_names
from .stats import Score
from .suite import EvalError, Suite, items_path, scores_path, write_items, write_scores


def parse_suite(text: str | None) -> list[str]:
    try:
        names = evaluator_names(text or ",".join(EVALUATORS))
    except ValueError as e:
        raise EvalError(f"--suite: {e}") from None
    if not names:
        raise EvalError(f"--suite: no evaluator named (allowed: {', '.join(EVALUATORS)})")
    return names


def resolve_target(spec: str, home: Path) -> tuple[RunConfig, Path | str, str]:
    """(config to evaluate with, model to load, description) for a built-in name, folder, run id or hub id."""
    from ..models import BUILTIN_NAMES
    from ..runs import Run, RunError

    if spec in BUILTIN_NAMES:
        return RunConfig().with_overrides({"model.name": spec}), spec, spec
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "status.json").is_file():
        return _run_target(Run(path))
    if path.exists():
        return RunConfig().with_overrides({"model.name": str(path)}), path, str(path)
    try:
        run = Run.open(home, spec)
    except RunError:
        run = None
    if run is not None:
        return _run_target(run)
    if spec.count("/") == 1:  # a hub id
        return RunConfig().with_overrides({"model.name": spec}), spec, spec
    raise EvalError(f"--model: {spec!r} is not a built-in model ({', '.join(BUILTIN_NAMES)}), a model folder, "
                    f"a run id in {home} or a hub id")


def _run_target(run) -> tuple[RunConfig, Path, str]:
    """A run's model is its newest checkpoint: the Trainer saves one at the last step of every run."""
    cfg = run.config()
    folder = run.last_checkpoint()
    if folder is None:
        raise EvalError(f"--model: run {run.id} has no checkpoint yet (one is saved at its last step)")
    return cfg, folder, f"run {run.id} ({folder.name})"


def load_target(cfg: RunConfig, target: Path | str, device: str):
    """Load a model folder, a built-in or hub model, or a LoRA adapter folder on top of the run's base model."""
    from ..models import load_model, pick_dtype

    dtype = pick_dtype(cfg.model.dtype, device)
    target_path = Path(target) if not isinstance(target, str) or Path(target).exists() else None
    if target_path is not None and (target_path / "adapter_config.json").is_file() \
            and not (target_path / "config.json").is_file():
        from peft import PeftModel

        model, tokenizer = load_model(cfg.model, device, dtype)
        return PeftModel.from_pretrained(model, target_path).to(device), tokenizer
    mcfg = ModelConfig(**{**cfg.model.model_dump(), "name": str(target)})
    return load_model(mcfg, device, dtype)


def evaluate_model(spec: str, suite: str | None = None, limit: int | None = None, home: Path | None = None,
                   out_dir: Path | None = None, kind: str | None = None, device: str = "auto") -> dict:
    """Scores (value, n, 95% CI) of each evaluator in `suite` on the model `spec`."""
    import torch

    from ..models import pick_device
    from ..runs import cpt_home

    names = parse_suite(suite)
    cfg, target, description = resolve_target(spec, home or cpt_home())
    limit_keys = {}
    if limit is not None:
        if limit <= 0:
            raise EvalError(f"--limit must be > 0, got {limit}")
        cfg = cfg.with_overrides({"eval.max_docs": limit, "eval.qa_limit": limit, "eval.ifeval_limit": limit})
        limit_keys = {k: "--limit" for k in ("eval.max_docs", "eval.qa_limit", "eval.ifeval_limit")}
    reference = None
    if "general_kl" in names:  # KL from the run's starting model, saved by the run at step 0
        if not description.startswith("run "):
            raise EvalError("--suite general_kl compares a run with its starting model: give --model RUN_ID")
        reference = Path(target).parent.parent / "eval" / "general_kl_reference.pt"
    runner = Suite(cfg, limit_keys, reference_path=reference, compute_reference=False)
    runner.prefetch(names)  # bad data or sizes fail before the model loads
    device = pick_device(device)
    torch.manual_seed(0)
    model, tokenizer = load_target(cfg, target, device)
    if kind is None and not description.startswith("run "):  # a run knows its kind; otherwise ask the tokenizer
        kind = "instruct" if getattr(tokenizer, "chat_template", None) else "base"
    if kind:
        cfg = runner.cfg = cfg.with_overrides({"model.kind": kind})
    scores: list[Score] = []
    for name in names:
        s, rows = runner.run(name, model, tokenizer, round_id=1)
        scores += s
        if out_dir is not None:
            write_items(items_path(Path(out_dir), name, 0), rows)
            write_scores(scores_path(Path(out_dir), name, 0), s)
    return {"model": spec, "resolved": description, "kind": cfg.model.kind, "device": device, "suite": names,
            "scores": {s.name: {k: v for k, v in s.to_dict().items() if k != "name"} for s in scores}}


def format_table(result: dict) -> str:
    lines = [f"model {result['resolved']} ({result['kind']}, {result['device']}); suite: {', '.join(result['suite'])}",
             f"{'METRIC':28} {'VALUE':>9}  {'95% CI':>20}  {'N':>5}"]
    for name, s in result["scores"].items():
        ci = f"[{s['ci_low']:.3f}, {s['ci_high']:.3f}]"
        lines.append(f"{name:28} {s['value']:9.3f}  {ci:>20}  {s['n']:5d}")
    return "\n".join(lines)


def to_json(result: dict) -> str:
    from ..files import dumps

    return dumps(result, indent=1)
