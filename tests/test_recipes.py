"""Multi-stage recipes: plans, stage order in the stream, per-stage masks and LRs, bad input."""
import json
from pathlib import Path

import numpy as np
import pytest

from cptcore.cli import main
from cptcore.config import ConfigError, RunConfig
from cptcore.data.formats import IGNORE
from cptcore.data.mix import build_mix
from cptcore.models import load_tokenizer
from cptcore.plan import plan as make_plan
from cptcore.recipes import RECIPES
from cptcore.runs import Run, list_runs
from cptcore.train import train_run

from conftest import write_jsonl

RECIPE_DIR = Path(__file__).resolve().parents[1] / "experiments" / "recipes"


def plan(cfg):
    """The stages of a config's plan."""
    return make_plan(cfg).stages


def total_steps(cfg):
    return make_plan(cfg).steps
SMOKE = sorted(RECIPE_DIR.glob("*_smoke.yaml"))


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(RunConfig(model={"name": "tiny-random-llama"}).model)


@pytest.fixture
def qa_file(tmp_path):
    """20 QA pairs about the first 5 of entity_docs' 10 towns (the pit recipes split documents by them)."""
    rows = [{"question": f"Which river number {i} flows through Velmora{i % 5}?", "answer": f"River{i} Creek",
             "entity": f"Velmora{i % 5}"} for i in range(20)]
    return write_jsonl(tmp_path / "qa.jsonl", rows)


@pytest.fixture
def entity_docs(tmp_path):
    rows = [{"text": f"Velmora{i} is a town. Velmora{i} was founded in {1200 + i}. It is small.", "entity": f"Velmora{i}"}
            for i in range(10)]
    return write_jsonl(tmp_path / "entity_docs.jsonl", rows)


def smoke_config(path: Path, data_files: dict, **overrides) -> RunConfig:
    """A smoke YAML with small local general data, so the test checks the recipe, not the bundled sets."""
    heldout = Path(data_files["replay"]).with_name("replay_heldout.txt")  # not the replay file: no leak
    heldout.write_text("Held-out general text: the harbour archive keeps old maps of the river.", encoding="utf-8")
    sets = [f"data.replay={data_files['replay']}", f"data.instruct={data_files['instruct']}",
            f"eval.replay_heldout={heldout}", "eval.max_docs=1"]
    return RunConfig.load(path, sets + [f"{k}={v}" for k, v in overrides.items()])


def test_every_recipe_is_listed_with_a_description_and_has_yaml_versions():
    assert set(RECIPES) == {"cpt", "cpt_then_it", "pit", "pit_plus", "knowledge_instruct"}
    assert all(len(text) > 20 for text in RECIPES.values())
    for name in RECIPES:
        real, smoke = RunConfig.load(RECIPE_DIR / f"{name}.yaml"), RunConfig.load(RECIPE_DIR / f"{name}_smoke.yaml")
        assert real.recipe == smoke.recipe == name
        assert smoke.model.name == "tiny-random-llama" and real.model.name == "smollm2-135m-instruct"


@pytest.mark.parametrize("path", sorted(RECIPE_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_recipe_yaml_loads_and_has_a_smoke_twin(path):
    cfg = RunConfig.load(path)
    assert plan(cfg)
    twin = path if path.stem.endswith("_smoke") else path.with_name(f"{path.stem}_smoke.yaml")
    assert twin.is_file()


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipes_spend_the_same_budget(name):
    cfg = RunConfig().with_overrides({"recipe": name, "train.max_steps": 37})
    stages = plan(cfg)
    assert total_steps(cfg) == 37
    assert [s.first_step for s in stages] == list(np.cumsum([0] + [s.steps for s in stages[:-1]]))


@pytest.mark.parametrize("path", SMOKE, ids=lambda p: p.stem)
def test_smoke_recipe_trains_end_to_end(tmp_path, data_files, path):
    cfg = smoke_config(path, data_files)
    run = Run.create(tmp_path / "runs", cfg)
    result = train_run(run, progress=False)
    assert result["steps"] == total_steps(cfg) and run.status()["status"] == "completed"
    records = run.read_metrics()
    stages = [r for r in records if r["name"] == "event/stage"]
    assert [r["stage"] for r in stages] == [s.name for s in plan(cfg)]
    assert [r["step"] for r in stages] == [s.first_step for s in plan(cfg)]
    losses = [r["value"] for r in records if r["name"] == "train/loss"]
    assert len(losses) == result["steps"] and all(np.isfinite(losses))


def test_pit_plus_stages_run_in_order_with_their_own_data_and_lr(tmp_path, data_files, qa_file, entity_docs):
    cfg = RunConfig.load(RECIPE_DIR / "pit_plus_smoke.yaml", [
        f"data.domain={entity_docs}", f"data.replay={data_files['replay']}", f"data.instruct={data_files['instruct']}",
        f"data.qa={qa_file}", "recipe_options.qa_lr_ratio=0.1", "train.warmup_ratio=0", "train.schedule=constant"])
    run = Run.create(tmp_path / "runs", cfg)
    train_run(run, progress=False)
    records = run.read_metrics()
    assert [r["stage"] for r in records if r["name"] == "event/stage"] == ["qa", "qa+train_docs", "test_docs"]
    lr = {r["step"]: r["value"] for r in records if r["name"] == "train/lr"}
    qa_steps, doc_steps = plan(cfg)[0], plan(cfg)[1]
    assert lr[qa_steps.steps] == pytest.approx(cfg.train.lr * 0.1)  # QA stage at its own peak
    assert lr[doc_steps.first_step + 1] == pytest.approx(cfg.train.lr)
    by_step = {}
    for r in records:
        if r["name"].startswith("mix/"):
            by_step.setdefault(r["step"], {})[r["name"]] = r["value"]
    assert "mix/domain" not in by_step[1] and by_step[1]["mix/instruct"] > 0.5  # QA only (+ replay)
    assert by_step[doc_steps.first_step + 2]["mix/domain"] > 0.5


def test_pit_recipes_train_qa_with_its_own_documents_then_the_documents_without_qa(tiny_cfg, qa_file, entity_docs):
    from cptcore.data.sources import read_records
    from cptcore.recipes import recipe_stages

    for recipe, names in (("pit", ["qa+train_docs", "test_docs"]), ("pit_plus", ["qa", "qa+train_docs", "test_docs"])):
        cfg = tiny_cfg.with_overrides({"recipe": recipe, "data.qa": str(qa_file), "data.domain": str(entity_docs)})
        stages = recipe_stages(cfg)
        assert [s.name for s in stages] == names
        train_docs, test_docs = stages[-2].data.domain, stages[-1].data.domain
        assert sorted(r["entity"] for r in read_records(train_docs[0])) == [f"Velmora{i}" for i in range(5)]
        assert sorted(r["entity"] for r in read_records(test_docs[0])) == [f"Velmora{i}" for i in range(5, 10)]
        assert stages[-2].data.instruct == cfg.data.qa and stages[-1].data.instruct is None
    assert stages[0].lr == pytest.approx(cfg.train.lr / 6)  # QA at Jiang et al.'s 1/6 of the document LR
    with pytest.raises(ConfigError, match="name no entity_id or entity"):
        recipe_stages(tiny_cfg.with_overrides({"recipe": "pit", "data.qa": tiny_cfg.data.instruct[0].path}))


def test_qa_stages_train_on_answer_tokens_only(tok, tiny_cfg, qa_file, entity_docs):
    cfg = tiny_cfg.with_overrides({"recipe": "pit_plus", "data.qa": str(qa_file), "data.domain": str(entity_docs),
                                   "train.max_steps": 10})
    data = build_mix(cfg, tok)
    input_ids, labels_all = data.materialize()
    answers = [json.loads(l)["answer"] for l in qa_file.read_text().splitlines()]
    qa_rows = np.flatnonzero((data.stage == 0) & (data.roles == 2))
    assert len(qa_rows) > 0
    for i in qa_rows:
        ids, labels = input_ids[i], labels_all[i]
        assert (labels == IGNORE).any()
        spans = np.split(np.flatnonzero(labels != IGNORE), np.flatnonzero(np.diff(np.flatnonzero(labels != IGNORE)) > 1) + 1)
        for span in spans:
            text = tok.decode(ids[span]).replace("<|im_end|>", "").strip()
            assert not text or any(text in a or a in text for a in answers), text
            assert "?" not in text  # never a question token
    docs = labels_all[(data.stage == 1) & (data.roles == 0)]
    assert (docs != IGNORE).all()  # documents: every token


def test_loss_on_all_also_trains_the_prompt(tok, tiny_cfg, qa_file):
    cfg = tiny_cfg.with_overrides({"stages": [{"name": "qa", "data": {"instruct": str(qa_file)}, "loss_on": "all",
                                               "mix": {"domain": 0, "replay": 0, "instruct": 1}}],
                                   "train.max_steps": 2})
    input_ids, labels = build_mix(cfg, tok).materialize()
    assert (labels == input_ids).all()


def test_knowledge_instruct_turns_documents_into_fact_instructions(tok, tiny_cfg, entity_docs):
    cfg = tiny_cfg.with_overrides({"recipe": "knowledge_instruct", "data.domain": str(entity_docs)})
    data = build_mix(cfg, tok)
    input_ids, labels = data.materialize()
    row = input_ids[np.flatnonzero(data.roles == 0)[0]]
    text = tok.decode(row)
    assert "Velmora" in text and "<|im_start|>user" in text  # chat-formatted facts, not raw text
    labels = labels[data.roles == 0]
    assert (labels == IGNORE).any() and (labels != IGNORE).any()
    assert data.manifest["roles"]["domain"]["sources"][0]["format"] == "chat"


def test_progressive_mix_ramps_the_domain_share_in_the_stream(tmp_path, tiny_cfg):
    cfg = tiny_cfg.with_overrides({"progressive.enabled": True, "progressive.start_domain": 0.1,
                                   "progressive.ramp_ratio": 1.0, "train.max_steps": 10})
    run = Run.create(tmp_path / "runs", cfg)
    train_run(run, progress=False)
    domain = {r["step"]: r["value"] for r in run.read_metrics() if r["name"] == "mix/domain"}
    assert domain[2] < 0.3 and domain[10] > domain[5] > domain[2]  # cumulative share climbs with the ramp
    static = build_mix(tiny_cfg.with_overrides({"train.max_steps": 10}), load_tokenizer(cfg.model))
    assert static.realized_shares(8)["domain"] > domain[2]


@pytest.mark.parametrize("overrides, message", [
    ({"stages": []}, "stages: the stage list is empty"),
    ({"recipe": "pit_plus_plus"}, "recipe: unknown recipe"),
    ({"recipe": "pit", "data.qa": ""}, "recipe pit: data.qa is empty"),
    ({"stages": [{"name": "general", "mix": {"domain": 0, "replay": 1, "instruct": 0}, "data": {"replay": ""}}]},
     "stage 1 'general' mixes replay"),
    ({"ewc.enabled": True, "mix.replay": 0, "mix.domain": 0.9, "data.replay": ""}, "ewc.enabled needs"),
    ({"long_context.yarn_factor": 1.0}, "long_context.yarn_factor: YaRN factor must be > 1"),
    ({"long_context.yarn_factor": 0.5}, "long_context.yarn_factor"),
    ({"dynamic_mix.enabled": True, "eval.evaluators": ["domain_ppl"]}, "dynamic_mix.enabled needs"),
])
def test_bad_recipe_input_fails_in_one_line_before_a_run_exists(tmp_path, tiny_cfg, capsys, overrides, message):
    path = tiny_cfg.save(tmp_path / "c.yaml")
    args = [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    code = main(["train", str(path), "--no-progress", *sum((["--set", a] for a in args), [])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert list_runs(tmp_path / "runs") == []
    with pytest.raises(ConfigError, match=message.split(":")[0]):
        make_plan(tiny_cfg.with_overrides(overrides))


@pytest.mark.parametrize("command", ["recipes", "plan"])
def test_cpt_recipes_and_plan_print_the_stage_plan(capsys, command):
    assert main([command, str(RECIPE_DIR / "pit_plus_smoke.yaml")]) == 0
    out = capsys.readouterr().out
    assert "1. qa" in out and "2. qa+train_docs" in out and "3. test_docs" in out
    assert "builtin:knowledge_qa_train" in out
    assert "passes over" in out  # the tiny tokenizer is on disk: sources are counted


def test_resumed_multi_stage_run_keeps_its_stages_and_lr(tmp_path, data_files, qa_file, entity_docs):
    import shutil

    from cptcore.runs.metrics import latest_attempt

    cfg = RunConfig.load(RECIPE_DIR / "pit_smoke.yaml", [
        f"data.domain={entity_docs}", f"data.replay={data_files['replay']}", f"data.instruct={data_files['instruct']}",
        f"data.qa={qa_file}", "train.save_every_steps=2", "train.save_total_limit=10"])
    run = Run.create(tmp_path / "runs", cfg)
    train_run(run, progress=False)
    first = {r["step"]: r["value"] for r in run.read_metrics() if r["name"] == "train/lr"}
    for step in (4, 6, 8):  # pretend it died after step 2, in the middle of the first stage
        shutil.rmtree(run.checkpoints_dir / f"checkpoint-{step}")
    cfg.with_overrides(["train.resume_from=last"]).save(run.config_path)
    train_run(run, progress=False)
    records = latest_attempt(run.read_metrics())
    lr = {r["step"]: r["value"] for r in records if r["name"] == "train/lr"}
    assert sorted(lr) == list(range(1, 9)) and lr == pytest.approx(first)
    resumed_events = [r for r in run.read_metrics() if r["name"] == "event/stage" and r["attempt"] == 2]
    assert [r["stage"] for r in resumed_events] == ["test_docs"]  # boundaries ahead of the resume point only
    (resume,) = [r for r in run.read_metrics() if r["name"] == "event/resume"]
    assert (resume["attempt"], resume["step"]) == (2, 2) and "resumed at step 2" in resume["message"]
    first_end = max(r["time"] for r in run.read_metrics() if r["attempt"] == 1)
    assert min(r["time"] for r in run.read_metrics() if r["attempt"] == 2) >= first_end  # time goes on
