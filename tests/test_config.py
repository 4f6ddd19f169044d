import pytest
import yaml

from cptcore.config import ConfigError, RunConfig, help_text


def test_yaml_round_trip_keeps_every_field(tmp_path):
    cfg = RunConfig().with_overrides(["train.lr=2e-5", "mix.domain=0.7", "mix.replay=0.2", "mix.instruct=0.1"])
    path = cfg.save(tmp_path / "c.yaml")
    assert RunConfig.load(path) == cfg


def test_set_overrides_parse_numbers_and_replace_role_sources():
    cfg = RunConfig().with_overrides(["train.lr=2e-5", "train.max_steps=20", "model.name=org/model",
                                      "data.domain=/data/my_docs", "mix.domain=0.6", "mix.replay=0.3",
                                      "mix.instruct=0.1"])
    assert cfg.train.lr == pytest.approx(2e-5) and cfg.train.max_steps == 20
    assert cfg.model.name == "org/model"
    assert [s.path for s in cfg.data.domain] == ["/data/my_docs"]


@pytest.mark.parametrize("override, field", [
    ("mix.replay=0.5", "mix.domain + mix.replay + mix.instruct must sum to 1"),
    ("train.lr=0", "train.lr"),
    ("train.lr=-1e-5", "train.lr"),
    ("train.max_steps=0", "train.max_steps"),
    ("train.schedule=exponential", "train.schedule"),
    ("mix.domain=1.5", "mix.domain"),
    ("train.unknown_key=3", "train.unknown_key: unknown field"),
    ("model.kind=chat", "model.kind"),
])
def test_invalid_values_are_rejected_naming_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace("+", r"\+")):
        RunConfig().with_overrides([override])


def test_error_names_the_allowed_range():
    with pytest.raises(ConfigError) as e:
        RunConfig().with_overrides(["train.lr=-1"])
    assert "greater than 0" in str(e.value) and "-1" in str(e.value)


def test_role_with_share_needs_sources():
    with pytest.raises(ConfigError, match="data.replay lists no sources"):
        RunConfig().with_overrides(["data.replay=[]"])
    cfg = RunConfig().with_overrides(["data.replay=[]", "mix.domain=0.9", "mix.replay=0", "mix.instruct=0.1"])
    assert cfg.data.replay == []


def test_yaml_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: [1,\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+"):
        RunConfig.load(bad)
    with pytest.raises(ConfigError, match="not found"):
        RunConfig.load(tmp_path / "missing.yaml")


def test_every_field_of_every_section_has_user_help():
    """The field descriptions are the dashboard's help text: every field, nested sections included."""
    import typing

    from pydantic import BaseModel

    checked = set()

    def models_in(ann):  # the sections inside X, list[X], X | None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return [ann]
        return [m for a in typing.get_args(ann) for m in models_in(a)]

    def walk(cls, prefix):
        for name, info in cls.model_fields.items():
            checked.add(f"{prefix}{name}")
            section = isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
            assert (info.annotation.__doc__ if section else info.description), f"{prefix}{name} has no help"
            for sub in models_in(info.annotation):
                walk(sub, f"{prefix}{name}.")

    walk(RunConfig, "")
    assert "stages.budget" in checked and "stages.data.domain" in checked
    assert help_text("train", "lr") == RunConfig.model_fields["train"].annotation.model_fields["lr"].description


def test_experiment_configs_load():
    from pathlib import Path

    for path in sorted(Path(__file__).parents[1].glob("experiments/*.yaml")):
        RunConfig.load(path)
        assert yaml.safe_load(path.read_text())  # non-empty


def test_a_saved_config_with_the_removed_final_qa_stage_still_loads_unless_it_asked_for_one():
    from cptcore.config import RunConfig

    assert RunConfig.from_dict({"recipe_options": {"final_it_budget": 0.0}}).recipe_options.qa_budget == 0.3
    with pytest.raises(Exception, match="final_it_budget was removed"):
        RunConfig.from_dict({"recipe_options": {"final_it_budget": 0.25}})


def test_an_empty_config_file_is_an_error_not_the_default_model(tmp_path):
    from cptcore.config import ConfigError, RunConfig

    (tmp_path / "empty.yaml").write_text("\n# nothing yet\n")
    with pytest.raises(ConfigError, match="empty.yaml: the config file is empty"):
        RunConfig.load(tmp_path / "empty.yaml")
    (tmp_path / "defaults.yaml").write_text("{}\n")
    assert RunConfig.load(tmp_path / "defaults.yaml").model.name == "smollm2-135m-instruct"


def test_a_bad_set_value_is_attributed_to_the_set_not_to_the_file(tmp_path):
    from cptcore.config import ConfigError, RunConfig

    (tmp_path / "ok.yaml").write_text("train: {lr: 1.0e-4}\n")
    with pytest.raises(ConfigError, match=r"ok.yaml with --set: train.lr"):
        RunConfig.load(tmp_path / "ok.yaml", ["train.lr=-1"])
    (tmp_path / "bad.yaml").write_text("train: {lr: -1}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: train.lr"):
        RunConfig.load(tmp_path / "bad.yaml", ["train.max_steps=5"])
