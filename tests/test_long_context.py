"""Long context: YaRN rope scaling in both config forms, and training beyond the original window."""
import json

import pytest
import torch

from cptcore.config import RunConfig
from cptcore.models import ModelError, apply_yarn, load_model, rope_settings, with_yarn
from cptcore.runs import Run
from cptcore.train import train_run

from conftest import write_jsonl


def test_rope_settings_read_both_forms():
    v5 = {"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e5,
                              "original_max_position_embeddings": 8192}}
    v4 = {"rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192},
          "rope_theta": 1e5}
    assert rope_settings(v5) == rope_settings(v4) == v5["rope_parameters"]
    assert rope_settings({"rope_theta": 1e4})["rope_type"] == "default"


def test_with_yarn_writes_both_forms_and_the_longer_window():
    cfg = with_yarn({"max_position_embeddings": 2048, "rope_theta": 1e4, "rope_scaling": None}, 4)
    assert cfg["max_position_embeddings"] == 8192
    assert cfg["rope_parameters"] == {"rope_theta": 1e4, "rope_type": "yarn", "factor": 4.0,
                                      "original_max_position_embeddings": 2048}
    assert cfg["rope_scaling"]["type"] == "yarn" and cfg["rope_scaling"]["factor"] == 4.0
    assert "rope_scaling" not in with_yarn({"max_position_embeddings": 2048}, 2)  # v5 files keep one form
    with pytest.raises(ModelError, match="yarn_factor must be > 1"):
        with_yarn({"max_position_embeddings": 2048}, 1.0)


def test_apply_yarn_changes_the_rotary_frequencies():
    model, _ = load_model(RunConfig(model={"name": "tiny-random-llama"}).model)
    before = model.model.rotary_emb.inv_freq.clone()
    apply_yarn(model, 4.0)
    rope = model.model.rotary_emb
    assert rope.rope_type == "yarn" and rope.attention_scaling > 1
    assert not torch.allclose(rope.inv_freq, before) and model.config.max_position_embeddings == 8192


def test_yarn_scaled_model_trains_on_sequences_beyond_its_original_window(tmp_path, tiny_cfg):
    long_docs = write_jsonl(tmp_path / "long.jsonl", [{"text": " ".join(f"word{i % 97}" for i in range(3000))}
                                                      for _ in range(2)])
    window = load_model(RunConfig(model={"name": "tiny-random-llama"}).model)[0].config.max_position_embeddings
    cfg = tiny_cfg.with_overrides({"long_context.yarn_factor": 2.0, "data.seq_len": window + 512,
                                   "data.domain": str(long_docs), "mix.domain": 1.0, "mix.replay": 0,
                                   "mix.instruct": 0, "train.batch_size": 1, "train.max_steps": 2})
    run = Run.create(tmp_path / "runs", cfg)
    train_run(run, progress=False)
    losses = [r["value"] for r in run.read_metrics() if r["name"] == "train/loss"]
    assert len(losses) == 2 and all(0 < l < 20 for l in losses)
    saved = json.loads((run.last_checkpoint() / "config.json").read_text())
    assert rope_settings(saved)["rope_type"] == "yarn" and rope_settings(saved)["factor"] == 2.0
    assert saved["max_position_embeddings"] == 2 * window > cfg.data.seq_len > window
