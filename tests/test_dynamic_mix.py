"""Dynamic mixing: evaluations in the stream move share to replay/instruct within bounds, and back."""
import pytest
from transformers import TrainerCallback

import cptcore.evaluate.callback as eval_callback
from cptcore.data.mix import build_mix
from cptcore.models import load_tokenizer
from cptcore.runs import Run
from cptcore.train import train_run


def scripted_evaluations(script: dict[int, float], name: str = "eval/replay_ppl"):
    """An EvalCallback stand-in that writes a chosen replay perplexity at chosen steps, like the real one,
    with a narrow paired CI of the change (a clear, significant change unless the value is unchanged)."""

    class Scripted(TrainerCallback):
        def __init__(self, cfg, run, writer, tokenizer, tokens_per_step):
            self.writer, self.tps = writer, tokens_per_step

        def on_train_begin(self, args, state, control, **kw):
            self.writer.write(name, script[0], 0, 0, n=8)

        def on_step_end(self, args, state, control, **kw):
            if state.global_step in script:
                v = script[state.global_step]
                d = v - script[0]
                self.writer.write(name, v, state.global_step, state.global_step * self.tps, delta=d,
                                  delta_ci_low=d - 0.1 * abs(d), delta_ci_high=d + 0.1 * abs(d), delta_n=8)

    return Scripted


def shares_by_step(run: Run, role: str) -> dict[int, float]:
    return {r["step"]: r["value"] for r in run.read_metrics() if r["name"] == f"mix/{role}"}


def test_replay_share_rises_on_decline_and_falls_back_on_recovery(tmp_path, tiny_cfg, monkeypatch):
    # general loss up 20% at step 4 (decline), back to baseline at step 12 (recovered)
    monkeypatch.setattr(eval_callback, "EvalCallback", scripted_evaluations({0: 20.0, 4: 36.4, 8: 36.4, 12: 20.0}))
    cfg = tiny_cfg.with_overrides({"dynamic_mix.enabled": True, "eval.replay_heldout": {"path": "builtin:replay_heldout"}, "dynamic_mix.step": 0.1, "dynamic_mix.max_replay": 0.45,
                                   "eval.evaluators": ["replay_ppl"], "train.max_steps": 16})
    run = Run.create(tmp_path / "runs", cfg)
    train_run(run, progress=False)
    events = [r for r in run.read_metrics() if r["name"] == "event/mix_change"]
    assert [(e["step"], e["role"]) for e in events] == [(4, "replay"), (8, "replay"), (12, "replay")]
    assert [round(e["share_to"], 3) for e in events] == [0.4, 0.45, 0.35]  # +0.1, capped at 0.45, back 0.1
    assert events[0]["share_from"] == pytest.approx(0.3)
    assert "general loss" in events[0]["message"]
    # realized replay share (cumulative, from the stream) climbs after the change; the data loader reads one
    # batch ahead, so a change made at step 4 trains from step 6 on
    replay = shares_by_step(run, "replay")
    assert replay[4] == pytest.approx(0.3, abs=0.07) and replay[12] > replay[4] + 0.03
    n6, n12 = 6 * 4, 12 * 4
    raised = (replay[12] * n12 - replay[6] * n6) / (n12 - n6)  # steps 7-12 trained at 0.40, then 0.45
    assert 0.35 <= raised <= 0.5


def test_no_decline_means_no_change(tmp_path, tiny_cfg, monkeypatch):
    monkeypatch.setattr(eval_callback, "EvalCallback", scripted_evaluations({0: 20.0, 3: 19.0, 6: 20.05}))
    cfg = tiny_cfg.with_overrides({"dynamic_mix.enabled": True, "eval.replay_heldout": {"path": "builtin:replay_heldout"}, "eval.evaluators": ["replay_ppl"],
                                   "train.max_steps": 6})
    run = Run.create(tmp_path / "runs", cfg)
    train_run(run, progress=False)
    assert not [r for r in run.read_metrics() if r["name"] == "event/mix_change"]
    assert shares_by_step(run, "replay")[6] == pytest.approx(0.3, abs=0.05)


def test_instruct_share_follows_ifeval(tmp_path, tiny_cfg, monkeypatch):
    monkeypatch.setattr(eval_callback, "EvalCallback",
                        scripted_evaluations({0: 40.0, 2: 30.0}, name="eval/if_prompt_strict"))
    cfg = tiny_cfg.with_overrides({"dynamic_mix.enabled": True, "eval.replay_heldout": {"path": "builtin:replay_heldout"}, "dynamic_mix.step": 0.1,
                                   "eval.evaluators": ["ifeval"], "train.max_steps": 4})
    run = Run.create(tmp_path / "runs", cfg)
    train_run(run, progress=False)
    (event,) = [r for r in run.read_metrics() if r["name"] == "event/mix_change"]
    assert event["role"] == "instruct" and event["share_to"] == pytest.approx(0.2)
    assert "IFEval" in event["message"]


def test_online_mix_picks_roles_at_fetch_time(tiny_cfg):
    cfg = tiny_cfg.with_overrides({"dynamic_mix.enabled": True, "eval.replay_heldout": {"path": "builtin:replay_heldout"}, "eval.evaluators": ["replay_ppl"],
                                   "train.max_steps": 10})
    data = build_mix(cfg, load_tokenizer(cfg.model))
    assert (data.roles == -1).all()
    for i in range(20):
        data.fetch(i)
    assert data.realized_shares(20)["replay"] == pytest.approx(0.3, abs=0.05)
    data.online.set_shift("replay", 0.4)
    for i in range(20, 40):
        data.fetch(i)
    assert data.realized_shares(40, start=20)["replay"] == pytest.approx(0.7, abs=0.05)
    assert (data.roles[:40] >= 0).all() and (data.roles[40:] == -1).all()
    static = build_mix(cfg.with_overrides({"dynamic_mix.enabled": False}), load_tokenizer(cfg.model))
    assert static.online is None and (static.roles >= 0).all()
