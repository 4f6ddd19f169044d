"""Figures mark the events that change what is trained, at the x of the chosen axis."""
from cptcore import charts, frames


def stream_with_events() -> frames.Metrics:
    recs = [{"step": s, "tokens": 100 * s, "time": 0.5 * s, "name": "train/loss", "value": 3.0 - 0.1 * s, "attempt": 1}
            for s in range(1, 11)]
    recs += [{"step": s, "tokens": 100 * s, "time": 0.5 * s, "name": "mix/domain", "value": 0.8, "attempt": 1}
             for s in range(1, 11)]
    recs += [
        {"step": 0, "tokens": 0, "time": 0.0, "name": "event/stage", "value": None, "attempt": 1,
         "message": "stage 1/2 cpt"},
        {"step": 6, "tokens": 600, "time": 3.0, "name": "event/stage", "value": None, "attempt": 1,
         "message": "stage 2/2 qa"},
        {"step": 8, "tokens": 800, "time": 4.0, "name": "event/mix_change", "value": None, "attempt": 1,
         "message": "replay share raised 0.10 -> 0.15"},
        {"step": 9, "tokens": 900, "time": 4.5, "name": "event/warning", "value": None, "attempt": 1,
         "message": "IF fell"},
    ]
    return frames.metrics_from_records(recs)


def test_stage_starts_after_the_first_and_mix_changes_are_marked_on_loss_and_mix_charts():
    m = stream_with_events()
    for x, expected in (("step", [6.0, 8.0]), ("tokens", [600.0, 800.0]), ("time", [3.0, 4.0])):
        for fig in (charts.loss_figure(m, x), charts.mix_figure(m, x)):
            marks = [s for s in fig.layout.shapes if s.line.dash == "dot" and s.x0 == s.x1]
            assert sorted(s.x0 for s in marks) == expected, x
            hover = {a.text: a.hovertext for a in fig.layout.annotations}
            assert hover == {"stage": "stage 2/2 qa", "mix": "replay share raised 0.10 -> 0.15"}


def test_a_run_without_such_events_has_no_marks():
    recs = [{"step": s, "tokens": s, "time": s, "name": "train/loss", "value": 1.0, "attempt": 1} for s in (1, 2)]
    fig = charts.loss_figure(frames.metrics_from_records(recs))
    assert not fig.layout.shapes and not fig.layout.annotations


def test_requested_mix_is_drawn_from_the_stream_per_step():
    recs = [{"step": s, "tokens": s, "time": s, "name": n, "value": v, "attempt": 1}
            for s in (1, 2, 3) for n, v in (("mix/instruct", 0.8), ("mix/requested/instruct", 0.85 - 0.1 * (s > 2)))]
    fig = charts.mix_figure(frames.metrics_from_records(recs), "step")
    requested = next(t for t in fig.data if t.name == "instruct requested")
    assert requested.line.dash == "dot" and list(requested.y) == [85.0, 85.0, 75.0]


def eval_stream(paired: bool = True) -> frames.Metrics:
    """IF prompt-level strict (value CI +-18) and multiple-choice accuracy at steps 0, 10, 20."""
    recs = []
    for s, (ifs, mc) in zip((0, 10, 20), ((40.0, 25.0), (38.0, 35.0), (36.0, 45.0))):
        d = {} if s == 0 or not paired else {"delta": ifs - 40.0, "delta_ci_low": ifs - 42.0,
                                             "delta_ci_high": ifs - 38.0, "delta_n": 25}
        recs.append({"step": s, "tokens": s, "time": s, "name": "eval/if_prompt_strict", "value": ifs, "attempt": 1,
                     "ci_low": ifs - 18, "ci_high": ifs + 18, "n": 25, "unit": "%", **d})
        recs.append({"step": s, "tokens": s, "time": s, "name": "eval/qa_mc_acc", "value": mc, "attempt": 1,
                     "ci_low": mc - 9, "ci_high": mc + 9, "n": 40, "unit": "%", "chance": 20.0})
    return frames.metrics_from_records(recs)


def test_baseline_chart_band_is_the_paired_ci_anchored_at_zero_and_labels_carry_units():
    fig = charts.baseline_figure(eval_stream(), "step")
    line = next(t for t in fig.data if t.name == "IF prompt-level strict, points (higher is better)")
    band = next(t for t in fig.data if t.name.endswith("95% paired CI") and t.name.startswith("IF"))
    assert list(line.y) == [0.0, -2.0, -4.0]
    assert list(band.y) == [0.0, 0.0, -2.0, -6.0, -4.0, 0.0]  # 0 at step 0, then the paired delta CI (not +-18)
    assert "95% paired CI -4.00 .. +0.00, n=25" in line.text[1]
    assert fig.layout.yaxis2.title.text == "change from step 0: points"


def test_a_change_without_delta_gets_no_band_and_its_hover_says_why():
    fig = charts.baseline_figure(eval_stream(paired=False), "step")
    assert not [t for t in fig.data if t.name.endswith("95% paired CI")]
    line = next(t for t in fig.data if t.name.startswith("IF prompt-level strict"))
    assert list(line.y) == [0.0, -2.0, -4.0] and "no paired CI" in line.text[2] and "baseline" in line.text[0]


def test_multiple_choice_chart_draws_the_chance_level_dashed_from_the_records():
    fig = charts.knowledge_figure(eval_stream(), "step")
    chance = next(t for t in fig.data if t.name == "multiple-choice chance, %")
    assert chance.line.dash == "dash" and list(chance.y) == [20.0, 20.0, 20.0]
    acc = next(t for t in fig.data if t.name == "QA multiple-choice accuracy, %")
    assert list(acc.y) == [25.0, 35.0, 45.0]
    assert "% of questions" in fig.layout.yaxis.title.text
