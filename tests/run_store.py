"""Test fixtures for the dashboard: run directories written through the real Run/MetricWriter code paths.

Values follow simple formulas of the step so tests can assert exact numbers; they are fixtures, never shown
to a user.
"""
from __future__ import annotations

import json
from pathlib import Path

from cptcore.config import RunConfig
from cptcore.runs import Run
from cptcore.runs.metrics import MetricWriter

IF_IDS = ["punctuation:no_comma", "detectable_format:title", "change_case:english_lowercase"]


def fixture_config(name: str = "fixture", replay: float = 0.1, lr: float = 3e-5, steps: int = 20,
                   evaluators=("domain_ppl", "replay_ppl", "ifeval", "knowledge_qa")) -> RunConfig:
    return RunConfig.from_dict({
        "name": name, "model": {"name": "tiny-random-llama", "kind": "instruct"},
        "mix": {"domain": round(0.95 - replay, 4), "replay": replay, "instruct": 0.05},
        "train": {"max_steps": steps, "lr": lr, "batch_size": 2},
        "eval": {"evaluators": list(evaluators), "every_steps": 10},
    })


def write_run(home: Path, name: str = "fixture", replay: float = 0.1, lr: float = 3e-5, steps: int = 20,
              status: str = "completed", domain_drop: float = 0.2, if_drop: float = 4.0, items: bool = True,
              warning: bool = False) -> Run:
    """A finished (or running) run: train/*, mix/* every step; eval/* at steps 0, 10, 20 with n, CIs and units,
    and after step 0 each record's paired change from step 0 (delta, delta_ci_low/high: narrower than the
    value's CI, as pairing makes them; delta_n); per-item ifeval and knowledge_qa rows and scores files;
    optionally an event/warning."""
    cfg = fixture_config(name, replay, lr, steps)
    run = Run.create(home, cfg)
    run.write_status("running", pid=None, attempt=1, max_steps=steps)
    w = MetricWriter(run.metrics_path, attempt=1, start_time=0.0)
    tokens_per_step = 2 * 256
    for step in range(0, steps + 1):
        tok = step * tokens_per_step
        if step % 10 == 0:
            frac = step / max(steps, 1)

            def ev(name, value, base, half, n, lo, hi, unit, **extra):
                paired = {} if step == 0 else {"delta": value - base, "delta_ci_low": value - base - half,
                                               "delta_ci_high": value - base + half, "delta_n": n}
                w.write(name, value, step, tok, n=n, ci_low=lo, ci_high=hi, unit=unit, **paired, **extra)

            dppl = 50.0 * (1 - domain_drop * frac)
            ev("eval/domain_ppl", dppl, 50.0, 0.5, 32, dppl * 0.95, dppl * 1.05, "ppl")
            rppl = 30.0 * (1 + 0.05 * frac)
            ev("eval/replay_ppl", rppl, 30.0, 0.3, 32, 28.0, 33.0, "ppl")
            kl = 0.04 * frac
            ev("eval/general_kl", kl, 0.0, 0.005, 32, max(0.0, kl - 0.01), kl + 0.01, "nats/token")
            ifs = 40.0 - if_drop * frac
            ev("eval/if_prompt_strict", ifs, 40.0, 3.0, 25, ifs - 18, ifs + 18, "%")
            em = 10.0 + 10.0 * frac  # % like IFEval
            ev("eval/qa_em", em, 10.0, 4.0, 32, 2.0, 30.0, "%")
            mc = 25.0 + 30.0 * frac
            ev("eval/qa_mc_acc", mc, 25.0, 8.0, 32, mc - 10, mc + 10, "%", chance=20.0, choices=5)
            if items:
                _write_items(run, step, passed_upto=2 if step == 0 else (1 if if_drop > 0 else 3))
        if step == 0:
            continue
        w.write("train/loss", 3.0 - step * 0.05, step, tok)
        for i, role in enumerate(("domain", "replay", "instruct")):
            w.write(f"train/loss/{role}", 3.0 - step * 0.05 + 0.1 * i, step, tok)
        w.write("train/lr", lr, step, tok)
        w.write("mix/domain", cfg.mix.domain, step, tok)
        w.write("mix/replay", cfg.mix.replay, step, tok)
        w.write("mix/instruct", cfg.mix.instruct, step, tok)
    if warning:
        w.event("event/warning", "IF prompt-level strict fell 4.0 points below step 0 (threshold 2.0)",
                steps, steps * tokens_per_step, metric="eval/if_prompt_strict", delta=-if_drop,
                delta_ci_low=-if_drop - 3.0, delta_ci_high=-if_drop + 3.0)
    w.close()
    if status == "running":
        run.write_status("running", step=steps)
    else:
        run.write_status(status, step=steps)
    return run


def make_run(home, name="r", status="completed", steps=3, **changes) -> Run:
    """A small finished run: train/loss = 5 - step at steps 1..steps (tokens 100 per step)."""
    run = Run.create(home, RunConfig(name=name).with_overrides({"train.max_steps": steps, **changes}))
    w = MetricWriter(run.metrics_path)
    for s in range(1, steps + 1):
        w.write("train/loss", 5.0 - s, s, s * 100)
    w.close()
    run.write_status(status, step=steps, max_steps=steps)
    return run


def write_scores(run: Run, evaluator: str, step: int, scores: dict) -> Path:
    """eval/<evaluator>-step{step:06d}.scores.json as the evaluators write it; scores: {metric: Score}."""
    from cptcore.evaluate.suite import scores_path, write_scores as write

    return write(scores_path(run.dir / "eval", evaluator, step), list(scores.values()))


def _write_items(run: Run, step: int, passed_upto: int) -> None:
    """Four IFEval prompts (the first `passed_upto` followed) and two QA items, in the evaluators' fields,
    with their per-item scores files."""
    from cptcore.evaluate.stats import proportion

    folder = run.dir / "eval"
    folder.mkdir(exist_ok=True)
    rows = []
    for i in range(4):
        ok = i < passed_upto
        rows.append({"id": i, "prompt": f"Prompt {i}: answer without commas.", "response": f"reply {i} step {step}",
                     "kwargs": [{}], "instruction_id_list": [IF_IDS[i % 3]], "strict": [ok], "loose": [ok],
                     "prompt_strict": ok, "prompt_loose": ok})
    (folder / f"ifeval-step{step:06d}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    qa = [{"id": 0, "question": "Where was Zorvex founded?", "gold": "Lumen Bay", "response": "Lumen Bay.",
           "prediction": "Lumen Bay.", "em": True, "f1": 1.0, "answer_logprob": -1.5},
          {"id": 1, "question": "Who founded Quillon?", "gold": "Ada Marr", "response": "Bob",
           "prediction": "Bob", "em": False, "f1": 0.0, "answer_logprob": -4.0}]
    (folder / f"knowledge_qa-step{step:06d}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in qa))
    write_scores(run, "ifeval", step, {"s": proportion("eval/if_prompt_strict", [r["prompt_strict"] for r in rows],
                                                       scale=100, ids=[r["id"] for r in rows])})
    write_scores(run, "knowledge_qa", step, {"s": proportion("eval/qa_em", [r["em"] for r in qa], scale=100,
                                                             ids=[r["id"] for r in qa])})


def fake_checkpoint(folder: Path, step: int) -> Path:
    """A complete-looking HF checkpoint folder (safetensors weights, zip-format .pt files, trainer_state.json)."""
    import os
    import zipfile

    import numpy as np
    from safetensors.numpy import save_file

    ck = folder / f"checkpoint-{step}"
    ck.mkdir(parents=True)
    save_file({"w": np.ones((64, 64), dtype=np.float32)}, str(ck / "model.safetensors"))
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        with zipfile.ZipFile(ck / name, "w") as z:
            z.writestr("data.pkl", os.urandom(4096))
    (ck / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return ck


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file as a machine dying mid-write would."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# --- a pilot group whose evaluations follow known laws ------------------------------------------
def pilot_truth(share: float, frac: float) -> dict:
    """The fixture's true changes from step 0 at a replay share and fraction of the run, in each metric's
    law unit (mixlaw.law_value): knowledge grows with the domain share, KL and replay loss with less replay;
    IFEval is pure noise (items flip at random, whatever the share)."""
    domain = 0.95 - share
    return {"eval/qa_mc_acc": 40.0 * domain * frac ** 0.8,  # points
            "eval/domain_ppl": 0.8 * domain * frac ** 0.8,  # loss drop, nats/token
            "eval/general_kl": -0.12 * (1 - share) ** 2 * frac,  # minus the KL, nats/token
            "eval/replay_ppl": -0.3 * (1 - share) ** 2 * frac}


def write_pilot_group(home: Path, shares=(0.0, 0.1, 0.2, 0.4, 0.6), steps: int = 20, group: str = "pilot-fixture",
                      n_items: int = 60, seed: int = 0) -> list[Run]:
    """A completed pilot group (groups/<group>/group.json) over mix.replay: each run evaluated at steps 0, 10
    and 20 with per-item scores files and paired records, the items following pilot_truth plus per-item noise.
    Every run shares its step-0 items, as a reused baseline gives."""
    import numpy as np

    from cptcore.evaluate.stats import Score, paired_change, ratio_score
    from cptcore.runs.groups import write_group

    rng = np.random.default_rng(seed)
    base_loss = rng.uniform(2.0, 4.0, n_items)  # per-document loss at step 0 (nats/token)
    base_replay = rng.uniform(2.5, 3.5, n_items)
    mc_ease = rng.uniform(0, 1, n_items)  # a question is answered once its ease is below the accuracy
    if_pass0 = rng.uniform(0, 1, n_items) < 0.4
    evaluators = ("domain_ppl", "replay_ppl", "knowledge_mc", "general_kl", "ifeval")
    base = fixture_config("pilot", 0.1, 1e-4, steps, evaluators)
    runs = []
    for share in shares:
        cfg = fixture_config(f"pilot-replay{share:g}", share, 1e-4, steps, evaluators)
        run = Run.create(home, cfg)
        run.write_status("running", pid=None, attempt=1, max_steps=steps)
        w = MetricWriter(run.metrics_path, attempt=1, start_time=0.0)
        first: dict = {}
        for step in (0, steps // 2, steps):
            frac = step / steps
            truth = pilot_truth(share, frac)
            noise = lambda sd: rng.normal(0, sd, n_items) * (frac > 0)  # noqa: E731 - step 0 is the baseline
            ids = list(range(n_items))
            scores = {
                "eval/domain_ppl": ratio_score("eval/domain_ppl", list(zip(
                    100 * (base_loss - truth["eval/domain_ppl"] + noise(0.05)), [100.0] * n_items)), "exp", ids=ids),
                "eval/replay_ppl": ratio_score("eval/replay_ppl", list(zip(
                    100 * (base_replay - truth["eval/replay_ppl"] + noise(0.03)), [100.0] * n_items)), "exp",
                    ids=ids),
                "eval/general_kl": ratio_score("eval/general_kl", [(max(0.0, v), 1.0) for v in
                                               -truth["eval/general_kl"] + noise(0.01)], "mean", ids=ids),
                "eval/qa_mc_acc": ratio_score("eval/qa_mc_acc", [(float(e < 0.25 + truth["eval/qa_mc_acc"] / 100),
                                                                   1.0) for e in mc_ease], "percent", ids=ids),
                "eval/if_prompt_strict": ratio_score("eval/if_prompt_strict", [
                    (float(p if frac == 0 else rng.uniform() < 0.4), 1.0) for p in if_pass0], "percent", ids=ids),
            }
            for name, sc in scores.items():
                if step == 0:
                    first[name] = sc
                unit = {"exp": "ppl", "percent": "%"}.get(sc.kind, "nats/token")
                paired = {} if step == 0 else paired_change(sc.items, first[name].items, sc.kind)
                w.write(name, sc.value, step, step * 512, n=sc.n, ci_low=sc.ci_low, ci_high=sc.ci_high, unit=unit,
                        **paired)
            by_evaluator = {"domain_ppl": ["eval/domain_ppl"], "replay_ppl": ["eval/replay_ppl"],
                            "general_kl": ["eval/general_kl"], "knowledge_mc": ["eval/qa_mc_acc"],
                            "ifeval": ["eval/if_prompt_strict"]}
            for evaluator, names in by_evaluator.items():
                write_scores(run, evaluator, step, {n: scores[n] for n in names})
            if step:
                w.write("train/loss", 3.0 - frac, step, step * 512)
        w.close()
        run.write_status("completed", step=steps)
        run.set_meta(group=group)
        runs.append(run)
    write_group(group, home, kind="pilot", role="replay", shares=list(shares), grid={"mix.replay": list(shares)},
                config=base.to_dict(), runs=[r.id for r in runs])
    assert Score  # the fixture writes Scores through ratio_score
    return runs
