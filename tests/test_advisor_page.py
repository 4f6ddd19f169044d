from pathlib import Path

from streamlit.testing.v1 import AppTest

from cptcore.advise import advise

ROOT = Path(__file__).resolve().parents[1]


def test_advisor_page_recommends_and_follows_the_answers():
    at = AppTest.from_file("../views/5_Advisor.py", default_timeout=30).run()
    assert not at.exception
    shown = {m.label: m.value for m in at.metric}
    keep_chat = advise({})
    assert shown["model kind"] == keep_chat.model_kind == "instruct"  # the default answers keep chat
    assert shown["peak LR"] == "2e-5" and shown["replay"] == "15%" and shown["instruct"] == "5%"
    assert "range 1e-5 .. 5e-5 for instruct + full" in [c.value for c in at.caption]
    at.radio(key="advise_keep_chat").set_value("no").run()
    at.radio(key="advise_goal").set_value("new_language").run()
    assert not at.exception
    new_language = advise({"keep_chat": "no", "goal": "new_language"})
    shown = {m.label: m.value for m in at.metric}
    assert shown["model kind"] == new_language.model_kind == "base"  # the advice follows the new answers
    assert any(f"cpt train experiments/recipes/{new_language.recipe}.yaml" in c.value for c in at.code)


def test_use_these_settings_fills_the_launch_form_and_opens_it():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    at.switch_page("views/5_Advisor.py").run()
    at.radio(key="advise_has_qa").set_value("no").run()  # knowledge without QA: knowledge_instruct
    adv = advise({"has_qa": "no"})
    at.button(key="advise_use").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Launch a run"
    assert at.selectbox(key="launch_recipe").value == f"recipes/{adv.recipe}.yaml"
    assert at.selectbox(key="recipe").value == adv.recipe == "knowledge_instruct"
    assert at.radio(key="model.kind").value == adv.model_kind and at.radio(key="train.method").value == adv.method
    assert at.number_input(key="train.lr").value == adv.overrides()["train.lr"] == 2e-5
    assert [at.slider(key=f"mix.{r}").value for r in ("domain", "replay", "instruct")] == [80, 15, 5]
    assert not [w for w in at.warning if "LR" in w.value]  # the advised LR is inside the range the checks use


def test_the_demo_follows_the_advice_or_says_why_not():
    """The Advisor's default answers are the demo's situation: where demo.yaml departs, its comments say so."""
    from cptcore import fmt
    from cptcore.config import RunConfig

    text = (ROOT / "experiments" / "demo.yaml").read_text()
    demo, adv = RunConfig.load(ROOT / "experiments" / "demo.yaml"), advise({})
    assert (demo.model.kind, demo.train.method) == (adv.model_kind, adv.method)
    assert (demo.mix.replay, demo.mix.instruct) == (adv.replay_share, adv.instruct_share)
    lo, hi = adv.lr_range
    if not lo <= demo.train.lr <= hi:
        assert f"lr {fmt.lr(demo.train.lr)}, twice the advised {fmt.lr(lo)}..{fmt.lr(hi)}" in text
    if demo.recipe != adv.recipe:
        assert f"not {adv.recipe}" in text and f"recipes/{adv.recipe}.yaml" in text
