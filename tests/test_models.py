import pytest

from cptcore.config import ModelConfig
from cptcore.models import ModelError, load_model, resolve_model


def test_local_folder_model_loads_like_a_hub_model(tmp_path):
    model, tok = load_model(ModelConfig(name="tiny-random-llama"))
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    again, tok2 = load_model(ModelConfig(name=str(tmp_path / "m")))
    assert sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in model.parameters())
    assert tok2("hello world").input_ids == tok("hello world").input_ids


@pytest.mark.parametrize("name, message", [
    ("no-such-model", "unknown model"),
    ("/nowhere/model.gguf", "GGUF file not found"),
])
def test_unknown_models_are_named(name, message):
    with pytest.raises(ModelError, match=message):
        resolve_model(name)


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_hub_ids_pass_through_to_transformers():
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
