from streamlit.testing.v1 import AppTest


def test_advisor_page_recommends_and_follows_the_answers():
    at = AppTest.from_file("../pages/5_Advisor.py", default_timeout=30).run()
    assert not at.exception
    kinds = {m.label: m.value for m in at.metric}
    assert kinds["model kind"] in ("base", "instruct")
    at.radio(key="advise_keep_chat").set_value("no").run()
    at.radio(key="advise_goal").set_value("new_language").run()
    assert not at.exception
    assert any("cpt train experiments/recipes/" in c.value for c in at.code)
    assert len(at.markdown) >= 1
