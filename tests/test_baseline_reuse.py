"""Step-0 baseline reuse: a second run of the same starting model copies the first run's step-0 evaluation."""
import copy
import json
from types import SimpleNamespace

import pytest

from cptcore.config import ModelConfig, RunConfig
from cptcore.evaluate.baseline import cache_root
from cptcore.evaluate.callback import EvalCallback
from cptcore.models import load_model
from cptcore.runs import Run
from cptcore.runs.metrics import MetricWriter

EVALUATORS = ["domain_ppl", "replay_ppl", "knowledge_mc", "general_kl", "knowledge_qa", "ifeval", "coherence"]
SMALL = {"eval.max_docs": 4, "eval.qa_limit": 4, "eval.ifeval_limit": 2, "eval.max_new_tokens": 4,
         "eval.qa_max_new_tokens": 4, "eval.every_steps": 2}


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelConfig(name="tiny-random-llama"))


def config(evaluators=EVALUATORS, **overrides) -> RunConfig:
    return RunConfig().with_overrides({"model.name": "tiny-random-llama", "eval.evaluators": evaluators}
                                      | SMALL | overrides)


def make_callback(home, tiny, cfg=None, **overrides):
    cfg = cfg or config(**overrides)
    run = Run.create(home, cfg)
    return EvalCallback(cfg, run, MetricWriter(run.metrics_path), tiny[1], tokens_per_step=100), run


def step0(cb, model) -> None:
    cb.on_train_begin(None, SimpleNamespace(global_step=0, is_world_process_zero=True),
                      SimpleNamespace(should_training_stop=False), model=model)


def not_evaluated(cb) -> list:
    """Make the suite fail loudly if it is asked to evaluate; the list collects the evaluators asked."""
    asked = []

    def run(name, *args, **kwargs):
        asked.append(name)
        raise AssertionError(f"{name} was evaluated")
    cb.suite.run = run
    return asked


def evals(run, drop=("time",)) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in drop} for r in run.read_metrics() if r["name"].startswith("eval/")]


def events(run, name) -> list[dict]:
    return [r for r in run.read_metrics() if r["name"] == name]


def files(run) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run.dir / "eval").iterdir())}


def test_second_run_reuses_the_step0_baseline_without_evaluating(tmp_path, tiny):
    home = tmp_path / "runs"
    first, run_a = make_callback(home, tiny)
    step0(first, tiny[0])
    second, run_b = make_callback(home, tiny)
    asked = not_evaluated(second)
    step0(second, tiny[0])
    assert asked == [] and events(run_b, "event/eval_error") == []
    # the same records as a fresh evaluation (paired changes later work), plus where they came from
    assert evals(run_b, ("time", "baseline_reused_from")) == evals(run_a)
    assert {r["baseline_reused_from"] for r in evals(run_b)} == {run_a.id}
    assert files(run_b) == files(run_a)  # per-item rows, per-item scores, general_kl's reference
    assert "general_kl_reference.pt" in files(run_b)
    (ev,) = events(run_b, "event/baseline_reused")
    assert ev["reused_from"] == run_a.id and ev["step"] == 0
    assert ev["message"].startswith(f"baseline reused from {run_a.id} (model hash {ev['model_hash'][:12]}, "
                                    f"{len(EVALUATORS)} evaluators")
    assert "eval.reuse_baseline: false" in ev["message"]
    assert events(run_a, "event/baseline_reused") == []
    assert second.baseline == first.baseline  # what later evaluations pair with
    assert not json.loads(run_b.status_path.read_text()).get("eval_seconds")  # no 0-second ETAs


def test_a_reused_baseline_is_exactly_a_fresh_one_and_later_changes_pair_with_it(tmp_path, tiny):
    home = tmp_path / "runs"
    step0(make_callback(home, tiny)[0], tiny[0])
    reused, run_b = make_callback(home, tiny)
    step0(reused, tiny[0])
    fresh, run_c = make_callback(home, tiny, **{"eval.reuse_baseline": False})
    step0(fresh, tiny[0])
    assert events(run_c, "event/baseline_reused") == [] and "baseline_reused_from" not in evals(run_c)[0]
    assert files(run_c) == files(run_b)  # same items, same per-item values, byte for byte
    assert evals(run_c) == evals(run_b, ("time", "baseline_reused_from"))
    for cb, run in ((reused, run_b), (fresh, run_c)):  # step 2 on the same model: paired changes of zero
        cb.evaluate(tiny[0], 2, ["domain_ppl", "general_kl"])
    later = [evals(run, ("time",))[-2:] for run in (run_b, run_c)]
    assert later[0] == later[1] and all(r["delta"] == pytest.approx(0, abs=1e-6) for r in later[0])


def keys(home, tiny, model=None, cfg=None, **overrides) -> dict[str, str]:
    cb, _ = make_callback(home, tiny, cfg, **overrides)
    return {name: cb.cache.key(name, model if model is not None else tiny[0]) for name in EVALUATORS}


@pytest.mark.parametrize("override, changed", [
    ({"eval.max_docs": 3}, {"domain_ppl", "replay_ppl", "general_kl"}),             # other items
    ({"eval.seed": 1}, set(EVALUATORS)),                                             # other samples
    ({"eval.max_new_tokens": 5}, {"ifeval", "coherence"}),                           # generation settings
    ({"eval.qa_max_new_tokens": 5}, {"knowledge_qa"}),
    ({"eval.kl_top_k": 8}, {"general_kl"}),
    ({"eval.batch_size": 2}, set(EVALUATORS)),                                       # other padding
    ({"data.seq_len": 128}, {"domain_ppl", "replay_ppl", "general_kl"}),             # other windows
    ({"model.kind": "base"}, set(EVALUATORS)),                                       # no chat template
    ({"model.dtype": "bfloat16"}, set(EVALUATORS)),
    ({"long_context.yarn_factor": 2.0}, set(EVALUATORS)),
    ({"eval.every_steps": 7, "train.lr": 1e-3, "mix.replay": 0.2, "mix.domain": 0.75}, set()),  # not step 0's
])
def test_the_key_changes_with_what_decides_the_step0_numbers(tmp_path, tiny, override, changed):
    if "model.dtype" in override or "long_context.yarn_factor" in override:  # the model as trained would be
        from cptcore.train import make_model

        model = make_model(config(**override), "cpu")[0]
    else:
        model = tiny[0]
    base = keys(tmp_path / "runs", tiny)
    other = keys(tmp_path / "runs", tiny, model, **override)
    assert None not in base.values() and None not in other.values()
    assert {n for n in EVALUATORS if base[n] != other[n]} == changed


def test_the_key_follows_the_weights_in_the_model_files(tmp_path, tiny, monkeypatch):
    import hashlib

    import torch

    folders = []
    for i, delta in enumerate((0.0, 1e-3)):
        model = copy.deepcopy(tiny[0])
        with torch.no_grad():
            model.model.norm.weight.add_(delta)
        folders.append(tmp_path / f"model{i}")
        model.save_pretrained(folders[-1])
        tiny[1].save_pretrained(folders[-1])
    hashed = []
    real = hashlib.file_digest
    monkeypatch.setattr(hashlib, "file_digest", lambda fh, algo: hashed.append(fh.name) or real(fh, algo))
    home = tmp_path / "runs"
    a = keys(home, tiny, cfg=config(**{"model.name": str(folders[0])}))
    assert len(hashed) >= 2 and (cache_root(home).parent / "file_hashes.json").is_file()  # shared memo
    hashed.clear()
    assert keys(home, tiny, cfg=config(**{"model.name": str(folders[0])})) == a  # same files: same key...
    assert hashed == []  # ... and memoized by (path, size, mtime): a 7B model is hashed once
    b = keys(home, tiny, cfg=config(**{"model.name": str(folders[1])}))
    assert all(a[n] != b[n] for n in EVALUATORS)  # one weight changed by 1e-3: nothing is shared


def test_lora_shares_the_full_models_baseline_because_its_outputs_are_identical(tmp_path, tiny):
    from cptcore.train import make_model

    lora_cfg = config(**{"train.method": "lora"})
    lora = make_model(lora_cfg, "cpu")[0]
    assert type(lora).__name__.startswith("Peft")
    home = tmp_path / "runs"
    assert keys(home, tiny, lora, cfg=lora_cfg) == keys(home, tiny)
    full, run_full = make_callback(home, tiny, **{"eval.reuse_baseline": False})  # both fresh
    step0(full, tiny[0])
    wrapped, run_lora = make_callback(home, tiny, lora_cfg.with_overrides({"eval.reuse_baseline": False}))
    step0(wrapped, lora)
    assert files(run_lora) == files(run_full) and evals(run_lora) == evals(run_full)  # adapters start at B = 0


def test_a_corrupt_cache_entry_means_a_fresh_evaluation(tmp_path, tiny):
    home = tmp_path / "runs"
    evaluators = ["domain_ppl", "general_kl"]
    first, run_a = make_callback(home, tiny, evaluators=evaluators)
    step0(first, tiny[0])
    root = cache_root(home)
    entries = {json.loads(p.read_text())["evaluator"]: p for p in root.glob("*.json")}
    assert set(entries) == {"domain_ppl", "general_kl"}
    entries["domain_ppl"].write_text('{"format": 1, "key": "trunc')  # a torn file
    (ref,) = root.glob("*.kl-*.pt")
    ref.write_bytes(ref.read_bytes()[:100])  # a reference that no longer matches its hash
    again, run_b = make_callback(home, tiny, evaluators=evaluators)
    step0(again, tiny[0])
    assert events(run_b, "event/baseline_reused") == [] and events(run_b, "event/eval_error") == []
    assert evals(run_b) == evals(run_a) and files(run_b) == files(run_a)
    third, run_c = make_callback(home, tiny, evaluators=evaluators)  # the fresh run rewrote good entries
    asked = not_evaluated(third)
    step0(third, tiny[0])
    assert asked == [] and {r["baseline_reused_from"] for r in evals(run_c)} == {run_b.id}


def test_only_missing_evaluators_are_evaluated_and_two_writers_of_a_key_leave_a_valid_entry(tmp_path, tiny):
    import threading

    home = tmp_path / "runs"
    writers = [make_callback(home, tiny, evaluators=["replay_ppl"])[0] for _ in range(3)]
    threads = [threading.Thread(target=step0, args=(cb, tiny[0])) for cb in writers]  # the same key at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(list(cache_root(home).glob("*.json"))) == 1 and not list(cache_root(home).glob(".*.tmp"))
    cb, run = make_callback(home, tiny, evaluators=["replay_ppl", "domain_ppl"])
    real, asked = cb.suite.run, []
    cb.suite.run = lambda name, *a, **k: asked.append(name) or real(name, *a, **k)
    step0(cb, tiny[0])
    assert asked == ["domain_ppl"]
    (ev,) = events(run, "event/baseline_reused")
    assert ev["evaluators"] == "replay_ppl" and "1 evaluator: replay_ppl" in ev["message"]
    assert [r["name"] for r in evals(run)] == ["eval/replay_ppl", "eval/domain_ppl"]  # the order of a fresh one


def test_a_training_run_reuses_the_baseline_of_the_previous_one(tiny_cfg, tmp_path):
    import time

    from cptcore.train import train

    heldout = tmp_path / "held.jsonl"
    heldout.write_text("".join(json.dumps({"text": f"Held-out document {i} about the harbour lantern."}) + "\n"
                               for i in range(6)), encoding="utf-8")
    cfg = tiny_cfg.with_overrides({"train.max_steps": 2, "eval.evaluators": ["domain_ppl", "replay_ppl", "general_kl"],
                                   "eval.every_steps": 2, "eval.max_docs": 4, "eval.domain_heldout": str(heldout),
                                   "eval.replay_heldout": str(heldout)})
    seconds = []
    for _ in range(2):
        run = Run.create(tmp_path / "runs", cfg)
        t0 = time.time()
        train(cfg, run, progress=False)
        seconds.append(time.time() - t0)
    step0_recs = [r for r in evals(run) if r["step"] == 0]
    assert step0_recs and all(r.get("baseline_reused_from") for r in step0_recs)
    later = [r for r in evals(run) if r["step"] == 2]
    assert later and all("delta" in r for r in later)  # paired with the reused baseline
    print(f"two identical tiny training runs: {seconds[0]:.2f} s, then {seconds[1]:.2f} s")


def test_monitor_says_the_baseline_was_reused(tmp_path, tiny):
    from test_pages import open_page, texts

    home = tmp_path / "runs"  # CPT_HOME (conftest)
    runs = []
    for _ in range(2):
        cb, run = make_callback(home, tiny, evaluators=["domain_ppl", "replay_ppl"])
        step0(cb, tiny[0])
        run.write_status("completed", max_steps=1)
        runs.append(run)
    at = open_page("views/2_Monitor.py", {"monitor_run": runs[1].id})
    assert f"Step-0 baseline reused from {runs[0].id} for domain_ppl, replay_ppl" in texts(at)
    assert "eval.reuse_baseline: false" in texts(at)
    at = open_page("views/2_Monitor.py", {"monitor_run": runs[0].id})
    assert "baseline reused" not in texts(at)
