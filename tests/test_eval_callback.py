"""Evaluations inside training: step-0 baseline, schedule, per-item files, warnings, stop, errors."""
import json
from types import SimpleNamespace

import pytest

from cptcore.config import ModelConfig, RunConfig
from cptcore.evaluate.callback import EvalCallback
from cptcore.evaluate.stats import Score
from cptcore.models import load_model
from cptcore.runs import Run
from cptcore.runs.metrics import MetricWriter

DOCS = ["The harbour lantern was lit every night.", "Copper roofs shine in the orchard city.",
        "A festival of music filled the meadow.", "The archive keeps old maps of the bridge."]


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelConfig(name="tiny-random-llama"))


@pytest.fixture
def heldout(tmp_path):
    f = tmp_path / "held.jsonl"
    f.write_text("".join(json.dumps({"text": t}) + "\n" for t in DOCS), encoding="utf-8")
    return str(f)


def make_callback(tmp_path, tiny, evaluators, heldout=None, **eval_overrides):
    overrides = {"model.name": "tiny-random-llama", "eval.evaluators": evaluators, "eval.max_docs": 4,
                 "eval.ifeval_limit": 2, "eval.max_new_tokens": 4, "eval.every_steps": 2, "eval.generate_every": 2}
    if heldout:
        overrides |= {"eval.domain_heldout": heldout, "eval.replay_heldout": heldout}
    cfg = RunConfig().with_overrides(overrides | {f"eval.{k}": v for k, v in eval_overrides.items()})
    run = Run.create(tmp_path / "runs", cfg)
    writer = MetricWriter(run.metrics_path)
    return EvalCallback(cfg, run, writer, tiny[1], tokens_per_step=100), run


def state(step, main=True):
    return SimpleNamespace(global_step=step, is_world_process_zero=main)


def control():
    return SimpleNamespace(should_training_stop=False)


def records(run, prefix="eval/"):
    return [r for r in run.read_metrics() if r["name"].startswith(prefix)]


def test_baseline_schedule_and_final_evaluation(tmp_path, tiny, heldout):
    cb, run = make_callback(tmp_path, tiny, ["domain_ppl", "ifeval"], heldout)
    model = tiny[0]
    model.train()
    cb.on_train_begin(None, state(0), control(), model=model)
    for step in range(1, 6):
        cb.on_step_end(None, state(step), control(), model=model)
    cb.on_train_end(None, state(5), control(), model=model)
    assert model.training  # evaluation put it in eval mode and gave it back in train mode
    steps = {}
    for r in records(run):
        steps.setdefault(r["name"], []).append(r["step"])
    # perplexity every 2 steps; generation every 2nd evaluation (step 4); everything at step 0 and at the end
    assert steps["eval/domain_ppl"] == [0, 2, 4, 5]
    assert steps["eval/if_prompt_strict"] == [0, 4, 5]
    first = next(r for r in records(run) if r["name"] == "eval/domain_ppl")
    assert first["tokens"] == 0 and first["n"] == 4 and first["ci_low"] <= first["value"] <= first["ci_high"]
    assert next(r for r in records(run) if r["step"] == 4)["tokens"] == 400
    files = sorted(p.name for p in (run.dir / "eval").iterdir())
    assert "ifeval-step000000.jsonl" in files and "domain_ppl-step000005.jsonl" in files
    rows = [json.loads(x) for x in (run.dir / "eval" / "ifeval-step000004.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and {"prompt", "response", "strict", "loose"} <= set(rows[0])


def test_only_the_main_process_evaluates(tmp_path, tiny, heldout):
    cb, run = make_callback(tmp_path, tiny, ["domain_ppl"], heldout)
    cb.on_train_begin(None, state(0, main=False), control(), model=tiny[0])
    cb.on_step_end(None, state(2, main=False), control(), model=tiny[0])
    assert records(run) == []


def fake_suite(values_by_step, fail=()):
    """Suite.run stand-in returning constructed scores, so breaches are exact."""
    def run(name, model, tokenizer, round_id=0):
        if name in fail:
            raise RuntimeError("boom")
        step = fake_suite.step
        metric = {"replay_ppl": "eval/replay_ppl", "ifeval": "eval/if_prompt_strict",
                  "coherence": "eval/coherence_distinct2"}[name]
        v = values_by_step[step][metric]
        return [Score(metric, v, 25, v, v)], [{"id": 0}]
    return run


@pytest.mark.parametrize("metric, base, now, fires", [
    ("eval/replay_ppl", 10.0, 10.5, False),   # ln 10 = 2.303 -> 2.351: +2.1% loss
    ("eval/replay_ppl", 10.0, 11.0, True),    # -> 2.398: +4.1% loss > 3%
    ("eval/if_prompt_strict", 40.0, 38.5, False),
    ("eval/if_prompt_strict", 40.0, 36.0, True),
    ("eval/coherence_distinct2", 0.90, 0.85, False),
    ("eval/coherence_distinct2", 0.90, 0.70, True),
])
def test_warnings_fire_on_a_breach_of_the_step0_baseline(tmp_path, tiny, metric, base, now, fires):
    cb, run = make_callback(tmp_path, tiny, ["replay_ppl", "ifeval", "coherence"])
    values = {0: {"eval/replay_ppl": 10.0, "eval/if_prompt_strict": 40.0, "eval/coherence_distinct2": 0.9}}
    values[2] = dict(values[0]) | {metric: now}
    values[0][metric] = base
    cb.suite.run = fake_suite(values)
    fake_suite.step = 0
    cb.on_train_begin(None, state(0), control(), model=tiny[0])
    fake_suite.step = 2
    ctl = control()
    cb.evaluate(tiny[0], 2, ["replay_ppl", "ifeval", "coherence"], ctl)
    warnings = [r for r in run.read_metrics() if r["name"] == "event/warning"]
    assert len(warnings) == int(fires)
    if fires:
        w = warnings[0]
        assert (w["metric"], w["baseline"], w["value_now"], w["step"]) == (metric, base, now, 2)
        assert w["message"] and ctl.should_training_stop is False  # warn only, by default


def test_stop_on_warning_stops_and_names_the_last_good_checkpoint(tmp_path, tiny):
    cb, run = make_callback(tmp_path, tiny, ["ifeval"], stop_on_warning=True)
    for s in (2, 4):
        (run.checkpoints_dir / f"checkpoint-{s}").mkdir(parents=True)
    values = {0: {"eval/if_prompt_strict": 40.0}, 2: {"eval/if_prompt_strict": 40.0},
              4: {"eval/if_prompt_strict": 20.0}}
    cb.suite.run = fake_suite(values)
    for step in (0, 2, 4):
        fake_suite.step = step
        ctl = control()
        cb.evaluate(tiny[0], step, ["ifeval"], ctl)
        assert ctl.should_training_stop is (step == 4)
    (w,) = [r for r in run.read_metrics() if r["name"] == "event/warning"]
    assert w["last_ok_step"] == 2 and w["keep_checkpoint"].endswith("checkpoint-2")
    assert "stopping" in w["message"]


def test_a_failing_evaluator_is_an_event_not_a_crash(tmp_path, tiny):
    cb, run = make_callback(tmp_path, tiny, ["replay_ppl", "ifeval"])
    cb.suite.run = fake_suite({0: {"eval/if_prompt_strict": 30.0}}, fail=("replay_ppl",))
    fake_suite.step = 0
    cb.on_train_begin(None, state(0), control(), model=tiny[0])
    names = [r["name"] for r in run.read_metrics()]
    assert "event/eval_error" in names and "eval/if_prompt_strict" in names
    err = next(r for r in run.read_metrics() if r["name"] == "event/eval_error")
    assert err["evaluator"] == "replay_ppl" and "boom" in err["message"]


def test_missing_heldout_data_during_training_is_recorded(tmp_path, tiny):
    cb, run = make_callback(tmp_path, tiny, ["domain_ppl"], heldout=str(tmp_path / "absent.jsonl"))
    cb.on_train_begin(None, state(0), control(), model=tiny[0])
    (err,) = [r for r in run.read_metrics() if r["name"] == "event/eval_error"]
    assert "absent.jsonl" in err["message"]


def test_resumed_run_takes_its_baseline_from_the_stream(tmp_path, tiny):
    cb, run = make_callback(tmp_path, tiny, ["ifeval"])
    cb.writer.write("eval/if_prompt_strict", 40.0, 0, 0, n=25)
    cb.on_train_begin(None, state(6), control(), model=tiny[0])
    assert cb.baseline == {"eval/if_prompt_strict": 40.0}
    assert records(run) and all(r["step"] == 0 for r in records(run))  # nothing re-evaluated at resume


def test_training_run_holds_step0_and_final_evaluations(tiny_cfg, tmp_path):
    from cptcore.train import train

    heldout = tmp_path / "held.jsonl"
    heldout.write_text("".join(json.dumps({"text": t}) + "\n" for t in DOCS), encoding="utf-8")
    cfg = tiny_cfg.with_overrides({"train.max_steps": 3, "eval.evaluators": ["domain_ppl", "replay_ppl"],
                                   "eval.every_steps": 2, "eval.max_docs": 4,
                                   "eval.domain_heldout": str(heldout), "eval.replay_heldout": str(heldout)})
    run = Run.create(tmp_path / "runs", cfg)
    train(cfg, run, progress=False)
    ppl = [r for r in run.read_metrics() if r["name"] == "eval/domain_ppl"]
    assert [r["step"] for r in ppl] == [0, 2, 3]
    assert all(r["n"] == 4 for r in ppl)
    assert ppl[-1]["value"] < ppl[0]["value"]  # the tiny model trained on similar words: held-out ppl falls
