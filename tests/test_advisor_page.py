from streamlit.testing.v1 import AppTest

from cptcore.advise import advise


def test_advisor_page_recommends_and_follows_the_answers():
    at = AppTest.from_file("../pages/5_Advisor.py", default_timeout=30).run()
    assert not at.exception
    shown = {m.label: m.value for m in at.metric}
    keep_chat = advise({})
    assert shown["model kind"] == keep_chat.model_kind == "instruct"  # the default answers keep chat
    at.radio(key="advise_keep_chat").set_value("no").run()
    at.radio(key="advise_goal").set_value("new_language").run()
    assert not at.exception
    new_language = advise({"keep_chat": "no", "goal": "new_language"})
    shown = {m.label: m.value for m in at.metric}
    assert shown["model kind"] == new_language.model_kind == "base"  # the advice follows the new answers
    assert any(f"cpt train experiments/recipes/{new_language.recipe}.yaml" in c.value for c in at.code)
