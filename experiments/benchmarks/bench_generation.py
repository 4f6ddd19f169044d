"""Batched greedy generation (left padding, KV cache) against one prompt at a time, same model, same prompts.

    python experiments/benchmarks/bench_generation.py [--model smollm2-135m-instruct] [--prompts 16]
                                                     [--new-tokens 48] [--batch-size 8] [--threads N]

On a shared 2-core machine, torch's default 2 threads slow down 5-8x while another process holds a core
(OpenMP threads wait for each other): compare rows from one invocation only, and try --threads 1 there.
Prompts are the bundled IFEval suite's first N, through the chat template, exactly as `ifeval` asks them.
Both rows call cptcore.evaluate.generate.generate (batch_size 1 vs N); new tokens are counted from the
model's output ids up to and including EOS. Goal: batched >= 3x faster. Greedy outputs must be identical.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=8, help="the eval.batch_size default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice, one per core)")
    args = p.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from cptcore.config import ModelConfig
    from cptcore.evaluate.generate import generate
    from cptcore.evaluate.ifeval import load_prompts
    from cptcore.models import load_model

    model, tok = load_model(ModelConfig(name=args.model), device=args.device)
    prompts = [r["prompt"] for r in load_prompts("bundled", args.prompts)]
    print(f"model {args.model} on {args.device} ({torch.get_num_threads()} threads), {len(prompts)} prompts, "
          f"max {args.new_tokens} new tokens, load average {os.getloadavg()[0]:.1f}")
    generate(model, tok, prompts[:2], chat=True, max_new_tokens=4, batch_size=2)  # warm-up

    rows = []
    outputs = {}
    for label, bs in (("one prompt at a time", 1), (f"batched (batch {args.batch_size})", args.batch_size)):
        counts: list[int] = []
        t0 = time.perf_counter()
        outputs[label] = generate(model, tok, prompts, chat=True, max_new_tokens=args.new_tokens, batch_size=bs,
                                  token_counts=counts)
        rows.append((label, time.perf_counter() - t0, sum(counts)))
    same = sum(a == b for a, b in zip(*outputs.values()))

    base = rows[0][1]
    print(f"\n| {'mode':26} | {'seconds':>8} | {'new tokens':>10} | {'new tokens/s':>12} | {'speed-up':>8} |")
    print(f"|{'-' * 28}|{'-' * 10}|{'-' * 12}|{'-' * 14}|{'-' * 10}|")
    for label, sec, n in rows:
        print(f"| {label:26} | {sec:8.1f} | {n:10d} | {n / sec:12.1f} | {base / sec:7.2f}x |")
    print(f"\nidentical greedy outputs: {same}/{len(prompts)}")
    ratio = base / rows[1][1]
    print(f"goal >= 3x: {'met' if ratio >= 3 else 'NOT met'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
