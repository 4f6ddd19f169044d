"""Evaluations inside training: step-0 baseline, schedule, per-item files, warnings, stop, errors."""
import dataclasses
import json
from types import SimpleNamespace

import pytest

from cptcore.config import ModelConfig, RunConfig
from cptcore.evaluate.callback import EvalCallback
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


def score_of(metric, items):
    """A Score built by the evaluators' own constructors from per-item values (so it can be paired)."""
    from cptcore.evaluate.stats import mean_score, proportion, ratio_score

    ids = list(range(len(items)))
    if metric == "eval/replay_ppl":  # items: per-document mean loss, 10 tokens each
        return ratio_score(metric, [(10 * x, 10) for x in items], "exp", ids=ids)
    if metric == "eval/if_prompt_strict":  # items: prompt passed
        return proportion(metric, items, scale=100, ids=ids)
    return mean_score(metric, items, ids=ids)


def fake_suite(items_by_step, fail=()):
    """Suite.run stand-in returning scores of given per-item values, so breaches are exact."""
    def run(name, model, tokenizer, round_id=0, progress=None):
        if name in fail:
            raise RuntimeError("boom")
        metric = {"replay_ppl": "eval/replay_ppl", "ifeval": "eval/if_prompt_strict",
                  "coherence": "eval/coherence_distinct2"}[name]
        return [score_of(metric, items_by_step[fake_suite.step][metric])], [{"id": 0}]
    return run


LOSS = [2.0 + 0.05 * i for i in range(20)]   # 20 documents' mean losses
PASS = [True] * 20 + [False] * 30            # 50 prompts, 40% pass
D2 = [0.8 + 0.01 * i for i in range(20)]     # 20 responses' distinct-2


@pytest.mark.parametrize("metric, now, fires", [
    ("eval/replay_ppl", [x * 1.021 for x in LOSS], False),        # every document +2.1% loss: below 3%
    ("eval/replay_ppl", [x * 1.041 for x in LOSS], True),         # +4.1% on every document
    ("eval/replay_ppl", [LOSS[0] * 1.6] + LOSS[1:], False),       # one document much worse: not significant
    ("eval/if_prompt_strict", [False] + PASS[1:], False),         # one flipped prompt: -2 points, noise
    ("eval/if_prompt_strict", [False] * 5 + PASS[5:], True),      # 5 of 20 passing prompts now fail: -10
    ("eval/coherence_distinct2", [x - 0.05 for x in D2], False),  # significant but below the 0.10 threshold
    ("eval/coherence_distinct2", [x - 0.2 for x in D2], True),
])
def test_warnings_fire_only_on_a_significant_paired_decline_beyond_the_threshold(tmp_path, tiny, metric, now, fires):
    cb, run = make_callback(tmp_path, tiny, ["replay_ppl", "ifeval", "coherence"])
    items = {0: {"eval/replay_ppl": LOSS, "eval/if_prompt_strict": PASS, "eval/coherence_distinct2": D2}}
    items[2] = dict(items[0]) | {metric: now}
    cb.suite.run = fake_suite(items)
    fake_suite.step = 0
    cb.on_train_begin(None, state(0), control(), model=tiny[0])
    fake_suite.step = 2
    ctl = control()
    cb.evaluate(tiny[0], 2, ["replay_ppl", "ifeval", "coherence"], ctl)
    warnings = [r for r in run.read_metrics() if r["name"] == "event/warning"]
    assert len(warnings) == int(fires)
    rec = next(r for r in records(run) if r["name"] == metric and r["step"] == 2)
    assert rec["delta_ci_low"] <= rec["delta"] <= rec["delta_ci_high"] and rec["delta_n"] == len(now)
    if fires:
        w = warnings[0]
        base = score_of(metric, items[0][metric]).value
        assert (w["metric"], w["step"]) == (metric, 2)
        assert w["baseline"] == pytest.approx(base) and w["value_now"] == pytest.approx(rec["value"])
        assert "paired 95% CI" in w["message"] and ctl.should_training_stop is False  # warn only, by default


def test_stop_on_warning_stops_and_names_the_last_good_checkpoint(tmp_path, tiny):
    cb, run = make_callback(tmp_path, tiny, ["ifeval"], stop_on_warning=True)
    for s in (2, 4):
        (run.checkpoints_dir / f"checkpoint-{s}").mkdir(parents=True)
    items = {0: {"eval/if_prompt_strict": PASS}, 2: {"eval/if_prompt_strict": PASS},
             4: {"eval/if_prompt_strict": [False] * 50}}
    cb.suite.run = fake_suite(items)
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
    cb.suite.run = fake_suite({0: {"eval/if_prompt_strict": PASS}}, fail=("replay_ppl",))
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


def test_resumed_run_pairs_with_the_step0_items_on_disk(tmp_path, tiny):
    cb, run = make_callback(tmp_path, tiny, ["ifeval"])
    cb.suite.run = fake_suite({0: {"eval/if_prompt_strict": PASS}, 8: {"eval/if_prompt_strict": [False] * 50}})
    fake_suite.step = 0
    cb.on_train_begin(None, state(0), control(), model=tiny[0])
    resumed, _ = make_callback(tmp_path / "other", tiny, ["ifeval"])
    resumed.run, resumed.writer = run, cb.writer  # a new process on the same run
    resumed.suite.run = cb.suite.run
    resumed.on_train_begin(None, state(6), control(), model=tiny[0])
    assert set(resumed.baseline) == {"eval/if_prompt_strict"}
    assert all(r["step"] == 0 for r in records(run))  # nothing re-evaluated at resume
    fake_suite.step = 8
    resumed.evaluate(tiny[0], 8, ["ifeval"])
    last = records(run)[-1]
    assert last["step"] == 8 and last["delta"] == pytest.approx(-40.0) and last["delta_ci_high"] < 0


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


def test_a_significant_rise_of_heldout_domain_ppl_above_its_best_is_a_memorization_sign(tmp_path, tiny):
    cb, run = make_callback(tmp_path, tiny, ["domain_ppl"])
    losses = {0: LOSS, 2: [x - 0.8 for x in LOSS], 4: [x - 0.6 for x in LOSS], 6: [x - 0.3 for x in LOSS]}

    def suite_run(name, model, tokenizer, round_id=0, progress=None):  # a perplexity of the given losses
        return [dataclasses.replace(score_of("eval/replay_ppl", losses[fake_suite.step]), name="eval/domain_ppl")], []

    cb.suite.run = suite_run
    for step in (0, 2, 4, 6):
        fake_suite.step = step
        cb.evaluate(tiny[0], step, ["domain_ppl"])
    signs = [r for r in run.read_metrics() if r.get("kind") == "memorization"]
    # best at step 2; step 4 is +22% above it (significant): told once, not again at step 6
    assert [(w["step"], w["best_step"]) for w in signs] == [(4, 2)]
    assert "memorized" in signs[0]["message"] and signs[0]["delta_ci_low"] > 0


def test_each_evaluation_reports_its_phase_and_clears_its_progress_even_when_an_evaluator_fails(tmp_path, tiny,
                                                                                                monkeypatch):
    from cptcore import supervise

    cb, run = make_callback(tmp_path, tiny, ["replay_ppl", "ifeval"])
    run.write_status("running")
    cb.suite.run = fake_suite({s: {"eval/if_prompt_strict": PASS} for s in (0, 2, 4)}, fail=("replay_ppl",))
    seen = []
    real = supervise.write_eval_status
    monkeypatch.setattr(supervise, "write_eval_status",
                        lambda r, ev, secs=None: seen.append(ev and (ev["phase"], ev["step"])) or real(r, ev, secs))
    for step, hook in ((0, "on_train_begin"), (2, "on_step_end"), (4, "on_step_end")):
        fake_suite.step = step
        getattr(cb, hook)(None, SimpleNamespace(global_step=step, max_steps=4, is_world_process_zero=True),
                          control(), model=tiny[0])
    assert [p for p in dict.fromkeys(seen) if p] == [("baseline", 0), ("periodic", 2), ("final", 4)]
    st = run.status()
    assert st["evaluating"] is None and set(st["eval_seconds"]) == {"replay_ppl", "ifeval"}
