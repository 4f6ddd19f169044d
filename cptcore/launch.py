"""Background runs: launch, queue, liveness, stop, resume, delete, sweep, Slurm scripts.

    cpt launch experiments/smoke.yaml          # prints the run id at once; training goes on in the background
    cpt sweep experiments/smoke.yaml --grid mix.replay=0.05,0.25 --grid train.lr=1e-3,3e-3

Files are the only shared state; there is no daemon.
- Launch: Run.create writes config.yaml and status `queued`, then `python -m cptcore train CONFIG --run-id ID`
  starts in its own process session (argument list, log.txt as stdout), so it outlives the page, the server or
  the shell that started it. <run>/launcher.json records pid, process group, host and working directory.
- Queue: the launched process waits for a slot before it trains. A slot is an flock on
  CPT_HOME/.queue/<key>/slot.lock (key `cpu`, or `gpu-<CUDA_VISIBLE_DEVICES>`: one run per CPU machine, one per
  GPU set). spawn() takes a ticket (a file named by launch time, flock-ed) and hands the locked descriptor to the
  child, so queue order is launch order; waiters go in ticket order. The kernel drops a dead process's locks, so
  a killed run never blocks the queue and its ticket is recognised as dead.
- Liveness: status.json is written only by the run's own process. Any look (`cpt runs`, `cpt status`, the
  dashboard) calls refresh(): a queued/running run whose pid is gone (or was reused: the process started after
  the pid was recorded) is marked failed with the last log lines; runs on another host (Slurm) are judged by
  heartbeat age instead.
- Stop: `cpt stop` writes <run>/stop.json; the Supervisor callback checkpoints and ends the run as `stopped`.
  After the timeout, the next look kills the process group and marks it stopped.
- Resume: the newest checkpoint that passes check_checkpoint (corrupt ones are set aside as corrupt-checkpoint-N),
  train.resume_from=last, status queued again; train_run bumps the attempt so readers keep the latest per step.
- Scale-out: launch.launcher torchrun/accelerate makes the queued process start `torch.distributed.run` (or
  `accelerate launch`) with the same `cptcore train` command; workers see RANK in their environment and train.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .catalog import Catalog, write_meta
from .config import ConfigError, RunConfig
from .runs import FINAL_STATUSES, Run, RunError

HOST = socket.gethostname()
START_GRACE_S = 60  # a queued run with no process record yet is given this long to start
REMOTE_STALE_S = 600  # a run on another host (Slurm) is failed after this long without a heartbeat
STOP_TIMEOUT_S = 120  # graceful stop, then the process group is killed
TICKET_ENV = "CPT_QUEUE_TICKET"  # "fd:path" of the queue ticket a launched process inherits
OOM_PATTERNS = ("out of memory", "outofmemoryerror", "memoryerror", "cannot allocate memory", "std::bad_alloc")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    tmp.replace(path)


def stop_request_path(run: Run) -> Path:
    return run.dir / "stop.json"


# --- launch -------------------------------------------------------------------------------------
def launch(cfg: RunConfig, home: Path | str | None = None, group: str | None = None,
           tags: list[str] | None = None) -> Run:
    """Create the run (config first) and start it in the background; returns at once."""
    check_launcher(cfg)
    run = Run.create(home, cfg)
    if group or tags:
        write_meta(run, group=group, tags=tags or [])
    spawn(run)
    Catalog(run.dir.parent).sync([run])
    return run


def spawn(run: Run, cwd: str | None = None) -> int:
    """Start `cptcore train --run-id` for an existing run in its own session; log.txt gets its output."""
    (run.dir / "launcher.json").unlink(missing_ok=True)  # a previous attempt's pids must not judge this one
    run.write_status("queued", queued_at=time.time(), pid=None, pid_time=None)
    home = run.dir.parent.resolve()
    pkg_root = str(Path(__file__).resolve().parent.parent)  # the same cptcore code as this process
    ticket_fh, ticket = take_ticket(run, run.config())  # queue order = launch order, not process start order
    env = dict(os.environ, CPT_HOME=str(home), PYTHONUNBUFFERED="1", **{TICKET_ENV: f"{ticket_fh.fileno()}:{ticket}"},
               PYTHONPATH=os.pathsep.join(p for p in (pkg_root, os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-m", "cptcore", "train", str(run.config_path.resolve()), "--run-id", run.id,
           "--no-progress"]
    cwd = cwd or os.getcwd()  # relative data paths in the config resolve where the user launched from
    try:
        with open(run.log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=env, cwd=cwd, pass_fds=(ticket_fh.fileno(),))
    except OSError:
        ticket.unlink(missing_ok=True)
        raise
    finally:
        ticket_fh.close()  # the child holds the ticket's lock from here on
    _write_json(run.dir / "launcher.json", {"launcher": "local", "pid": proc.pid, "pgid": proc.pid, "host": HOST,
                                            "time": time.time(), "cwd": cwd, "command": cmd})
    return proc.pid


def check_launcher(cfg: RunConfig) -> None:
    """Reject launcher settings that cannot work here before anything is created."""
    if cfg.launch.launcher == "accelerate" and cfg.launch.nproc > 1 and slot_key(cfg) == "cpu":
        raise ConfigError("launch.launcher: accelerate needs GPUs for nproc > 1; use launch.launcher=torchrun on CPU")
    if cfg.launch.strategy == "fsdp" and slot_key(cfg) == "cpu":
        raise ConfigError("launch.strategy: fsdp needs GPUs; use ddp on CPU")


def slot_key(cfg: RunConfig) -> str:
    """Which queue a run waits in: the CPU, or the GPU set it will use (no torch import: this runs per waiter)."""
    dev = cfg.train.device
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    has_gpu = Path("/proc/driver/nvidia/gpus").is_dir() and any(Path("/proc/driver/nvidia/gpus").iterdir()) \
        and visible not in ("", "-1")
    if dev == "cpu" or (dev == "auto" and not has_gpu):
        return "cpu"
    return "gpu-" + (re.sub(r"[^0-9A-Za-z]+", "_", visible) if visible else "all")


# --- the queued process -------------------------------------------------------------------------
def train_in_slot(run: Run, progress: bool = True) -> dict[str, Any]:
    """What `cpt train` runs: wait for a slot, then train here or under torchrun/accelerate."""
    from .train import train_run

    if "RANK" in os.environ or "LOCAL_RANK" in os.environ:  # a worker of torchrun/accelerate/srun: just train
        return train_run(run, progress=progress)
    cfg = run.config()
    check_launcher(cfg)
    slot = wait_for_slot(run, cfg)
    if slot is None:
        raise RunError(f"run {run.id} was stopped before it started")
    try:
        if cfg.launch.launcher == "local":
            result = train_run(run, progress=progress)
        else:
            result = _train_distributed(run, cfg, slot)
        return {**result, "status": run.status().get("status")}
    finally:
        slot.close()


def take_ticket(run: Run, cfg: RunConfig):
    """A locked ticket file in the run's queue, named by the time it joined; the lock says its owner lives."""
    import fcntl

    qdir = run.dir.parent / ".queue" / slot_key(cfg)
    qdir.mkdir(parents=True, exist_ok=True)
    tmp = qdir / f".{run.id}.{os.getpid()}.tmp"
    fh = open(tmp, "w")
    fcntl.flock(fh, fcntl.LOCK_EX)  # locked before it is visible: nobody mistakes it for a dead ticket
    ticket = qdir / f"{time.time_ns():020d}-{run.id}"
    tmp.rename(ticket)
    return fh, ticket


def _inherited_ticket(run: Run):
    """The ticket spawn() took for this run and passed down as an open, locked file descriptor."""
    value = os.environ.pop(TICKET_ENV, "")
    fd, _, path = value.partition(":")
    if not fd.isdigit() or not path.endswith(run.id) or not Path(path).exists():
        return None
    try:
        return os.fdopen(int(fd), "w"), Path(path)
    except OSError:
        return None


def wait_for_slot(run: Run, cfg: RunConfig, poll_s: float = 1.0):
    """Block until this run is first in its queue and the slot is free; returns the held lock file (or None if
    a stop was requested meanwhile)."""
    import fcntl

    run.write_status("queued", pid=os.getpid(), pid_time=time.time(), host=HOST)
    ticket_fh, ticket = _inherited_ticket(run) or take_ticket(run, cfg)
    qdir = ticket.parent
    slot = open(qdir / "slot.lock", "a+")
    announced = False
    try:
        while True:
            if stop_request_path(run).exists():
                run.write_status("stopped", stop_requested=True)
                slot.close()
                return None
            ahead = [t for t in sorted(qdir.iterdir())
                     if t.name[:1].isdigit() and t.name < ticket.name and _ticket_alive(t)]
            if not ahead:
                try:
                    fcntl.flock(slot, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return slot
                except BlockingIOError:
                    pass
            if not announced:
                print(f"queued: waiting for the {qdir.name} slot ({len(ahead)} queued ahead)", flush=True)
                announced = True
            time.sleep(poll_s)
    finally:
        ticket.unlink(missing_ok=True)
        ticket_fh.close()


def _ticket_alive(ticket: Path) -> bool:
    import fcntl

    try:
        fh = open(ticket)
    except FileNotFoundError:
        return False
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        ticket.unlink(missing_ok=True)  # its owner died while waiting
        return False


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
    if st.get("status") in ("queued", "running"):  # a worker died without writing its end (kill -9, OOM killer)
        st = _mark_ended(run, f"{cfg.launch.launcher} exited with code {rc} before the run recorded its end; "
                              f"see {run.log_path}")
    if st["status"] == "failed":
        raise RunError(f"run {run.id} failed: {st.get('error')}")
    return st.get("result") or {}


# --- liveness -----------------------------------------------------------------------------------
def refresh(run: Run) -> dict[str, Any]:
    """The run's status, after marking a dead queued/running run failed and enforcing a stop timeout."""
    st = run.status()
    if st.get("status") not in ("queued", "running"):
        return st
    launcher = _read_json(run.dir / "launcher.json")
    now = time.time()
    if launcher.get("launcher") == "slurm" or (st.get("host") or launcher.get("host") or HOST) != HOST:
        if st.get("status") == "queued":
            return st  # waiting in the Slurm queue: nothing here can tell
        beat = st.get("heartbeat") or st.get("started") or st.get("updated") or now
        if now - beat > REMOTE_STALE_S:
            return _mark_ended(run, f"no heartbeat from {st.get('host', 'the remote host')} for {now - beat:.0f} s")
        return st
    pid, since = (st.get("pid"), st.get("started") if st.get("status") == "running" else st.get("pid_time"))
    if pid is None:
        pid, since = launcher.get("pid"), launcher.get("time")
    if pid is None:
        if now - (st.get("queued_at") or st.get("created") or now) > START_GRACE_S:
            return _mark_ended(run, "the run never started (no process was recorded); see its log")
        return st
    if pid_alive(pid, since):
        stop = _read_json(stop_request_path(run))
        if stop and now - stop.get("requested", now) > stop.get("timeout_s", STOP_TIMEOUT_S):
            _kill(launcher.get("pgid") or pid, pid)
            return _mark_ended(run, f"did not stop within {stop.get('timeout_s')} s: process killed", force=True)
        return st
    return _mark_ended(run, f"process {pid} ended without a final status (kill -9, the out-of-memory killer "
                            "or a reboot)")


def _mark_ended(run: Run, reason: str, force: bool = False) -> dict[str, Any]:
    st = run.status()  # re-read: the process may have written its final status just before it exited
    if st.get("status") not in ("queued", "running") and not force:
        return st
    tail = log_tail(run)
    if stop_request_path(run).exists():
        return run.write_status("stopped", stop_requested=True, error=None, note=reason, log_tail=tail)
    oom = next((line for line in reversed(tail) if any(p in line.lower() for p in OOM_PATTERNS)), None)
    error = f"out of memory: {oom.strip()[:300]}" if oom else reason
    return run.write_status("failed", error=error, log_tail=tail)


def pid_alive(pid: int, since: float | None = None) -> bool:
    """True if pid runs and is not a zombie; a process that started after `since` is a reused pid."""
    import psutil

    try:
        p = psutil.Process(int(pid))
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return since is None or p.create_time() <= since + 2
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def _kill(pgid: int, pid: int, grace_s: float = 5.0) -> None:
    """SIGTERM the run's process group, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for target in (lambda s: os.killpg(int(pgid), s), lambda s: os.kill(int(pid), s)):
            try:
                target(sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.time() + grace_s
        while sig == signal.SIGTERM and time.time() < deadline and pid_alive(pid):
            time.sleep(0.2)


def log_tail(run: Run, lines: int = 20) -> list[str]:
    try:
        with open(run.log_path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 16384))
            return fh.read().decode("utf-8", "replace").splitlines()[-lines:]
    except OSError:
        return []


def look(home: Path | str | None = None) -> list[dict[str, Any]]:
    """What `cpt runs` and the dashboard show: liveness applied to every active run, then the catalog rows."""
    from .runs import list_runs

    for run in list_runs(home):
        if run.status().get("status") in ("queued", "running"):
            refresh(run)
    cat = Catalog(home)
    cat.sync()
    return cat.rows()


# --- stop / resume / delete ---------------------------------------------------------------------
def request_stop(run: Run, timeout_s: float = STOP_TIMEOUT_S) -> dict[str, Any]:
    """Ask a queued or running run to stop (checkpoint first); returns at once."""
    st = refresh(run)
    if st.get("status") in FINAL_STATUSES:
        raise RunError(f"run {run.id} already {st['status']}: nothing to stop")
    _write_json(stop_request_path(run), {"requested": time.time(), "timeout_s": timeout_s, "by": os.getpid()})
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


def pick_checkpoint(run: Run) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest usable checkpoint and the newer ones skipped, with why (None: no checkpoint was saved);
    RunError if checkpoints exist but none is usable."""
    from .supervise import check_checkpoint

    ckpts = sorted(run.checkpoints_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    if not ckpts:
        return None, []  # nothing saved yet (or stopped while queued): it starts again from step 0
    skipped = []
    for c in ckpts:
        problem = check_checkpoint(c)
        if problem is None:
            return c, skipped
        skipped.append((c, problem))
    reasons = "; ".join(f"{c.name}: {why}" for c, why in skipped)
    raise RunError(f"cannot resume {run.id}: no usable checkpoint ({reasons})")


def resume(run: Run) -> tuple[Run, list[str]]:
    """Relaunch a failed or stopped run from its newest usable checkpoint; returns the run and skipped checkpoints."""
    st = refresh(run)
    status = st.get("status")
    if status == "completed":
        raise RunError(f"run {run.id} already completed: nothing to resume (launch a new run to train longer)")
    if status in ("queued", "running"):
        raise RunError(f"run {run.id} is {status}: stop it first (cpt stop {run.id})")
    ckpt, skipped = pick_checkpoint(run)
    for bad, _ in skipped:  # set aside so `last` and the Trainer's checkpoint rotation never pick them again
        bad.rename(bad.with_name(f"corrupt-{bad.name}-{int(time.time())}"))
    cfg = run.config()
    if cfg.train.resume_from != "last":
        cfg.with_overrides(["train.resume_from=last"]).save(run.config_path)
    stop_request_path(run).unlink(missing_ok=True)
    run.write_status("queued", stop_requested=None, previous_error=st.get("error"), error=None,
                     resumed_from=ckpt.name if ckpt else None, log_tail=None, ended=None, result=None)
    spawn(run, cwd=_read_json(run.dir / "launcher.json").get("cwd"))
    Catalog(run.dir.parent).sync([run])
    return run, [f"{c.name}: {why}" for c, why in skipped]


def delete(run: Run) -> None:
    """Remove a run directory and its catalog row; never a queued or running run."""
    import shutil

    st = refresh(run)
    if st.get("status") in ("queued", "running"):
        raise RunError(f"run {run.id} is {st['status']}: stop it first (cpt stop {run.id})")
    shutil.rmtree(run.dir)
    Catalog(run.dir.parent).remove(run.id)


# --- sweeps -------------------------------------------------------------------------------------
def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """['mix.replay=0.05,0.1', 'train.lr=2e-5,1e-4'] -> {key: [values]}; commas inside [...] stay."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or "." not in key or not values.strip():
            raise ConfigError(f"--grid {item!r}: expected section.key=v1,v2,...")
        parts, depth, cur = [], 0, ""
        for ch in values:
            if ch in "[{":
                depth += 1
            elif ch in "]}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur.strip())
                cur = ""
            else:
                cur += ch
        parts.append(cur.strip())
        if key.strip() in grid:
            raise ConfigError(f"--grid {key}: given twice")
        grid[key.strip()] = [p for p in parts if p]
    return grid


def sweep_configs(cfg: RunConfig, grid: dict[str, list[str]]) -> list[RunConfig]:
    """One validated config per grid point. Mix shares not named in the grid are rescaled to keep the sum 1."""
    configs = []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, values))
        overrides = [f"{k}={v}" for k, v in point.items()]
        where = " ".join(overrides)
        try:
            c = cfg.with_overrides(overrides)
        except ConfigError as e:
            if not any(k.startswith("mix.") for k in point) or "sum to 1" not in str(e):
                raise ConfigError(f"--grid point {where}: {str(e).removeprefix('--set: ')}") from None
            c = _rebalanced(cfg, point, where)
        c.name = f"{cfg.name}-" + "-".join(f"{k.split('.')[-1]}{v}" for k, v in point.items())
        configs.append(c)
    return configs


def _rebalanced(cfg: RunConfig, point: dict[str, str], where: str) -> RunConfig:
    import yaml

    fixed = {k.split(".", 1)[1]: float(yaml.safe_load(v)) for k, v in point.items() if k.startswith("mix.")}
    free = {r: v for r, v in cfg.mix.shares().items() if r not in fixed}
    room, free_total = 1 - sum(fixed.values()), sum(free.values())
    if room < -1e-9 or not free or free_total <= 0:
        raise ConfigError(f"--grid point {where}: mix shares sum to {sum(fixed.values()):.3f} and cannot be "
                          "rebalanced to 1")
    extra = [f"mix.{r}={v / free_total * room!r}" for r, v in free.items()]
    try:
        return cfg.with_overrides([f"{k}={v}" for k, v in point.items()] + extra)
    except ConfigError as e:
        raise ConfigError(f"--grid point {where}: {str(e).removeprefix('--set: ')}") from None


def sweep(cfg: RunConfig, grid: dict[str, list[str]], home: Path | str | None = None,
          group: str | None = None) -> tuple[str, list[Run]]:
    """Validate every grid point, then queue them all as one named group; they run one after another."""
    configs = sweep_configs(cfg, grid)  # raises before anything is created
    for c in configs:
        check_launcher(c)
    group = group or f"{cfg.name}-sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    return group, [launch(c, home, group=group) for c in configs]


# --- Slurm --------------------------------------------------------------------------------------
def slurm_script(cfg: RunConfig, run: Run, nodes: int, gpus_per_node: int, time_limit: str = "24:00:00",
                 partition: str | None = None, cpus_per_task: int = 8) -> str:
    """An sbatch script: one `srun` task per node runs torchrun, which starts one process per GPU."""
    home = run.dir.parent.resolve()
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        f"# CPT Studio run {run.id}: {nodes} node(s) x {gpus_per_node} GPU process(es), strategy {cfg.launch.strategy}.",
        f"# Submit: sbatch {q(str(run.dir / 'job.sbatch'))}    Watch: CPT_HOME={q(str(home))} cpt status {run.id}",
        f"#SBATCH --job-name=cpt-{re.sub(r'[^A-Za-z0-9_.-]', '-', cfg.name)[:40]}",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={gpus_per_node}",
        f"#SBATCH --cpus-per-task={cpus_per_task}",
        f"#SBATCH --time={time_limit}",
        f"#SBATCH --output={run.dir}/slurm-%j.log",
    ] + ([f"#SBATCH --partition={partition}"] if partition else []) + [
        "set -euo pipefail",
        f"export CPT_HOME={q(str(home))}  # must be a filesystem every node sees",
        "export PYTHONUNBUFFERED=1",
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        f"cd {q(os.getcwd())}",
        f"srun --kill-on-bad-exit=1 {q(sys.executable)} -m torch.distributed.run \\",
        f'  --nnodes "$SLURM_NNODES" --nproc_per_node {gpus_per_node} \\',
        '  --rdzv_id "$SLURM_JOB_ID" --rdzv_backend c10d --rdzv_endpoint "$head_node:29500" \\',
        f"  -m cptcore train {q(str(run.config_path.resolve()))} --run-id {run.id} --no-progress",
    ]
    return "\n".join(lines) + "\n"


def write_slurm(cfg: RunConfig, home: Path | str | None, nodes: int, gpus_per_node: int, **kw: Any) -> tuple[Run, Path]:
    """Create the run (status queued) and its sbatch script in the run directory."""
    run = Run.create(home, cfg)
    _write_json(run.dir / "launcher.json", {"launcher": "slurm", "host": None, "time": time.time(), "cwd": os.getcwd()})
    path = run.dir / "job.sbatch"
    path.write_text(slurm_script(cfg, run, nodes, gpus_per_node, **kw), encoding="utf-8")
    path.chmod(0o755)
    return run, path
