"""Launch, resume and scale-out: checkpoint fallback on resume, distributed and Slurm commands, and a real
background run that outlives the process that launched it."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cptcore.cli import main
from cptcore.config import ConfigError, RunConfig
from cptcore.runs import Run, RunError
from cptcore.runs import launch as L
from cptcore.runs import liveness
from cptcore.runs.checkpoints import pick_checkpoint
from run_store import fake_checkpoint, truncate


def run_cli(*argv):
    """The real `cpt` command in a subprocess: exit code, stdout, stderr."""
    p = subprocess.run([sys.executable, "-m", "cptcore", *argv], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


# --- resume -----------------------------------------------------------------------------------------
def test_resume_falls_back_past_unusable_checkpoints_or_says_it_cannot(tmp_path):
    run = Run.create(tmp_path, RunConfig(name="ck"))
    run.write_status("failed", started=time.time(), error="boom")
    good = fake_checkpoint(run.checkpoints_dir, 2)
    bad = fake_checkpoint(run.checkpoints_dir, 4)
    truncate(bad / "model.safetensors")
    chosen, skipped = pick_checkpoint(run)
    assert chosen == good and skipped[0][0] == bad and "truncated" in skipped[0][1]
    truncate(good / "optimizer.pt", 0.9)
    with pytest.raises(RunError, match=r"no usable checkpoint \(checkpoint-4: model.safetensors is truncated"):
        pick_checkpoint(run)


def test_resume_sets_unusable_checkpoints_aside_and_starts_from_the_newest_good_one(tmp_path, monkeypatch):
    run = Run.create(tmp_path, RunConfig(name="ck"))
    run.write_status("failed", started=time.time(), error="boom")
    fake_checkpoint(run.checkpoints_dir, 2)
    truncate(fake_checkpoint(run.checkpoints_dir, 4) / "optimizer.pt", 0.9)
    monkeypatch.setattr(L, "spawn", lambda r, cwd=None, cfg=None: 0)
    _, skipped = L.resume(run)
    assert skipped == ["checkpoint-4: optimizer.pt is truncated or corrupt"]
    assert run.last_checkpoint().name == "checkpoint-2" and run.status()["resumed_from"] == "checkpoint-2"
    assert [p.name.startswith("corrupt-checkpoint-4-") for p in run.checkpoints_dir.iterdir()].count(True) == 1
    assert run.status()["previous_error"] == "boom" and run.status()["error"] is None


def test_resume_without_any_checkpoint_starts_again_from_step_0(tmp_path, monkeypatch):
    run = Run.create(tmp_path, RunConfig(name="ck"))
    run.write_status("stopped", started=time.time(), attempt=1, stop_requested=True)
    spawned = []
    monkeypatch.setattr(L, "spawn", lambda r, cwd=None, cfg=None: spawned.append(r.id))
    L.resume(run)
    st = run.status()
    assert spawned == [run.id] and st["status"] == "queued" and st["resumed_from"] is None
    assert st["stop_requested"] is None and run.config().train.resume_from == "last"


def test_two_resumes_at_once_start_one_training_process(tmp_path, monkeypatch):
    """A double click on Monitor's Resume, or two `cpt resume`: the second waits for the first, then refuses."""
    import threading

    run = Run.create(tmp_path, RunConfig(name="twice"))
    run.write_status("stopped", started=time.time())
    spawned = []

    def slow_spawn(r, cwd=None, cfg=None):
        time.sleep(0.3)
        r.write_status("queued", queued_at=time.time())
        spawned.append(r.id)
        return 0

    monkeypatch.setattr(L, "spawn", slow_spawn)
    errors = []

    def go():
        try:
            L.resume(run)
        except RunError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert spawned == [run.id] and len(errors) == 1 and "queued" in errors[0]


def test_a_run_whose_status_cannot_be_read_is_not_resumed(tmp_path, monkeypatch):
    run = Run.create(tmp_path, RunConfig(name="unknown"))
    run.status_path.write_text("{not json")
    monkeypatch.setattr(L, "spawn", lambda r, cwd=None, cfg=None: pytest.fail("spawned"))
    with pytest.raises(RunError, match="cannot tell whether it is still alive"):
        L.resume(run)


def test_resume_after_the_launch_folder_is_gone(tmp_path, monkeypatch):
    gone = tmp_path / "was-here"
    builtin_only = Run.create(tmp_path / "runs", RunConfig(name="b"))
    relative = Run.create(tmp_path / "runs", RunConfig().with_overrides({"name": "r", "data.domain": "docs.jsonl"}))
    spawned = []
    monkeypatch.setattr(L, "spawn", lambda r, cwd=None, cfg=None: spawned.append((r.id, cwd)))
    for run in (builtin_only, relative):
        run.write_status("failed", started=time.time(), error="boom")
        (run.dir / "launcher.json").write_text(json.dumps({"cwd": str(gone)}))
    L.resume(builtin_only)  # builtin: data resolves anywhere: resumed from the current folder
    assert spawned == [(builtin_only.id, None)] and builtin_only.status()["status"] == "queued"
    with pytest.raises(RunError, match=r"no longer exists.*relative paths \(docs.jsonl\)"):
        L.resume(relative)
    assert relative.status()["status"] == "failed" and len(spawned) == 1  # nothing changed, nothing started


def test_a_training_process_that_cannot_start_leaves_the_run_failed_not_queued(tmp_path, monkeypatch):
    run = Run.create(tmp_path, RunConfig(name="nostart"))

    def no_popen(*args, **kwargs):
        raise FileNotFoundError("no such directory: /gone")

    monkeypatch.setattr(L.subprocess, "Popen", no_popen)
    with pytest.raises(RunError, match="could not start the training process"):
        L.spawn(run, cwd="/gone")
    assert run.status()["status"] == "failed" and "could not start" in run.status()["error"]


@pytest.mark.parametrize("override, message", [
    ("data.domain=missing-docs.jsonl", "missing-docs.jsonl"),
    ("model.name=no-such-model", "model.name: unknown model 'no-such-model'"),
    ("model.name=/nowhere/model.gguf", "GGUF file not found"),
])
def test_cpt_launch_checks_data_and_model_before_it_returns(tmp_path, monkeypatch, capsys, override, message):
    monkeypatch.setenv("CPT_HOME", str(tmp_path / "runs"))
    assert main(["launch", "experiments/smoke.yaml", "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# --- scale-out ------------------------------------------------------------------------------------
def test_distributed_commands_run_the_same_entry_point(tmp_path):
    cfg = RunConfig().with_overrides(["launch.launcher=torchrun", "launch.nproc=2"])
    run = Run.create(tmp_path, cfg)
    cmd = L.distributed_command(cfg, run)
    assert cmd[1:7] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    assert cmd[7:11] == ["cptcore", "train", str(run.config_path.resolve()), "--run-id"]
    acc = L.distributed_command(cfg.with_overrides(["launch.launcher=accelerate", "launch.strategy=fsdp"]), run)
    assert "accelerate.commands.launch" in acc and "--use_fsdp" in acc and acc[-6:-4] == ["cptcore", "train"]


def test_gpu_only_launch_settings_are_rejected_on_cpu(monkeypatch):
    monkeypatch.setattr(L, "slot_key", lambda cfg: "cpu")
    with pytest.raises(ConfigError, match="launch.strategy: fsdp needs GPUs"):
        L.check_launcher(RunConfig().with_overrides(["launch.launcher=torchrun", "launch.strategy=fsdp"]))


def test_slurm_script_runs_torchrun_under_srun_with_a_shared_home(tmp_path, monkeypatch, capsys):
    home = tmp_path / "shared" / "runs"
    monkeypatch.setenv("CPT_HOME", str(home))
    assert main(["slurm", "experiments/smoke.yaml", "--nodes", "4", "--gpus-per-node", "8",
                 "--set", "launch.strategy=fsdp"]) == 0
    path = Path(capsys.readouterr().out.strip())
    script = path.read_text()
    run = Run(path.parent)
    assert path.parent.parent == home and run.status()["status"] == "queued"
    for needle in ("#SBATCH --nodes=4", "#SBATCH --gpus-per-node=8", f"export CPT_HOME={home}",
                   "srun --kill-on-bad-exit=1", "-m torch.distributed.run", "--nproc_per_node 8",
                   "--rdzv_backend c10d", f"-m cptcore train {run.config_path} --run-id {run.id}"):
        assert needle in script, needle
    assert run.config().launch.strategy == "fsdp"
    assert liveness.refresh(run)["status"] == "queued"


@pytest.mark.parametrize("args, message", [
    (["--partition", "gpu\n#SBATCH --wrap=evil"], "--partition: "),
    (["--time", "24:00:00\nrm -rf ~"], "--time: "),
    (["--time", "soon"], "--time: 'soon' is not a Slurm time"),
    (["--nodes", "0"], "--nodes: must be a positive integer"),
])
def test_slurm_arguments_that_sbatch_would_not_take_are_refused_before_a_run_exists(tmp_path, monkeypatch, capsys,
                                                                                   args, message):
    monkeypatch.setenv("CPT_HOME", str(tmp_path / "runs"))
    base = ["slurm", "experiments/smoke.yaml", "--nodes", "2", "--gpus-per-node", "8"]
    assert main(base + args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# --- end to end -----------------------------------------------------------------------------------
def test_launch_returns_at_once_and_the_run_outlives_the_launching_process(tmp_path, tiny_cfg):
    home = Path(os.environ["CPT_HOME"])
    cfg_path = tiny_cfg.with_overrides(["train.max_steps=4"]).save(tmp_path / "tiny.yaml")
    t0 = time.time()
    rc, out, err = run_cli("launch", str(cfg_path))  # the launching process exits right away
    elapsed = time.time() - t0
    assert rc == 0 and elapsed < 5, (elapsed, err)
    run_id = out.strip()
    seen = []
    deadline = time.time() + 180
    while time.time() < deadline:
        rc, out, _ = run_cli("runs", "--json")
        row = next(r for r in json.loads(out) if r["id"] == run_id)
        seen.append(row["status"])
        if row["status"] in ("completed", "failed", "stopped"):
            break
        time.sleep(1)
    assert seen[-1] == "completed", Run.open(home, run_id).log_path.read_text()[-2000:]
    assert "running" in seen or "queued" in seen
    assert row["final_metrics"]["train/loss"] > 0 and row["step"] == 4
