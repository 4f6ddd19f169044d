"""The trainer's side of the metric stream: realized and requested mix per stage, per-role loss, stage events."""
from pathlib import Path

import pytest

from cptcore.config import ROLES, RunConfig
from cptcore.plan import plan
from cptcore.runs import Run
from cptcore.train import train_run

RECIPE_DIR = Path(__file__).resolve().parents[1] / "experiments" / "recipes"


def by_step(records, prefix):
    out = {}
    for r in records:
        if r["name"].startswith(prefix) and r.get("value") is not None:
            out.setdefault(r["step"], {})[r["name"].removeprefix(prefix)] = r["value"]
    return out


def test_requested_mix_follows_each_stage_not_the_run_level_mix(tmp_path, data_files):
    cfg = RunConfig.load(RECIPE_DIR / "pit_smoke.yaml", [f"data.replay={data_files['replay']}",
                                                          f"data.instruct={data_files['instruct']}"])
    run = Run.create(tmp_path / "runs", cfg)
    train_run(run, progress=False)
    records = run.read_metrics()
    requested, realized = by_step(records, "mix/requested/"), by_step(records, "mix/")
    p = plan(cfg)
    for stage in p.stages:
        step = stage.first_step + stage.steps  # the last step of the stage
        for role, share in stage.shares.items():
            if share > 0:
                assert requested[step][role] == pytest.approx(share)
                assert abs(realized[step][role] - share) <= 1 / (stage.steps * p.seqs_per_step) + 1e-9
    qa = p.stages[0]
    assert requested[qa.steps]["instruct"] == pytest.approx(qa.shares["instruct"]) != cfg.mix.instruct


def test_progressive_requested_share_ramps_with_the_plan(tmp_path, tiny_cfg):
    cfg = tiny_cfg.with_overrides({"progressive.enabled": True, "progressive.start_domain": 0.1,
                                   "progressive.ramp_ratio": 1.0, "train.max_steps": 10})
    run = Run.create(tmp_path / "runs", cfg)
    train_run(run, progress=False)
    domain = {s: v["domain"] for s, v in by_step(run.read_metrics(), "mix/requested/").items()}
    assert domain[1] < domain[5] < domain[10] < cfg.mix.domain  # the mean target so far climbs toward 0.6
    assert domain[1] == pytest.approx(0.1 + (0.6 - 0.1) * 1.5 / 40, abs=0.02)  # first 4 of 40 sequences


def test_every_role_loss_is_written_each_logging_step(tmp_path, tiny_cfg):
    run = Run.create(tmp_path / "runs", tiny_cfg.with_overrides({"train.max_steps": 3}))
    train_run(run, progress=False)
    losses = by_step(run.read_metrics(), "train/loss/")
    assert sorted(losses) == [1, 2, 3]
    assert all(set(v) <= {"domain", "replay", "instruct"} and "domain" in v for v in losses.values())


def test_loss_token_mix_is_written_each_logging_step_beside_the_input_token_mix(tmp_path, tiny_cfg):
    cfg = tiny_cfg.with_overrides({"train.max_steps": 3, "mix.unit": "loss_tokens"})
    run = Run.create(tmp_path / "runs", cfg)
    train_run(run, progress=False)
    records = run.read_metrics()
    realized, requested = by_step(records, "mix_loss/"), by_step(records, "mix_loss/requested/")
    assert sorted(realized) == sorted(by_step(records, "mix/")) == [1, 2, 3]
    assert set(requested[3]) == set(ROLES)
    last = {r: realized[3][r] for r in ROLES}
    assert last == pytest.approx(run.manifest()["realized_loss"])  # exact counts of the packed labels
    assert sum(last.values()) == pytest.approx(1)


def test_without_loss_targets_only_the_realized_loss_mix_is_written(tmp_path, tiny_cfg):
    run = Run.create(tmp_path / "runs", tiny_cfg.with_overrides({"train.max_steps": 2}))
    train_run(run, progress=False)
    records = run.read_metrics()
    assert set(by_step(records, "mix_loss/")[2]) == set(ROLES)
    assert not by_step(records, "mix_loss/requested/")


def test_a_tapped_writer_repairs_a_torn_stream_and_reports_it(tmp_path):
    """The training process's writer (TappedWriter) opens a stream whose last line was torn by a full disk."""
    from cptcore.runs.metrics import parse_records
    from cptcore.stream import TappedWriter

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "tokens": 1, "time": 0.5, "name": "train/loss", "value": 2.0, "attempt": 1}\n{"s')
    seen = []
    w = TappedWriter(path, attempt=2)
    w.listeners.append(seen.append)
    w.write("train/loss", 1.5, 2, 2)
    w.close()
    names = [r["name"] for r in parse_records(path.read_bytes())]
    assert names == ["train/loss", "event/stream_repaired", "train/loss"] and seen[0]["step"] == 2
