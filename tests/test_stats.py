"""Confidence intervals and paired differences: known values, seeding, edge cases."""
import math

import pytest

from cptcore.evaluate.stats import mean_score, paired_difference, proportion, ratio_score, wilson


def test_wilson_matches_the_textbook_value():
    lo, hi = wilson(8, 20)  # Newcombe (1998): 0.2188 .. 0.6134 for 8/20
    assert lo == pytest.approx(0.2188, abs=1e-4) and hi == pytest.approx(0.6134, abs=1e-4)


def test_wilson_stays_inside_0_1_at_the_extremes():
    assert wilson(0, 10)[0] == 0.0 and 0 < wilson(0, 10)[1] < 0.35
    assert wilson(10, 10)[1] == 1.0 and wilson(10, 10)[0] > 0.65
    assert all(math.isnan(x) for x in wilson(0, 0))


def test_proportion_in_points():
    s = proportion("eval/if_prompt_strict", [True, False, False, True], scale=100)
    assert (s.value, s.n) == (50.0, 4) and 0 < s.ci_low < 50 < s.ci_high < 100


def test_bootstrap_interval_is_seeded_and_contains_the_mean():
    values = [0.1, 0.5, 0.9, 0.3, 0.7, 0.2, 0.8, 0.13, 0.41, 0.67, 0.05, 0.99]
    a, b = mean_score("m", values), mean_score("m", values)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert a.ci_low < a.value < a.ci_high
    assert mean_score("m", values, seed=1).ci_low != a.ci_low


def test_constant_values_have_a_zero_width_interval():
    s = mean_score("m", [0.4] * 10)
    assert s.ci_low == s.ci_high == pytest.approx(0.4)


def test_ratio_score_weighs_items_by_their_denominator():
    s = ratio_score("ppl", [(10.0, 10), (1.0, 1)], "exp")
    assert s.value == pytest.approx(math.exp(11 / 11)) and s.n == 2


def test_paired_difference_on_shared_items_only():
    before = {"a": 1, "b": 0, "c": 0, "d": 1}
    after = {"a": 1, "b": 1, "c": 1, "e": 0}
    d = paired_difference(before, after)
    assert d["n"] == 3 and d["mean_diff"] == pytest.approx(2 / 3)
    assert (d["better"], d["worse"], d["same"]) == (2, 0, 1)
    assert d["ci_low"] <= d["mean_diff"] <= d["ci_high"]
    with pytest.raises(ValueError, match="share no items"):
        paired_difference({"x": 1}, {"y": 1})


def test_paired_difference_from_per_item_rows():
    from cptcore.evaluate.stats import item_values

    step0 = [{"id": 1, "prompt_strict": False}, {"id": 2, "prompt_strict": True}, {"id": 3, "prompt_strict": False}]
    final = [{"id": 1, "prompt_strict": True}, {"id": 2, "prompt_strict": True}, {"id": 3, "prompt_strict": False}]
    d = paired_difference(item_values(step0, "prompt_strict"), item_values(final, "prompt_strict"))
    assert d["n"] == 3 and d["better"] == 1 and d["mean_diff"] == pytest.approx(1 / 3)


def test_paired_change_cancels_the_variance_between_items():
    from cptcore.evaluate.stats import paired_change

    before = {i: (float(i), 1.0) for i in range(30)}          # items differ a lot from each other
    after = {i: (float(i) + 1.0, 1.0) for i in range(30)}     # every item gains exactly 1
    d = paired_change(after, before, "mean")
    assert d["delta"] == pytest.approx(1.0) and d["delta_ci_low"] == pytest.approx(1.0) == d["delta_ci_high"]
    assert d["delta_n"] == 30
    assert paired_change({"a": (1.0, 1.0)}, {"b": (1.0, 1.0)}, "mean") is None


def test_paired_change_of_a_ratio_resamples_whole_items():
    from cptcore.evaluate.stats import paired_change

    before = {i: (20.0, 10.0) for i in range(10)}   # loss 2.0 per token
    after = {i: (22.0, 10.0) for i in range(10)}    # 2.2 per token
    d = paired_change(after, before, "exp")
    assert d["delta"] == pytest.approx(math.exp(2.2) - math.exp(2.0))


def _if_records(rng, p_items, flip_to=None):
    """Step-0 and later outcomes of IFEval-like prompts; flip_to: outcomes after (else drawn again)."""
    from cptcore.evaluate.stats import paired_change, proportion

    before = [rng.random() < p for p in p_items]
    after = flip_to(before) if flip_to else [rng.random() < p for p in p_items]
    s0 = proportion("eval/if_prompt_strict", before, scale=100)
    s1 = proportion("eval/if_prompt_strict", after, scale=100)
    return {"value": s1.value, **paired_change(s1.items, s0.items, s0.kind)}


@pytest.mark.parametrize("n_prompts", [12, 25, 75])
def test_no_real_change_raises_at_most_5_percent_false_alarms_per_evaluation(n_prompts):
    """Each prompt passes with its own probability, the same before and after: any change is noise."""
    import random

    from cptcore.evaluate.stats import decline

    rng = random.Random(n_prompts)
    p_items = [rng.uniform(0.1, 0.9) for _ in range(n_prompts)]
    trials = 300
    alarms = sum(decline("eval/if_prompt_strict", _if_records(rng, p_items), 2.0)[0] for _ in range(trials))
    assert alarms / trials <= 0.05


def test_a_real_drop_of_the_minimum_effect_is_caught():
    """On 75 prompts, 4 that passed fail afterwards (5.3 points, above a 5-point minimum effect), none flip
    the other way: the paired CI excludes 0 and the warning fires; a 3-prompt drop (4 points) does not."""
    import random

    from cptcore.evaluate.stats import decline

    rng = random.Random(0)
    p_items = [0.5] * 75

    def drop(k):
        def flip(before):
            passing = [i for i, b in enumerate(before) if b][:k]
            return [False if i in passing else b for i, b in enumerate(before)]
        return flip

    fires, size = decline("eval/if_prompt_strict", _if_records(rng, p_items, drop(4)), 5.0)
    assert fires and size == pytest.approx(400 / 75)
    assert not decline("eval/if_prompt_strict", _if_records(rng, p_items, drop(3)), 5.0)[0]


def test_decline_of_a_perplexity_is_the_loss_rise_in_percent():
    from cptcore.evaluate.stats import decline, loss_rise_pct

    rec = {"value": 11.0, "delta": 1.0, "delta_ci_low": 0.5, "delta_ci_high": 1.5}
    fires, size = decline("eval/replay_ppl", rec, 3.0)
    assert fires and size == pytest.approx(loss_rise_pct(11.0, 10.0))
    assert not decline("eval/replay_ppl", dict(rec, delta_ci_low=-0.1), 3.0)[0]  # CI crosses 0
    assert decline("eval/replay_ppl", {"value": 11.0}, 3.0) == (False, None)       # nothing paired
