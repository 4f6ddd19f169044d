"""The run queue: one run at a time per slot (the CPU, or one GPU set), in launch order, with no daemon.

A slot is an flock on CPT_HOME/.queue/<key>/slot.lock (key `cpu`, or `gpu-<CUDA_VISIBLE_DEVICES>`). spawn() takes a
ticket (a file named by launch time, flock-ed) and hands the locked descriptor to the child, so queue order is
launch order; waiters go in ticket order. The kernel drops a dead process's locks, so a killed run never blocks
the queue and its ticket is recognised as dead.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

from ..config import RunConfig
from .store import HOST, Run, stop_request_path

TICKET_ENV = "CPT_QUEUE_TICKET"  # "fd:path" of the queue ticket a launched process inherits


def slot_key(cfg: RunConfig) -> str:
    """Which queue a run waits in: the CPU, or the GPU set it will use (no torch import: this runs per waiter)."""
    dev = cfg.train.device
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    has_gpu = Path("/proc/driver/nvidia/gpus").is_dir() and any(Path("/proc/driver/nvidia/gpus").iterdir()) \
        and visible not in ("", "-1")
    if dev == "cpu" or (dev == "auto" and not has_gpu):
        return "cpu"
    return "gpu-" + (re.sub(r"[^0-9A-Za-z]+", "_", visible) if visible else "all")


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
