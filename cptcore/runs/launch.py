"""Background runs: launch, stop, resume, delete; the queued process's training, local or distributed.

    cpt launch experiments/smoke.yaml          # prints the run id at once; training goes on in the background

- Launch: Run.create writes config.yaml and status `queued`, then `python -m cptcore train CONFIG --run-id ID`
  starts in its own process session (argument list, log.txt as stdout), so it outlives the page, the server or
  the shell that started it. <run>/launcher.json records pid, process group, host and working directory.
  The started process waits for its slot (queue.py) before it trains.
- Stop: `cpt stop` writes <run>/stop.json; the Supervisor callback checkpoints and ends the run as `stopped`.
  After the timeout, the next look kills the process group and marks it stopped (liveness.py).
- Resume: the newest checkpoint that passes check_checkpoint (corrupt ones are set aside as corrupt-checkpoint-N),
  train.resume_from=last, status queued again; train_run bumps the attempt so readers keep the latest per step.
- Scale-out: launch.launcher torchrun/accelerate makes the queued process start `torch.distributed.run` (or
  `accelerate launch`) with the same `cptcore train` command; workers see RANK in their environment and train.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..config import ConfigError, RunConfig
from ..data.leaks import check_leaks
from ..plan import plan as make_plan
from .checkpoints import pick_checkpoint
from .liveness import STOP_TIMEOUT_S, mark_ended, refresh
from .queue import TICKET_ENV, slot_key, take_ticket, wait_for_slot
from .store import ACTIVE_STATUSES, FINAL_STATUSES, HOST, Run, RunError, atomic_write, read_json, stop_request_path

PKG_ROOT = Path(__file__).resolve().parents[2]  # the folder holding cptcore: launched runs run this same code


def launch(cfg: RunConfig, home: Path | str | None = None, group: str | None = None,
           tags: list[str] | None = None) -> Run:
    """Create the run (config first) and start it in the background; returns at once."""
    check_launcher(cfg)
    check_leaks(cfg, check_startable(cfg))
    run = Run.create(home, cfg)
    if group or tags:
        run.set_meta(group=group, tags=tags or [])
    spawn(run, cfg=cfg)
    return run


def spawn(run: Run, cwd: str | None = None, cfg: RunConfig | None = None) -> int:
    """Start `cptcore train --run-id` for an existing run in its own session; log.txt gets its output."""
    run.launcher_path.unlink(missing_ok=True)  # a previous attempt's pids must not judge this one
    run.write_status("queued", queued_at=time.time(), pid=None, pid_time=None)
    home = run.dir.parent.resolve()
    ticket_fh, ticket = take_ticket(run, cfg or run.config())  # queue order = launch order, not process start order
    env = dict(os.environ, CPT_HOME=str(home), PYTHONUNBUFFERED="1", **{TICKET_ENV: f"{ticket_fh.fileno()}:{ticket}"},
               PYTHONPATH=os.pathsep.join(p for p in (str(PKG_ROOT), os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-m", "cptcore", "train", str(run.config_path.resolve()), "--run-id", run.id,
           "--no-progress"]
    cwd = cwd or os.getcwd()  # relative data paths in the config resolve where the user launched from
    try:
        with open(run.log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=env, cwd=cwd, pass_fds=(ticket_fh.fileno(),))
    except OSError as e:
        ticket.unlink(missing_ok=True)
        run.write_status("failed", error=f"could not start the training process: {e}")
        raise RunError(f"run {run.id}: could not start the training process: {e}") from None
    finally:
        ticket_fh.close()  # the child holds the ticket's lock from here on
    atomic_write(run.launcher_path, {"launcher": "local", "pid": proc.pid, "pgid": proc.pid, "host": HOST,
                                     "time": time.time(), "cwd": cwd, "command": cmd})
    return proc.pid


def check_startable(cfg: RunConfig):
    """What would fail in the first seconds of training, checked before a run exists (so `cpt launch` exits 2
    instead of leaving a run that fails 10 s later): the model name (no weights loaded), every source readable
    and counted with the tokenizer where it is on disk (else the local files exist), the plan. Returns the plan."""
    from ..data.sources import DataError, local_path, source_files
    from ..models import check_model_name
    from ..plan import counter_for

    check_model_name(cfg.model.name)
    count = counter_for(cfg)
    p = make_plan(cfg, count=count)
    if count is None:  # no tokenizer on disk yet (a hub model): at least the local files must be there
        from ..data.leaks import training_sources

        for _, src in training_sources(cfg, p):
            if local_path(src) is not None or src.path.startswith("builtin:"):
                if not source_files(src):
                    raise DataError(f"{src.path}: no data files")
    return p


def check_launcher(cfg: RunConfig) -> None:
    """Reject launcher settings that cannot work here before anything is created."""
    if cfg.launch.launcher == "accelerate" and cfg.launch.nproc > 1 and slot_key(cfg) == "cpu":
        raise ConfigError("launch.launcher: accelerate needs GPUs for nproc > 1; use launch.launcher=torchrun on CPU")
    if cfg.launch.strategy == "fsdp" and slot_key(cfg) == "cpu":
        raise ConfigError("launch.strategy: fsdp needs GPUs; use ddp on CPU")
    if cfg.train.fused_kernels and slot_key(cfg) == "cpu":  # train.check_gpu_options also checks the package
        raise ConfigError("train.fused_kernels needs CUDA and the liger-kernel package: pip install liger-kernel "
                          "(this run would train on cpu; set train.fused_kernels=false)")


# --- the queued process -------------------------------------------------------------------------
def train_in_slot(run: Run, cfg: RunConfig | None = None, progress: bool = True) -> dict[str, Any]:
    """What `cpt train` runs: wait for a slot, then train here or under torchrun/accelerate. cfg: the run's
    config, parsed once by the caller (default: read from the run directory)."""
    from ..train import train_run  # torch and transformers load only in the process that trains

    cfg = cfg or run.config()
    if "RANK" in os.environ or "LOCAL_RANK" in os.environ:  # a worker of torchrun/accelerate/srun: just train
        return train_run(run, cfg, progress=progress)
    check_launcher(cfg)
    slot = wait_for_slot(run, cfg)
    if slot is None:
        raise RunError(f"run {run.id} was stopped before it started")
    try:
        if cfg.launch.launcher == "local":
            result = train_run(run, cfg, progress=progress)
        else:
            result = _train_distributed(run, cfg, slot)
        return {**result, "status": run.status().get("status")}
    finally:
        slot.close()


def distributed_command(cfg: RunConfig, run: Run) -> list[str]:
    """The torchrun / accelerate command line that starts launch.nproc copies of `cptcore train`."""
    n = str(cfg.launch.nproc)
    entry = ["-m", "cptcore", "train", str(run.config_path.resolve()), "--run-id", run.id, "--no-progress"]
    if cfg.launch.launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", n, *entry]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", n, "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd += ["--use_fsdp"] if cfg.launch.strategy == "fsdp" else (["--multi_gpu"] if cfg.launch.nproc > 1 else [])
    return cmd + entry


def _train_distributed(run: Run, cfg: RunConfig, slot) -> dict[str, Any]:
    cmd = distributed_command(cfg, run)
    print("starting: " + shlex.join(cmd), flush=True)
    proc = subprocess.Popen(cmd, pass_fds=(slot.fileno(),))  # workers keep the slot even if this process dies
    rc = proc.wait()
    st = run.status()
    if st.get("status") in ACTIVE_STATUSES:  # a worker died without writing its end (kill -9, OOM killer)
        st = mark_ended(run, f"{cfg.launch.launcher} exited with code {rc} before the run recorded its end; "
                             f"see {run.log_path}")
    if st["status"] == "failed":
        raise RunError(f"run {run.id} failed: {st.get('error')}")
    return st.get("result") or {}


# --- stop / resume / delete ---------------------------------------------------------------------
def request_stop(run: Run, timeout_s: float = STOP_TIMEOUT_S) -> dict[str, Any]:
    """Ask a queued or running run to stop (checkpoint first); returns at once."""
    st = refresh(run)
    if st.get("status") in FINAL_STATUSES:
        raise RunError(f"run {run.id} already {st['status']}: nothing to stop")
    atomic_write(stop_request_path(run), {"requested": time.time(), "timeout_s": timeout_s, "by": os.getpid()})
    return st


def wait_until_ended(run: Run, timeout_s: float = STOP_TIMEOUT_S, poll_s: float = 0.5) -> dict[str, Any]:
    """Wait for a stop to take effect; past the stop timeout refresh() kills the process group."""
    deadline = time.time() + timeout_s + 15
    while time.time() < deadline:
        st = refresh(run)
        if st.get("status") in FINAL_STATUSES:
            return st
        time.sleep(poll_s)
    return refresh(run)


def resume(run: Run) -> tuple[Run, list[str]]:
    """Relaunch a failed or stopped run from its newest usable checkpoint; returns the run and skipped checkpoints.

    One resume at a time per run (a lock on the run folder): a second `cpt resume` or a double click on
    Monitor's Resume waits for the first, then finds the run queued and refuses."""
    import fcntl

    with open(run.dir / ".resume.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _resume(run)


def resume_in_flight(run: Run) -> bool:
    """True while some process holds the run's resume lock (a resume is checking and relaunching it): Monitor
    disables its Resume button then."""
    import fcntl

    try:
        with open(run.dir / ".resume.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(lock, fcntl.LOCK_UN)
            return False
    except BlockingIOError:
        return True
    except OSError:  # a read-only or vanished run folder: nothing can resume it from here either
        return False


def _resume(run: Run) -> tuple[Run, list[str]]:
    st = refresh(run)
    status = st.get("status")
    if status == "completed":
        raise RunError(f"run {run.id} already completed: nothing to resume (launch a new run to train longer)")
    if status in ACTIVE_STATUSES:
        raise RunError(f"run {run.id} is already {status} (resumed or launched): nothing to resume; "
                       f"cpt stop {run.id} ends it")
    if status not in ("failed", "stopped"):
        raise RunError(f"run {run.id} has status {status!r} ({run.status_path} unreadable?): cannot tell whether "
                       "it is still alive, so it is not resumed")
    cwd = read_json(run.launcher_path).get("cwd")
    if cwd and not Path(cwd).is_dir():  # the folder it was launched from is gone
        rel = relative_sources(run.config())
        if rel:
            raise RunError(f"run {run.id} was launched from {cwd}, which no longer exists, and its config names "
                           f"relative paths ({', '.join(rel[:3])}): recreate the folder or use absolute paths")
        cwd = None
    ckpt, skipped = pick_checkpoint(run)
    for bad, _ in skipped:  # set aside so `last` and the Trainer's checkpoint rotation never pick them again
        bad.rename(bad.with_name(f"corrupt-{bad.name}-{int(time.time())}"))
    cfg = run.config()
    if cfg.train.resume_from != "last":
        cfg = cfg.with_overrides({"train.resume_from": "last"})
        cfg.save(run.config_path)
    stop_request_path(run).unlink(missing_ok=True)
    run.write_status("queued", stop_requested=None, previous_error=st.get("error"), error=None,
                     resumed_from=ckpt.name if ckpt else None, log_tail=None, ended=None, result=None)
    spawn(run, cwd=cwd, cfg=cfg)
    return run, [f"{c.name}: {why}" for c, why in skipped]


def relative_sources(cfg: RunConfig) -> list[str]:
    """Data paths the run reads (its plan's training sources and its evaluation sets) that resolve against
    the folder it was launched from (not builtin:, absolute or a hub id)."""
    from ..data.inspect import DATA_SUFFIXES
    from ..data.leaks import EVAL_SETS, training_sources

    from ..data.heldout import resolve

    paths = [src.path for _, src in training_sources(cfg, make_plan(cfg))]
    evals = resolve(cfg).eval  # `auto` made concrete; `none` reads nothing
    paths += [getattr(evals, field).path for field, _ in EVAL_SETS if getattr(evals, field).path != "none"]

    def relative(p: str) -> bool:
        if p.startswith("builtin:") or Path(p).expanduser().is_absolute():
            return False
        looks_like_hub_id = p.count("/") == 1 and not Path(p).suffix and not p.startswith(".")
        return Path(p).suffix in DATA_SUFFIXES or not looks_like_hub_id

    return [p for p in dict.fromkeys(paths) if relative(p)]


def delete(run: Run) -> None:
    """Remove a run directory; never a queued or running run."""
    import shutil

    st = refresh(run)
    if st.get("status") in ACTIVE_STATUSES:
        raise RunError(f"run {run.id} is {st['status']}: stop it first (cpt stop {run.id})")
    shutil.rmtree(run.dir)
