"""Jiang et al. 2024's table at our scale: does instruction tuning before documents absorb more knowledge?

    nice python experiments/reproduce_pit_table.py                       # ~20k tokens per run: ~30 min on 2 CPU cores
    python experiments/reproduce_pit_table.py --budget-tokens 2000000    # a GPU: same script, bigger budget

Runs no training, cpt, cpt_then_it, pit and pit_plus on the bundled fictional-entity corpus with the default
model, each at the same token budget, then scores every final model on the held-out questions (entities whose
documents were trained, questions never trained), IFEval and general-text perplexity, with 95% CIs and paired
differences between neighbours of the claimed ordering PIT++ >= PIT > CPT->IT > CPT > none.
A benchmark, not a test: it prints and saves whatever it measures (table.md, results.json in --out).
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

from cptcore.config import RunConfig  # noqa: E402

RECIPES = ("none", "cpt", "cpt_then_it", "pit", "pit_plus")
LABELS = {"none": "no training", "cpt": "CPT", "cpt_then_it": "CPT -> IT", "pit": "PIT", "pit_plus": "PIT++"}
CLAIM = ("pit_plus", "pit", "cpt_then_it", "cpt", "none")  # Jiang et al. 2024 Table: 48.1, 45.4, 30.3, 27.6, 9.5
METRICS = (("eval/qa_em", "QA EM"), ("eval/qa_f1", "QA F1"), ("eval/qa_answer_logprob", "answer log-lik"),
           ("eval/if_prompt_strict", "IF prompt strict"), ("eval/replay_ppl", "general ppl"))


def base_config(a: argparse.Namespace) -> RunConfig:
    tokens_per_step = a.batch_size * a.seq_len
    steps = max(3, round(a.budget_tokens / tokens_per_step))
    cfg = RunConfig.from_dict({
        "name": "pit-table", "model": {"name": a.model, "kind": "instruct"},
        "data": {"domain": "builtin:knowledge_docs", "replay": "builtin:replay", "instruct": "builtin:instruct",
                 "qa": "builtin:knowledge_qa_train", "seq_len": a.seq_len},
        "mix": {"domain": 0.80, "replay": 0.15, "instruct": 0.05},
        "recipe_options": {"qa_budget": 0.3, "qa_share": 0.3},
        "train": {"lr": a.lr, "schedule": "cosine", "warmup_ratio": 0.0, "max_steps": steps,
                  "batch_size": a.batch_size, "seed": a.seed, "device": a.device, "log_every_steps": 1},
        "eval": {"evaluators": [], "qa_limit": a.qa_limit, "ifeval_limit": a.ifeval_limit, "max_docs": a.ppl_docs,
                 "batch_size": a.eval_batch_size},
    })
    return cfg.with_overrides(a.set) if a.set else cfg


def evaluate(cfg: RunConfig, model, tokenizer) -> tuple[dict, dict]:
    """Scores (value, n, CI) and per-item rows of the table's evaluators on one model."""
    from cptcore.evaluate.suite import Suite

    suite, scores, items = Suite(cfg), {}, {}
    for name in ("knowledge_qa", "ifeval", "replay_ppl"):
        t0 = time.time()
        result, rows = suite.run(name, model, tokenizer, round_id=1)
        for s in result:
            scores[s.name] = {"value": s.value, "ci_low": s.ci_low, "ci_high": s.ci_high, "n": s.n}
        items[name] = rows
        print(f"    {name}: {time.time() - t0:.0f} s", flush=True)
    return scores, items


def train_and_load(cfg: RunConfig, recipe: str, home: Path):
    """Train one recipe in its own run directory; return the final model and the run."""
    from cptcore.models import load_model, pick_device
    from cptcore.runs import Run
    from cptcore.train import train_run

    run = Run.create(home, cfg.with_overrides({"recipe": recipe, "name": f"pit-table-{recipe}"}))
    result = train_run(run, progress=False)
    print(f"    trained {result['steps']} steps, {result['tokens']:,} tokens, loss {result['train_loss']:.3f}",
          flush=True)
    ckpt = run.last_checkpoint()
    mcfg = cfg.model.model_copy(update={"name": str(ckpt)})
    model, tokenizer = load_model(mcfg, device=pick_device(cfg.train.device))
    shutil.rmtree(run.checkpoints_dir)  # ~1.6 GB each with the optimizer state; the metrics stay
    return model, tokenizer, run


def paired(items_a: list[dict], items_b: list[dict], key: str) -> dict:
    from cptcore.evaluate.stats import paired_difference

    return paired_difference({r["id"]: float(r[key]) for r in items_b}, {r["id"]: float(r[key]) for r in items_a})


def verdict(results: dict) -> list[str]:
    """Plain statements about the claimed ordering, on EM (the paper's metric) and answer log-likelihood."""
    lines = []
    have = [r for r in CLAIM if r in results]
    for metric, key, label in (("eval/qa_em", "em", "exact match"),
                               ("eval/qa_answer_logprob", "answer_logprob", "answer log-likelihood")):
        vals = {r: results[r]["scores"][metric]["value"] for r in have}
        order = sorted(have, key=lambda r: -vals[r])
        shown = LABELS[order[0]] + "".join((" = " if vals[b] == vals[a] else " > ") + LABELS[b]
                                           for a, b in zip(order, order[1:]))
        holds = all(vals[have[i]] >= vals[have[i + 1]] if (have[i], have[i + 1]) == ("pit_plus", "pit")
                    else vals[have[i]] > vals[have[i + 1]] for i in range(len(have) - 1))
        sig = []
        for hi, lo in zip(have, have[1:]):
            d = paired(results[hi]["items"]["knowledge_qa"], results[lo]["items"]["knowledge_qa"], key)
            word = "better" if d["ci_low"] > 0 else ("worse" if d["ci_high"] < 0 else "not distinguishable")
            sig.append(f"{LABELS[hi]} vs {LABELS[lo]}: {d['mean_diff']:+.3f} [{d['ci_low']:+.3f}, "
                       f"{d['ci_high']:+.3f}] ({word})")
        lines.append(f"On {label}, the observed order is {shown}; the claimed "
                     f"ordering PIT++ >= PIT > CPT->IT > CPT > none {'HOLDS' if holds else 'DOES NOT HOLD'} on point "
                     f"estimates. Paired differences (95% CI): " + "; ".join(sig) + ".")
    return lines


def table(results: dict) -> str:
    head = "| recipe | " + " | ".join(label for _, label in METRICS) + " |"
    rows = [head, "|" + "---|" * (len(METRICS) + 1)]
    for r in RECIPES:
        if r not in results:
            continue
        cells = []
        for metric, _ in METRICS:
            s = results[r]["scores"].get(metric)
            fmt = "{:.1f}" if metric == "eval/if_prompt_strict" else ("{:.2f}" if metric == "eval/replay_ppl" else "{:.3f}")
            cells.append("n/a" if s is None else f"{fmt.format(s['value'])} [{fmt.format(s['ci_low'])}, "
                                                  f"{fmt.format(s['ci_high'])}]")
        rows.append(f"| {LABELS[r]} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget-tokens", type=int, default=20_000, help="trained tokens per recipe (equal for all)")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--qa-limit", type=int, default=120, help="held-out questions scored (bundled: 360)")
    p.add_argument("--ifeval-limit", type=int, default=25)
    p.add_argument("--ppl-docs", type=int, default=32)
    p.add_argument("--eval-batch-size", type=int, default=8)
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

    import torch

    from cptcore.models import load_model, pick_device

    cfg = base_config(a)
    tokens = cfg.train.max_steps * cfg.train.tokens_per_step(cfg.data.seq_len)
    print(f"budget: {cfg.train.max_steps} steps x {cfg.train.tokens_per_step(cfg.data.seq_len)} tokens = {tokens:,} "
          f"tokens per recipe; model {a.model}; lr {cfg.train.lr:g}; device {pick_device(a.device)}", flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    home = a.out / "runs"
    results: dict = {}
    started = time.time()
    for recipe in recipes:
        t0 = time.time()
        print(f"== {LABELS[recipe]}", flush=True)
        torch.manual_seed(a.seed)
        if recipe == "none":
            model, tokenizer = load_model(cfg.model, device=pick_device(a.device))
            run_id = None
        else:
            model, tokenizer, run = train_and_load(cfg, recipe, home)
            run_id = run.id
        scores, items = evaluate(cfg, model, tokenizer)
        results[recipe] = {"scores": scores, "items": items, "run": run_id, "seconds": round(time.time() - t0)}
        print("    " + ", ".join(f"{k.removeprefix('eval/')} {v['value']:.3f}" for k, v in scores.items()), flush=True)
        del model
    lines = verdict(results) if {"cpt", "none"} <= set(results) else []
    md = (f"# PIT table at our scale\n\n{a.model}, {tokens:,} trained tokens per recipe "
          f"({cfg.train.max_steps} steps), lr {cfg.train.lr:g}, {a.qa_limit} held-out questions, {a.ifeval_limit} IFEval "
          f"prompts, {a.ppl_docs} general documents; 95% CIs in brackets; {time.time() - started:.0f} s in all.\n\n"
          + table(results) + "\n\n" + "\n\n".join(lines) + "\n")
    (a.out / "table.md").write_text(md, encoding="utf-8")
    (a.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()},
                                                    "tokens_per_recipe": tokens, "results": results}, indent=1,
                                                   default=str), encoding="utf-8")
    print("\n" + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
