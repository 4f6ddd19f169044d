"""cptcore.fmt: the numbers every view prints."""
import math

import pytest

from cptcore import fmt


@pytest.mark.parametrize("x, text", [(5e-5, "5e-5"), (2e-5, "2e-5"), (2.5e-5, "2.5e-5"), (1e-4, "1e-4"),
                                     (1.25e-4, "1.25e-4"), (3e-6, "3e-6"), (0.001, "1e-3"), (0.05, "0.05"),
                                     (0, "0"), (None, "—"), (math.nan, "—")])
def test_lr_is_plain_scientific_notation(x, text):
    assert fmt.lr(x) == text


@pytest.mark.parametrize("n, text", [(28672, "28,672"), (0, "0"), (1_234_567, "1,234,567"), (999, "999"),
                                     (12.6, "13"), (None, "—"), (math.nan, "—")])
def test_tokens_have_thousands_separators(n, text):
    assert fmt.tokens(n) == text


@pytest.mark.parametrize("s, text", [(250, "4 min 10 s"), (42.4, "42 s"), (0, "0 s"), (120, "2 min"),
                                     (3_900, "1 h 5 min"), (7_200, "2 h"), (183_600, "2 d 3 h"), (-1, "—"),
                                     (None, "—"), (math.inf, "—")])
def test_duration_in_the_two_largest_units(s, text):
    assert fmt.duration(s) == text


def test_pct_and_points():
    assert fmt.pct(0.15) == "15%" and fmt.pct(0.125) == "12.5%" and fmt.pct(1) == "100%" and fmt.pct(0) == "0%"
    assert fmt.pct(0.125, digits=0) == "12%" and fmt.pct(None) == "—"
    assert fmt.points(3.21) == "+3.2 points" and fmt.points(-4) == "-4.0 points" and fmt.points(math.nan) == "—"


def test_nothing_prints_none_or_nan():
    for f in (fmt.lr, fmt.tokens, fmt.duration, fmt.pct, fmt.points):
        for value in (None, math.nan, "n/a"):
            assert f(value) == fmt.MISSING
