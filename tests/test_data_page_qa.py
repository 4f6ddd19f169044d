"""The Data page's documents report and its QA flow (generate, review with a keep column, save) with AppTest.

Generation uses the page's test hook (st.session_state["data_qa_generator"]: model name -> generate function)
with a fake generator, and once the real tiny random model, whose garbage must give the low-yield message."""
import json
import os
import re
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
DATA_PAGE = "views/4_Data.py"
NAMES = [f"Person{chr(65 + i)}" for i in range(20)]


def home() -> Path:
    return Path(os.environ["CPT_HOME"])


def docs_bytes(n: int = 20) -> bytes:
    rows = [{"text": f"{NAMES[i]} was born in the town of Town{i} in the year {1900 + i}. {NAMES[i]} works for "
                     f"Company{i} as an engineer and has done so for many years. On weekends {NAMES[i]} enjoys "
                     f"sailing on the lake near Town{i} with friends."} for i in range(n)]
    rows.append(dict(rows[0]))  # an exact duplicate of row 1
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def fake_generator(model_name: str):
    def run(prompts: list[str]) -> list[str]:
        out = []
        for p in prompts:
            i = int(re.search(r"Town(\d+)", p).group(1))
            out.append(f"Q: When was {NAMES[i]} born?\nA: {1900 + i}\nQ: Where was {NAMES[i]} born?\nA: Town{i}")
        return out

    return run


def texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("info", "warning", "error", "success", "caption", "markdown")
                     for e in getattr(at, kind))


def open_with_upload(state: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    for k, v in (state or {}).items():
        at.session_state[k] = v
    at.run()
    at.switch_page(DATA_PAGE).run()
    at.get("file_uploader")[0].upload("people.jsonl", docs_bytes()).run()
    at.selectbox(key="data_source").set_value(str((home() / "data" / "people.jsonl").resolve())).run()
    assert not at.exception, at.exception
    return at


def metrics(at: AppTest) -> dict:
    return {m.label: m.value for m in at.metric}


def test_the_documents_report_renders_for_an_uploaded_file():
    at = open_with_upload()
    m = metrics(at)
    assert m["documents"] == "21" and m["held out for evaluation"] == "8"
    assert "8 of 20 distinct documents" in texts(at)
    assert "1 duplicate document(s)" in texts(at) and "row 21 = row 1" in texts(at)
    at.number_input(key="data_budget").set_value(2_000_000).run()
    at.number_input(key="data_share").set_value(0.5).run()
    tokens = int(m["tokens"].replace(",", ""))
    assert metrics(at)["passes at this budget"] == f"{2_000_000 * 0.5 / tokens:,.1f}"


def test_generated_qa_is_reviewed_with_a_keep_column_and_saved_without_unticked_pairs():
    at = open_with_upload({"data_qa_generator": fake_generator})
    at.button[-1].click().run()  # the form's submit button
    assert not at.exception, at.exception
    [editor] = at.data_editor
    table = editor.value
    assert list(table.columns[:4]) == ["keep", "split", "question", "answer"] and table["keep"].all()
    assert len(table) == 40 and set(table["split"]) == {"train", "test"} and table["source passage"].str.len().min() > 0
    # 21 documents x 3 kinds x 2 pairs parsed; repeats (and the duplicate document's) dropped
    assert "40 pairs from 21 documents (1.91 per document); 100% of the 126 parsed pairs" in texts(at)
    assert "qa_train 32 pairs from 16 documents, qa_test 8 pairs from 4" in texts(at)
    dropped = table.iloc[0]
    at.session_state["qa_editor"] = {"edited_rows": {0: {"keep": False}}, "added_rows": [], "deleted_rows": []}
    at.run()
    at.button(key="qa_save").click().run()
    assert not at.exception, at.exception
    train = home() / "data" / "people.qa_train.jsonl"
    test = home() / "data" / "people.qa_test.jsonl"
    rows = [json.loads(l) for f in (train, test) for l in f.read_text().splitlines()]
    assert len(rows) == 39 and (dropped["question"], dropped["answer"]) not in {(r["question"], r["answer"]) for r in rows}
    assert "data.qa" in texts(at) and "picked up automatically for evaluation" in texts(at)


def test_a_model_that_writes_garbage_shows_the_low_yield_message():
    at = open_with_upload({"data_qa_generator": lambda name: (lambda prompts: ["hmm"] * len(prompts))})
    at.text_input(key="qa_model").set_value("smollm2-135m-instruct")
    at.button[-1].click().run()
    assert not at.exception, at.exception
    assert "the 135M default writes few usable questions" in texts(at)
    assert "Nothing to save" in texts(at) and not at.data_editor


def test_the_tiny_random_model_yields_nothing_without_an_exception(tmp_path):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    at.switch_page(DATA_PAGE).run()
    one = json.dumps({"text": "Velmora is a town in the province of Quessa. Velmora was founded in 1181. The river "
                              "Thikresk flows through Velmora, and about nine thousand people live there today."})
    at.get("file_uploader")[0].upload("one.jsonl", (one + "\n").encode()).run()
    at.selectbox(key="data_source").set_value(str((home() / "data" / "one.jsonl").resolve())).run()
    at.text_input(key="qa_model").set_value("tiny-random-llama")
    at.number_input(key="qa_per_doc").set_value(1)
    at.button[-1].click().run()
    assert not at.exception, at.exception
    assert "Low yield: 0 pairs from 1 documents" in texts(at) and "Nothing to save" in texts(at)
    assert not list((home() / "data").glob("*.qa_*"))
