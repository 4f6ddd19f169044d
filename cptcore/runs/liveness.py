"""Is a queued or running run still alive? Judged on every look, since there is no daemon.

status.json is written only by the run's own process. Any look (`cpt runs`, `cpt status`, the dashboard) calls
refresh(): a queued/running run whose pid is gone (or was reused: the process started after the pid was recorded)
is marked failed with the last log lines; runs on another host (Slurm) are judged by heartbeat age instead; a stop
request past its timeout kills the process group.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from .store import ACTIVE_STATUSES, HOST, Run, list_runs, read_json, stop_request_path

START_GRACE_S = 60  # a queued run with no process record yet is given this long to start
REMOTE_STALE_S = 600  # a run on another host (Slurm) is failed after this long without a heartbeat
STOP_TIMEOUT_S = 120  # graceful stop, then the process group is killed
OOM_PATTERNS = ("out of memory", "outofmemoryerror", "memoryerror", "cannot allocate memory", "std::bad_alloc")


def refresh(run: Run) -> dict[str, Any]:
    """The run's status, after marking a dead queued/running run failed and enforcing a stop timeout."""
    st = run.status()
    if st.get("status") not in ACTIVE_STATUSES:
        return st
    launcher = read_json(run.launcher_path)
    now = time.time()
    if launcher.get("launcher") == "slurm" or (st.get("host") or launcher.get("host") or HOST) != HOST:
        if st.get("status") == "queued":
            return st  # waiting in the Slurm queue: nothing here can tell
        beat = st.get("heartbeat") or st.get("started") or st.get("updated") or now
        if now - beat > REMOTE_STALE_S:
            return mark_ended(run, f"no heartbeat from {st.get('host', 'the remote host')} for {now - beat:.0f} s")
        return st
    pid, since = (st.get("pid"), st.get("started") if st.get("status") == "running" else st.get("pid_time"))
    if pid is None:
        pid, since = launcher.get("pid"), launcher.get("time")
    if pid is None:
        if now - (st.get("queued_at") or st.get("created") or now) > START_GRACE_S:
            return mark_ended(run, "the run never started (no process was recorded); see its log")
        return st
    if pid_alive(pid, since):
        stop = read_json(stop_request_path(run))
        if stop and now - stop.get("requested", now) > stop.get("timeout_s", STOP_TIMEOUT_S):
            kill(launcher.get("pgid") or pid, pid)
            return mark_ended(run, f"did not stop within {stop.get('timeout_s')} s: process killed", force=True)
        return st
    return mark_ended(run, f"process {pid} ended without a final status (kill -9, the out-of-memory killer "
                           "or a reboot)")


def refresh_all(home: Path | str | None = None) -> list[Run]:
    """Every run in home, after refresh() of the active ones (what any listing shows first)."""
    runs = list_runs(home)
    for run in runs:
        if run.status().get("status") in ACTIVE_STATUSES:
            refresh(run)
    return runs


def mark_ended(run: Run, reason: str, force: bool = False) -> dict[str, Any]:
    """Record the end of a run whose process can no longer do it: stopped if a stop was asked, else failed."""
    st = run.status()  # re-read: the process may have written its final status just before it exited
    if st.get("status") not in ACTIVE_STATUSES and not force:
        return st
    tail = log_tail(run)
    if stop_request_path(run).exists():
        return run.write_status("stopped", stop_requested=True, error=None, note=reason, log_tail=tail)
    oom = next((line for line in reversed(tail) if any(p in line.lower() for p in OOM_PATTERNS)), None)
    full = next((line for line in reversed(tail) if "no space left on device" in line.lower()), None)
    error = (f"out of memory: {oom.strip()[:300]}" if oom else
             f"disk full: {full.strip()[:300]}" if full else reason)
    try:
        return run.write_status("failed", error=error, log_tail=tail)
    except OSError as e:  # cannot record it (disk full, read-only): still report it, and do not crash a listing
        return {**st, "status": "failed", "error": f"{error} (not recorded in status.json: {e.strerror or e})"}


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


def kill(pgid: int, pid: int, grace_s: float = 5.0) -> None:
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
    """The last lines of the run's log.txt (read from its last 16 KB)."""
    try:
        with open(run.log_path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 16384))
            return fh.read().decode("utf-8", "replace").splitlines()[-lines:]
    except OSError:
        return []
