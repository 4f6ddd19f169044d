"""The `cpt` command. Every dashboard action goes through the same functions.

    cpt train experiments/smoke.yaml --set mix.replay=0.2
    cpt runs [--json]
    cpt metrics RUN [--format json|csv]
    cpt eval --model NAME_OR_PATH_OR_RUN [--suite ifeval,knowledge_qa] [--limit N] [--json]
    cpt score-if RESPONSES.jsonl [--json]
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from .config import ConfigError, RunConfig
from .errors import UsageError
from .files import dumps
from .runs import Run, RunError, cpt_home


# --- train / runs / metrics ------------------------------------------------------------------
def tell_evaluations(cfg: RunConfig) -> None:
    """One stderr line per evaluator that measures the user's own data or is not run (bundled data: silent)."""
    from .data.heldout import describe_sources

    for name, where in describe_sources(cfg).items():
        if "bundled" not in where:
            print(f"{name}: {where}", file=sys.stderr)


def cmd_train(args: argparse.Namespace) -> int:
    from .runs.launch import check_launcher, check_startable, train_in_slot  # train_in_slot waits in the queue

    cfg = RunConfig.load(args.config, args.set)  # parsed once; passed down to the trainer
    if not args.run_id:  # a typo in a path or the model name: one line, and no failed run left behind
        check_launcher(cfg)
        check_startable(cfg)
        tell_evaluations(cfg)
    run = Run.open(cpt_home(), args.run_id) if args.run_id else Run.create(cpt_home(), cfg)
    print(f"run id: {run.id}", flush=True)
    result = train_in_slot(run, cfg, progress=not args.no_progress)
    print(dumps({"run_id": run.id, **result, "status": run.status().get("status")}))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from .runs.liveness import refresh_all
    from .runs.table import run_row

    runs = refresh_all(cpt_home())  # liveness first: dead processes are marked failed before they are listed
    rows = [run_row(r, metrics=args.json) for r in runs]  # the text listing needs no metric stream
    if args.json:
        print(dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no runs in {cpt_home()} (start one: cpt train experiments/smoke.yaml)")
        return 0
    print(f"{'RUN':44} {'STATUS':10} {'STEP':>6} {'MODEL':24} MIX")
    for r in rows:
        mix = "/".join(f"{r['mix'].get(k) or 0:.2f}" for k in ("domain", "replay", "instruct"))
        print(f"{r['id']:44} {r['status']:10} {r.get('step') or 0:>6} {r['model'][:24]:24} {mix}")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from .runs.metrics import latest_attempt

    run = Run.open(cpt_home(), args.run)
    records = latest_attempt(run.read_metrics())
    if args.format == "json":
        for r in records:
            print(dumps(r))
    else:
        fields = ["step", "tokens", "time", "name", "value", "attempt"]
        w = csv.DictWriter(sys.stdout, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(records)
    return 0


# --- eval / score-if --------------------------------------------------------------------------
def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate.ifeval import IFEvalError
    from .evaluate.standalone import evaluate_model, format_table, to_json
    from .evaluate.suite import EvalError

    try:
        result = evaluate_model(args.model, args.suite, args.limit, out_dir=args.out, kind=args.kind,
                                device=args.device)
    except (EvalError, IFEvalError) as e:
        raise UsageError(str(e)) from None
    print(to_json(result) if args.json else format_table(result))
    return 0


def cmd_score_if(args: argparse.Namespace) -> int:
    from .evaluate.ifeval import IFEvalError, score_responses

    try:
        lines, scores = score_responses(args.responses)
    except IFEvalError as e:
        raise UsageError(str(e)) from None
    if args.json:
        print(dumps({"lines": lines, "scores": {s.name: {k: v for k, v in s.to_dict().items() if k != "name"}
                                                      for s in scores}}, indent=1))
        return 0
    for r in lines:
        print(f"line {r['line']}" + (f" (key {r['key']})" if r.get("key") is not None else "")
              + f": prompt strict {'PASS' if r['prompt_strict'] else 'fail'}, "
              f"loose {'PASS' if r['prompt_loose'] else 'fail'}")
        for iid, st, lo in zip(r["instruction_id_list"], r["strict"], r["loose"]):
            print(f"  {iid:45} strict {'pass' if st else 'FAIL'}  loose {'pass' if lo else 'FAIL'}")
    print(f"{'SCORE':22} {'VALUE':>7}  {'95% CI':>16}  {'N':>5}")
    for s in scores:
        print(f"{s.name.removeprefix('eval/'):22} {s.value:7.2f}  [{s.ci_low:5.1f}, {s.ci_high:5.1f}]  {s.n:5d}")
    return 0


# --- background runs: launch / status / logs / stop / resume / delete / sweep / slurm ----------
def cmd_launch(args: argparse.Namespace) -> int:
    from .runs.launch import launch

    cfg = RunConfig.load(args.config, args.set)
    run = launch(cfg, cpt_home(), tags=args.tag)
    print(run.id, flush=True)
    tell_evaluations(cfg)
    print(f"queued in the background; follow it with: cpt logs {run.id} --follow", file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import time

    from .runs.liveness import log_tail, refresh

    run = Run.open(cpt_home(), args.run)
    st = refresh(run)
    if args.json:
        print(dumps({"id": run.id, **st}, indent=1))
        return 0
    fmt = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"  # noqa: E731
    print(f"run       {run.id}\nstatus    {st.get('status')}  (attempt {st.get('attempt', '-')})")
    print(f"step      {st.get('step') or 0} / {st.get('max_steps') or run.config().train.max_steps}")
    print(f"created   {fmt(st.get('created'))}\nstarted   {fmt(st.get('started'))}\nended     {fmt(st.get('ended'))}")
    if st.get("status") in ("queued", "running"):
        from .progress import status_line

        beat = st.get("heartbeat")
        print(f"pid       {st.get('pid', '-')} on {st.get('host', '-')}"
              + (f", heartbeat {time.time() - beat:.0f} s ago" if beat else ""))
        now = status_line(run, st)  # "queued: 2nd in line, waiting for ..." / "evaluating ifeval 12/25 (...)"
        if now:
            print(f"now       {now}")
    if st.get("error"):
        print(f"error     {st['error']}")
    if st.get("status") == "failed":
        print("last log lines:\n  " + "\n  ".join(st.get("log_tail") or log_tail(run, 10)))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    import time

    from .runs.liveness import refresh

    run = Run.open(cpt_home(), args.run)
    offset = 0
    while True:
        try:
            with open(run.log_path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            offset += len(chunk)
            sys.stdout.write(chunk.decode("utf-8", "replace"))
            sys.stdout.flush()
        if not args.follow:
            return 0
        if refresh(run).get("status") not in ("queued", "running") and not chunk:
            return 0
        time.sleep(1)


def cmd_stop(args: argparse.Namespace) -> int:
    from .runs.launch import request_stop, wait_until_ended

    run = Run.open(cpt_home(), args.run)
    request_stop(run, args.timeout)
    print(f"stop requested for {run.id} (checkpoint at the next step; killed after {args.timeout:.0f} s)",
          file=sys.stderr)
    if args.no_wait:
        return 0
    st = wait_until_ended(run, args.timeout)
    print(f"{run.id} {st.get('status')}" + (f" at step {st['step']}" if st.get("step") else "")
          + (f" ({st['note']})" if st.get("note") else ""))
    return 0 if st.get("status") in ("stopped", "completed") else 1


def cmd_resume(args: argparse.Namespace) -> int:
    from .runs.launch import resume

    run, skipped = resume(Run.open(cpt_home(), args.run))
    for s in skipped:
        print(f"skipped unusable {s}", file=sys.stderr)
    st = run.status()
    origin = st.get("resumed_from") or "step 0 (no checkpoint was saved; set train.save_every_steps)"
    print(f"{run.id} resumed from {origin} (attempt {st.get('attempt', 1) + 1})")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from .runs.launch import delete
    from .runs.liveness import refresh

    run = Run.open(cpt_home(), args.run)
    st = refresh(run)
    if st.get("status") in ("queued", "running"):
        raise RunError(f"run {run.id} is {st['status']}: stop it first (cpt stop {run.id})")
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"not deleting {run.id} without confirmation: pass --yes")
        if input(f"delete run {run.id} ({st.get('status')}) and all its files? [y/N] ").strip().lower() not in ("y", "yes"):
            print("not deleted")
            return 1
    delete(run)
    print(f"deleted {run.id}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .runs.sweep import parse_grid, parse_pilot, sweep

    if not args.grid and not args.pilot:
        raise UsageError("cpt sweep: give --grid SECTION.KEY=V1,V2 or --pilot ROLE=S1,S2,...")
    cfg = RunConfig.load(args.config, args.set)
    pilot = parse_pilot(args.pilot) if args.pilot else None
    group, runs = sweep(cfg, parse_grid(args.grid), cpt_home(), group=args.name, pilot=pilot)
    print(f"{'pilot' if pilot else 'sweep'} {group}: {len(runs)} runs queued (they run one after another)"
          + (f"; then: cpt mixlaw {group}" if pilot else ""), file=sys.stderr)
    for run in runs:
        c = run.config()
        print(f"{run.id}  mix {c.mix.domain:.3f}/{c.mix.replay:.3f}/{c.mix.instruct:.3f}  lr {c.train.lr:g}")
    return 0


def cmd_slurm(args: argparse.Namespace) -> int:
    from .runs.slurm import write_slurm

    cfg = RunConfig.load(args.config, args.set)
    gpus = args.gpus_per_node or cfg.launch.nproc
    run, path = write_slurm(cfg, cpt_home(), args.nodes, gpus, time_limit=args.time, partition=args.partition)
    print(path)
    print(f"submit it with: sbatch {path}   (CPT_HOME must be on a filesystem all nodes share)", file=sys.stderr)
    return 0


def add_run_commands(sub) -> None:
    """Parser entries for the background-run commands."""
    la = sub.add_parser("launch", help="start a run in the background; prints its id at once")
    la.add_argument("config", type=Path)
    la.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value")
    la.add_argument("--tag", action="append", default=[], help="tag the run (repeatable)")
    la.set_defaults(func=cmd_launch)

    st = sub.add_parser("status", help="a run's status, progress and error")
    st.add_argument("run")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    lg = sub.add_parser("logs", help="print a run's log")
    lg.add_argument("run")
    lg.add_argument("--follow", "-f", action="store_true", help="keep printing until the run ends")
    lg.set_defaults(func=cmd_logs)

    so = sub.add_parser("stop", help="checkpoint and stop a queued or running run")
    so.add_argument("run")
    so.add_argument("--timeout", type=float, default=120, help="seconds before the process is killed (default 120)")
    so.add_argument("--no-wait", action="store_true", help="request the stop and return")
    so.set_defaults(func=cmd_stop)

    re_ = sub.add_parser("resume", help="continue a failed or stopped run from its last usable checkpoint")
    re_.add_argument("run")
    re_.set_defaults(func=cmd_resume)

    de = sub.add_parser("delete", help="delete a finished run (asks first)")
    de.add_argument("run")
    de.add_argument("--yes", "-y", action="store_true", help="do not ask")
    de.set_defaults(func=cmd_delete)

    sw = sub.add_parser("sweep", help="queue a grid of runs as one group")
    sw.add_argument("config", type=Path)
    sw.add_argument("--grid", action="append", default=[], metavar="SECTION.KEY=V1,V2",
                    help="values to sweep (repeatable: the grid is their product)")
    sw.add_argument("--pilot", metavar="ROLE=S1,S2,...",
                    help="a pilot for `cpt mixlaw`: one mix share at >= 4 values, the other shares rescaled, "
                    "nothing else changed (e.g. replay=0,0.05,0.1,0.2,0.4)")
    sw.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value")
    sw.add_argument("--name", help="group name (default: CONFIGNAME-sweep-DATE)")
    sw.set_defaults(func=cmd_sweep)

    sl = sub.add_parser("slurm", help="write an sbatch script running the config under srun torchrun")
    sl.add_argument("config", type=Path)
    sl.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value")
    sl.add_argument("--nodes", type=int, default=1)
    sl.add_argument("--gpus-per-node", type=int, help="processes per node (default: launch.nproc)")
    sl.add_argument("--time", default="24:00:00", help="Slurm time limit")
    sl.add_argument("--partition")
    sl.set_defaults(func=cmd_slurm)


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

    e = sub.add_parser("eval", help="evaluate a model, checkpoint or run without training")
    e.add_argument("--model", required=True, metavar="NAME_OR_PATH_OR_RUN",
                   help="built-in name, model folder, run id (its newest checkpoint: the final one once it "
                   "completed) or hub id")
    e.add_argument("--suite", help="comma-separated evaluators (default: domain_ppl,replay_ppl,knowledge_qa,"
                   "ifeval,coherence)")
    e.add_argument("--limit", type=int, help="documents / questions / prompts per evaluator")
    e.add_argument("--kind", choices=["base", "instruct"], help="prompt style (default: the run's, or instruct "
                   "when the tokenizer has a chat template)")
    e.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    e.add_argument("--out", type=Path, help="write per-item results (EVALUATOR-step000000.jsonl) to this folder")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)

    s = sub.add_parser("score-if", help="score IFEval responses (prompt, instruction_id_list, kwargs, response)")
    s.add_argument("responses", type=Path, metavar="RESPONSES.jsonl")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_score_if)
    add_run_commands(sub)
    from . import advise, mixlaw, plan, synth  # plan and recipes, synthetic data, the model and mix advisors

    for module in (plan, synth, advise, mixlaw):
        module.add_parser(sub)
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
    except BrokenPipeError:  # `cpt status RUN | head`: the reader left; nothing to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit stays quiet
        return 0
    except Exception as e:  # noqa: BLE001 - one line for the user; the traceback goes to a file
        from .models import ModelError
        from .data.sources import DataError

        if isinstance(e, (ModelError, DataError)):
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"error: unexpected {type(e).__name__}: {e} (traceback in {crash_log(e)})", file=sys.stderr)
        return 1


def crash_log(e: BaseException) -> Path | str:
    """Write the traceback of an unexpected error under CPT_HOME/.logs/ (else the temp folder); its path."""
    import tempfile
    import time
    import traceback

    text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    name = f"cli-{time.strftime('%Y%m%d-%H%M%S')}-{id(e) & 0xffff:04x}.log"
    for folder in (cpt_home() / ".logs", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(" ".join(sys.argv) + "\n" + text, encoding="utf-8")
            return folder / name
        except OSError:
            continue
    return "nowhere: no writable folder"


if __name__ == "__main__":
    sys.exit(main())
