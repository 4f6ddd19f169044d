"""The Launch form without Streamlit: widget specs from fields, values to overrides, mix sliders, file names."""
import pytest

from cptcore import forms
from cptcore.config import RunConfig
from cptcore.plan import plan


@pytest.mark.parametrize("changed, value", [("domain", 60), ("replay", 37.5), ("instruct", 100), ("domain", 0),
                                            ("replay", 12.3), ("instruct", -5)])
def test_rebalanced_mix_always_sums_to_100(changed, value):
    out = forms.rebalance_percent({"domain": 85, "replay": 10, "instruct": 5}, changed, value)
    assert sum(out.values()) == 100.0
    assert all(v >= 0 and (v * 2).is_integer() for v in out.values())
    assert out[changed] == min(100, max(0, round(value * 2) / 2))


def test_rebalance_keeps_the_other_two_in_proportion():
    out = forms.rebalance_percent({"domain": 80, "replay": 15, "instruct": 5}, "domain", 60)
    assert out == {"domain": 60, "replay": 30, "instruct": 10}
    assert forms.rebalance_percent({"domain": 100, "replay": 0, "instruct": 0}, "domain", 90) == \
        {"domain": 90, "replay": 5, "instruct": 5}


def test_widgets_follow_the_field_types_and_carry_their_descriptions():
    assert forms.widget_spec("train.lr").kind == "float"
    steps = forms.widget_spec("train.max_steps")
    assert steps.kind == "int" and steps.min_value == 1
    assert forms.widget_spec("model.kind").options == ["base", "instruct"]
    assert forms.widget_spec("mix.replay").kind == "percent"
    assert forms.widget_spec("model.name").help == RunConfig.model_fields["model"].annotation.model_fields[
        "name"].description


def test_form_values_become_the_same_overrides_as_set():
    base = RunConfig()
    values = {key: forms.widget_value(base, key) for key in ("mix.domain", "mix.replay", "mix.instruct",
                                                             "data.domain", "train.lr")}
    assert forms.changes(values, base) == {"mix.domain": 0.85, "mix.replay": 0.10, "mix.instruct": 0.05,
                                           "train.lr": 5e-5}  # unchanged sources keep their settings
    values.update({"mix.domain": 70.0, "mix.replay": 25.0, "data.domain": "a.jsonl, b.txt"})
    cfg = base.with_overrides(forms.changes(values, base))
    assert cfg == base.with_overrides(["mix.domain=0.7", "mix.replay=0.25", "data.domain=[a.jsonl, b.txt]"])


def test_a_token_budget_counts_every_process():
    cfg = RunConfig().with_overrides({"train.batch_size": 4, "data.seq_len": 128, "launch.launcher": "torchrun",
                                      "launch.nproc": 2})
    assert forms.steps_for_tokens(10_000, plan(cfg)) == 10  # 1,024 tokens per step, rounded up


def test_the_budget_table_has_a_row_per_stage_and_role():
    cfg = RunConfig().with_overrides({"recipe": "pit", "train.max_steps": 40})
    p = plan(cfg)
    rows = forms.budget_rows(p)
    assert [(r["stage"], r["role"]) for r in rows] == [(f"{s.index + 1}. {s.name}", role)
                                                       for s in p.stages for role in s.roles]
    assert sum(r["input tokens trained"] for r in rows) == p.tokens


def test_config_file_names_cannot_leave_the_folder():
    assert forms.config_file_name("../../etc/passwd") == "etc-passwd.yaml"
    assert forms.config_file_name("my run: v2") == "my-run-v2.yaml"
    assert forms.config_file_name("...") == "run.yaml"
