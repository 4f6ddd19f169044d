"""No page shows a literal "None" or "nan": every page on a store with a completed, a running, a failed and a
queued run, all its rendered text scanned (markdown, captions, alerts, metrics, labels, options, chart titles
and legends, dataframe cells, and the missing-value placeholder of dataframes)."""
import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cptcore.runs import Run
from run_store import fixture_config, make_run, write_run
from test_pages import open_page as open_pages_page

ROOT = Path(__file__).resolve().parents[1]
WORDS = re.compile(r"\b(None|nan|NaN)\b")
SKIP_FIELDS = {"id", "form_id", "arrow_data", "lazy_data", "spec", "columns", "selection_state",
               "selection_default", "theme", "body_hash", "type", "icon", "data"}  # ids, data and enums, not text


def _strings(message, path: str = ""):
    """Every string a protobuf element carries (labels, help, options, values), with its field path."""
    for field, value in message.ListFields():
        if field.name in SKIP_FIELDS:
            continue
        values = value if getattr(field, "is_repeated", False) else [value]
        for v in values:
            if isinstance(v, str):
                yield f"{path}{field.name}", v
            elif hasattr(v, "ListFields"):
                yield from _strings(v, f"{path}{field.name}.")


def _plotly_strings(spec: str):
    """Chart titles, axis titles, trace names, annotations and hover/text labels of a plotly spec."""
    fig = json.loads(spec)
    layout = fig.get("layout", {})
    for key, value in layout.items():
        if isinstance(value, dict):
            title = value.get("title")
            yield f"layout.{key}.title", str(title.get("text", "") if isinstance(title, dict) else title or "")
    title = layout.get("title")
    yield "layout.title", str(title.get("text", "") if isinstance(title, dict) else title or "")
    for ann in layout.get("annotations", []):
        yield "annotation", str(ann.get("text", ""))
    for trace in fig.get("data", []):
        yield "trace.name", str(trace.get("name", ""))
        for key in ("text", "hovertext", "customdata"):
            value = trace.get(key)
            if isinstance(value, str):
                yield f"trace.{key}", value
            elif isinstance(value, list):
                yield f"trace.{key}", json.dumps(value)


def _dataframe_findings(node) -> list[str]:
    """Cells with the words, and missing values drawn as "None" (no placeholder) in the visible columns."""
    frame = node.value
    config = json.loads(node.proto.columns or "{}")
    visible = [c for c in (list(node.proto.column_order) or list(frame.columns))
               if c in frame.columns and not (config.get(f"col:name:{c}") or config.get(c) or {}).get("hidden")]
    out = []
    placeholder = node.proto.placeholder if node.proto.HasField("placeholder") else "None"
    for column in visible:
        values = frame[column]
        if values.isna().any() and WORDS.search(placeholder):
            out.append(f"dataframe column {column!r}: missing values shown as {placeholder!r}")
        for v in values.dropna().astype(str):
            if WORDS.search(v):
                out.append(f"dataframe column {column!r}: cell {v[:80]!r}")
                break
    if WORDS.search(" ".join(map(str, visible))):
        out.append(f"dataframe header: {visible}")
    return out


def findings(at: AppTest) -> list[str]:
    """Where the page shows "None" or "nan", as 'element field: text'."""
    out = []
    for node in at._tree:
        kind = getattr(node, "type", type(node).__name__)
        proto = getattr(node, "proto", None)
        if kind == "arrow_data_frame" or type(node).__name__ == "Dataframe":
            out += _dataframe_findings(node)
            continue
        if proto is None or not hasattr(proto, "ListFields"):
            continue
        if kind == "plotly_chart":
            texts = list(_plotly_strings(proto.spec))
        else:
            texts = list(_strings(proto))
        out += [f"{kind} {field}: {text[:120]!r}" for field, text in texts if WORDS.search(text)]
    return out


@pytest.fixture
def store():
    import os

    home = Path(os.environ["CPT_HOME"])  # conftest points it at this test's tmp_path
    done = write_run(home, "done", replay=0.05, domain_drop=0.3, if_drop=8, warning=True)
    running = write_run(home, "running", replay=0.25, domain_drop=0.1, if_drop=0, status="running")
    failed = write_run(home, "failed", replay=0.15, status="failed")
    failed.write_status("failed", error="RuntimeError: CUDA out of memory")
    queued = Run.create(home, fixture_config("queued"))  # no metrics, no step yet
    plain = make_run(home, "no-evals")  # training loss only
    return {"done": done, "running": running, "failed": failed, "queued": queued, "no-evals": plain}


def open_page(page: str | None, state: dict | None = None) -> AppTest:
    return open_pages_page(page, state, timeout=60)  # every page on a store with six kinds of run: slower


def test_home_shows_no_none_or_nan(store):
    assert findings(open_page(None)) == []


def test_launch_shows_no_none_or_nan(store):
    at = open_page("views/1_Launch.py")
    assert findings(at) == []
    for preset in at.selectbox(key="launch_recipe").options:
        at.selectbox(key="launch_recipe").set_value(preset).run()
        assert findings(at) == [], preset


def test_advisor_shows_no_none_or_nan(store):
    assert findings(open_page("views/5_Advisor.py")) == []


@pytest.mark.parametrize("run", ["done", "running", "failed", "queued", "no-evals"])
def test_monitor_shows_no_none_or_nan(store, run):
    assert findings(open_page("views/2_Monitor.py", {"monitor_run": store[run].id})) == []


def test_compare_shows_no_none_or_nan(store):
    ids = [r.id for r in store.values()]
    assert findings(open_page("views/3_Compare.py", {"compare_runs": ids})) == []
    assert findings(open_page("views/3_Compare.py", {"compare_runs": ids[:2]})) == []


def test_the_mix_law_view_and_its_launch_show_no_none_or_nan(store):
    from run_store import write_pilot_group

    write_pilot_group(Path(__import__("os").environ["CPT_HOME"]))
    at = open_page("views/3_Compare.py")
    assert any("Mix law" in c.proto.spec for c in at.get("plotly_chart"))
    assert findings(at) == []
    at.selectbox(key="mixlaw_budget_metric").set_value("eval/if_prompt_strict").run()  # refused: no share
    assert findings(at) == []
    at.switch_page("views/1_Launch.py").run()
    at.selectbox(key="launch_recipe").set_value("pilot: pilot-fixture").run()
    assert findings(at) == []


def test_data_shows_no_none_or_nan(store):
    assert findings(open_page("views/4_Data.py")) == []


def test_the_scan_finds_none_and_nan_where_a_page_shows_them():
    def page():
        import math

        import streamlit as st

        st.markdown(f"ETA: {None}")
        st.metric("gain", f"{math.nan:.1f}")
        st.dataframe({"run": ["a", "b"], "gain": [1.0, None]})
        st.dataframe({"run": ["a", "b"], "gain": [1.0, None]}, placeholder="—")  # a dash: fine
        st.caption("Nonetheless, nano and banana are words.")

    found = findings(AppTest.from_function(page).run())
    assert len(found) == 3 and "dataframe column 'gain': missing values shown as 'None'" in found, found
