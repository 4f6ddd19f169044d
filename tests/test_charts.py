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
