"""Pre-launch checks: pitfalls with reasons, read from the config and its plan."""
import pytest

from cptcore import checks
from cptcore.config import RunConfig
from cptcore.plan import plan


def cfg(**over):
    base = {"model": {"name": "tiny-random-llama", "kind": "instruct"},
            "mix": {"domain": 0.85, "replay": 0.10, "instruct": 0.05},
            "train": {"lr": 3e-5, "max_steps": 40, "batch_size": 8},
            "eval": {"evaluators": ["domain_ppl", "replay_ppl", "ifeval"], "every_steps": 10}}
    for key, value in over.items():
        section, field = key.split("__")
        base.setdefault(section, {})[field] = value
    return RunConfig.from_dict(base)


def counted(available: dict[str, int] | None):
    """A source counter that says each role's sources hold `available[role]` tokens (all with loss)."""
    if available is None:
        return None
    return lambda source, loss_on, domain_as: {"tokens": available[_role_of(source)],
                                               "loss_tokens": available[_role_of(source)]}


def _role_of(source) -> str:
    return {"builtin:knowledge_docs": "domain", "builtin:replay": "replay"}.get(source.path, "instruct")


def findings(c, available=None):
    return checks.check_config(c, plan(c, count=counted(available and {"replay": 10**6, "instruct": 10**6}
                                                          | available)))


def codes(c, available=None):
    return {f.code for f in findings(c, available)}


def test_a_sound_config_has_no_warnings():
    assert not [f for f in findings(cfg(), {"domain": 100_000}) if f.level == "warning"]


@pytest.mark.parametrize("over, code", [
    ({"mix__domain": 0.95, "mix__replay": 0.0}, "no_replay"),
    ({"train__lr": 2e-4}, "lr_high"),
    ({"eval__evaluators": []}, "no_eval"),
    ({"eval__evaluators": ["domain_ppl", "replay_ppl"]}, "no_if_eval"),
    ({"mix__domain": 0.9, "mix__instruct": 0.0}, "no_instruct_data"),
])
def test_each_pitfall_is_flagged_with_a_reason(over, code):
    found = {f.code: f for f in findings(cfg(**over))}
    assert code in found
    assert found[code].level == "warning" and len(found[code].reason) > 20


def test_lr_range_depends_on_kind_and_method():
    lo, hi = checks.recommended_lr("instruct", "full")
    assert "lr_high" not in codes(cfg(train__lr=hi)) and "lr_low" not in codes(cfg(train__lr=lo))
    assert "lr_high" in codes(cfg(train__lr=hi * 1.5)) and "lr_low" in codes(cfg(train__lr=lo / 1.5))
    assert checks.recommended_lr("instruct", "lora")[0] > hi  # LoRA wants a higher LR than full tuning
    assert checks.recommended_lr("base", "full")[1] > hi      # base models tolerate more
    assert "lr_high" not in codes(cfg(train__lr=2e-4, train__method="lora"))  # fine for LoRA
    assert "lr_high" in codes(cfg(train__lr=2e-4, train__method="full"))
    assert "lr_high" not in codes(cfg(train__lr=8e-5, model__kind="base", eval__evaluators=["domain_ppl", "replay_ppl"]))


def test_passes_over_the_domain_documents_come_from_the_plan():
    c = cfg(train__max_steps=100, train__batch_size=4, train__grad_accum=2, data__seq_len=128)
    total = 100 * 4 * 2 * 128
    p = plan(c, count=counted({"domain": 10_000, "replay": 10**6, "instruct": 10**6}))
    assert sum(b.tokens for b in p.roles.values()) == total
    assert abs(p.roles["domain"].tokens - 0.85 * total) <= 128  # within one sequence of the share
    assert p.roles["domain"].passes == pytest.approx(p.roles["domain"].tokens / 10_000)
    assert plan(c).roles["domain"].passes is None  # not counted
    assert "too_many_passes" in codes(c, {"domain": 5_000})
    assert "too_many_passes" not in codes(c, {"domain": 500_000})
    assert "too_many_passes" not in codes(c)  # unknown counts: no guess


def test_staged_recipes_are_checked_on_what_their_stages_train():
    """cpt_then_it ends with a QA stage: the run does train instruction data though mix.instruct is 0."""
    c = RunConfig.from_dict(
        cfg().to_dict() | {"recipe": "cpt_then_it", "mix": {"domain": 0.9, "replay": 0.1, "instruct": 0.0}})
    assert plan(c).requested["instruct"] > 0
    assert "no_instruct_data" not in codes(c)
    assert "no_instruct_data" in codes(cfg(mix__domain=0.9, mix__instruct=0.0))
