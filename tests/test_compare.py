"""Runs side by side: config diff, trade-off with its Pareto frontier, per-item results."""
import pytest

from cptcore import charts, compare, frames
from run_store import write_run


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


def test_config_diff_shows_only_differing_keys_including_the_manifest(tmp_path):
    a = write_run(tmp_path, "a", replay=0.1, lr=3e-5)
    b = write_run(tmp_path, "b", replay=0.1, lr=1e-4)
    a.write_manifest({"roles": {"domain": {"sources": [{"path": "x", "sha256": "aaa"}]}}})
    b.write_manifest({"roles": {"domain": {"sources": [{"path": "x", "sha256": "bbb"}]}}})
    diff = compare.config_diff([a, b])
    keys = set(diff["key"])
    assert keys == {"name", "train.lr", "manifest.roles.domain.sources.0.sha256"}
    row = diff.set_index("key").loc["train.lr"]
    assert row[a.id] == "3e-05" and row[b.id] == "0.0001"


def test_paired_items_line_up_the_same_prompts(tmp_path):
    a = write_run(tmp_path, "a", if_drop=4)   # final step: 1 of 4 prompts followed
    b = write_run(tmp_path, "b", if_drop=0)   # final step: 3 of 4 followed
    table, summary = compare.paired_items(a, b)
    assert len(table) == 4
    assert table["change"].tolist() == ["same", "B better", "B better", "same"]
    assert table["response A"].iloc[0] == "reply 0 step 20"
    assert summary["n"] == 4 and summary["better"] == 2 and summary["worse"] == 0
    assert summary["mean_diff"] == pytest.approx(0.5)


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
