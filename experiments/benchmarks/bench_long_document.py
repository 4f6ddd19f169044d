"""Peak memory of tokenizing one long .txt document: one tokenizer call (what cpt did before) vs cpt's path.

cpt's path is data.cache.cached_source (rows read, then the token cache writer) of a SourceConfig pointing at the
file, which tokenizes the document in pieces (cptcore.data.formats.text_chunks) and joins their ids into one
example. Each measurement runs in its own subprocess; its peak RSS comes from os.wait4. A baseline that passes
--cap-gb is killed there and reported as capped. The documents are English-like (Zipf-distributed words, sentences, paragraphs), seeded.

    python experiments/benchmarks/bench_long_document.py            # 10 MB and 50 MB, cap 8 GB
    python experiments/benchmarks/bench_long_document.py --sizes 2 --model tiny-random-llama
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
COMMON = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have "
          "an they you were her she there been one all we their has would when if more will who so no can into "
          "its them other than then these some time only new first two also after may over such most made world "
          "people years state city company river school history music water house between during under through "
          "government century work system number war children family early public small large part found "
          "known village north south built later including began name since team").split()
SYLLABLES = ("ka ri to ne la mo an ver stra bel or en tal cor dis mi pe sun ga lor fen ith ur wen qua bro dal "
             "sim tur ex pla no hal").split()


def vocabulary(rnd: random.Random, n_rare: int = 8000) -> tuple[list[str], list[float]]:
    """Common words plus a long tail of invented ones, with Zipf weights (rank r -> r ** -1.1)."""
    rare = sorted({"".join(rnd.choice(SYLLABLES) for _ in range(rnd.randint(2, 4))) for _ in range(n_rare)})
    rnd.shuffle(rare)
    words = list(COMMON) + rare
    cum, total = [], 0.0
    for r in range(1, len(words) + 1):
        total += r ** -1.1
        cum.append(total)
    return words, cum


def write_document(path: Path, megabytes: int, seed: int = 0) -> None:
    """About `megabytes` MB of paragraphs of sentences, one document."""
    rnd = random.Random(seed)
    words, cum = vocabulary(rnd)
    target, written = megabytes * 1_000_000, 0
    with open(path, "w", encoding="utf-8") as fh:
        while written < target:
            sentences = []
            for _ in range(rnd.randint(3, 9)):
                w = rnd.choices(words, cum_weights=cum, k=rnd.randint(6, 28))
                if rnd.random() < 0.3:
                    w[rnd.randrange(1, len(w))] += ","
                if rnd.random() < 0.15:
                    w.insert(rnd.randrange(len(w)), str(rnd.randint(1200, 2024)))
                sentences.append(w[0].capitalize() + " " + " ".join(w[1:]) + rnd.choice("....?!"))
            paragraph = " ".join(sentences) + "\n\n"
            fh.write(paragraph)
            written += len(paragraph)


def child(mode: str, path: Path, out: Path, model: str) -> None:
    """One measurement in this process: the tokenizer, then the baseline call or cpt's path."""
    import numpy as np

    from cptcore.config import ModelConfig, SourceConfig
    from cptcore.models import load_tokenizer

    tok = load_tokenizer(ModelConfig(name=model))
    start = time.perf_counter()
    if mode == "baseline":  # the old encode_rows: the whole document in one tokenizer call
        text = path.read_bytes().decode("utf-8")
        assert text.strip()
        ids = tok([text], add_special_tokens=False)["input_ids"][0]
        arr = np.asarray(list(ids) + [tok.eos_token_id], dtype=np.int32)
    elif mode == "cpt":
        import os
        import tempfile

        from cptcore.data.cache import cached_source

        os.environ["CPT_HOME"] = tempfile.mkdtemp()  # a fresh token cache: the document is tokenized here
        shard, entry = cached_source(SourceConfig(path=str(path)), tok, "base")
        assert entry["examples"] == 1, entry
        arr = np.asarray(shard.ids, dtype=np.int32)
    else:  # floor: the interpreter, torch and the tokenizer alone
        arr = np.zeros(0, np.int32)
    np.save(out, arr)
    print(json.dumps({"tokens": int(len(arr)), "seconds": time.perf_counter() - start}))


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measure(mode: str, path: Path, out: Path, model: str, cap_mb: float) -> dict:
    """Run one child; its peak RSS (MB), tokens, seconds, and whether the cap killed it."""
    log = out.with_suffix(".log")
    with open(log, "w") as fh:
        p = subprocess.Popen([sys.executable, __file__, "--child", mode, str(path), str(out), "--model", model],
                             stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    capped = threading.Event()

    def watch():
        while p.returncode is None and not capped.is_set():
            if _rss_mb(p.pid) > cap_mb:
                capped.set()
                p.kill()
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    result = {"peak_mb": usage.ru_maxrss / 1024, "capped": capped.is_set()}
    if not capped.is_set():
        if p.returncode != 0:
            raise SystemExit(f"{mode} {path.name} failed (exit {p.returncode}):\n{log.read_text()[-2000:]}")
        result.update(json.loads(log.read_text().strip().splitlines()[-1]))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,50", help="document sizes in MB, comma-separated")
    ap.add_argument("--cap-gb", type=float, default=8.0, help="kill a baseline above this RSS")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--workdir", default=None, help="where the documents go (default: a temporary folder)")
    ap.add_argument("--child", nargs=3, metavar=("MODE", "PATH", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], Path(args.child[1]), Path(args.child[2]), args.model)
    import numpy as np

    work = Path(args.workdir or tempfile.mkdtemp(prefix="cpt-bench-long-"))
    work.mkdir(parents=True, exist_ok=True)
    cap_mb = args.cap_gb * 1024
    floor = measure("floor", work / "none.txt", work / "floor.npy", args.model, cap_mb)
    rows = []
    for mb in [int(s) for s in args.sizes.split(",")]:
        doc = work / f"doc_{mb}mb.txt"
        if not doc.exists():
            write_document(doc, mb)
        base = measure("baseline", doc, work / f"base_{mb}.npy", args.model, cap_mb)
        cpt = measure("cpt", doc, work / f"cpt_{mb}.npy", args.model, cap_mb)
        ours = np.load(work / f"cpt_{mb}.npy")
        if base["capped"]:
            base_cell, ratio, equal = f"> {cap_mb:.0f} MB (capped: killed there)", f"> {cap_mb / cpt['peak_mb']:.1f}x", \
                "n/a (baseline capped)"
        else:
            theirs = np.load(work / f"base_{mb}.npy")
            base_cell, ratio = f"{base['peak_mb']:.0f} MB", f"{base['peak_mb'] / cpt['peak_mb']:.1f}x"
            if len(theirs) == len(ours) and (theirs == ours).all():
                equal = "yes"
            else:
                n = min(len(theirs), len(ours))
                diff = int((theirs[:n] != ours[:n]).sum()) + abs(len(theirs) - len(ours))
                equal = f"no ({len(theirs)} vs {len(ours)} tokens, {diff} positions differ)"
        rows.append(f"| {doc.stat().st_size / 1e6:.0f} MB | {base_cell} | {cpt['peak_mb']:.0f} MB | {ratio} | "
                    f"{cpt['tokens']:,} | {equal} |")
        for f in (work / f"base_{mb}.npy", work / f"cpt_{mb}.npy"):
            f.unlink(missing_ok=True)
    print(f"Tokenizer {args.model}; process floor (Python + torch + tokenizer, no text): {floor['peak_mb']:.0f} MB\n")
    print("| size | baseline peak RSS (one call) | cpt peak RSS (chunked) | ratio | tokens | tokens equal |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
