"""Runs side by side: config diff, trade-off with its noise-aware Pareto frontier, per-item results."""
import json

import numpy as np
import pytest

from cptcore import charts, compare, frames
from run_store import write_run, write_scores


def test_pareto_mask_keeps_only_undominated_points():
    x = [1, 2, 3, 2, 0]
    y = [5, 4, 1, 2, 6]
    assert compare.pareto_mask(x, y).tolist() == [True, True, True, False, True]
    assert compare.pareto_mask([1, 1], [1, 1]).tolist() == [True, False]  # duplicates: one representative


def test_tradeoff_points_pair_gains_at_common_steps(tmp_path):
    a = write_run(tmp_path, "a", replay=0.05, domain_drop=0.3, if_drop=8)
    b = write_run(tmp_path, "b", replay=0.25, domain_drop=0.1, if_drop=0)
    m = {r.id: frames.load_metrics(r) for r in (a, b)}
    pts = compare.tradeoff_points(m, "eval/domain_ppl", "eval/if_prompt_strict")
    final = pts[pts["final"]].set_index("run")
    assert final.loc[a.id, "x"] == pytest.approx(30.0) and final.loc[a.id, "y"] == pytest.approx(-8.0)
    assert final.loc[b.id, "x"] == pytest.approx(10.0) and final.loc[b.id, "y"] == pytest.approx(0.0)
    assert sorted(pts["step"].unique()) == [0, 10, 20]
    fig = charts.tradeoff_figure(pts, "domain gain", "IF change", hover={a.id: "replay 5%"})
    frontier = [t for t in fig.data if t.name == "Pareto frontier"][0]
    assert len(frontier.x) == 2  # neither run dominates the other
    assert fig.layout.uirevision == "tradeoff"


def test_tradeoff_points_carry_each_runs_paired_change_interval_on_both_axes(tmp_path):
    a = write_run(tmp_path, "a", domain_drop=0.3, if_drop=8)
    pts = compare.tradeoff_points({a.id: frames.load_metrics(a)}, "eval/domain_ppl", "eval/if_prompt_strict")
    last = pts[pts["final"]].iloc[0]
    assert (last["x_low"], last["x"], last["x_high"]) == pytest.approx((29.0, 30.0, 31.0))  # delta +-0.5 of 50 ppl
    assert (last["y_low"], last["y"], last["y_high"]) == pytest.approx((-11.0, -8.0, -5.0))  # not the value's +-18
    assert pts[pts["step"] == 0][["x_low", "y_low"]].isna().all().all()  # no band at the baseline itself
    kl = compare.tradeoff_points({a.id: frames.load_metrics(a)}, "eval/domain_ppl", "eval/general_kl")
    assert kl[kl["final"]]["y"].iloc[0] == pytest.approx(-0.04)  # KL up is retention down


def _final_scores(run, ppl_losses, if_passed):
    """Replace a fixture run's step-20 per-item scores: domain_ppl from per-document mean losses (100 tokens
    each), if_prompt_strict from pass/fail per prompt."""
    from cptcore.evaluate.stats import proportion, ratio_score

    write_scores(run, "domain_ppl", 20, {"d": ratio_score("eval/domain_ppl", [(100 * v, 100) for v in ppl_losses],
                                                          "exp", ids=[f"doc{i}" for i in range(len(ppl_losses))])})
    write_scores(run, "ifeval", 20, {"i": proportion("eval/if_prompt_strict", if_passed, scale=100,
                                                     ids=list(range(len(if_passed))))})


def _tradeoff(a, b):
    m = {r.id: frames.load_metrics(r) for r in (a, b)}
    pts = compare.tradeoff_points(m, "eval/domain_ppl", "eval/if_prompt_strict")
    final, pairs = compare.tradeoff_frontier(pts, {a.id: a, b.id: b}, "eval/domain_ppl", "eval/if_prompt_strict")
    return pts, final.set_index("run"), pairs


def test_tradeoff_dominance_is_refused_when_the_paired_difference_crosses_zero(tmp_path):
    a = write_run(tmp_path, "a", domain_drop=0.3, if_drop=0)   # better on both axes by the point estimates
    b = write_run(tmp_path, "b", domain_drop=0.1, if_drop=4)
    rng = np.random.default_rng(0)
    base = rng.normal(3.9, 0.3, 40)
    noise = rng.normal(0, 0.1, 40)
    noise -= noise.mean()
    _final_scores(a, base - 0.01 + noise, [i % 2 == 0 for i in range(20)])  # 0.01 nats lower on average
    _final_scores(b, base - noise, [i % 2 == 1 for i in range(20)])
    pts, final, pairs = _tradeoff(a, b)
    assert final.loc[a.id, "x"] > final.loc[b.id, "x"] and final.loc[a.id, "y"] > final.loc[b.id, "y"]
    assert final["frontier"].all() and (final["dominated_by"] == "").all()  # noise: nobody is called better
    row = pairs.iloc[0]
    assert len(pairs) == 1 and not row["dominates"] and row["x diff"] > 0  # a is ahead, within noise
    for ci in (row["x 95% CI"], row["y 95% CI"]):
        lo, hi = (float(v) for v in ci.split(" .. "))
        assert lo < 0 < hi
    fig = charts.tradeoff_figure(pts, "x", "y", frontier=final.reset_index())
    assert len([t for t in fig.data if t.name == "Pareto frontier"][0].x) == 2


def test_tradeoff_dominance_holds_when_the_paired_difference_excludes_zero(tmp_path):
    a = write_run(tmp_path, "a", domain_drop=0.3, if_drop=0)
    b = write_run(tmp_path, "b", domain_drop=0.1, if_drop=4)
    base = np.random.default_rng(1).normal(3.9, 0.3, 40)
    _final_scores(a, base - 0.2, [i % 2 == 0 for i in range(20)])  # lower loss on every document
    _final_scores(b, base, [i % 2 == 1 for i in range(20)])         # IF: a tie within noise
    pts, final, pairs = _tradeoff(a, b)
    assert final.loc[a.id, "frontier"] and not final.loc[b.id, "frontier"]
    assert final.loc[b.id, "dominated_by"] == a.id
    row = pairs.iloc[0]
    assert row["dominates"] and row["x diff"] > 0 and row["x n"] == 40 and row["y n"] == 20
    fig = charts.tradeoff_figure(pts, "x", "y", frontier=final.reset_index())
    assert len([t for t in fig.data if t.name == "Pareto frontier"][0].x) == 1


def test_pareto_mask_with_paired_evidence_needs_it_to_dominate():
    x, y = [2.0, 1.0], [2.0, 1.0]
    assert compare.pareto_mask(x, y).tolist() == [True, False]  # exact numbers
    assert compare.pareto_mask(x, y, np.zeros((2, 2), bool)).tolist() == [True, True]
    assert compare.pareto_mask(x, y, np.ones((2, 2), bool)).tolist() == [True, False]


def test_paired_items_work_for_knowledge_mc_scores_files(tmp_path):
    from cptcore.evaluate.stats import proportion

    a, b = write_run(tmp_path, "a"), write_run(tmp_path, "b")
    for run, right in ((a, 10), (b, 16)):  # B ranks the gold answer first on 6 more of 20 questions
        rows = [{"id": f"q{i}", "question": f"Q{i}?", "gold": "yes", "choices": ["yes", "no"],
                 "picked": "yes" if i < right else "no", "correct": i < right} for i in range(20)]
        (run.dir / "eval" / "knowledge_mc-step000020.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        write_scores(run, "knowledge_mc", 20, {"mc": proportion("eval/qa_mc_acc", [r["correct"] for r in rows],
                                                                 scale=100, ids=[r["id"] for r in rows])})
    assert "knowledge_mc" in compare.paired_evaluators(a, b)
    table, summary = compare.paired_items(a, b, "knowledge_mc")
    row = summary["metrics"].set_index("metric").loc["QA multiple-choice accuracy"]
    assert row["B - A"] == pytest.approx(30.0) and row["n"] == 20 and row["A"] == pytest.approx(50.0)
    lo, hi = (float(v) for v in row["95% CI"].split(" .. "))
    assert 0 < lo < 30 < hi and row["verdict"] == "B better"
    assert len(table) == 20 and table["response B"].iloc[12] == "yes" and table["response A"].iloc[12] == "no"
    assert summary["better"] == 6 and summary["worse"] == 0


def test_config_diff_shows_only_differing_keys_including_the_manifest(tmp_path):
    a = write_run(tmp_path, "a", replay=0.1, lr=3e-5)
    b = write_run(tmp_path, "b", replay=0.1, lr=1e-4)
    a.write_manifest({"roles": {"domain": {"sources": [{"path": "x", "sha256": "aaa"}]}}})
    b.write_manifest({"roles": {"domain": {"sources": [{"path": "x", "sha256": "bbb"}]}}})
    diff = compare.config_diff([a, b])
    keys = set(diff["key"])
    assert keys == {"name", "train.lr", "manifest.roles.domain.sources.0.sha256"}
    row = diff.set_index("key").loc["train.lr"]
    assert row[a.id] == "3e-5" and row[b.id] == "1e-4"  # fmt.lr, as Home and Launch write LRs


def test_compare_writes_learning_rates_as_5e_5_in_hover_diff_and_lr_chart(tmp_path):
    a = write_run(tmp_path, "a", lr=5e-5)
    b = write_run(tmp_path, "b", lr=2.5e-5)
    hover = compare.config_summary(a)
    assert "lr 5e-5 " in hover and "5e-05" not in hover
    diff = compare.config_diff([a, b]).set_index("key")
    assert diff.loc["train.lr", [a.id, b.id]].tolist() == ["5e-5", "2.5e-5"]
    flat = compare.flatten({"train": {"lr": 5e-5, "min_lr_ratio": 0.1}, "stages": [{"lr": 1e-5}, {"lr": None}]})
    assert flat == {"train.lr": "5e-5", "train.min_lr_ratio": "0.1", "stages.0.lr": "1e-5", "stages.1.lr": ""}
    curves = {r.id: frames.curve(frames.load_metrics(r), "train/lr") for r in (a, b)}
    yaxis = charts.compare_figure(curves, "train/lr").layout.yaxis
    assert (yaxis.exponentformat, yaxis.tickformat, yaxis.hoverformat) == ("e", "~e", "~e")  # not plotly's 50µ


def test_paired_items_line_up_the_same_prompts(tmp_path):
    a = write_run(tmp_path, "a", if_drop=4)   # final step: 1 of 4 prompts followed
    b = write_run(tmp_path, "b", if_drop=0)   # final step: 3 of 4 followed
    table, summary = compare.paired_items(a, b)
    assert len(table) == 4
    assert table["change"].tolist() == ["same", "B better", "B better", "same"]
    assert table["response A"].iloc[0] == "reply 0 step 20"
    assert summary["n"] == 4 and summary["better"] == 2 and summary["worse"] == 0
    row = summary["metrics"].set_index("metric").loc["IF prompt-level strict"]  # from the scores files
    assert row["B - A"] == pytest.approx(50.0) and row["n"] == 4 and row["unit"] == "points"
    assert summary["step_a"] == summary["step_b"] == 20


def test_generations_read_the_latest_step_with_pass_fail(tmp_path):
    run = write_run(tmp_path, if_drop=4)
    g = compare.generations(run, "ifeval")
    assert set(g["step"]) == {20} and g["passed"].tolist() == [True, False, False, False]
    qa = compare.generations(run, "knowledge_qa")
    assert qa["gold"].tolist() == ["Lumen Bay", "Ada Marr"] and qa["passed"].tolist() == [True, False]
    assert compare.generations(run, "ifeval", step=0)["passed"].tolist() == [True, True, False, False]


def test_charts_export_as_standalone_html_and_png(tmp_path):
    a = write_run(tmp_path, "a")
    curves = {a.id: frames.curve(frames.load_metrics(a), "train/loss")}
    fig = charts.compare_figure(curves, "train/loss")
    html = charts.to_html(fig)
    assert "<html>" in html[:200] and a.id in html and "plotly" in html
    if not charts.png_export_available():
        pytest.skip("PNG export needs kaleido and Chromium")
    assert charts.to_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"
