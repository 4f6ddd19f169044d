"""The run queue: one run at a time per slot (the CPU, or one GPU set), in launch order, with no daemon.

A slot is an flock on CPT_HOME/.queue/<key>/slot.lock (key `cpu`, or `gpu-<CUDA_VISIBLE_DEVICES>`). spawn() takes a
ticket (a file named by launch time, flock-ed) and hands the locked descriptor to the child, so queue order is
launch order; waiters go in ticket order. The kernel drops a dead process's locks, so a killed run never blocks
the queue and its ticket is recognised as dead. The run that takes the slot writes its id to holder.json next to
slot.lock, so a reader (queue_place: Monitor, `cpt status`) can say what a queued run waits for without a lock.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import RunConfig
from .store import FINAL_STATUSES, HOST, Run, atomic_write, read_json, stop_request_path

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
                except BlockingIOError:
                    pass
                else:
                    _write_holder(qdir, run)
                    return slot
            if not announced:
                print(f"queued: waiting for the {qdir.name} slot ({len(ahead)} queued ahead)", flush=True)
                announced = True
            time.sleep(poll_s)
    finally:
        ticket.unlink(missing_ok=True)
        ticket_fh.close()


def _ticket_alive(ticket: Path) -> bool:
    """A waiter's check of a ticket before its own: alive, else (its owner died while waiting) removed."""
    return _ticket_held(ticket, clean=True)


# --- reading the queue (no lock that could block or be mistaken for a waiter) --------------------
HOLDER = "holder.json"


@dataclass
class QueuePlace:
    """Where a queued run stands: position 1 is next; ahead are the live tickets before it (run ids, in line
    order); holding is the run that holds the slot now (None when nobody is known to: free, or not recorded)."""
    position: int
    ahead: list[str] = field(default_factory=list)
    holding: str | None = None
    slot: str = ""


def _write_holder(qdir: Path, run: Run) -> None:
    try:
        qdir.mkdir(parents=True, exist_ok=True)
        atomic_write(qdir / HOLDER, {"run": run.id, "pid": os.getpid(), "host": HOST, "since": time.time()})
    except OSError:
        pass  # only readers lose: they cannot name the run holding the slot


def _ticket_run(ticket: Path) -> str:
    return ticket.name.split("-", 1)[1] if "-" in ticket.name else ticket.name


def _ticket_held(ticket: Path, clean: bool = False) -> bool:
    """Is the ticket's owner alive? A non-blocking *shared* lock: it fails while the owner holds its exclusive
    one; got, it is released at once. A dead ticket is removed only with clean=True (the waiters; a reader
    changes nothing). A lock that cannot be tried counts as alive, as its waiters count it until they clean it."""
    import fcntl

    try:
        fh = open(ticket)
    except OSError:
        return False
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    if clean:
        ticket.unlink(missing_ok=True)
    return False


def slot_holder(qdir: Path) -> str | None:
    """The run holding the slot of queue folder `qdir`: the one holder.json names while its process lives (on
    this host; another host's process is trusted while its status is active) and its run has not ended."""
    from .liveness import pid_alive

    info = read_json(qdir / HOLDER)
    run_id = info.get("run")
    if not run_id:
        return None
    status = read_json(qdir.parent.parent / str(run_id) / "status.json").get("status")
    if status is None or status in FINAL_STATUSES:
        return None
    if info.get("host", HOST) == HOST and info.get("pid") and not pid_alive(info["pid"]):
        return None
    return str(run_id)


def queue_place(run: Run) -> QueuePlace | None:
    """Where `run` waits: its ticket among the live tickets of its queue folder (CPT_HOME/.queue/<slot>/, whichever
    holds a ticket of this run), and the run holding that slot. None when the run holds no ticket (not queued
    here: started, ended, a Slurm job). Takes no lock that blocks or that a waiter could mistake for its own."""
    root = run.dir.parent / ".queue"
    try:
        mine = sorted(t for t in root.glob(f"*/[0-9]*-{run.id}") if _ticket_run(t) == run.id)
    except OSError:
        return None
    mine = [t for t in mine if _ticket_held(t)] or mine
    if not mine:
        return None
    ticket = mine[0]
    qdir = ticket.parent
    try:
        tickets = sorted(t for t in qdir.iterdir() if t.name[:1].isdigit() and t.name < ticket.name)
    except OSError:
        tickets = []
    ahead = [_ticket_run(t) for t in tickets if _ticket_held(t)]
    return QueuePlace(position=len(ahead) + 1, ahead=ahead, holding=slot_holder(qdir), slot=qdir.name)
