"""Server time of the dashboard on a big run store: Compare over 50 runs, the runs table, one live Monitor refresh.

    python experiments/benchmarks/bench_dashboard.py [--runs 50] [--points 5000] [--repeat 5]

Builds, in a temporary CPT_HOME, `--runs` runs with `--points` records per metric (11 metrics: loss total and
per role, LR, realized mix per role, domain/replay perplexity, IFEval), written in the metric stream's exact
record format. Synthetic curves: this measures the dashboard, not training. Rows:
  compare, first look     no cache anywhere: parse every metrics.jsonl (and write the parquet cache), figures
  compare, restart        a new server process: read the parquet cache instead of the JSON, figures
  compare, warm           any later interaction (loader cached on size/mtime): downsample + figures   goal <= 1 s
  compare page (AppTest)  the whole Compare page script, warm, as Streamlit runs it                     goal <= 1 s
  home table, warm        runs.table.runs_table over every run folder (the home page's 5 s refresh)   goal <= 1 s
  cpt runs --json         a new process (python start included) reading the folders and parquet caches
  monitor refresh         one step appended to a live run, then the live panel's loads and figures     goal <= 0.3 s
  monitor page (AppTest)  the whole Monitor page script on that run, one step appended before each run goal <= 0.3 s
Figures are serialized to JSON in every row (st.plotly_chart does that on each run).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

METRICS = ["train/loss", "train/loss/domain", "train/loss/replay", "train/loss/instruct", "train/lr",
           "mix/domain", "mix/replay", "mix/instruct", "eval/domain_ppl", "eval/replay_ppl", "eval/if_prompt_strict"]


def build_store(home: Path, n_runs: int, points: int) -> list:
    """Run directories with config, manifest, status and a metrics.jsonl of points x len(METRICS) lines."""
    import numpy as np

    from cptcore.config import RunConfig
    from cptcore.runs import Run

    runs = []
    rng = np.random.default_rng(0)
    for i in range(n_runs):
        replay = round(0.02 + 0.3 * i / max(n_runs - 1, 1), 3)
        cfg = RunConfig.from_dict({"name": f"bench-{i:02d}", "model": {"name": "tiny-random-llama"},
                                   "mix": {"domain": round(0.95 - replay, 3), "replay": replay, "instruct": 0.05},
                                   "train": {"max_steps": points, "lr": 1e-5 * (1 + i % 5)},
                                   "eval": {"evaluators": ["domain_ppl", "replay_ppl", "ifeval"]}})
        run = Run.create(home, cfg)
        run.write_manifest({"roles": {"domain": {"sources": [{"path": "builtin:knowledge_docs", "tokens": 61000}],
                                                 "tokens_trained": points * 2048 * cfg.mix.domain}}})
        steps = np.arange(points)
        decay = np.exp(-steps / (points / 3))
        series = {
            "train/loss": 2.0 + decay + rng.normal(0, 0.05, points),
            "eval/domain_ppl": 40 * (1 - 0.4 * (1 - decay) * (1 - replay)),
            "eval/replay_ppl": 25 * (1 + 0.1 * (1 - decay) * (0.35 - replay)),
            "eval/if_prompt_strict": 30 - 10 * (1 - decay) * (0.35 - replay) + rng.normal(0, 1, points),
        }
        with open(run.metrics_path, "w", encoding="utf-8") as fh:
            lines = []
            for s in range(points):
                base = {"step": s, "tokens": s * 2048, "time": round(s * 0.8, 3), "attempt": 1}
                for name in METRICS:
                    if name in series:
                        v = float(series[name][s])
                    elif name.startswith("train/loss/"):
                        v = float(series["train/loss"][s] + 0.1 * METRICS.index(name))
                    elif name.startswith("mix/"):
                        v = getattr(cfg.mix, name.split("/")[1])
                    else:
                        v = cfg.train.lr
                    rec = {**base, "name": name, "value": v}
                    if name.startswith("eval/"):
                        rec.update(n=32, ci_low=v * 0.95, ci_high=v * 1.05)
                    lines.append(json.dumps(rec))
            fh.write("\n".join(lines) + "\n")
        run.write_status("completed", step=points, max_steps=points)
        runs.append(run)
    return runs


def compare_once(runs, metric: str = "train/loss") -> int:
    """What the Compare page computes: load, smooth + downsample, curves and trade-off figures, config diff."""
    from cptcore import charts, compare, frames

    metrics = {r.id: frames.load_metrics(r) for r in runs}
    per_run = max(100, 20_000 // len(runs))
    curves = {rid: frames.curve(m, metric, 0.6, per_run) for rid, m in metrics.items()}
    fig = charts.compare_figure(curves, metric, "tokens")
    pts = compare.tradeoff_points(metrics, "eval/domain_ppl", "eval/if_prompt_strict")
    hover = {r.id: compare.config_summary(r) for r in runs}
    fig2 = charts.tradeoff_figure(pts, "domain gain", "IF change", hover, trajectories=True)
    compare.config_diff(runs)
    return len(fig.to_json()) + len(fig2.to_json())


def monitor_once(run) -> int:
    """What one live refresh computes for one run: incremental load, the panel's figures, ETA, generations."""
    from cptcore import charts, compare, frames

    m = frames.load_metrics(run)
    figs = [charts.loss_figure(m), charts.mix_figure(m, {"domain": 0.8, "replay": 0.15, "instruct": 0.05}),
            charts.baseline_figure(m), charts.series_figure(m, ["train/lr"], "lr"),
            charts.series_figure(m, ["train/grad_norm"], "grad"), charts.series_figure(m, ["train/tokens_per_second"], "tps")]
    frames.eta_seconds(m, run.status().get("max_steps"))
    compare.generations(run, "ifeval")
    return sum(len(f.to_json()) for f in figs)


def append_step(run, step: int) -> None:
    with open(run.metrics_path, "a", encoding="utf-8") as fh:
        for name in METRICS:
            fh.write(json.dumps({"step": step, "tokens": step * 2048, "time": step * 0.8, "name": name,
                                 "value": 1.0 + step * 1e-6, "attempt": 1}) + "\n")


def timed(fn, repeat: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        size = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), size


def page_time(page: str, state: dict, repeat: int, before=None) -> float:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    at.switch_page(page).run()  # first run warms the loader cache
    assert not at.exception, at.exception
    times = []
    for _ in range(repeat):
        if before:
            before()
        t0 = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t0)
        assert not at.exception, at.exception
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--points", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from cptcore import frames
    from cptcore.runs import list_runs, store
    from cptcore.runs.table import runs_table

    with tempfile.TemporaryDirectory() as tmp:
        home_dir = Path(tmp) / "runs"
        os.environ["CPT_HOME"] = str(home_dir)
        t0 = time.perf_counter()
        runs = build_store(home_dir, args.runs, args.points)
        size_mb = sum(r.metrics_path.stat().st_size for r in runs) / 1e6
        lines = args.runs * args.points * len(METRICS)
        print(f"store: {args.runs} runs x {args.points} points x {len(METRICS)} metrics = {lines:,} records, "
              f"{size_mb:.0f} MB, built in {time.perf_counter() - t0:.1f} s")

        def forget() -> None:  # what a server restart loses
            frames._TAILS.clear()
            store._FILES.clear()

        compare_once(runs[:1])  # imports and first-call set-up, as a running server has them
        shutil.rmtree(home_dir / ".cache", ignore_errors=True)
        forget()
        t0 = time.perf_counter()
        payload = compare_once(runs)
        first = time.perf_counter() - t0
        forget()
        t0 = time.perf_counter()
        compare_once(runs)
        restart = time.perf_counter() - t0
        warm, payload = timed(lambda: compare_once(runs), args.repeat)
        page_c = page_time("views/3_Compare.py", {"compare_runs": [r.id for r in runs]}, args.repeat)
        home, _ = timed(lambda: len(runs_table(list_runs(home_dir))), args.repeat)
        cli, _ = timed(lambda: len(subprocess.run([sys.executable, "-m", "cptcore", "runs", "--json"], check=True,
                                                  capture_output=True, cwd=ROOT).stdout), args.repeat)

        live = runs[0]
        live.write_status("running", step=args.points, max_steps=args.points * 2)
        step = [args.points]

        def grow() -> None:
            append_step(live, step[0])
            step[0] += 1

        def refresh() -> int:
            grow()
            return monitor_once(live)

        mon, mon_payload = timed(refresh, args.repeat * 4)
        page_m = page_time("views/2_Monitor.py", {"monitor_run": live.id}, args.repeat, before=grow)

    rows = [("compare, first look (parse all JSON)", first, None, payload),
            ("compare, after restart (parquet cache)", restart, None, payload),
            ("compare, warm", warm, 1.0, payload),
            ("compare page (AppTest, warm)", page_c, 1.0, None),
            ("home table, warm", home, 1.0, None),
            ("cpt runs --json (new process)", cli, None, None),
            ("monitor refresh (1 step appended)", mon, 0.3, mon_payload),
            ("monitor page (AppTest)", page_m, 0.3, None)]
    print(f"\n| {'measurement':38} | {'server time':>11} | {'goal':>6} | {'time/goal':>9} | {'figure JSON':>11} |")
    print(f"|{'-' * 40}|{'-' * 13}|{'-' * 8}|{'-' * 11}|{'-' * 13}|")
    for name, t, goal, size in rows:
        g = f"{goal:.1f} s" if goal else "—"
        ratio = f"{t / goal:.2f}" if goal else "—"
        sz = f"{size / 1e6:.2f} MB" if size else "—"
        print(f"| {name:38} | {t:9.3f} s | {g:>6} | {ratio:>9} | {sz:>11} |")


if __name__ == "__main__":
    main()
