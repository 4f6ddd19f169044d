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
    values = [0.1, 0.5, 0.9, 0.3, 0.7, 0.2, 0.8]
    a, b = mean_score("m", values), mean_score("m", values)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert a.ci_low < a.value < a.ci_high
    assert mean_score("m", values, seed=1).ci_low != a.ci_low


def test_constant_values_have_a_zero_width_interval():
    s = mean_score("m", [0.4] * 10)
    assert s.ci_low == s.ci_high == pytest.approx(0.4)


def test_ratio_score_weighs_items_by_their_denominator():
    s = ratio_score("ppl", [(10.0, 10), (1.0, 1)], transform=math.exp)
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
