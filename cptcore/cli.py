"""The `cpt` command. Every dashboard action goes through the same functions.

    cpt train experiments/smoke.yaml --set mix.replay=0.2
    cpt runs [--json]
    cpt metrics RUN [--format json|csv]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from .config import ConfigError, RunConfig
from .runs import Run, RunError, cpt_home, latest_attempt, list_runs


class UsageError(ValueError):
    """Bad input detected by a command; printed as one line, exit code 2."""


# --- train / runs / metrics ------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from .train import train_run

    cfg = RunConfig.load(args.config, args.set)
    run = Run.open(cpt_home(), args.run_id) if args.run_id else Run.create(cpt_home(), cfg)
    print(f"run id: {run.id}", flush=True)
    result = train_run(run, progress=not args.no_progress)
    print(json.dumps({"run_id": run.id, "status": "completed", **result}))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    rows = [run_summary(r) for r in list_runs(cpt_home())]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no runs in {cpt_home()} (start one: cpt train experiments/smoke.yaml)")
        return 0
    print(f"{'RUN':44} {'STATUS':10} {'STEP':>6} {'MODEL':24} MIX")
    for r in rows:
        mix = "/".join(f"{r['mix'].get(k, 0):.2f}" for k in ("domain", "replay", "instruct"))
        print(f"{r['id']:44} {r['status']:10} {r.get('step') or 0:>6} {r['model'][:24]:24} {mix}")
    return 0


def run_summary(run: Run) -> dict:
    st = run.status()
    try:
        cfg = run.config().to_dict()
    except ConfigError:
        cfg = {"model": {}, "mix": {}}
    return {"id": run.id, "status": st.get("status"), "step": st.get("step"), "max_steps": st.get("max_steps"),
            "model": cfg["model"].get("name", "?"), "mix": cfg["mix"], "error": st.get("error")}


def cmd_metrics(args: argparse.Namespace) -> int:
    run = Run.open(cpt_home(), args.run)
    records = latest_attempt(run.read_metrics())
    if args.format == "json":
        for r in records:
            print(json.dumps(r))
    else:
        fields = ["step", "tokens", "time", "name", "value", "attempt"]
        w = csv.DictWriter(sys.stdout, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(records)
    return 0


# --- entry point -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cpt", description="CPT Studio: continued pre-training runs and evaluations")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a config in the foreground")
    t.add_argument("config", type=Path)
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value")
    t.add_argument("--run-id", help=argparse.SUPPRESS)  # used by background launches: train into an existing run
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("runs", help="list runs with their status")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_runs)

    m = sub.add_parser("metrics", help="dump a run's metric stream")
    m.add_argument("run")
    m.add_argument("--format", choices=["json", "csv"], default="json")
    m.set_defaults(func=cmd_metrics)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, RunError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line for the user; the run's status keeps the details
        from .models import ModelError
        from .data.sources import DataError

        if isinstance(e, (ModelError, DataError)):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
