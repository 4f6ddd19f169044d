"""Does the mix law predict a run it has not seen? Fit on 4 pilot shares, predict the 5th, compare with the run.

    python experiments/validate_mixlaw.py                     # runs the pilot (5 demo runs, ~50 min on 2 cores)
    python experiments/validate_mixlaw.py --group GROUP       # analyse a pilot group that already ran
    python experiments/validate_mixlaw.py --group GROUP --recommended RUN   # and a run of the recommended mix

The pilot is experiments/demo.yaml (the embedded SmolLM2-135M-Instruct, the bundled data) at replay shares
0, 0.1, 0.2, 0.4 and 0.6 (domain and instruct rescaled), each run evaluated at steps 7, 14, 21 and 28 (forward
evaluators) and IFEval at steps 0 and 28, all on the same items: a `cpt sweep --pilot` group. Then, for each
fold, every run but one is the pilot and the left-out run is the test:
  - interpolation: replay 0.2 left out (pilots 0, 0.1, 0.4, 0.6)
  - extrapolation up: replay 0.6 left out (pilots 0 .. 0.4)
  - extrapolation down: replay 0 left out (pilots 0.1 .. 0.6)
The table prints, per fold and metric, the law's prediction for the left-out share at its last evaluation with
the law's 95% interval (items and pilot runs redrawn), the measured gain from step 0 with its 95% paired CI, the
error, and whether the measurement fell inside the prediction's interval. A fold whose law is refused on the 4
pilots says so (its prediction is not offered to a user). The output is also written to
experiments/results/validate_mixlaw.txt.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cptcore import mixlaw as M  # noqa: E402
from cptcore.frames import gain_unit, label  # noqa: E402

SHARES = (0.0, 0.1, 0.2, 0.4, 0.6)
FOLDS = (("interpolation", 0.2), ("extrapolation up", 0.6), ("extrapolation down", 0.0))


def run_pilot(home: Path, config: Path, shares, name: str) -> str:
    from cptcore.config import RunConfig
    from cptcore.runs.sweep import sweep

    cfg = RunConfig.load(config, ["eval.every_steps=7"])
    group, runs = sweep(cfg, {}, home, group=name, pilot=("replay", list(shares)))
    print(f"pilot {group}: {len(runs)} runs queued in {home}; they run one after another", flush=True)
    t0 = time.time()
    while True:
        states = [r.status() for r in runs]
        done = sum(s.get("status") in ("completed", "failed", "stopped") for s in states)
        steps = ", ".join(f"{s.get('status')}@{s.get('step') or 0}" for s in states)
        print(f"  {time.time() - t0:6.0f} s  {done}/{len(runs)} ended  [{steps}]", flush=True)
        if done == len(runs):
            break
        time.sleep(60)
    bad = [r.id for r, s in zip(runs, states) if s.get("status") != "completed"]
    if bad:
        raise SystemExit(f"pilot runs did not complete: {', '.join(bad)} (see cpt status RUN)")
    return group


def measured(points: M.Points, mask: np.ndarray, n_boot: int = M.N_BOOT) -> tuple[float, float, float, float]:
    """The left-out run's last evaluation: (s-independent tokens, gain, 95% paired CI low, high), items redrawn
    with the same bootstrap the fit uses."""
    last = np.flatnonzero(mask)[np.argmax(points.tokens[mask])]
    one = points.select(np.arange(len(points.run)) == last)
    boot = M.to_gain(one.y_boot(n_boot, np.random.default_rng(0))[:, 0], one.kind)
    return (float(one.tokens[0]), float(M.to_gain(one.y(), one.kind)[0]), float(np.percentile(boot, 2.5)),
            float(np.percentile(boot, 97.5)))


def fold_rows(data: M.PilotData, held_share: float) -> list[dict]:
    rows = []
    for metric, points in data.points.items():
        held = np.isclose(points.share, held_share)
        if not held.any():
            continue
        fit = M.fit_metric(points.select(~held), data.tokens_ref)
        tokens, gain, lo, hi = measured(points, held)
        pred = M.predict(fit, held_share, tokens / data.tokens_ref)
        p, plo, phi = float(pred["gain"][0]), float(pred["low"][0]), float(pred["high"][0])
        rows.append({"metric": metric, "usable": fit["usable"], "reasons": fit["reasons"], "pred": p, "pred_low": plo,
                     "pred_high": phi, "meas": gain, "meas_low": lo, "meas_high": hi, "error": p - gain,
                     "inside": plo <= gain <= phi, "noise": fit["noise"], "loro": fit["loro"]})
    return rows


def run_points(run, metric: str) -> M.Points | None:
    """One run's last evaluation of a metric as Points (paired with its own step 0), for measured()."""
    from cptcore.evaluate.suite import load_scores

    steps = sorted(int(p.name.rsplit("-step", 1)[1][:6]) for p in (run.dir / "eval").glob("*-step*.scores.json"))
    base = load_scores(run.dir / "eval", 0).get(metric)
    last = next((st for st in reversed(steps) if st and metric in load_scores(run.dir / "eval", st)), None)
    if base is None or last is None:
        return None
    now, kind = load_scores(run.dir / "eval", last)[metric]
    ids = [k for k in now if k in base[0]]
    row = lambda items, j: np.array([[float(items[k][j]) for k in ids]])  # noqa: E731
    tokens = next((r["tokens"] for r in run.read_metrics() if r.get("name") == metric and r.get("step") == last), 0)
    return M.Points(metric, kind, np.array([0]), np.array([0.0]), np.array([float(tokens)]), np.array([last]),
                    row(now, 0), row(now, 1), row(base[0], 0), row(base[0], 1))


def recommended_rows(result: dict, rec: dict, run) -> list[str]:
    """The recommended mix, run for real: every usable law's prediction against the run's measurement."""
    lines = [f"{'METRIC':18} {'UNIT':26} {'PREDICTED (95% interval)':28} {'MEASURED (95% paired CI)':28} "
             f"{'ERROR':>8} {'INSIDE':>6}"]
    for metric, fit in result["fits"].items():
        points = run_points(run, metric)
        if points is None:
            continue
        tokens, gain, lo, hi = measured(points, np.ones(1, dtype=bool))
        if not fit["usable"]:
            lines.append(f"{M.short(metric):18} {gain_unit(metric)[:26]:26} {'(law refused: no prediction)':28} "
                         f"{gain:+.3g} ({lo:+.3g} .. {hi:+.3g})")
            continue
        pred = M.predict(fit, rec["share"], tokens / result["tokens_ref"])
        p, plo, phi = float(pred["gain"][0]), float(pred["low"][0]), float(pred["high"][0])
        lines.append(f"{M.short(metric):18} {gain_unit(metric)[:26]:26} {f'{p:+.3g} ({plo:+.3g} .. {phi:+.3g})':28} "
                     f"{f'{gain:+.3g} ({lo:+.3g} .. {hi:+.3g})':28} {p - gain:+8.3g} "
                     f"{'yes' if plo <= gain <= phi else 'NO':>6}")
    return lines


def table(data: M.PilotData) -> list[str]:
    lines = [f"{'FOLD (left-out replay)':26} {'METRIC':18} {'UNIT':26} {'PREDICTED (95% interval)':28} "
             f"{'MEASURED (95% paired CI)':28} {'ERROR':>8} {'INSIDE':>6}  LAW ON 4 PILOTS"]
    summary = []
    for fold, share in FOLDS:
        for r in fold_rows(data, share):
            pred = f"{r['pred']:+.3g} ({r['pred_low']:+.3g} .. {r['pred_high']:+.3g})"
            meas = f"{r['meas']:+.3g} ({r['meas_low']:+.3g} .. {r['meas_high']:+.3g})"
            lines.append(f"{fold + f' ({share:g})':26} {M.short(r['metric']):18} {gain_unit(r['metric'])[:26]:26} "
                         f"{pred:28} {meas:28} {r['error']:+8.3g} {'yes' if r['inside'] else 'NO':>6}  "
                         + ("usable" if r["usable"] else "refused: " + "; ".join(r["reasons"])[:90]))
            summary.append(r | {"fold": fold})
    lines.append("")
    usable = [r for r in summary if r["usable"]]
    inside = sum(r["inside"] for r in usable)
    lines.append(f"usable laws: {len(usable)} of {len(summary)} fold x metric cells; the measurement fell inside the "
                 f"prediction's 95% interval in {inside} of them.")
    for r in summary:
        if r["usable"] and not r["inside"]:
            lines.append(f"  missed: {r['fold']}, {label(r['metric'])}: predicted {r['pred']:+.3g}, measured "
                         f"{r['meas']:+.3g} ({gain_unit(r['metric'])})")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--group", help="analyse this pilot group instead of running one")
    ap.add_argument("--home", type=Path, default=Path(os.environ.get("CPT_HOME", "runs")), help="CPT_HOME")
    ap.add_argument("--config", type=Path, default=ROOT / "experiments" / "demo.yaml")
    ap.add_argument("--recommended", metavar="RUN", help="a run of the recommended mix (cpt mixlaw GROUP --budget "
                    "replay_ppl=5 --launch): print its measurements against the predictions")
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "validate_mixlaw.txt")
    args = ap.parse_args()
    os.environ["CPT_HOME"] = str(args.home)
    group = args.group or run_pilot(args.home, args.config, SHARES, f"validate-mixlaw-{time.strftime('%Y%m%d-%H%M%S')}")
    data = M.collect(group, args.home)
    budget = {"replay_ppl": M.DEFAULT_BUDGETS["eval/replay_ppl"]}  # general ppl rise <= 5 %
    result, rec = M.advise(group, args.home, budget=budget, record=False)
    lines = [f"# python experiments/validate_mixlaw.py --group {group}   ({time.strftime('%Y-%m-%d %H:%M')})",
             "# pilot runs: " + ", ".join(f"{r['id']} (replay {r['share']:g})" for r in data.runs), "",
             "## Held-out share: fit on 4 pilots, predict the 5th", *table(data), "",
             "## All 5 pilots (cpt mixlaw --budget replay_ppl=5)", *M.report_lines(result, rec)]
    if args.recommended:
        from cptcore.runs import Run

        run = Run.open(args.home, args.recommended)
        lines += ["", f"## The recommended mix, run: {run.id} (replay {run.config().mix.replay:g}, status "
                  f"{run.status().get('status')})", *recommended_rows(result, rec, run)]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(f"\nwritten to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
