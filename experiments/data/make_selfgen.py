"""Generate replay text and an instruction set with the starting model itself (self-synthesized rehearsal).

Run: nice python experiments/data/make_selfgen.py [--check 4] [--seed 1234] [--batch-size 24]
When the original pre-training data is unavailable, text the starting model writes is an accepted stand-in for
replay: training on it pulls the model back towards its own behaviour. SmolLM2-135M-Instruct writes it through
its chat template, sampled with a fixed seed; empty, cut-off or repetitive outputs are dropped. The text is the
model's own and may contain factual mistakes: it is for rehearsal, not for facts.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from selfgen_prompts import HELDOUT_TOPICS, INSTRUCTIONS, REPLAY_PROMPTS, REPLAY_TOPICS  # noqa: E402

ASSETS = Path(__file__).resolve().parents[2] / "cptcore" / "assets"
MODEL = "smollm2-135m-instruct"
SEED = 1234
SAMPLING = {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 160}
N_HELDOUT_INSTRUCTIONS = 36
HELDOUT_PROMPTS = (0, 1, 3)  # prompt variants used for the held-out topics


def prompt_sets(seed: int) -> dict[str, list[dict]]:
    """The four sets as lists of {"prompt", ...metadata}; held-out topics and instructions never train."""
    rng = random.Random(seed)
    instructions = INSTRUCTIONS[:]
    rng.shuffle(instructions)
    return {
        "replay/train": [{"prompt": p.format(topic=t), "topic": t} for t in REPLAY_TOPICS for p in REPLAY_PROMPTS],
        "replay/heldout": [{"prompt": REPLAY_PROMPTS[i].format(topic=t), "topic": t}
                           for t in HELDOUT_TOPICS for i in HELDOUT_PROMPTS],
        "instruct/train": [{"prompt": q} for q in sorted(instructions[N_HELDOUT_INSTRUCTIONS:])],
        "instruct/heldout": [{"prompt": q} for q in sorted(instructions[:N_HELDOUT_INSTRUCTIONS])],
    }


def trim_cut_off(text: str) -> str:
    """A reply that hit max_new_tokens ends mid-sentence: keep it up to the last finished sentence or line."""
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)|\n", text)]
    return text[: ends[-1]].strip() if ends else ""


def is_degenerate(text: str, min_words: int) -> bool:
    """Too short, or looping: repeated word 3-grams, lines or sentences."""
    words = text.lower().split()
    if len(words) < min_words:
        return True
    grams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    if grams and len(set(grams)) / len(grams) < 0.75:
        return True
    lines = [ln.strip() for ln in text.splitlines() if len(ln.strip()) > 20]
    sentences = [s.strip().lower() for s in re.split(r"[.!?\n]", text) if len(s.split()) > 4]
    return len(lines) != len(set(lines)) or len(sentences) != len(set(sentences))


def generate(model, tokenizer, prompts: list[str], seed: int, batch_size: int, desc: str) -> list[tuple[str, bool]]:
    """Sample one reply per prompt in left-padded batches; return (reply, hit_max_new_tokens)."""
    import torch
    from tqdm import tqdm

    out = []
    for b, start in enumerate(tqdm(range(0, len(prompts), batch_size), desc=desc, unit="batch")):
        chats = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                               add_generation_prompt=True) for p in prompts[start:start + batch_size]]
        enc = tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(seed + b)  # per batch, so any batch can be reproduced alone
        with torch.no_grad():
            gen = model.generate(**enc, **SAMPLING, pad_token_id=tokenizer.pad_token_id)
        for row in gen[:, enc["input_ids"].shape[1]:]:
            ended = (row == tokenizer.eos_token_id).any().item()
            out.append((tokenizer.decode(row, skip_special_tokens=True).strip(), not ended))
    return out


def run_set(model, tokenizer, items: list[dict], seed: int, batch_size: int, desc: str, min_words: int,
            tries: int = 2) -> tuple[list[dict], int]:
    """Generate replies for items, re-sampling dropped ones once with another seed; return kept items, dropped."""
    pending, kept = list(range(len(items))), {}
    for t in range(tries):
        replies = generate(model, tokenizer, [items[i]["prompt"] for i in pending], seed + 1000 * t, batch_size,
                           f"{desc} (try {t + 1})")
        still = []
        for i, (reply, cut) in zip(pending, replies):
            text = trim_cut_off(reply) if cut else reply
            if is_degenerate(text, min_words):
                still.append(i)
            else:
                kept[i] = dict(items[i], reply=text)
        pending = still
        if not pending:
            break
    return [kept[i] for i in sorted(kept)], len(pending)


def records(name: str, rows: list[dict]) -> list[dict]:
    if name.startswith("replay"):
        return [{"text": r["reply"], "topic": r["topic"]} for r in rows]
    return [{"messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["reply"]}],
             "source": "selfgen"} for r in rows]


def main() -> None:
    import torch

    from cptcore.config import ModelConfig
    from cptcore.models import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--batch-size", type=int, default=24)
    ap.add_argument("--check", type=int, default=0, help="generate for N prompts, print them, write nothing")
    ap.add_argument("--out", type=Path, default=ASSETS)
    ap.add_argument("--threads", type=int, default=2, help="1 is faster while other jobs share the cores")
    ap.add_argument("--sets", nargs="*", default=None, help="only these sets, e.g. replay/heldout")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)  # the machine has 2 cores shared with others
    model, tokenizer = load_model(ModelConfig(name=MODEL))
    model.eval()
    tokenizer.padding_side = "left"  # generation continues from the right edge of every row
    sets = prompt_sets(args.seed)
    if args.check:
        items = sets["replay/train"][:args.check // 2] + sets["instruct/train"][:args.check - args.check // 2]
        for item, (reply, cut) in zip(items, generate(model, tokenizer, [i["prompt"] for i in items], args.seed,
                                                      args.batch_size, "check")):
            print(f"\n### {item['prompt']}  (cut off: {cut})\n{reply}\n--- kept: "
                  f"{not is_degenerate(trim_cut_off(reply) if cut else reply, 40 if 'topic' in item else 3)}")
        return
    for i, (name, items) in enumerate(sets.items()):
        if args.sets and name not in args.sets:
            continue
        min_words = 40 if name.startswith("replay") else 3  # "What is the capital of France?" may be short
        rows, dropped = run_set(model, tokenizer, items, args.seed + 100_000 * i, args.batch_size, name, min_words)
        path = args.out / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records(name, rows)),
                        encoding="utf-8")
        print(f"{path}: kept {len(rows)} of {len(items)} (dropped {dropped})", flush=True)


if __name__ == "__main__":
    main()
