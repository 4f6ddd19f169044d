"""Two processes on CPU (torchrun, gloo): one metric stream, the same losses as one process, a clean stop."""
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from cptcore.runs import launch as L
from cptcore.runs import Run
from cptcore.runs.checkpoints import check_checkpoint
from cptcore.train import train_run


def wait_ended(run: Run, timeout: float = 240) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = L.refresh(run)
        if st.get("status") in ("completed", "failed", "stopped"):
            return st
        time.sleep(0.3)
    raise AssertionError(f"run did not end: {run.status()}\n" + "\n".join(L.log_tail(run, 40)))


def losses(run: Run) -> dict[int, float]:
    return {r["step"]: r["value"] for r in run.read_metrics() if r["name"] == "train/loss"}


def test_two_processes_write_one_stream_with_the_single_process_losses(tiny_cfg):
    home = Path(os.environ["CPT_HOME"])
    base = tiny_cfg.with_overrides(["train.max_steps=5"])  # 4 sequences per step either way
    single = Run.create(home / "single", base.with_overrides(["train.batch_size=4"]))
    train_run(single, progress=False)
    ddp = L.launch(base.with_overrides(["train.batch_size=2", "launch.launcher=torchrun", "launch.nproc=2"]), home)
    st = wait_ended(ddp)
    assert st["status"] == "completed", "\n".join(L.log_tail(ddp, 40))
    log = ddp.log_path.read_text()
    assert "torch.distributed.run" in log and "--nproc_per_node 2" in log
    records = [r for r in ddp.read_metrics() if r.get("value") is not None]
    counts = Counter((r["name"], r["step"]) for r in records)
    assert max(counts.values()) == 1  # rank 0 alone writes the stream
    assert {r["attempt"] for r in records} == {1}
    a, b = losses(single), losses(ddp)
    assert sorted(b) == [1, 2, 3, 4, 5]
    assert b[5] == pytest.approx(a[5], rel=1e-3)
    assert all(b[s] == pytest.approx(a[s], rel=1e-3) for s in a)


def test_a_stop_ends_both_processes_on_the_same_step_with_a_checkpoint(tiny_cfg, slow_steps):
    home = Path(os.environ["CPT_HOME"])
    cfg = tiny_cfg.with_overrides(["train.max_steps=200", "train.batch_size=2", "launch.launcher=torchrun",
                                   "launch.nproc=2"])
    run = L.launch(cfg, home)
    deadline = time.time() + 180
    while not losses(run) and time.time() < deadline:
        time.sleep(0.2)
    L.request_stop(run, timeout_s=90)
    st = wait_ended(run)
    assert st["status"] == "stopped" and st["step"] < 200, st
    assert "process killed" not in (st.get("note") or "")  # stopped gracefully, not by the timeout
    assert check_checkpoint(run.last_checkpoint()) is None
    assert run.last_checkpoint().name == f"checkpoint-{st['step']}"
