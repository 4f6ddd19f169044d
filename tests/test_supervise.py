"""Inside the training process: checkpoint checks on damaged files (torch-free), and the Supervisor's stop flag."""
import json
import zipfile

from cptcore.config import RunConfig
from cptcore.runs import Run
from cptcore.runs.checkpoints import check_checkpoint, check_safetensors, check_torch_zip
from cptcore.runs.metrics import MetricWriter
from cptcore.runs.store import stop_request_path
from run_store import fake_checkpoint, truncate


# --- checkpoint checks -------------------------------------------------------------------------
def test_checkpoint_check_names_what_is_wrong(tmp_path):
    ok = fake_checkpoint(tmp_path, 1)
    assert check_checkpoint(ok) is None
    partial = fake_checkpoint(tmp_path, 2)
    (partial / "trainer_state.json").unlink()
    assert "partial" in check_checkpoint(partial)
    cut = fake_checkpoint(tmp_path, 3)
    truncate(cut / "model.safetensors")
    assert "model.safetensors is truncated" in check_checkpoint(cut)
    opt = fake_checkpoint(tmp_path, 4)
    truncate(opt / "optimizer.pt", 0.9)
    assert "optimizer.pt is truncated or corrupt" in check_checkpoint(opt)
    no_opt = fake_checkpoint(tmp_path, 5)
    (no_opt / "optimizer.pt").unlink()
    assert "no optimizer.pt" in check_checkpoint(no_opt)


def test_a_truncated_safetensors_file_is_caught_by_its_size_and_a_garbled_one_by_its_header(tmp_path):
    ck = fake_checkpoint(tmp_path, 1)
    weights = ck / "model.safetensors"
    assert check_safetensors(weights) is None
    size = weights.stat().st_size
    truncate(weights, 0.99)
    assert check_safetensors(weights) == f"model.safetensors is truncated ({int(size * 0.99)} of {size} bytes)"
    weights.write_bytes(b"\xff" * 64)  # header length far beyond the file
    assert check_safetensors(weights) == "model.safetensors is corrupt (bad header)"
    weights.write_bytes((8).to_bytes(8, "little") + b"not json")
    assert check_safetensors(weights) == "model.safetensors is corrupt (unreadable header)"


def test_a_corrupt_zip_is_caught_without_torch(tmp_path):
    good = tmp_path / "optimizer.pt"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("data.pkl", b"x" * 10000)
    assert check_torch_zip(good) is None
    truncate(good, 0.5)  # the central directory is at the end: gone
    assert check_torch_zip(good) == "optimizer.pt is truncated or corrupt"
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04partial")
    assert check_torch_zip(tmp_path / "junk.pt") == "junk.pt is truncated or corrupt"


# --- the Supervisor ----------------------------------------------------------------------------
def test_supervisor_checkpoints_and_stops_when_stop_json_appears(tmp_path):
    from transformers import TrainerControl, TrainerState

    from cptcore.supervise import Supervisor

    run = Run.create(tmp_path, RunConfig(name="sup"))
    writer = MetricWriter(run.metrics_path)
    sup = Supervisor(run, writer, every_s=3600)
    state, control = TrainerState(global_step=3, max_steps=10), TrainerControl()
    sup.on_train_begin(None, state, control)
    assert run.status()["status"] == "running" and run.status()["step"] == 3
    sup.on_step_end(None, state, control)
    assert not control.should_training_stop and not control.should_save  # no request: train on
    stop_request_path(run).write_text(json.dumps({"requested": 0}))
    state.global_step = 4
    sup.on_step_end(None, state, control)
    writer.close()
    assert control.should_save and control.should_training_stop and sup.stopped_at == 4
    st = run.status()
    assert st["stop_requested"] is True and st["step"] == 4
    (event,) = [r for r in run.read_metrics() if r["name"] == "event/stopped"]
    assert event["step"] == 4 and "checkpoint at step 4" in event["message"]


def test_the_status_step_follows_every_logged_step_not_only_the_heartbeat(tmp_path):
    from transformers import TrainerControl, TrainerState

    from cptcore.supervise import Supervisor

    run = Run.create(tmp_path, RunConfig(name="lag"))
    sup = Supervisor(run, None, every_s=3600)  # a heartbeat that never comes due
    state, control = TrainerState(global_step=1, max_steps=10), TrainerControl()
    sup.on_train_begin(None, state, control)
    state.global_step = 7
    sup.on_step_end(None, state, control)
    assert run.status()["step"] == 1  # between log steps the heartbeat's rate holds
    sup.on_log(None, state, control)  # the stream gets step 7's record now
    assert run.status()["step"] == 7
