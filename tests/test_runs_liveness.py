"""Liveness: dead, reused-pid, out-of-memory, never-started and remote runs, and the stop timeout."""
import json
import subprocess
import sys
import time

from cptcore.config import RunConfig
from cptcore.runs import Run
from cptcore.runs import launch as L
from cptcore.runs import liveness
from cptcore.runs.table import run_row

PY = [sys.executable, "-c"]


def sleeper(seconds=60):
    """A stand-in for a training process: its own session, like a launched run."""
    return subprocess.Popen([*PY, f"import time; time.sleep({seconds})"], start_new_session=True)


# --- liveness -------------------------------------------------------------------------------------
def running_run(home, pid, since=None, **fields):
    run = Run.create(home, RunConfig(name="live"))
    started = since if since is not None else time.time()
    run.write_status("running", pid=pid, started=started, host=liveness.HOST, **fields)
    return run


def test_a_run_whose_process_died_is_marked_failed_on_the_next_look(tmp_path):
    p = subprocess.Popen([*PY, "pass"])
    p.wait()
    run = running_run(tmp_path, p.pid)
    run.log_path.write_text("step 1\nstep 2\n")
    st = run_row(liveness.refresh_all(tmp_path)[0], metrics=False)
    assert st["status"] == "failed" and "ended without a final status" in st["error"]
    assert run.status()["log_tail"] == ["step 1", "step 2"]


def test_a_reused_pid_does_not_keep_a_dead_run_alive(tmp_path):
    proc = sleeper()
    try:
        run = running_run(tmp_path, proc.pid, since=time.time() - 3600)  # the pid was recorded an hour ago
        assert liveness.refresh(run)["status"] == "failed"
        alive = running_run(tmp_path, proc.pid)
        assert liveness.refresh(alive)["status"] == "running"
    finally:
        proc.kill()
        proc.wait()


def test_out_of_memory_is_named_in_the_error(tmp_path):
    p = subprocess.Popen([*PY, "pass"])
    p.wait()
    run = running_run(tmp_path, p.pid)
    run.log_path.write_text("loading\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
    assert liveness.refresh(run)["error"].startswith("out of memory: torch.OutOfMemoryError")


def test_a_queued_run_that_never_started_fails_after_a_grace_period(tmp_path, monkeypatch):
    run = Run.create(tmp_path, RunConfig(name="q"))
    assert liveness.refresh(run)["status"] == "queued"
    monkeypatch.setattr(liveness, "START_GRACE_S", -1)
    assert "never started" in liveness.refresh(run)["error"]


def test_remote_and_slurm_runs_are_judged_by_heartbeat(tmp_path, monkeypatch):
    run = Run.create(tmp_path, RunConfig(name="remote"))
    (run.dir / "launcher.json").write_text(json.dumps({"launcher": "slurm"}))
    assert liveness.refresh(run)["status"] == "queued"  # waiting in the Slurm queue
    run.write_status("running", pid=1, host="node-17", heartbeat=time.time())
    assert liveness.refresh(run)["status"] == "running"  # pid 1 here says nothing about node-17
    run.write_status("running", heartbeat=time.time() - liveness.REMOTE_STALE_S - 5)
    assert "no heartbeat from node-17" in liveness.refresh(run)["error"]


def test_a_stop_past_its_timeout_kills_the_process_group(tmp_path):
    proc = sleeper()
    run = running_run(tmp_path, proc.pid)
    (run.dir / "launcher.json").write_text(json.dumps({"pid": proc.pid, "pgid": proc.pid, "host": liveness.HOST}))
    L.request_stop(run, timeout_s=0)
    time.sleep(0.05)
    st = liveness.refresh(run)
    assert st["status"] == "stopped" and "process killed" in st["note"]
    assert proc.wait(timeout=10) != 0
