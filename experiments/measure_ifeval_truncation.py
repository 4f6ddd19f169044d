"""How often the default model's IFEval responses hit the generation cap, for a range of caps.

Greedy decoding is prefix-stable, so one generation at the largest cap gives every smaller cap's truncation
rate: a response is cut at cap c when it needs more than c tokens (its EOS comes later or never).

    python experiments/measure_ifeval_truncation.py [--model smollm2-135m-instruct] [--cap 512]
"""
from __future__ import annotations

import argparse
import json

CAPS = (64, 96, 128, 192, 256, 320, 384, 512)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--cap", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--json", help="also write per-prompt token counts here")
    args = ap.parse_args()

    import torch

    from cptcore.config import ModelConfig
    from cptcore.evaluate.generate import generate
    from cptcore.evaluate.ifeval import load_prompts
    from cptcore.models import load_model

    torch.manual_seed(0)
    model, tok = load_model(ModelConfig(name=args.model), "cpu", torch.float32)
    prompts = load_prompts("bundled")
    counts: list[int] = []
    ended: list[bool] = []
    generate(model, tok, [p["prompt"] for p in prompts], chat=True, max_new_tokens=args.cap,
             batch_size=args.batch_size, token_counts=counts, ended=ended)
    # a response needs `count` tokens when it ended; one that hit the largest cap needs more than it
    need = [c if e else args.cap + 1 for c, e in zip(counts, ended)]
    print(f"model {args.model}, {len(prompts)} bundled IFEval prompts, greedy, chat template")
    print(f"{'cap':>5} {'truncated':>10} {'rate':>7}")
    for cap in [c for c in CAPS if c <= args.cap]:
        cut = sum(n > cap for n in need)
        print(f"{cap:5d} {cut:6d}/{len(need):<3d} {100 * cut / len(need):6.1f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"key": p.get("key"), "tokens": n} for p, n in zip(prompts, need)], f)


if __name__ == "__main__":
    main()
