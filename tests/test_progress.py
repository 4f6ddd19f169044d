"""Progress at a glance: evaluation progress in status.json while an evaluation runs (bounded, never a metric),
the ETA with the evaluations left, durations for people, and what Monitor shows while evaluating or queued."""
import json
import os
import time
from pathlib import Path

import pytest

from cptcore import frames, progress, supervise
from cptcore.config import ModelConfig, RunConfig
from cptcore.runs import Run
from cptcore.runs.metrics import MetricWriter

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["The harbour lantern was lit every night.", "Copper roofs shine in the orchard city.",
        "A festival of music filled the meadow.", "The archive keeps old maps of the bridge."]


@pytest.fixture
def reports(monkeypatch):
    """Every status write of evaluation progress, as (time, evaluating or None)."""
    seen = []
    real = supervise.write_eval_status

    def spy(run, evaluating, eval_seconds=None):
        seen.append((time.time(), None if evaluating is None else dict(evaluating)))
        return real(run, evaluating, eval_seconds)

    monkeypatch.setattr(supervise, "write_eval_status", spy)
    return seen


# --- the training process reports -------------------------------------------------------------
def test_a_training_run_reports_each_evaluations_progress_in_its_status(tiny_cfg, tmp_path, reports):
    from cptcore.train import train

    heldout = tmp_path / "held.jsonl"
    heldout.write_text("".join(json.dumps({"text": t}) + "\n" for t in DOCS), encoding="utf-8")
    cfg = tiny_cfg.with_overrides({"train.max_steps": 3, "eval.evaluators": ["domain_ppl", "replay_ppl"],
                                   "eval.every_steps": 2, "eval.max_docs": 4, "eval.batch_size": 1,
                                   "eval.domain_heldout": str(heldout), "eval.replay_heldout": str(heldout)})
    run = Run.create(tmp_path / "runs", cfg)
    seen = []  # what a reader of status.json finds during the evaluations
    real = supervise.write_eval_status

    def reader(run_, evaluating, eval_seconds=None):
        ok = real(run_, evaluating, eval_seconds)
        seen.append(run_.status().get("evaluating"))
        return ok

    supervise.write_eval_status = reader
    try:
        train(cfg, run, progress=False)
    finally:
        supervise.write_eval_status = real
    live = [e for _, e in reports if e is not None]
    evaluations = {}
    for e in live:
        evaluations.setdefault((e["phase"], e["step"]), []).append(e)
    assert list(evaluations) == [("baseline", 0), ("periodic", 2), ("final", 3)]
    for (phase, step), evs in evaluations.items():
        for name in ("domain_ppl", "replay_ppl"):
            mine = [e for e in evs if e["evaluator"] == name]
            assert mine[0]["done"] == 0 and mine[0]["total"] is None  # the start, before its data is counted
            assert mine[-1]["done"] == mine[-1]["total"] == 4  # the end
            assert [e["done"] for e in mine] == sorted(e["done"] for e in mine)
            assert all(e["count"] == 2 and e["evaluators"] == ["domain_ppl", "replay_ppl"] for e in mine)
        took = evs[-1]["updated"] - evs[0]["started"]
        assert len(evs) <= 3 * 2 + took / 2.0 + 1  # start, count known, end per evaluator, else every 2 s at most
    assert seen[0]["evaluator"] == "domain_ppl" and seen.count(None) == 3  # readers see it; cleared after each
    status = run.status()
    assert status["evaluating"] is None and set(status["eval_seconds"]) == {"domain_ppl", "replay_ppl"}
    # the stream holds no progress: no reader can mistake it for a metric or list it among the events
    m = frames.load_metrics(run)
    assert not [n for n in m.names() if "progress" in n]
    assert not [r for r in run.read_metrics() if "progress" in r["name"] or "evaluating" in r]
    assert [r["step"] for r in run.read_metrics() if r["name"] == "eval/domain_ppl"] == [0, 2, 3]


def test_progress_reports_are_throttled_and_leave_scores_unchanged(tmp_path, reports):
    from cptcore.evaluate.callback import EvalProgress
    from cptcore.evaluate.perplexity import perplexity
    from cptcore.models import load_model

    run = Run.create(tmp_path / "runs", RunConfig(name="p"))
    run.write_status("running", attempt=1)
    seconds = {}
    p = EvalProgress(run, "periodic", 10, ["domain_ppl"], seconds, attempt=1)
    p.begin("domain_ppl", 1)
    for i in range(1000):  # a thousand fast batches
        p(i, 1000)
    p.end("domain_ppl")
    p.close()
    assert p.writes == len(reports) == 4  # start, count known, end, cleared
    assert reports[2][1]["done"] == 1000 and reports[-1][1] is None and "domain_ppl" in seconds

    model, tok = load_model(ModelConfig(name="tiny-random-llama"))
    docs = [{"text": t * 3, "id": i} for i, t in enumerate(DOCS)]
    calls = []
    with_progress, rows = perplexity("domain_ppl", model, tok, docs, window=16, batch_size=2,
                                     progress=lambda d, t: calls.append((d, t)))
    without, rows0 = perplexity("domain_ppl", model, tok, docs, window=16, batch_size=2)
    assert with_progress[0].value == without[0].value and rows == rows0
    assert calls[0] == (0, 4) and calls[-1] == (4, 4) and [d for d, _ in calls] == sorted(d for d, _ in calls)


# --- the ETA, evaluations included --------------------------------------------------------------
CFG = {"train": {"max_steps": 20}, "eval": {"evaluators": ["domain_ppl", "ifeval"], "every_steps": 5,
                                            "generate_every": 2}}


def pace(steps=10):
    """train/loss at steps 1..steps, 2 s a step; the intervals that held an evaluation (steps 5, 10) took 30 s
    more: the pace must not count them."""
    recs, t = [], 0.0
    for s in range(1, steps + 1):
        t += 2.0 + (30.0 if s % 5 == 0 else 0.0)
        recs.append({"step": s, "tokens": 100 * s, "time": t, "name": "train/loss", "value": 3.0, "attempt": 1})
    return frames.metrics_from_records(recs)


def status(now, **fields):
    return {"status": "running", "attempt": 1, "step": 10, "max_steps": 20, "heartbeat": now,
            "eval_seconds": {"domain_ppl": 10.0, "ifeval": 60.0}, **fields}


def test_eta_adds_the_measured_evaluations_left_to_the_training_pace(tmp_path):
    run = Run.create(tmp_path / "runs", RunConfig(name="eta"))
    now = time.time()
    p = progress.run_progress(run, pace(), status(now), CFG, now=now)
    # 10 steps at 2 s + step 15 (domain_ppl: 10 s) + the final one at 20 (both: 70 s)
    assert p.phase_text == "training" and p.fraction == 0.5
    assert p.eta_s == pytest.approx(100.0) and p.eta_text == "1 min 40 s"
    assert "2 evaluations left" in p.detail and "10 steps at 2 s/step" in p.detail
    assert progress.seconds_per_step(pace(), 5, 20, ["domain_ppl"], 2) == pytest.approx(2.0)


def test_while_evaluating_the_eta_counts_what_is_left_of_it(tmp_path):
    run = Run.create(tmp_path / "runs", RunConfig(name="eta"))
    now = time.time()
    ev = {"phase": "periodic", "step": 10, "evaluator": "ifeval", "index": 2, "count": 2,
          "evaluators": ["domain_ppl", "ifeval"], "done": 5, "total": 25, "evaluator_started": now - 20,
          "updated": now, "attempt": 1}
    p = progress.run_progress(run, pace(), status(now, evaluating=ev), CFG, now=now)
    assert p.phase_text == "evaluating ifeval 5/25 (step 10 periodic)" and p.eval_fraction == pytest.approx(0.2)
    # ifeval: 20 s for 5 items, 80 s for the other 20; then 20 s of training, 10 s at step 15, 70 s at the end
    assert p.eta_s == pytest.approx(180.0) and p.eta_text == "3 min"
    assert "evaluator 2 of 2: ifeval, 5/25 items" in p.eval_note
    # a field left by a process that died mid-evaluation (older than the heartbeat) is not shown
    stale = progress.run_progress(run, pace(), status(now, evaluating={**ev, "updated": now - 300}), CFG, now=now)
    assert stale.evaluating is None and stale.phase_text == "training"
    other = progress.run_progress(run, pace(), status(now, evaluating={**ev, "attempt": 0}), CFG, now=now)
    assert other.evaluating is None


def test_during_the_step0_evaluation_the_eta_is_estimated_from_it(tmp_path):
    run = Run.create(tmp_path / "runs", RunConfig(name="eta"))
    now = time.time()
    ev = {"phase": "baseline", "step": 0, "evaluator": "ifeval", "index": 2, "count": 2,
          "evaluators": ["domain_ppl", "ifeval"], "done": 5, "total": 25, "evaluator_started": now - 20,
          "updated": now, "attempt": 1}
    st = status(now, step=0, evaluating=ev, eval_seconds={"domain_ppl": 10.0})
    p = progress.run_progress(run, frames.metrics_from_records([]), st, CFG, now=now)
    assert p.phase_text == "evaluating ifeval 5/25 (step 0 baseline)"
    # 80 s left of ifeval (its rate so far: 100 s in all); steps 5 and 15: 10 s; 10 and 20: 110 s; no pace yet
    assert p.eta_s is None and p.eta_text == "> 5 min 20 s"
    assert "The step-0 evaluation is running" in p.eval_note


def test_final_and_queued_states_and_durations_for_people(tmp_path):
    run = Run.create(tmp_path / "runs", RunConfig(name="done"))
    done = progress.run_progress(run, pace(), {"status": "completed", "step": 20, "max_steps": 20}, CFG)
    assert done.phase_text == "completed" and done.eta_s is None and done.fraction == 1.0
    assert [progress.format_duration(s) for s in (250, 3900, 42, None)] == ["4 min 10 s", "1 h 5 min", "42 s", "—"]
    assert [progress.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd"]
    queued = progress.run_progress(run, pace(0), {"status": "queued"}, CFG)
    assert queued.phase_text == "queued: waiting to start" and queued.queue_text is None  # holds no ticket


# --- Monitor -----------------------------------------------------------------------------------
def open_monitor(run_id):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.session_state["monitor_run"] = run_id
    at.run()
    at.switch_page("views/2_Monitor.py").run()
    assert not at.exception, at.exception
    return at


def live_run(home, name="live", steps=3):
    run = Run.create(home, RunConfig(name=name).with_overrides({"train.max_steps": steps,
                                                                "eval.evaluators": ["domain_ppl", "ifeval"]}))
    w = MetricWriter(run.metrics_path)
    w.close()
    run.write_status("running", pid=os.getpid(), started=time.time(), attempt=1, max_steps=steps, step=0)
    return run


def test_monitor_shows_the_evaluation_running_now_with_its_own_bar(tmp_path):
    home = Path(os.environ["CPT_HOME"])
    run = live_run(home)
    now = time.time()
    supervise.write_eval_status(run, {"phase": "baseline", "step": 0, "evaluator": "ifeval", "index": 2,
                                      "count": 2, "evaluators": ["domain_ppl", "ifeval"], "done": 12, "total": 25,
                                      "started": now - 40, "evaluator_started": now - 30, "updated": now,
                                      "attempt": 1}, {"domain_ppl": 10.0})
    at = open_monitor(run.id)
    bars = [(b.proto.value, b.proto.text) for b in at.get("progress")]
    assert (48, "evaluating ifeval 12/25 (step 0 baseline)") in bars  # 12/25 = 48 %
    eta = next(m for m in at.metric if m.label == "ETA")
    assert eta.value.startswith("> ") and "of evaluation" in eta.proto.help
    supervise.write_eval_status(run, None)
    at.run()
    assert not [b for b in at.get("progress") if "evaluating" in b.proto.text]


def test_monitor_shows_a_queued_runs_place_in_line(tmp_path):
    from cptcore.runs import queue

    home = Path(os.environ["CPT_HOME"])
    holder = live_run(home, "holder", steps=50)
    holder.write_status("running", step=12)
    queue._write_holder(home / ".queue" / "cpu", holder)
    first, second = (Run.create(home, RunConfig(name=n)) for n in ("first", "second"))
    tickets = [queue.take_ticket(r, r.config()) for r in (first, second)]
    try:
        at = open_monitor(second.id)
        shown = "\n".join(str(e.value) for e in at.markdown)
        assert (f"queued: 2nd in line (after {first.id}), waiting for {holder.id} (running, step 12/50)"
                in shown)
    finally:
        for fh, _ in tickets:
            fh.close()
