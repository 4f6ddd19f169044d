"""Faults a background run must survive: kill -9, stop, corrupt checkpoints, a full disk, concurrent readers."""
import errno
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from cptcore.runs import Run
from cptcore.runs import launch as L
from cptcore.runs import sweep as S
from cptcore.runs.checkpoints import check_checkpoint, pick_checkpoint
from cptcore.runs.liveness import log_tail, refresh, refresh_all
from cptcore.runs.metrics import MetricReader, latest_attempt
from cptcore.runs.table import run_row
from cptcore.train import train_run


def home() -> Path:
    return Path(os.environ["CPT_HOME"])


def loss_steps(run: Run) -> list[int]:
    return [r["step"] for r in latest_attempt(run.read_metrics()) if r["name"] == "train/loss"]


def wait_for(run: Run, done, timeout: float = 180, what: str = "") -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = refresh(run)
        if done(st):
            return st
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {run.status()}\n{''.join(log_tail(run, 30))}")


def logged_step(run: Run) -> int:
    return max([r["step"] for r in run.read_metrics() if r["name"] == "train/loss"], default=0)


def ended(st: dict) -> bool:
    return st.get("status") in ("completed", "failed", "stopped")


def test_kill_9_mid_run_is_marked_failed_and_resume_completes_every_step_once(tiny_cfg, slow_steps):
    run = L.launch(tiny_cfg.with_overrides(["train.max_steps=12", "train.save_every_steps=3"]), home())
    wait_for(run, lambda st: logged_step(run) >= 5 and run.last_checkpoint() is not None, what="step 5")
    os.kill(run.status()["pid"], signal.SIGKILL)
    t0 = time.time()
    st = wait_for(run, lambda st: st["status"] != "running", timeout=30, what="failed")
    assert st["status"] == "failed" and "ended without a final status" in st["error"]
    assert time.time() - t0 < 30
    resumed, skipped = L.resume(run)
    assert skipped == []
    st = wait_for(run, ended, what="resumed run")
    assert st["status"] == "completed", st
    assert loss_steps(run) == list(range(1, 13))  # no gap, no duplicate
    assert max(r["attempt"] for r in run.read_metrics()) == 2 and st["attempt"] == 2


def test_stop_checkpoints_then_resume_finishes_the_run(tiny_cfg, slow_steps):
    run = L.launch(tiny_cfg.with_overrides(["train.max_steps=12"]), home())  # checkpoints only at the end
    wait_for(run, lambda st: logged_step(run) >= 3, what="step 3")
    L.request_stop(run)
    st = L.wait_until_ended(run, timeout_s=60)
    assert st["status"] == "stopped" and 3 <= st["step"] < 12
    assert run.last_checkpoint().name == f"checkpoint-{st['step']}"
    assert check_checkpoint(run.last_checkpoint()) is None
    assert any(r["name"] == "event/stopped" for r in run.read_metrics())
    L.resume(run)
    st = wait_for(run, ended, what="resumed run")
    assert st["status"] == "completed"
    assert loss_steps(run) == list(range(1, 13))


def test_a_corrupt_last_checkpoint_is_skipped_and_the_previous_one_used(tiny_cfg, capsys):
    from cptcore.cli import main

    run = Run.create(home(), tiny_cfg.with_overrides(["train.max_steps=6", "train.save_every_steps=2"]))
    train_run(run, progress=False)
    last = run.checkpoints_dir / "checkpoint-6"
    data = (last / "model.safetensors").read_bytes()
    (last / "model.safetensors").write_bytes(data[: len(data) // 2])  # as if the machine died mid-save
    run.write_status("failed", error="simulated: the process died while saving checkpoint-6")
    assert main(["resume", run.id]) == 0
    captured = capsys.readouterr()
    assert "skipped unusable checkpoint-6: model.safetensors is truncated" in captured.err
    assert "resumed from checkpoint-4" in captured.out
    st = wait_for(run, ended, what="resumed run")
    assert st["status"] == "completed"
    assert loss_steps(run) == list(range(1, 7))
    assert list(run.checkpoints_dir.glob("corrupt-checkpoint-6-*"))


def test_same_size_corruption_of_a_checkpoint_is_caught_by_its_checksums(tiny_cfg):
    run = Run.create(home(), tiny_cfg.with_overrides(["train.max_steps=4", "train.save_every_steps=2"]))
    train_run(run, progress=False)
    last = run.checkpoints_dir / "checkpoint-4"
    assert check_checkpoint(last) is None and (last / "checksums.json").is_file()
    weights = last / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)  # flipped bytes, same size, header intact
    weights.write_bytes(bytes(data))
    assert check_checkpoint(last, checksums=False) is None  # headers and sizes alone cannot see it
    assert check_checkpoint(last) == "model.safetensors is corrupt (its sha256 differs from the one recorded at save)"
    chosen, skipped = pick_checkpoint(run)
    assert chosen.name == "checkpoint-2" and skipped[0][0].name == "checkpoint-4"


def test_a_full_disk_while_checkpointing_fails_clearly_and_leaves_a_usable_older_checkpoint(tiny_cfg, monkeypatch):
    import torch

    real_save = torch.save

    def save(obj, f, *a, **kw):
        if str(f).endswith("checkpoint-4/optimizer.pt"):
            Path(f).write_bytes(b"PK\x03\x04partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", save)
    run = Run.create(home(), tiny_cfg.with_overrides(["train.max_steps=6", "train.save_every_steps=2"]))
    with pytest.raises(OSError):
        train_run(run, progress=False)
    st = run.status()
    assert st["status"] == "failed" and "No space left on device" in st["error"]
    assert "partial" in check_checkpoint(run.checkpoints_dir / "checkpoint-4")
    chosen, skipped = pick_checkpoint(run)
    assert chosen.name == "checkpoint-2" and skipped[0][0].name == "checkpoint-4"


def test_a_queued_sweep_and_busy_readers_and_annotators_lose_no_lines(tiny_cfg):
    group, runs = S.sweep(tiny_cfg.with_overrides(["train.max_steps=4"]), {"train.lr": ["1e-3", "2e-3", "3e-3"]},
                          home())
    readers = {r.id: MetricReader(r.metrics_path) for r in runs}
    tailed = {r.id: [] for r in runs}
    errors, stop = [], threading.Event()

    def tail_and_look():
        try:
            while not stop.is_set():
                for run in runs:
                    tailed[run.id] += readers[run.id].read_new()
                [run_row(r) for r in refresh_all(home())]
        except Exception as e:  # noqa: BLE001 - any error here is a failed test
            errors.append(repr(e))

    def annotate():
        try:
            while not stop.is_set():
                runs[0].set_note(f"checked at {time.time()}")
                assert runs[0].meta()["group"] == group
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=tail_and_look), threading.Thread(target=annotate)]
    for t in threads:
        t.start()
    try:
        for run in runs:
            wait_for(run, ended, timeout=240, what=run.id)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    for run in runs:
        tailed[run.id] += readers[run.id].read_new()
        assert run.status()["status"] == "completed"
        assert tailed[run.id] == run.read_metrics()  # every line, once, in order
        assert loss_steps(run) == [1, 2, 3, 4]
    spans = [(run.status()["started"], run.status()["ended"]) for run in runs]
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))  # one at a time, in launch order
    rows = [row for row in (run_row(r) for r in refresh_all(home())) if row["group"] == group]
    assert [r["id"] for r in rows] == [r.id for r in runs]
    assert {r["lr"] for r in rows} == {1e-3, 2e-3, 3e-3}
