"""The plan: one description of what a run trains, equal to what the run then packs and trains."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cptcore.cli import main
from cptcore.config import ConfigError, RunConfig
from cptcore.plan import counter_for, plan
from cptcore.runs import list_runs

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / "experiments").glob("*.yaml")) + sorted((ROOT / "experiments" / "recipes").glob("*.yaml"))
# the same file on the tiny model, a few steps and no evaluation: the plan is about data, not the model
FAST = ["model.name=tiny-random-llama", "train.max_steps=7", "eval.evaluators=[replay_ppl]", "eval.max_docs=1",
        "eval.every_steps=100", "train.save_every_steps=null",
        "ewc.fisher_sequences=2"]


def sets(*items):
    return [a for item in items for a in ("--set", item)]


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: str(p.relative_to(ROOT / "experiments")))
def test_cpt_plan_equals_the_manifest_of_the_run_cpt_train_makes(preset, capsys, tmp_path):
    extra = ["data.seq_len=512"] if "long_context" in preset.name else []  # 4,096 tokens x 8 is slow on a CPU
    assert main(["plan", str(preset), "--json", *sets(*FAST, *extra)]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert main(["train", str(preset), "--no-progress", *sets(*FAST, *extra)]) == 0
    (run,) = list_runs()
    man = json.loads(run.manifest_path.read_text())
    assert planned["steps"] == run.status()["step"] == man["plan"]["steps"]
    assert set(planned["roles"]) == set(man["roles"])
    for role, p in planned["roles"].items():
        m = man["roles"][role]
        assert (p["sequences"], p["tokens"]) == (m["sequences"], m["tokens_trained"]), role
        assert p["available"] == m["tokens_available"] and p["passes"] == m["passes"], role
        if m["loss_tokens_trained"] is not None:  # the plan's loss share is the sources' average
            assert abs(p["loss_tokens"] - m["loss_tokens_trained"]) <= max(0.05 * p["tokens"], planned["seq_len"])
    for ps, ms in zip(planned["stages"], man["stages"]):
        assert {r: b["tokens"] for r, b in ps["roles"].items()} == \
            {r: b["tokens_trained"] for r, b in ms["roles"].items()}
        assert {r: b["available"] for r, b in ps["roles"].items()} == \
            {r: b["tokens_available"] for r, b in ms["roles"].items()}


def test_stages_tile_the_run_and_their_roles_add_up():
    cfg = RunConfig.load(ROOT / "experiments" / "recipes" / "pit_plus.yaml")
    p = plan(cfg)
    assert len(p.stages) == 3
    assert [s.first_step for s in p.stages] == [sum(x.steps for x in p.stages[:i]) for i in range(len(p.stages))]
    assert p.steps == cfg.train.max_steps and p.sequences == p.steps * p.seqs_per_step
    for s in p.stages:
        assert sum(b.sequences for b in s.roles.values()) == s.sequences
        for role, b in s.roles.items():
            assert abs(b.sequences - s.shares[role] * s.sequences) <= 1  # the deficit scheduler's promise
    qa = p.stages[0]
    assert qa.roles["instruct"].sequences > 0.8 * qa.sequences  # a QA stage trains QA, not the run-level 5 %


def test_processes_multiply_the_tokens_per_step():
    cfg = RunConfig().with_overrides({"launch.launcher": "torchrun", "launch.nproc": 4, "train.max_steps": 10})
    assert plan(cfg).tokens == 4 * plan(cfg.with_overrides({"launch.launcher": "local"})).tokens


def test_chat_roles_count_fewer_loss_tokens_than_input_tokens():
    cfg = RunConfig().with_overrides({"model.name": "tiny-random-llama", "train.max_steps": 20})
    roles = plan(cfg, count=counter_for(cfg)).roles
    n = cfg.data.seq_len
    assert roles["domain"].loss_tokens == pytest.approx(roles["domain"].tokens * (n - 1) / n, rel=1e-3)  # raw text
    assert roles["instruct"].loss_tokens < 0.95 * roles["instruct"].tokens  # prompts carry no loss


def test_a_plan_error_names_the_stage_and_what_to_set():
    cfg = RunConfig().with_overrides({"recipe": "cpt_then_it", "data.qa": ""})
    with pytest.raises(ConfigError, match=r"stage 2 'qa' mixes instruct .* \(set data.qa\)"):
        plan(cfg)
    with pytest.raises(ConfigError, match="raise train.max_steps"):
        plan(RunConfig().with_overrides({"recipe": "pit", "train.max_steps": 1}))


def test_cpt_plan_loads_no_model_and_no_torch():
    from cptcore.models import DEFAULT_MODEL, resolve_model

    resolve_model(DEFAULT_MODEL)  # the tokenizer on disk (fetched once): what counting reads, without torch
    code = ("import sys; from cptcore.cli import main; "
            "rc = main(['plan', 'experiments/recipes/pit_plus.yaml']); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'transformers' not in sys.modules, 'transformers imported'")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2. qa+train_docs" in out.stdout and "3. test_docs" in out.stdout and "passes over" in out.stdout


def test_a_loss_token_plan_is_what_the_run_packs_stage_by_stage(capsys):
    preset = ROOT / "experiments" / "recipes" / "pit_plus.yaml"
    extra = sets(*FAST, "mix.unit=loss_tokens")
    assert main(["plan", str(preset), "--json", *extra]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert main(["train", str(preset), "--no-progress", *extra]) == 0
    man = json.loads(list_runs()[0].manifest_path.read_text())
    for ps, ms in zip(planned["stages"], man["stages"]):  # the trainer counts the sources the same way
        assert ps["unit"] == "loss_tokens" and ps["loss_shares"] == man["plan"]["stages"][ps["index"]]["loss_shares"]
        assert {r: b["tokens"] for r, b in ps["roles"].items()} == \
            {r: b["tokens_trained"] for r, b in ms["roles"].items()}
    qa_docs = planned["stages"][1]
    assert qa_docs["shares"]["instruct"] > 2 * qa_docs["loss_shares"]["instruct"]  # QA answers: a few % of its tokens
    assert set(planned["requested_loss"]) == set(man["realized_loss"])


def test_a_sequence_longer_than_the_models_context_is_refused_unless_yarn_extends_it():
    cfg = RunConfig().with_overrides({"model.name": "tiny-random-llama", "data.seq_len": 100000})
    with pytest.raises(ConfigError, match=r"data.seq_len=100,000 exceeds the context of tiny-random-llama \(2,048"):
        plan(cfg)
    with pytest.raises(ConfigError, match="yarn_factor=4 = 8,192"):
        plan(cfg.with_overrides({"long_context.yarn_factor": 4}))
    assert plan(cfg.with_overrides({"data.seq_len": 8192, "long_context.yarn_factor": 4})).seq_len == 8192
