"""Tokenize once, stream from disk: prepare and train on generated corpora of 20M and 100M tokens.

Rows of the table (each measurement in its own subprocess; peak RSS is that process's ru_maxrss, and the largest
of its worker processes, if any, is shown beside it):
  prepare N proc        `cpt prepare` of the corpus into the token cache (cptcore/data/cache.py) with N processes
  datasets.map          the same corpus tokenized by datasets (load_dataset json + map, batched) into Arrow
                        files: the maintained alternative the cache was measured against
  second prepare        the same `cpt prepare` again (everything cached: hashing is memoized by size and mtime)
  train 50 steps        `cpt train` of 50 steps (batch 4 x 256, no evaluations) with the corpus as the domain
                        data, read from the cache: its peak RSS should not depend on the corpus size
Documents are English-like (Zipf-distributed words; lengths log-normal, median ~270 words or ~490 tokens, a tail
to 15,000 words), seeded, written as JSONL. The model is the embedded default (SmolLM2-135M-Instruct) unless --model says.

    python experiments/benchmarks/bench_data.py                 # 20M and 100M tokens (~30 minutes on 2 cores)
    python experiments/benchmarks/bench_data.py --sizes 2 --model tiny-random-llama --steps 5   # a quick check
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
from bench_long_document import vocabulary  # noqa: E402  (the same English-like word distribution)

TOKENS_PER_WORD = 1.83  # SmolLM2's tokenizer on these words (measured: 27.9M tokens for 15.2M words)


def write_corpus(path: Path, tokens: int, seed: int = 0) -> int:
    """JSONL documents holding about `tokens` tokens; returns the number of documents."""
    import numpy as np

    rng = np.random.default_rng(seed)
    import random

    words, cum = vocabulary(random.Random(seed))
    p = np.diff(np.concatenate([[0.0], cum]))
    p /= p.sum()
    words = np.array(words)
    target_words, written, docs = tokens / TOKENS_PER_WORD, 0, 0
    with open(path, "w", encoding="utf-8") as fh:
        while written < target_words:
            n = int(min(15_000, max(20, rng.lognormal(mean=np.log(270), sigma=0.9))))
            w = words[rng.choice(len(words), size=n, p=p)]
            text = " ".join(w.tolist()).capitalize() + "."
            fh.write(json.dumps({"text": text}) + "\n")
            written, docs = written + n, docs + 1
    return docs


def child(code: str, env: dict) -> dict:
    """Run `code` in a fresh interpreter; it prints one JSON line; add its peak RSS and wall time."""
    wrapped = code + textwrap.dedent("""
        import json as _j, resource as _r, sys as _s
        OUT["peak_rss_mb"] = _r.getrusage(_r.RUSAGE_SELF).ru_maxrss / 1024
        OUT["worker_rss_mb"] = _r.getrusage(_r.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest worker process
        print("RESULT " + _j.dumps(OUT)); _s.stdout.flush()
    """)
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", wrapped], env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.time() - t0
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(line[7:])
    out["wall_s"] = wall
    return out


PREPARE = """
import time
from cptcore.config import RunConfig
from cptcore.plan import counter_for, plan
cfg = RunConfig.load({cfg!r}, ["data.num_proc={num_proc}"])
t0 = time.time(); count = counter_for(cfg); p = plan(cfg, count=count)
e = count(cfg.data.domain[0], "answers", "as_is")
OUT = {{"seconds": time.time() - t0, "tokens": e["tokens"], "rows": e["rows"]}}
"""

DATASETS_MAP = """
import time
from datasets import load_dataset
from cptcore.config import ModelConfig
from cptcore.tokenizer import load_text_tokenizer
tok = load_text_tokenizer(ModelConfig(name={model!r}))._tok
t0 = time.time()
ds = load_dataset("json", data_files={corpus!r}, split="train", cache_dir={cache!r})
def enc(batch):
    return {{"input_ids": [e.ids + [{eos}] for e in tok.encode_batch(batch["text"], add_special_tokens=False)]}}
ds = ds.map(enc, batched=True, batch_size=1000, remove_columns=["text"], num_proc={num_proc})
n = sum(len(x) for b in ds.iter(batch_size=10000) for x in b["input_ids"])
OUT = {{"seconds": time.time() - t0, "tokens": n, "rows": len(ds)}}
"""

TRAIN = """
import time
from cptcore.config import RunConfig
from cptcore.runs import Run
from cptcore.train import train_run
cfg = RunConfig.load({cfg!r})
run = Run.create(None, cfg)
t0 = time.time(); result = train_run(run, cfg, progress=False)
OUT = {{"seconds": time.time() - t0, "steps": result["steps"]}}
"""


def config(path: Path, corpus: Path, model: str, steps: int) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({
        "name": f"bench-data-{corpus.stem}", "model": {"name": model, "kind": "instruct"},
        "data": {"domain": str(corpus), "replay": "builtin:replay", "instruct": "builtin:instruct", "seq_len": 256},
        "mix": {"domain": 0.8, "replay": 0.15, "instruct": 0.05},
        "train": {"max_steps": steps, "batch_size": 4, "lr": 5e-5, "log_every_steps": 10},
        "eval": {"evaluators": []}}))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=float, nargs="+", default=[20, 100], help="corpus sizes in millions of tokens")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="tokenizing processes to compare")
    args = ap.parse_args()
    from cptcore.config import ModelConfig
    from cptcore.models import load_tokenizer

    tok = load_tokenizer(ModelConfig(name=args.model))  # the GGUF default is converted once, before timing
    work = Path(tempfile.mkdtemp(prefix="bench-data-"))
    rows = []
    print(f"machine: {os.cpu_count()} cores; work dir {work}; model {args.model}", flush=True)
    for size in args.sizes:
        corpus = work / f"corpus-{size:g}M.jsonl"
        t0 = time.time()
        docs = write_corpus(corpus, int(size * 1e6))
        print(f"{size:g}M: wrote {docs:,} documents, {corpus.stat().st_size / 1e6:.0f} MB in {time.time() - t0:.0f} s",
              flush=True)
        cfg = config(work / f"cfg-{size:g}.yaml", corpus, args.model, args.steps)
        first = None
        for n in args.procs:
            home = work / f"home-{size:g}-{n}"
            env = dict(os.environ, CPT_HOME=str(home), TOKENIZERS_PARALLELISM="true")
            r = child(PREPARE.format(cfg=str(cfg), num_proc=n), env)
            rows.append((f"{size:g}M", f"prepare {n} proc", r))
            first = first or (r, env)
            print(f"  prepare {n} proc: {r['seconds']:.1f} s, {r['tokens'] / r['seconds'] / 1e6:.2f}M tokens/s, "
                  f"peak {r['peak_rss_mb']:.0f} MB", flush=True)
        r = child(DATASETS_MAP.format(model=args.model, corpus=str(corpus), cache=str(work / f"hf-{size:g}"),
                                      eos=tok.eos_token_id, num_proc=1), dict(os.environ))
        rows.append((f"{size:g}M", "datasets.map 1 proc", r))
        print(f"  datasets.map: {r['seconds']:.1f} s, peak {r['peak_rss_mb']:.0f} MB", flush=True)
        r = child(PREPARE.format(cfg=str(cfg), num_proc=1), first[1])
        rows.append((f"{size:g}M", "second prepare", r))
        print(f"  second prepare: {r['seconds']:.2f} s", flush=True)
        r = child(TRAIN.format(cfg=str(cfg)), first[1])
        r["tokens"] = first[0]["tokens"]
        rows.append((f"{size:g}M", f"train {args.steps} steps", r))
        print(f"  train: {r['seconds']:.1f} s, peak {r['peak_rss_mb']:.0f} MB", flush=True)
        corpus.unlink()

    print("\n| corpus | what | seconds | tokens/s | peak RSS (MB) | largest worker (MB) | vs first row of its corpus |")
    print("|---|---|---|---|---|---|---|")
    base = {}
    for size, what, r in rows:
        b = base.setdefault(size, r)
        tps = f"{r['tokens'] / r['seconds'] / 1e6:.2f}M" if "prepare" in what or "map" in what else "-"
        ratio = f"time {r['seconds'] / b['seconds']:.3f}x, RSS {r['peak_rss_mb'] / b['peak_rss_mb']:.2f}x"
        workers = f"{r['worker_rss_mb']:.0f}" if r.get("worker_rss_mb") else "-"
        print(f"| {size} ({r['tokens']:,} tokens) | {what} | {r['seconds']:.2f} | {tps} | {r['peak_rss_mb']:.0f} | "
              f"{workers} | {ratio} |")
    trains = [r for _, what, r in rows if what.startswith("train")]
    if len(trains) > 1:
        print(f"\ntraining peak RSS, largest corpus vs smallest: {trains[-1]['peak_rss_mb'] / trains[0]['peak_rss_mb']:.3f}x"
              f" ({trains[-1]['peak_rss_mb'] - trains[0]['peak_rss_mb']:+.0f} MB)")


if __name__ == "__main__":
    main()
