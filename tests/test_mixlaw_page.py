"""Compare's Mix law view on a stored pilot group, its "Launch this mix", and pilot sweeps queued from Compare and
Launch (AppTest; the browser test is in test_browser.py)."""
import json
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cptcore import mixlaw
from cptcore.runs import list_runs
from cptcore.runs.groups import read_group
from run_store import write_pilot_group

ROOT = Path(__file__).resolve().parents[1]


def home() -> Path:
    return Path(os.environ["CPT_HOME"])


@pytest.fixture
def pilot():
    return write_pilot_group(home())


def compare_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("views/3_Compare.py").run()
    assert not at.exception, at.exception
    return at


def mixlaw_chart(at: AppTest) -> dict:
    return next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "Mix law" in c.proto.spec)


def test_the_mix_law_view_shows_pilots_laws_budget_and_the_recommended_share(pilot):
    at = compare_page()
    assert at.selectbox(key="mixlaw_group").value == "pilot-fixture"
    assert at.selectbox(key="mixlaw_objective").value == "eval/qa_mc_acc"
    assert at.selectbox(key="mixlaw_budget_metric").value == "eval/general_kl"  # a usable law first
    at.number_input(key="mixlaw_limit_eval/general_kl").set_value(0.06).run()
    _, rec = mixlaw.advise("pilot-fixture", home(), "qa_mc_acc", {"general_kl": 0.06}, record=False)
    shown = {m.label: m.value for m in at.metric}
    assert shown["recommended replay share"] == f"{rec['share']:.3g}"
    assert shown["predicted QA multiple-choice accuracy"].endswith(" points")
    fig = mixlaw_chart(at)
    names = [t.get("name", "") for t in fig["data"]]
    for label in ("QA multiple-choice accuracy", "domain ppl", "IF prompt-level strict", "general KL", "general (replay) ppl"):
        assert f"{label} law" in names and f"{label} pilots" in names
    pilots = next(t for t in fig["data"] if t.get("name") == "general KL pilots")
    assert len(pilots["x"]) == 5 and "error_y" in pilots
    assert pilots["customdata"] == [r.id for r in pilot]
    assert "mix.replay 0.4 (base 0.1)" in pilots["text"][3]  # hover: the run's config diff against the base
    refused = next(t for t in fig["data"] if t.get("name") == "IF prompt-level strict law")
    assert refused["line"]["dash"] == "dash"  # pure noise: drawn as refused
    shapes = fig["layout"]["shapes"]
    assert any(s["line"].get("color") == "#d62728" and s["y0"] == pytest.approx(-0.06) for s in shapes)  # budget
    assert sum(s.get("x0") == pytest.approx(rec["share"]) for s in shapes) == 5  # the share, on every panel
    assert any(t.get("name") == "recommended" for t in fig["data"])
    table = next(d.value for d in at.dataframe if "verdict" in d.value.columns and "law" in d.value.columns)
    assert list(table["verdict"].str.startswith("refused")) == [False, False, True, False, False]
    assert list(table["n runs"]) == [5] * 5 and list(table["n items"]) == [60] * 5
    assert list(table["n evaluations"]) == [10] * 5  # steps 10 and 20 of each run
    card = next(m for m in at.metric if m.label == "predicted QA multiple-choice accuracy")
    assert "law fitted on 10 evaluations of 5 pilot runs, 60 items each" in card.help


def test_a_budget_on_a_metric_the_law_cannot_predict_says_why(pilot):
    at = compare_page()
    at.selectbox(key="mixlaw_budget_metric").set_value("eval/if_prompt_strict").run()
    assert not at.exception
    assert "recommended replay share" not in [m.label for m in at.metric]
    assert any(w.value.startswith("No recommendation: if_prompt_strict:") and "includes 0" in w.value
               for w in at.warning)
    assert "mixlaw_launch" not in [b.key for b in at.button]


def test_launch_this_mix_fills_launch_with_the_pilot_config_and_saves_the_choice(pilot):
    at = compare_page()
    at.number_input(key="mixlaw_limit_eval/general_kl").set_value(0.06).run()
    at.button(key="mixlaw_launch").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Launch a run"
    assert at.selectbox(key="launch_recipe").value == "pilot: pilot-fixture"
    saved = json.loads((home() / "groups" / "pilot-fixture" / "mixlaw.json").read_text())
    rec = saved["recommendations"][-1]
    assert rec["budget"] == {"eval/general_kl": 0.06} and rec["objective"] == "eval/qa_mc_acc"
    sliders = [at.slider(key=f"mix.{r}").value for r in ("domain", "replay", "instruct")]
    assert sum(sliders) == 100
    assert sliders[1] == pytest.approx(100 * rec["mix"]["replay"], abs=0.5)
    assert at.number_input(key="train.max_steps").value == read_group("pilot-fixture")["config"]["train"]["max_steps"]
    assert at.text_input(key="name").value.startswith("pilot-replay0.")


def test_a_pilot_is_queued_from_compare_and_from_launch(no_spawn):
    from run_store import write_run

    write_run(home(), "base", replay=0.1)
    at = compare_page()
    at.text_input(key="pilot_shares_compare").set_value("0, 0.1, 0.2, 0.4").run()
    at.button(key="pilot_queue").click().run()
    assert not at.exception, at.exception
    assert any("Queued 4 runs as pilot group" in s.value for s in at.success)
    assert len(no_spawn) == 4
    at.switch_page("views/1_Launch.py").run()
    at.selectbox(key="launch_recipe").set_value("smoke.yaml").run()
    at.radio(key="sweep_kind").set_value("pilot").run()
    at.text_input(key="pilot_shares").set_value("0, 0.2, 0.4, 0.6, 0.8").run()
    at.button(key="sweep").click().run()
    assert not at.exception, at.exception
    assert len(no_spawn) == 9
    groups = {read_group(r.meta()["group"])["kind"] for r in list_runs(home()) if r.meta().get("group")}
    assert groups == {"pilot"}
    at.text_input(key="pilot_shares").set_value("0, 0.2").run()
    at.button(key="sweep").click().run()
    assert any("a mixing law needs at least 4" in e.value for e in at.error) and len(no_spawn) == 9


def test_a_pilot_with_too_few_finished_shares_says_what_it_waits_for(pilot):
    import shutil

    for run in pilot[2:]:
        shutil.rmtree(run.dir / "eval")  # three runs have not evaluated yet
    at = compare_page()
    assert any("No law yet for pilot group pilot-fixture" in i.value and "at 2 of 5 shares so far" in i.value
               for i in at.info)
    assert not [c for c in at.get("plotly_chart") if "Mix law" in c.proto.spec]
