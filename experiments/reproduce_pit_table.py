"""Jiang et al. 2024's table at our scale: does instruction tuning before documents absorb more knowledge?

    nice python experiments/reproduce_pit_table.py                    # ~25 min on 2 CPU cores
    python experiments/reproduce_pit_table.py --passes 10 --max-rows 600   # a GPU: the whole corpus, the paper's 10 epochs

Recipes as in the paper (shared/notes/research.md, section 1): none; cpt (all documents); cpt_then_it (2: all
documents, then train QA); pit (7: train QA with the train documents, then the test documents); pit_plus (8: train
QA alone, then 7); and a control the paper lacks, qa_only (train QA, no documents: what QA training alone does
to test questions). Recipes are matched on **document exposures**, not tokens: each trains the test documents
(and, where it trains them, the train documents) for --passes passes, so a recipe wins only by what it does
around the documents. QA stages run at 1/6 of the document LR (the paper's 5e-6 vs 3e-5).

Data: the first --max-rows bundled documents (20 entities at 100: 10 train entities with their 60 QA pairs, 10
test entities whose 60 questions are never trained). Every final model is scored on the same items: multiple-
choice accuracy (qa_mc_acc: gold vs 4 same-attribute distractors), answer-anywhere recall (qa_contains) and
exact match on the test questions, IFEval, general perplexity and KL from the starting model. Paired differences
(same items, 95% bootstrap) between neighbours of the claimed ordering PIT++ >= PIT > CPT->IT > CPT > none say
which orderings hold. A benchmark, not a test: it prints and saves what it measures (table.md, results.json).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cptcore.config import RunConfig, StageConfig  # noqa: E402

RECIPES = ("none", "qa_only", "cpt", "cpt_then_it", "pit", "pit_plus")
LABELS = {"none": "no training", "qa_only": "QA only (control)", "cpt": "CPT", "cpt_then_it": "CPT -> IT",
          "pit": "PIT", "pit_plus": "PIT++"}
CLAIM = ("pit_plus", "pit", "cpt_then_it", "cpt", "none")  # Jiang et al. 2024 Table: 48.1, 45.4, 30.3, 27.6, 9.5
METRICS = (("eval/qa_mc_acc", "QA MC acc %"), ("eval/qa_contains", "QA contains %"), ("eval/qa_em", "QA EM %"),
           ("eval/if_prompt_strict", "IF prompt strict %"), ("eval/replay_ppl", "general ppl"),
           ("eval/general_kl", "general KL"))
KNOWLEDGE = ("eval/qa_mc_acc", "eval/qa_contains", "eval/qa_em")


def base_config(a: argparse.Namespace) -> RunConfig:
    cfg = RunConfig.from_dict({
        "name": "pit-table", "model": {"name": a.model, "kind": "instruct"},
        "data": {"domain": {"path": "builtin:knowledge_docs", "max_rows": a.max_rows}, "replay": "builtin:replay",
                 "instruct": "builtin:instruct",
                 # the bundled files share one stratified entity order: the first max_rows/10 train entities'
                 # QA pairs are those of the train entities among the first max_rows documents
                 "qa": {"path": "builtin:knowledge_qa_train", "max_rows": a.max_rows * 6 // 10},
                 "seq_len": a.seq_len},
        "mix": {"domain": 0.80, "replay": 0.15, "instruct": 0.05},
        "recipe_options": {"qa_budget": 0.25, "qa_share": 0.3},
        "train": {"lr": a.lr, "schedule": "cosine", "warmup_ratio": 0.0, "max_steps": 100,
                  "batch_size": a.batch_size, "seed": a.seed, "device": a.device, "log_every_steps": 1,
                  "save_every_steps": 100000},
        "eval": {"evaluators": [], "qa_limit": a.qa_limit, "ifeval_limit": a.ifeval_limit, "max_docs": a.ppl_docs,
                 "batch_size": a.eval_batch_size},
    })
    return cfg.with_overrides(a.set) if a.set else cfg


def recipe_config(cfg: RunConfig, recipe: str) -> RunConfig:
    """The shared config as `recipe`; qa_only is an explicit one-stage QA run at the QA LR."""
    if recipe == "qa_only":
        r = cfg.mix.replay
        stage = StageConfig(name="qa", budget=1.0, data={"instruct": cfg.data.qa},
                            mix={"domain": 0.0, "replay": r, "instruct": 1 - r},
                            lr=cfg.train.lr * cfg.recipe_options.qa_lr_ratio, loss_on="answers")
        return cfg.with_overrides({"stages": [stage.model_dump()], "name": "pit-table-qa_only"})
    return cfg.with_overrides({"recipe": recipe, "name": f"pit-table-{recipe}"})


def doc_passes(cfg: RunConfig) -> dict[str, float]:
    """Passes over the test and the train documents that the config's plan trains."""
    from cptcore.plan import counter_for, plan

    p = plan(cfg, count=counter_for(cfg))
    out = {"test": 0.0, "train": 0.0, "steps": p.steps}
    for s in p.stages:
        b = s.roles.get("domain")
        if b is None or not b.passes:
            continue
        if s.name == "test_docs":
            out["test"] += b.passes
        elif s.name == "qa+train_docs":
            out["train"] += b.passes
        else:  # all documents, train and test alike
            out["test"] += b.passes
            out["train"] += b.passes
    return out


def matched(cfg: RunConfig, recipe: str, passes: float) -> RunConfig:
    """The recipe's steps (and, for pit/pit_plus, the split between its document stages) set so the test and
    the train documents are each trained for `passes` passes."""
    c = recipe_config(cfg, recipe)
    if recipe == "qa_only":  # as many steps as pit_plus spends on QA alone
        return c.with_overrides({"train.max_steps": max(2, round(matched(cfg, "pit_plus", passes).train.max_steps
                                                               * cfg.recipe_options.qa_budget))})
    if recipe in ("pit", "pit_plus"):  # documents of the two stages take domain shares d1 and d2
        first = cfg.recipe_options.qa_budget if recipe == "pit_plus" else 0.0
        d1 = 1 - cfg.mix.replay - cfg.recipe_options.qa_share
        c = c.with_overrides({"recipe_options.test_docs_budget": (1 - first) * d1 / (d1 + cfg.mix.domain)})
    probe = doc_passes(c)
    steps = max(2, round(c.train.max_steps * passes / probe["test"]))
    return c.with_overrides({"train.max_steps": steps})


def evaluate(cfg: RunConfig, model, tokenizer, reference: Path) -> tuple[dict, dict]:
    """Scores (value, n, CI, per-item values) of the table's evaluators on one model."""
    from cptcore.evaluate.suite import Suite

    suite, scores, items = Suite(cfg, reference_path=reference), {}, {}
    for name in ("knowledge_mc", "knowledge_qa", "ifeval", "replay_ppl", "general_kl"):
        t0 = time.time()
        result, rows = suite.run(name, model, tokenizer, round_id=1)
        for s in result:
            scores[s.name] = {"value": s.value, "ci_low": s.ci_low, "ci_high": s.ci_high, "n": s.n,
                              "items": s.items_record()}
        items[name] = rows
        print(f"    {name}: {time.time() - t0:.0f} s", flush=True)
    return scores, items


def train_and_load(cfg: RunConfig, home: Path):
    """Train one recipe's config in its own run directory; return the final model and the run."""
    from cptcore.models import load_model, pick_device
    from cptcore.runs import Run
    from cptcore.train import train_run

    run = Run.create(home, cfg)
    result = train_run(run, progress=False)
    print(f"    trained {result['steps']} steps, {result['tokens']:,} tokens, loss {result['train_loss']:.3f}",
          flush=True)
    ckpt = run.last_checkpoint()
    mcfg = cfg.model.model_copy(update={"name": str(ckpt)})
    model, tokenizer = load_model(mcfg, device=pick_device(cfg.train.device))
    shutil.rmtree(run.checkpoints_dir)  # ~1.6 GB each with the optimizer state; the metrics stay
    return model, tokenizer, run


def paired(results: dict, hi: str, lo: str, metric: str) -> dict | None:
    """hi - lo on the same items (95% paired bootstrap)."""
    from cptcore.evaluate.stats import items_from_record, paired_change

    a, kind = items_from_record(results[hi]["scores"][metric]["items"])
    b, _ = items_from_record(results[lo]["scores"][metric]["items"])
    return paired_change(a, b, kind)


def verdict(results: dict) -> list[str]:
    """Plain statements about the claimed ordering on each knowledge metric, and about the QA-only control."""
    lines = []
    have = [r for r in CLAIM if r in results]
    for metric in KNOWLEDGE:
        vals = {r: results[r]["scores"][metric]["value"] for r in have}
        order = sorted(have, key=lambda r: -vals[r])
        shown = LABELS[order[0]] + "".join((" = " if vals[b] == vals[a] else " > ") + LABELS[b]
                                           for a, b in zip(order, order[1:]))
        sig, holds_sig = [], True
        for hi, lo in zip(have, have[1:]):
            d = paired(results, hi, lo, metric)
            better = d["delta_ci_low"] > 0
            holds_sig &= better or (hi, lo) == ("pit_plus", "pit") and d["delta_ci_high"] >= 0
            word = "better" if better else ("worse" if d["delta_ci_high"] < 0 else "not distinguishable")
            sig.append(f"{LABELS[hi]} vs {LABELS[lo]}: {d['delta']:+.1f} [{d['delta_ci_low']:+.1f}, "
                       f"{d['delta_ci_high']:+.1f}] ({word})")
        lines.append(f"**{metric.removeprefix('eval/')}**: observed order {shown}. Paired differences (points, "
                     f"95% CI, n={results[have[0]]['scores'][metric]['n']}): " + "; ".join(sig) + ". The claimed "
                     f"ordering PIT++ >= PIT > CPT->IT > CPT > none {'HOLDS' if holds_sig else 'DOES NOT HOLD'} "
                     "with every step significant.")
    if "qa_only" in results and "none" in results:
        d = paired(results, "qa_only", "none", "eval/qa_mc_acc")
        lines.append(f"Control: QA training alone (no documents) vs no training on qa_mc_acc: {d['delta']:+.1f} "
                     f"[{d['delta_ci_low']:+.1f}, {d['delta_ci_high']:+.1f}] points: what the QA format alone buys.")
    return lines


def table(results: dict) -> str:
    head = "| recipe | steps | passes test / train docs | " + " | ".join(label for _, label in METRICS) + " |"
    rows = [head, "|" + "---|" * (len(METRICS) + 3)]
    for r in RECIPES:
        if r not in results:
            continue
        cells = []
        for metric, _ in METRICS:
            s = results[r]["scores"].get(metric)
            fmt = "{:.3f}" if metric == "eval/general_kl" else ("{:.2f}" if metric == "eval/replay_ppl" else "{:.1f}")
            cells.append("n/a" if s is None else f"{fmt.format(s['value'])} [{fmt.format(s['ci_low'])}, "
                                                  f"{fmt.format(s['ci_high'])}]")
        ex = results[r]["exposure"]
        rows.append(f"| {LABELS[r]} | {ex['steps']} | {ex['test']:.2f} / {ex['train']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--passes", type=float, default=2.5, help="passes over the test (and train) documents, every recipe")
    p.add_argument("--max-rows", type=int, default=100, help="bundled documents used (5 per entity; 600 = all)")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--lr", type=float, default=1e-4, help="document LR (QA stages: 1/6 of it)")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--qa-limit", type=int, default=60, help="held-out test questions scored (6 per test entity)")
    p.add_argument("--ifeval-limit", type=int, default=25)
    p.add_argument("--ppl-docs", type=int, default=16)
    p.add_argument("--eval-batch-size", type=int, default=25)
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override the shared config (e.g. data.replay=my_general.jsonl)")
    p.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "pit_table")
    a = p.parse_args()
    recipes = [r.strip() for r in a.recipes.split(",") if r.strip()]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        p.error(f"--recipes: unknown {unknown[0]!r} (allowed: {', '.join(RECIPES)})")
    if "none" in recipes:  # the starting model first: general_kl's reference is taken from it
        recipes = ["none"] + [r for r in recipes if r != "none"]

    import torch

    from cptcore.models import load_model, pick_device

    cfg = base_config(a)
    print(f"model {a.model}; document lr {cfg.train.lr:g}; {a.passes:g} passes over the documents per recipe; "
          f"device {pick_device(a.device)}", flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    home = a.out / "runs"
    reference = a.out / "general_kl_reference.pt"
    reference.unlink(missing_ok=True)
    results: dict = {}
    started = time.time()
    for recipe in recipes:
        t0 = time.time()
        print(f"== {LABELS[recipe]}", flush=True)
        torch.manual_seed(a.seed)
        if recipe == "none":
            model, tokenizer = load_model(cfg.model, device=pick_device(a.device))
            run_id, exposure = None, {"steps": 0, "test": 0.0, "train": 0.0}
        else:
            rcfg = matched(cfg, recipe, a.passes)
            exposure = doc_passes(rcfg)
            print(f"    {exposure['steps']} steps; passes over test / train documents {exposure['test']:.2f} / "
                  f"{exposure['train']:.2f}", flush=True)
            model, tokenizer, run = train_and_load(rcfg, home)
            run_id = run.id
        scores, items = evaluate(cfg, model, tokenizer, reference)
        results[recipe] = {"scores": scores, "items": items, "run": run_id, "exposure": exposure,
                           "seconds": round(time.time() - t0)}
        print("    " + ", ".join(f"{k.removeprefix('eval/')} {v['value']:.3f}" for k, v in scores.items()), flush=True)
        del model
    lines = verdict(results) if {"cpt", "none"} <= set(results) else []
    md = (f"# PIT table at our scale\n\n{a.model}, the first {a.max_rows} bundled documents, {a.passes:g} passes "
          f"over every trained document, document lr {cfg.train.lr:g} (QA 1/6 of it), {a.qa_limit} held-out test "
          f"questions, {a.ifeval_limit} IFEval prompts, {a.ppl_docs} general documents; 95% CIs in brackets; "
          f"{time.time() - started:.0f} s in all.\n\n" + table(results) + "\n\n" + "\n\n".join(lines) + "\n")
    (a.out / "table.md").write_text(md, encoding="utf-8")
    for r in results.values():
        for s in r["scores"].values():
            s.pop("items")
    (a.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()},
                                                    "results": results}, indent=1, default=str), encoding="utf-8")
    print("\n" + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
