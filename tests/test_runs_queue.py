"""The queue: one run per slot at a time, in launch order; a dead waiter never blocks; a stop while queued."""
import os
import subprocess
import sys
import time

from cptcore.config import RunConfig
from cptcore.runs import Run
from cptcore.runs import launch as L
from cptcore.runs import liveness, queue

PY = [sys.executable, "-c"]


# --- queue ----------------------------------------------------------------------------------------
WAITER = """
import sys, time
from cptcore.runs import Run
from cptcore.runs.queue import wait_for_slot
run = Run.open(sys.argv[1], sys.argv[2])
slot = wait_for_slot(run, run.config(), poll_s=0.05)
if slot is None:
    sys.exit(3)
with open(sys.argv[3], "a") as f:
    f.write(f"start {run.id} {time.time()}\\n")
time.sleep(0.4)
with open(sys.argv[3], "a") as f:
    f.write(f"end {run.id} {time.time()}\\n")
"""


def start_waiter(home, run, log, ticket=None, body=WAITER):
    """A queued process as spawn() starts it: holding the ticket taken at launch time."""
    env = dict(os.environ)
    fds = ()
    if ticket is not None:
        env[queue.TICKET_ENV] = f"{ticket[0].fileno()}:{ticket[1]}"
        fds = (ticket[0].fileno(),)
    proc = subprocess.Popen([*PY, body, str(home), run.id, str(log)], env=env, pass_fds=fds)
    if ticket is not None:
        ticket[0].close()
    return proc


def test_queued_runs_take_the_slot_one_at_a_time_in_launch_order(tmp_path):
    home, log = tmp_path / "runs", tmp_path / "order.txt"
    runs = [Run.create(home, RunConfig(name=f"q{i}")) for i in range(4)]
    tickets = [queue.take_ticket(r, r.config()) for r in runs]  # launch order
    # processes start in reverse order: the launch order still decides
    procs = {r.id: start_waiter(home, r, log, t) for r, t in reversed(list(zip(runs, tickets)))}
    time.sleep(0.2)
    procs[runs[1].id].kill()  # a run that dies in the queue must not block the ones behind it
    for p in procs.values():
        p.wait(timeout=60)
    events = [line.split() for line in log.read_text().splitlines()]
    starts = [e[1] for e in events if e[0] == "start"]
    assert starts == [runs[0].id, runs[2].id, runs[3].id]
    times = [float(e[2]) for e in events]
    assert [e[0] for e in events] == ["start", "end"] * 3 and times == sorted(times)  # never two at once


def test_a_queued_run_stops_without_starting_when_asked(tmp_path):
    home = tmp_path / "runs"
    first, second = Run.create(home, RunConfig(name="a")), Run.create(home, RunConfig(name="b"))
    holder = start_waiter(home, first, tmp_path / "log", body=WAITER.replace("time.sleep(0.4)", "time.sleep(30)"))
    deadline = time.time() + 30
    while not (tmp_path / "log").exists() and time.time() < deadline:
        time.sleep(0.05)
    waiter = start_waiter(home, second, tmp_path / "log")
    time.sleep(1)
    assert liveness.refresh(second)["status"] == "queued"
    L.request_stop(second)
    assert waiter.wait(timeout=30) == 3
    assert second.status()["status"] == "stopped"
    holder.kill()
    holder.wait()


# --- a queued run's place in line ------------------------------------------------------------------
def wait_for(path, timeout=30):
    deadline = time.time() + timeout
    while not path.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert path.exists(), f"{path} never appeared"


def test_queued_runs_know_their_place_and_who_holds_the_slot(tmp_path, capsys):
    from cptcore.cli import main
    from cptcore.progress import queue_line

    home, log = tmp_path / "runs", tmp_path / "log"
    holder = Run.create(home, RunConfig(name="holder"))
    proc = start_waiter(home, holder, log, body=WAITER.replace("time.sleep(0.4)", "time.sleep(60)"))
    try:
        wait_for(log)  # it holds the slot
        holder.write_status("running", step=12, max_steps=50)
        waiting = [Run.create(home, RunConfig(name=f"w{i}")) for i in range(3)]
        tickets = [queue.take_ticket(r, r.config()) for r in waiting]  # held (locked) by this process
        places = [queue.queue_place(r) for r in waiting]
        assert [p.position for p in places] == [1, 2, 3]
        assert [p.ahead for p in places] == [[], [waiting[0].id], [waiting[0].id, waiting[1].id]]
        assert {p.holding for p in places} == {holder.id} and places[0].slot == "cpu"
        assert queue_line(waiting[0]) == f"queued: 1st in line, waiting for {holder.id} (running, step 12/50)"
        assert queue_line(waiting[1]) == (f"queued: 2nd in line (after {waiting[0].id}), waiting for {holder.id} "
                                          "(running, step 12/50)")
        assert main(["status", waiting[2].id]) == 0
        out = capsys.readouterr().out
        assert f"now       queued: 3rd in line (after {waiting[0].id}, {waiting[1].id}), waiting for {holder.id}" in out
        # reading took no lock a waiter could trip on: every ticket is still there and still held
        assert all(t[1].exists() for t in tickets) and all(queue._ticket_held(t[1]) for t in tickets)
        tickets[0][0].close()  # the first waiter dies: the others move up
        assert [queue.queue_place(r).position for r in waiting[1:]] == [1, 2]
        assert queue.queue_place(holder) is None  # it holds the slot, not a ticket
    finally:
        proc.kill()
        proc.wait()
    assert queue.queue_place(waiting[1]).holding is None  # the holder's process is gone
    assert queue_line(waiting[1]) == "queued: 1st in line, the cpu slot is free: starting"
    assert queue_line(waiting[2]) == (f"queued: 2nd in line, waiting for {waiting[1].id} (queued)")
    for fh, _ in tickets[1:]:
        fh.close()
