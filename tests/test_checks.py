"""Pre-launch checks: pitfalls with reasons, LR ranges, token budget, mix sliders, data problems, uploads."""
import json

import pytest

from cptcore import checks
from cptcore.config import RunConfig, SourceConfig


def cfg(**over):
    base = {"model": {"name": "tiny-random-llama", "kind": "instruct"},
            "mix": {"domain": 0.85, "replay": 0.10, "instruct": 0.05},
            "train": {"lr": 3e-5, "max_steps": 40, "batch_size": 8},
            "eval": {"evaluators": ["domain_ppl", "replay_ppl", "ifeval"], "every_steps": 10}}
    for key, value in over.items():
        section, field = key.split("__")
        base.setdefault(section, {})[field] = value
    return RunConfig.from_dict(base)


def codes(c, available=None):
    return {f.code for f in checks.check_config(c, available)}


def test_a_sound_config_has_no_warnings():
    assert not [f for f in checks.check_config(cfg(), {"domain": 100_000}) if f.level == "warning"]


@pytest.mark.parametrize("over, code", [
    ({"mix__domain": 0.95, "mix__replay": 0.0}, "no_replay"),
    ({"train__lr": 2e-4}, "lr_high"),
    ({"eval__evaluators": []}, "no_eval"),
    ({"eval__evaluators": ["domain_ppl", "replay_ppl"]}, "no_if_eval"),
    ({"mix__domain": 0.9, "mix__instruct": 0.0}, "no_instruct_data"),
])
def test_each_pitfall_is_flagged_with_a_reason(over, code):
    found = {f.code: f for f in checks.check_config(cfg(**over))}
    assert code in found
    assert found[code].level == "warning" and len(found[code].reason) > 20


def test_lr_range_depends_on_kind_and_method():
    assert checks.recommended_lr("instruct", "full") == (1e-5, 5e-5)
    assert checks.recommended_lr("instruct", "lora")[0] == pytest.approx(10 * checks.recommended_lr("instruct", "full")[0])
    assert checks.recommended_lr("base", "full")[1] > checks.recommended_lr("instruct", "full")[1]
    assert "lr_high" not in codes(cfg(train__lr=2e-4, train__method="lora"))  # fine for LoRA
    assert "lr_high" in codes(cfg(train__lr=2e-4, train__method="full"))
    assert "lr_high" not in codes(cfg(train__lr=8e-5, model__kind="base", eval__evaluators=["domain_ppl", "replay_ppl"]))


def test_token_budget_and_passes_over_the_domain_documents():
    c = cfg(train__max_steps=100, train__batch_size=4, train__grad_accum=2, data__seq_len=128)
    b = checks.token_budget(c, {"domain": 10_000})
    total = 100 * 4 * 2 * 128
    assert b["domain"]["tokens"] == round(0.85 * total) and b["replay"]["tokens"] == round(0.10 * total)
    assert sum(r["tokens"] for r in b.values()) == total
    assert b["domain"]["passes"] == pytest.approx(0.85 * total / 10_000)
    assert b["replay"]["passes"] is None  # not counted
    assert "too_many_passes" in codes(c, {"domain": 5_000})
    assert "too_many_passes" not in codes(c, {"domain": 500_000})
    assert "too_many_passes" not in codes(c)  # unknown counts: no guess


@pytest.mark.parametrize("changed, value", [("domain", 60), ("replay", 37.5), ("instruct", 100), ("domain", 0),
                                            ("replay", 12.3), ("instruct", -5)])
def test_rebalanced_mix_always_sums_to_100(changed, value):
    out = checks.rebalance_mix({"domain": 85, "replay": 10, "instruct": 5}, changed, value)
    assert sum(out.values()) == 100.0
    assert all(v >= 0 and (v * 2).is_integer() for v in out.values())
    assert out[changed] == min(100, max(0, round(value * 2) / 2))


def test_rebalance_keeps_the_other_two_in_proportion():
    out = checks.rebalance_mix({"domain": 80, "replay": 15, "instruct": 5}, "domain", 60)
    assert out == {"domain": 60, "replay": 30, "instruct": 10}
    assert checks.rebalance_mix({"domain": 100, "replay": 0, "instruct": 0}, "domain", 90) == \
        {"domain": 90, "replay": 5, "instruct": 5}


def test_inspect_reports_malformed_empty_and_duplicate_lines(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join([json.dumps({"text": "alpha beta"}), "{broken", json.dumps({"text": "  "}),
                               json.dumps({"text": "alpha beta"}), json.dumps({"text": "gamma"})]) + "\n")
    r = checks.inspect_source(SourceConfig(path=str(path)))
    assert r.format == "text" and r.rows == 4
    assert any(p.startswith("line 2: malformed JSON") for p in r.problems)
    assert "line 3: empty text" in r.problems
    assert "line 4: duplicate of line 1" in r.problems


def test_inspect_detects_chat_and_counts_tokens(tmp_path):
    from cptcore.models import load_tokenizer
    from cptcore.config import ModelConfig

    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Q{i}?", "response": f"A{i}."}) + "\n" for i in range(3)))
    r = checks.inspect_source(SourceConfig(path=str(path)), tokenizer=load_tokenizer(ModelConfig(name="tiny-random-llama")))
    assert r.format == "chat" and r.rows == 3 and not r.problems and r.tokens > 0


def test_uploads_stay_in_the_data_folder(tmp_path):
    p = checks.save_upload(tmp_path, "../../etc/evil name.jsonl", b'{"text": "x"}\n')
    assert p.parent == (tmp_path / "data").resolve() and p.name == "evil_name.jsonl"
    assert checks.save_upload(tmp_path, "..\\..\\x.txt", b"hi").parent == (tmp_path / "data").resolve()
    again = checks.save_upload(tmp_path, "evil name.jsonl", b"other")
    assert again != p and p.read_bytes() == b'{"text": "x"}\n'  # never overwrites a different file
    with pytest.raises(ValueError, match="unsupported file type"):
        checks.save_upload(tmp_path, "run.py", b"import os")
    with pytest.raises(ValueError, match="upload limit"):
        checks.save_upload(tmp_path, "big.txt", b"x" * 11, max_bytes=10)
    assert {f.name for f in checks.user_files(tmp_path)} == {"evil_name.jsonl", "x.txt", again.name}


def test_config_file_names_cannot_leave_the_folder():
    assert checks.config_file_name("../../etc/passwd") == "etc-passwd.yaml"
    assert checks.config_file_name("my run: v2") == "my-run-v2.yaml"
    assert checks.config_file_name("...") == "run.yaml"
