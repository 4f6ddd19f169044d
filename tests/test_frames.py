"""Metric streams as frames: loading (latest attempt, tailing, cache), baselines, smoothing, downsampling."""
import json
import os

import numpy as np
import pandas as pd
import pytest

from cptcore import frames
from cptcore.runs.metrics import MetricWriter, latest_attempt
from run_store import write_run


def test_loader_keeps_the_latest_attempt_like_runs_latest_attempt(tmp_path):
    path = tmp_path / "metrics.jsonl"
    w1 = MetricWriter(path, attempt=1)
    for s in range(1, 6):
        w1.write("train/loss", 10.0 + s, s, s * 100)
    w1.event("event/warning", "loss spike", 5, 500)
    w1.close()
    w2 = MetricWriter(path, attempt=2)  # resumed from step 3: steps 4-5 are rewritten
    for s in range(4, 8):
        w2.write("train/loss", 20.0 + s, s, s * 100)
    w2.close()
    m = frames.load_metrics(path)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    expected = [r for r in latest_attempt(records) if r["value"] is not None]
    got = m.series("train/loss")
    assert list(got["step"]) == [r["step"] for r in expected] == [1, 2, 3, 4, 5, 6, 7]
    assert list(got["value"]) == [r["value"] for r in expected]
    assert list(got["attempt"]) == [1, 1, 1, 2, 2, 2, 2]
    assert list(m.events["message"]) == ["loss spike"]


def test_loader_reads_only_appended_lines_and_holds_back_a_partial_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    w = MetricWriter(path)
    w.write("train/loss", 1.0, 1, 10)
    assert len(frames.load_metrics(path).values) == 1
    with open(path, "a") as fh:
        fh.write('{"step": 2, "tokens": 20, "time": 1.0, "name": "train/lo')  # the writer is mid-line
    assert len(frames.load_metrics(path).values) == 1
    with open(path, "a") as fh:
        fh.write('ss", "value": 2.0, "attempt": 1}\n')
    m = frames.load_metrics(path)
    assert list(m.series("train/loss")["value"]) == [1.0, 2.0]
    path.write_text('{"step": 9, "tokens": 9, "time": 0, "name": "x", "value": 9, "attempt": 1}\n')  # truncated
    os.utime(path, ns=(1, 1))
    assert list(frames.load_metrics(path).values["step"]) == [9]


def test_loader_survives_nan_and_malformed_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "tokens": 1, "time": 0, "name": "train/loss", "value": NaN, "attempt": 1}\n'
                    "not json\n"
                    '{"step": 2, "tokens": 2, "time": 0, "name": "train/loss", "value": 2.5, "attempt": 1}\n')
    s = frames.load_metrics(path).series("train/loss")
    assert list(s["step"]) == [1, 2] and np.isnan(s["value"].iloc[0]) and s["value"].iloc[1] == 2.5


def test_metrics_from_records_matches_the_file_loader(tmp_path):
    run = write_run(tmp_path, warning=True)
    a, b = frames.load_metrics(run), frames.metrics_from_records(run.read_metrics())
    for name in a.names():
        assert list(a.series(name)["value"]) == list(b.series(name)["value"])
    assert len(a.events) == len(b.events) == 1


def test_baseline_change_is_percent_for_perplexity_and_points_for_scores():
    ppl = pd.DataFrame({"step": [0, 10], "value": [50.0, 40.0], "unit": "ppl",
                        "delta": [np.nan, -10.0], "delta_ci_low": [np.nan, -12.0], "delta_ci_high": [np.nan, -8.0]})
    c = frames.baseline_change(ppl, "eval/domain_ppl")
    assert c["change"].tolist() == pytest.approx([0.0, -20.0])
    assert c["gain"].tolist() == pytest.approx([0.0, 20.0])  # a perplexity drop is a gain
    assert c["change_low"].iloc[1] == pytest.approx(-24.0) and c["change_high"].iloc[1] == pytest.approx(-16.0)
    assert c["gain_low"].iloc[1] == pytest.approx(16.0) and c["gain_high"].iloc[1] == pytest.approx(24.0)
    em = pd.DataFrame({"step": [0, 10], "value": [10.0, 25.0], "unit": "%", "delta": [np.nan, 15.0]})  # in %
    assert frames.baseline_change(em, "eval/qa_em")["change"].tolist() == pytest.approx([0, 15.0])
    ifs = pd.DataFrame({"step": [0, 10], "value": [40.0, 36.0], "unit": "%", "delta": [np.nan, -4.0]})
    assert frames.baseline_change(ifs, "eval/if_prompt_strict")["gain"].tolist() == pytest.approx([0, -4.0])
    d2 = pd.DataFrame({"step": [0, 10], "value": [0.8, 0.7], "unit": "fraction", "delta": [np.nan, -0.1]})
    assert frames.baseline_change(d2, "eval/coherence_distinct2")["change"].tolist() == pytest.approx([0, -10.0])


def test_change_band_is_the_paired_delta_ci_not_the_value_ci_shifted_by_the_baseline():
    # the value's own CI is +-18 points wide (25 prompts), the paired change on the same prompts is +-2
    s = pd.DataFrame({"step": [0, 10], "value": [40.0, 36.0], "ci_low": [22.0, 18.0], "ci_high": [58.0, 54.0],
                      "unit": "%", "delta": [np.nan, -4.0], "delta_ci_low": [np.nan, -6.0],
                      "delta_ci_high": [np.nan, -2.0], "delta_n": [np.nan, 25]})
    c = frames.baseline_change(s, "eval/if_prompt_strict")
    assert c["change_low"].iloc[1] == pytest.approx(-6.0) and c["change_high"].iloc[1] == pytest.approx(-2.0)
    assert bool(c["paired"].iloc[1]) and not bool(c["paired"].iloc[0])


def test_perplexity_change_is_percent_of_the_step_0_value_reconstructed_from_the_delta():
    # step-0 value = value - delta = 50 even when the step-0 record is not in the frame
    s = pd.DataFrame({"step": [20], "value": [45.0], "unit": "ppl", "delta": [-5.0], "delta_ci_low": [-6.0],
                      "delta_ci_high": [-4.5]})
    c = frames.baseline_change(s, "eval/domain_ppl")
    assert c["change"].iloc[0] == pytest.approx(-10.0) and c["baseline"].iloc[0] == pytest.approx(50.0)
    assert (c["change_low"].iloc[0], c["change_high"].iloc[0]) == pytest.approx((-12.0, -9.0))


def test_records_without_delta_have_change_0_at_step_0_and_no_band():
    old = pd.DataFrame({"step": [0, 10, 20], "value": [50.0, 45.0, 40.0], "ci_low": [45.0, 40.0, 36.0],
                        "ci_high": [55.0, 50.0, 44.0]})  # a run from before paired deltas: value CIs only
    c = frames.baseline_change(old, "eval/domain_ppl")
    assert c["change"].tolist() == pytest.approx([0.0, -10.0, -20.0])
    assert c["change_low"].isna().all() and c["change_high"].isna().all() and not c["paired"].any()


def test_general_kl_change_is_in_nats_and_a_rise_is_a_loss():
    s = pd.DataFrame({"step": [0, 10], "value": [0.0, 0.05], "unit": "nats/token", "delta": [np.nan, 0.05],
                      "delta_ci_low": [np.nan, 0.04], "delta_ci_high": [np.nan, 0.06]})
    c = frames.baseline_change(s, "eval/general_kl")
    assert c["change"].tolist() == pytest.approx([0.0, 0.05]) and c["gain"].iloc[1] == pytest.approx(-0.05)
    assert (c["gain_low"].iloc[1], c["gain_high"].iloc[1]) == pytest.approx((-0.06, -0.04))
    assert frames.lower_is_better("eval/general_kl") and frames.unit("eval/general_kl") == "nats"


def test_qa_scores_are_points_and_new_metrics_are_listed():
    assert frames.points_scale("eval/qa_em") == frames.points_scale("eval/qa_f1") == 1.0
    assert frames.points_scale("eval/qa_em", "%") == 1.0 and frames.points_scale("eval/coherence_distinct2") == 100.0
    assert frames.DOMAIN_METRICS.index("eval/qa_mc_acc") < frames.DOMAIN_METRICS.index("eval/qa_em")
    assert "eval/qa_contains" in frames.DOMAIN_METRICS and "eval/general_kl" in frames.GENERAL_METRICS


def test_labels_name_the_unit_and_the_direction():
    assert frames.change_label("eval/domain_ppl") == "domain ppl, % change (lower is better)"
    assert frames.change_label("eval/if_prompt_strict") == "IF prompt-level strict, points (higher is better)"
    assert frames.change_label("eval/general_kl") == "general KL, nats/token (lower is better)"
    assert frames.gain_label("eval/domain_ppl") == "domain ppl, % drop (higher is better)"
    assert "sign flipped" in frames.gain_label("eval/general_kl")


def test_latest_change_of_a_run_comes_from_its_paired_delta(tmp_path):
    run = write_run(tmp_path, domain_drop=0.2, if_drop=4)
    m = frames.load_metrics(run)
    c = frames.latest_change(m, ("eval/domain_ppl",))
    assert c["gain"] == pytest.approx(20.0) and (c["gain_low"], c["gain_high"]) == pytest.approx((19.0, 21.0))
    assert frames.latest_gain(m, ("eval/if_prompt_strict",)) == pytest.approx(-4.0)
    assert frames.unpaired_metrics(m, frames.DOMAIN_METRICS) == []


def naive_ema(values, weight):
    out, last, num = [], 0.0, 0
    for v in values:
        if not np.isfinite(v):
            out.append(v)
            continue
        last = last * weight + (1 - weight) * v
        num += 1
        out.append(last / (1 - weight ** num))
    return np.array(out)


@pytest.mark.parametrize("weight", [0.01, 0.3, 0.6, 0.9, 0.99])
def test_vectorized_ema_equals_the_step_by_step_definition(weight):
    y = np.random.default_rng(1).normal(3, 1, 3000)
    y[[5, 700, 2999]] = np.nan
    got, want = frames.ema(y, weight), naive_ema(y, weight)
    assert np.allclose(got, want, rtol=1e-9, equal_nan=True)


def test_ema_is_debiased_and_zero_weight_is_identity():
    y = np.array([1.0, 1.0, 1.0, 5.0])
    assert frames.ema(y, 0.0).tolist() == y.tolist()
    s = frames.ema(y, 0.9)
    assert s[0] == pytest.approx(1.0)  # debiased: no pull towards 0 at the start
    assert 1.0 < s[-1] < 5.0


def test_downsampling_keeps_first_last_and_extremes():
    rng = np.random.default_rng(0)
    y = rng.normal(size=5000)
    y[1234], y[4321] = 50.0, -50.0
    idx = frames.downsample_index(y, 400)
    assert len(idx) <= 402
    assert {0, 4999, 1234, 4321} <= set(idx.tolist())
    assert (np.diff(idx) > 0).all()
    assert y[idx].max() == y.max() and y[idx].min() == y.min()
    assert frames.downsample_index(y[:100], 400).tolist() == list(range(100))


def test_curve_smooths_the_full_series_before_downsampling(tmp_path):
    path = tmp_path / "metrics.jsonl"
    w = MetricWriter(path)
    for s in range(3000):
        w.write("train/loss", float(s % 7), s, s)
    w.close()
    c = frames.curve(frames.load_metrics(path), "train/loss", smoothing=0.9, max_points=300)
    assert len(c) <= 302 and c["step"].iloc[0] == 0 and c["step"].iloc[-1] == 2999
    full = frames.ema(np.array([float(s % 7) for s in range(3000)]), 0.9)
    assert c["value"].to_numpy() == pytest.approx(full[c["step"].to_numpy()])
    assert set(c["value_raw"].unique()) <= set(range(7))


def test_eta_follows_the_pace_of_recent_steps(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"step": s, "tokens": s, "time": 2.0 * s, "name": "train/loss", "value": 1.0, "attempt": 1}
             for s in range(1, 11)]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert frames.eta_seconds(frames.load_metrics(path), max_steps=30) == pytest.approx(40.0)
    assert frames.eta_seconds(frames.load_metrics(path), max_steps=None) is None


def test_a_restarted_server_reads_the_parquet_cache_and_trusts_it_only_for_the_same_file(tmp_path, monkeypatch):
    monkeypatch.setattr(frames, "SIDECAR_MIN_BYTES", 200)
    path = tmp_path / "runs" / "r1" / "metrics.jsonl"
    path.parent.mkdir(parents=True)
    w = MetricWriter(path)
    for s in range(50):
        w.write("train/loss", 1.0 + s, s, s)
    first = frames.load_metrics(path).series("train/loss")["value"].tolist()
    assert (tmp_path / "runs" / ".cache" / "metrics" / "r1.parquet").is_file()
    w.write("train/loss", 99.0, 50, 50)  # appended after the cache was written
    w.close()
    parsed = []
    real = frames.parse_lines
    monkeypatch.setattr(frames, "parse_lines", lambda data: parsed.append(len(data)) or real(data))
    frames._TAILS.clear()  # a new server process
    again = frames.load_metrics(path).series("train/loss")["value"].tolist()
    assert again == first + [99.0]
    assert parsed and max(parsed) < 100  # only the appended line was parsed
    text = path.read_text().replace('"value": 1.0', '"value": 7.0', 1)  # same size, rewritten head
    path.write_text(text)
    frames._TAILS.clear()
    assert frames.load_metrics(path).series("train/loss")["value"].iloc[0] == 7.0
