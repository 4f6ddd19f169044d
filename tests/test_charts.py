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


def subplot_of(fig, trace) -> tuple:
    """(subplot title, y-axis title) of the subplot a trace is drawn on."""
    yaxis = fig.layout[(trace.yaxis or "y").replace("y", "yaxis")]
    x0, x1 = fig.layout[(trace.xaxis or "x").replace("x", "xaxis")].domain
    title = next(a.text for a in fig.layout.annotations if x0 <= a.x <= x1 and abs(a.y - yaxis.domain[1]) < 1e-6)
    return title.replace("<br>", ", "), yaxis.title.text  # two lines: the metric, then its unit and direction


def test_baseline_chart_is_small_multiples_one_metric_per_subplot_with_its_unit_and_paired_band():
    fig = charts.baseline_figure(eval_stream(), "step")
    lines = [t for t in fig.data if not t.name.endswith("95% paired CI")]
    assert [t.name for t in lines] == ["QA multiple-choice accuracy", "IF prompt-level strict"]  # domain first
    assert len({t.yaxis for t in lines}) == 2  # one metric per subplot
    line = lines[1]
    band = next(t for t in fig.data if t.name == "IF prompt-level strict 95% paired CI")
    assert band.yaxis == line.yaxis and band.xaxis == line.xaxis
    assert list(line.y) == [0.0, -2.0, -4.0]
    assert list(band.y) == [0.0, 0.0, -2.0, -6.0, -4.0, 0.0]  # 0 at step 0, then the paired delta CI (not +-18)
    assert "-2.0 points (paired 95% CI -4.0 .. +0.0), n=25" in line.text[1]
    title, ytitle = subplot_of(fig, line)
    assert "IF prompt-level strict, points (higher is better)" in title and "General" in title
    assert ytitle == "points from step 0"
    assert "Domain" in subplot_of(fig, lines[0])[0]
    assert fig.layout.showlegend is False  # the subplot titles name the metrics
    assert fig.layout.xaxis2.matches == "x"  # linked x axes: zoom one, zoom all


def ppl_stream(extra: bool = False) -> frames.Metrics:
    """domain ppl 50 -> 40 -> 35 (paired deltas, CI +-0.5 ppl); with extra, replay ppl 4.3 -> 8.3 at step 20."""
    recs = []
    for s, v in ((0, 50.0), (10, 40.0), (20, 35.0)):
        d = {} if s == 0 else {"delta": v - 50.0, "delta_ci_low": v - 50.5, "delta_ci_high": v - 49.5, "delta_n": 32}
        recs.append({"step": s, "tokens": s, "time": s, "name": "eval/domain_ppl", "value": v, "attempt": 1,
                     "unit": "ppl", **d})
    if extra:
        for s, v in ((0, 4.3), (20, 8.3)):
            d = {} if s == 0 else {"delta": 4.0, "delta_ci_low": 3.5, "delta_ci_high": 4.4, "delta_n": 32}
            recs.append({"step": s, "tokens": s, "time": s, "name": "eval/replay_ppl", "value": v, "attempt": 1,
                         "unit": "ppl", **d})
    return frames.metrics_from_records(recs)


def test_a_perplexity_drop_is_drawn_as_a_positive_gain_in_percent_of_step_0():
    fig = charts.baseline_figure(ppl_stream(), "step")
    line = next(t for t in fig.data if t.name == "domain ppl")
    assert list(line.y) == [0.0, 20.0, 30.0]  # 50 -> 35 is a 30 % drop: +30, as Home's "domain gain"
    title, ytitle = subplot_of(fig, line)
    assert "domain ppl, % drop (higher is better)" in title and ytitle == "% drop from step 0"
    assert "+30.0 % drop (paired 95% CI +29.0 .. +31.0)" in line.text[2] and "domain ppl 35" in line.text[2]


def test_a_metric_keeps_its_colour_and_uid_when_another_metric_appears():
    alone, both = charts.baseline_figure(ppl_stream(), "step"), charts.baseline_figure(ppl_stream(True), "step")

    def styles(fig):
        return {t.uid: (t.line.color if t.fill is None else t.fillcolor) for t in fig.data}

    assert styles(alone).items() <= styles(both).items()
    dppl, rppl = charts.trace_uid("eval/domain_ppl"), charts.trace_uid("eval/replay_ppl")
    assert styles(both)[dppl] != styles(both)[rppl] and styles(both)[dppl] == charts.metric_color("eval/domain_ppl")
    k1 = charts.knowledge_figure(eval_stream(), "step")
    assert next(t for t in k1.data if t.name == "QA multiple-choice accuracy, %").line.color == \
        charts.metric_color("eval/qa_mc_acc")


def test_every_figure_keeps_its_uirevision_and_trace_uids_across_refreshes():
    m = stream_with_events()
    for build in (lambda: charts.loss_figure(m, "step", revision="r1"),
                  lambda: charts.mix_figure(m, "step", revision="r1"),
                  lambda: charts.baseline_figure(ppl_stream(True), "step", revision="r1"),
                  lambda: charts.knowledge_figure(eval_stream(), "step", revision="r1")):
        a, b = build(), build()
        assert a.layout.uirevision == "r1" == b.layout.uirevision
        assert all(t.uid for t in a.data) and [t.uid for t in a.data] == [t.uid for t in b.data]
        assert len({t.uid for t in a.data}) == len(a.data)


def test_a_run_keeps_its_colour_when_another_run_is_selected():
    first = charts.run_colors(["a", "b"])
    more = charts.run_colors(["c", "a", "b"], keep=first)  # a new run put first
    assert more["a"] == first["a"] and more["b"] == first["b"] and more["c"] not in (first["a"], first["b"])
    assert charts.run_colors(["b"], keep=more) == {"b": first["b"]}
    curve = frames.curve(ppl_stream(), "eval/domain_ppl")
    fig = charts.compare_figure({"c": curve, "a": curve}, "eval/domain_ppl", "step", change=True, colors=more)
    assert {t.name: t.line.color for t in fig.data if t.fill is None} == {"c": more["c"], "a": more["a"]}
    assert list(next(t for t in fig.data if t.name == "a").y) == [0.0, 20.0, 30.0]  # the same gain as Monitor
    assert fig.layout.yaxis.title.text == "domain ppl: % drop from step 0"


def test_a_warning_quotes_the_number_the_chart_draws():
    """ln(ppl) 1.46 -> 2.12 is +45 %, the perplexity 4.3 -> 8.3 is +93 %: the rule measures the first, the chart
    draws the second; the warning quotes the chart's number, in its words, then the rule's."""
    from cptcore.config import RunConfig
    from cptcore.evaluate.callback import EvalCallback

    m = ppl_stream(True)
    rec = m.series("eval/replay_ppl").iloc[-1].dropna().to_dict()
    cb = object.__new__(EvalCallback)  # breaches() needs only the eval thresholds
    cb.ecfg = RunConfig().eval
    ((metric, _, message),) = cb.breaches({"eval/replay_ppl": rec})
    line = next(t for t in charts.baseline_figure(m, "step").data if t.name == "general (replay) ppl")
    shown = frames.format_gain(metric, line.y[-1])
    assert shown == "-93.0"
    assert message.startswith(f"general (replay) ppl {shown} % drop (paired 95% CI -102.3 .. -81.4) from step 0")
    assert message.split(" from step 0")[0].removeprefix("general (replay) ppl ") in line.text[-1]  # hover: same words
    assert "its loss ln(ppl) rose 45.1%" in message


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


def test_the_learning_rate_axis_reads_5e_5_not_an_si_prefix():
    recs = [{"step": s, "tokens": s, "time": s, "name": "train/lr", "value": 5e-5, "attempt": 1} for s in (1, 2)]
    fig = charts.series_figure(frames.metrics_from_records(recs), ["train/lr"], "learning rate")
    assert fig.layout.yaxis.exponentformat == "e" and fig.layout.yaxis.tickformat == "~e"
    other = charts.series_figure(frames.metrics_from_records(
        [{**r, "name": "train/grad_norm"} for r in recs]), ["train/grad_norm"], "gradient norm")
    assert other.layout.yaxis.tickformat is None
