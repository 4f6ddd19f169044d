"""Two identical demo runs in one CPT_HOME: the first evaluates the starting model at step 0, the second reuses
that baseline (cptcore/evaluate/baseline.py) and its sources' token cache (cptcore/data/cache.py).

For each run: time from `cpt train` to its first logged training step (polled in metrics.jsonl every 0.2 s), the
time training began (that minus the first step's own duration, from its tokens and tokens/s), total wall time,
whether its step-0 records were reused, and whether they equal the first run's step-0 values.
Goal: the second run begins training within 30 s of `cpt train` on a quiet 2-core machine.

    python experiments/benchmarks/bench_baseline_reuse.py                     # experiments/demo.yaml, twice
    python experiments/benchmarks/bench_baseline_reuse.py --set train.max_steps=4   # shorter runs, same start
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def run_dirs(home: Path) -> set[Path]:
    """The run folders (not cache/ or .logs/)."""
    return {p for p in home.iterdir() if (p / "config.yaml").is_file()} if home.is_dir() else set()


def one_run(home: Path, config: Path, sets: list[str]) -> dict:
    before = run_dirs(home)
    cmd = [sys.executable, "-m", "cptcore", "train", str(config), "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, CPT_HOME=str(home)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    first_step = None
    while proc.poll() is None:
        if first_step is None:
            new = sorted(run_dirs(home) - before)
            if new and any(r.get("name") == "train/loss" for r in records(new[0])):
                first_step = time.time() - t0
        time.sleep(0.2)
    wall = time.time() - t0
    if proc.returncode:
        raise SystemExit(f"cpt train failed ({proc.returncode}): {proc.stderr.read()[-2000:]}")
    (run_dir,) = run_dirs(home) - before
    recs = records(run_dir)
    step0 = {r["name"]: r for r in recs if r.get("step") == 0 and r["name"].startswith("eval/")}
    # the first step's own duration, from its tokens and tokens/s: training began that much before it was logged
    tps = next(r for r in recs if r.get("step") == 1 and r["name"] == "train/tokens_per_second")
    step_s = tps["tokens"] / tps["value"]
    reused = sorted({r.get("baseline_reused_from") for r in step0.values()} - {None})
    return {"run": run_dir.name, "first_step_s": first_step, "began_s": first_step - step_s, "wall_s": wall,
            "step0": step0, "reused": reused}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "experiments" / "demo.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-reuse-"))
    print(f"CPT_HOME {home}; {os.cpu_count()} cores; config {args.config.name} {' '.join(args.set)}", flush=True)
    runs = []
    for i in (1, 2):
        r = one_run(home, args.config, args.set)
        runs.append(r)
        print(f"run {i}: first step after {r['first_step_s']:.1f} s, done after {r['wall_s']:.1f} s", flush=True)
    first = runs[0]
    print("\n| run | step-0 baseline | training began (s) | first step logged (s) | wall time (s) | vs first run |")
    print("|---|---|---|---|---|---|")
    for i, r in enumerate(runs, 1):
        how = f"reused from {', '.join(r['reused'])}" if r["reused"] else "evaluated"
        print(f"| {i} | {how} | {r['began_s']:.1f} | {r['first_step_s']:.1f} | {r['wall_s']:.1f} | began "
              f"{r['began_s'] / first['began_s']:.2f}x, wall {r['wall_s'] / first['wall_s']:.2f}x |")
    same = [m for m in first["step0"] if m in runs[1]["step0"]
            and runs[1]["step0"][m]["value"] == first["step0"][m]["value"]]
    print(f"\nstep-0 values equal in both runs: {len(same)} of {len(first['step0'])} metrics "
          f"({', '.join(sorted(first['step0']))})")


if __name__ == "__main__":
    main()
