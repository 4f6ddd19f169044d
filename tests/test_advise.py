"""The model advisor: answers -> kind, recipe, LR range and replay share, each with a cited reason."""
import json

import pytest

from cptcore.advise import QUESTIONS, advise
from cptcore.cli import main
from cptcore.config import RunConfig


@pytest.mark.parametrize("answers, kind, recipe, method", [
    ({"keep_chat": "yes", "goal": "knowledge", "has_qa": "yes"}, "instruct", "pit_plus", "full"),
    ({"keep_chat": "yes", "goal": "knowledge", "has_qa": "no"}, "instruct", "knowledge_instruct", "full"),
    ({"keep_chat": "no", "goal": "new_language", "compute": "no"}, "base", "cpt", "lora"),
])
def test_answers_pick_kind_recipe_and_method(answers, kind, recipe, method):
    adv = advise(answers)
    assert (adv.model_kind, adv.recipe, adv.method) == (kind, recipe, method)
    assert all(r["text"] and r["source"] for r in adv.reasons)
    RunConfig().with_overrides(adv.overrides())  # the advice is a valid config


def test_replay_share_grows_with_shift_and_small_models():
    mild = advise({"goal": "domain_language", "model_size": "large"}).replay_share
    strong = advise({"goal": "new_language", "model_size": "large"}).replay_share
    small = advise({"goal": "domain_language", "model_size": "small"}).replay_share
    assert mild == 0.05 and strong == 0.25 and small > mild


def test_lora_lr_is_about_ten_times_full():
    full, lora = advise({"compute": "yes"}).lr_range, advise({"compute": "no"}).lr_range
    assert lora[0] >= 5 * full[0] and lora[1] >= 5 * full[1]


def test_bad_answer_is_named():
    with pytest.raises(ValueError, match="--goal: 'poetry' is not one of"):
        advise({"goal": "poetry"})


def test_cpt_advise_json(capsys):
    assert main(["advise", "--goal", "knowledge", "--has-qa", "yes", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["recipe"] == "pit_plus" and out["overrides"]["recipe"] == "pit_plus"
    assert {q[0] for q in QUESTIONS} >= {"keep_chat", "goal", "has_qa", "compute"}
