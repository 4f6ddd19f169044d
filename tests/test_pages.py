"""Every dashboard page with streamlit's AppTest: empty store, store with runs, and the Launch form's rules."""
import json
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cptcore.config import RunConfig
from cptcore.runs import list_runs
from run_store import write_run

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["views/1_Launch.py", "views/2_Monitor.py", "views/3_Compare.py", "views/4_Data.py"]


def home() -> Path:
    return Path(os.environ["CPT_HOME"])


def open_page(page: str | None = None, state: dict | None = None, timeout: float = 30) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    for k, v in (state or {}).items():
        at.session_state[k] = v
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("info", "warning", "error", "success", "caption", "markdown")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def frame_with(at: AppTest, column: str):
    """The first dataframe on the page that has `column` (dataframes carry no key in AppTest)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def values(arr) -> list:
    """Plotly 7 ships numeric arrays as base64 typed arrays: decode them for assertions."""
    if isinstance(arr, dict) and "bdata" in arr:
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(arr["bdata"]), dtype=np.dtype(arr["dtype"])).tolist()
    return list(arr)


@pytest.fixture
def store():
    a = write_run(home(), "low-replay", replay=0.05, domain_drop=0.3, if_drop=8, warning=True)
    b = write_run(home(), "high-replay", replay=0.25, domain_drop=0.1, if_drop=0, status="running")
    return a, b


# --- empty store -------------------------------------------------------------------------------
def test_empty_home_explains_how_to_launch_the_demo():
    at = open_page()
    assert "No runs yet" in texts(at) and "Launch" in texts(at) and "cpt launch experiments/demo.yaml" in texts(at)
    assert not at.dataframe  # no table, no sample numbers


@pytest.mark.parametrize("page", PAGES[1:3])
def test_monitor_and_compare_on_an_empty_store_explain_instead_of_drawing(page):
    at = open_page(page)
    assert "No runs" in texts(at) and not charts(at)


def test_launch_page_preselects_the_offline_default_model():
    at = open_page(PAGES[0])
    assert at.selectbox(key="launch_recipe").value == ("demo.yaml" if (ROOT / "experiments/demo.yaml").exists()
                                                       else "smoke.yaml")
    assert at.text_input(key="model.name").value == "smollm2-135m-instruct"
    assert at.text_input(key="model.name").help.startswith("Built-in name")  # help is the Field description


def test_data_page_renders_on_an_empty_store():
    at = open_page(PAGES[3])
    assert at.metric[0].label == "rows" and int(at.metric[0].value.replace(",", "")) > 0


# --- a store with runs -------------------------------------------------------------------------
def test_home_lists_runs_with_progress_gain_and_if_change(store):
    a, b = store
    at = open_page()
    table = at.dataframe[0].value.set_index("run")
    assert set(table.index) == {a.id, b.id}
    assert table.loc[a.id, "domain gain"] == pytest.approx(30.0)
    assert table.loc[a.id, "IF change"] == pytest.approx(-8.0)
    assert table.loc[a.id, "domain gain CI"] == "+29.0 .. +31.0 · domain ppl, % drop (higher is better)"
    assert table.loc[a.id, "IF change CI"].startswith("-11.0 .. -5.0 · IF prompt-level strict, points")
    assert table.loc[a.id, "warnings"] == 1 and table.loc[b.id, "status"] == "running"


def test_home_opens_selected_runs_in_compare(store):
    at = open_page()
    at.multiselect(key="home_selected").set_value([r.id for r in store]).run()
    at.button(key="open_compare").click().run()
    assert not at.exception
    assert at.session_state["compare_runs"] == [r.id for r in store]
    assert at.subheader and "Trade-off: domain gain vs retention" in [s.value for s in at.subheader]


def test_home_saves_tags_and_notes_in_the_run_folder(store):
    a, _ = store
    at = open_page()
    at.selectbox(key="meta_run").set_value(a.id).run()
    at.text_input(key=f"tags_{a.id}").set_value("baseline, replay").run()
    at.text_area(key=f"note_{a.id}").set_value("too little replay").run()
    at.button(key="save_meta").click().run()
    meta = json.loads((a.dir / "meta.json").read_text())
    assert meta["tags"] == ["baseline", "replay"] and meta["note"] == "too little replay"


def baseline_spec(specs: list[dict]) -> dict:
    return next(s for s in specs if "Domain and general" in str(s["layout"].get("title", {}).get("text", "")))


def subplot(spec: dict, name: str) -> tuple[dict, str, str]:
    """(line trace, subplot title, y-axis title) of metric `name`'s subplot in Monitor's small multiples."""
    from cptcore import frames

    line = next(t for t in spec["data"] if t.get("name") == frames.label(name))
    lay = spec["layout"]
    yaxis = lay[line.get("yaxis", "y").replace("y", "yaxis")]
    x0, x1 = lay[line.get("xaxis", "x").replace("x", "xaxis")]["domain"]
    top = yaxis["domain"][1]
    title = next(a["text"] for a in lay["annotations"] if x0 <= a["x"] <= x1 and abs(a["y"] - top) < 1e-6)
    return line, title.replace("<br>", ", "), yaxis["title"]["text"]  # two lines: the metric, its unit and direction


def test_monitor_draws_loss_mix_and_baseline_small_multiples_with_warnings_in_a_fixed_place(store):
    a, _ = store
    at = open_page(PAGES[1], {"monitor_run": a.id})
    specs = charts(at)
    titles = [str(s["layout"].get("title", {}).get("text", "")) for s in specs]
    assert any("Training loss" in t for t in titles) and any("Realized mix" in t for t in titles)
    baseline = baseline_spec(specs)
    dppl, title, ytitle = subplot(baseline, "eval/domain_ppl")
    assert values(dppl["y"]) == pytest.approx([0.0, 15.0, 30.0])  # gain from step 0: a 30 % ppl drop is +30
    assert "domain ppl, % drop (higher is better)" in title and ytitle == "% drop from step 0"
    band = next(t for t in baseline["data"] if t.get("name") == "domain ppl 95% paired CI")
    assert band["yaxis"] == dppl["yaxis"]
    assert min(values(band["y"])) == pytest.approx(0.0) and max(values(band["y"])) == pytest.approx(31.0)
    ifs, title, ytitle = subplot(baseline, "eval/if_prompt_strict")
    assert "IF prompt-level strict, points (higher is better)" in title and ytitle == "points from step 0"
    lines = [t for t in baseline["data"] if not t["name"].endswith("95% paired CI")]
    assert len({t.get("yaxis", "y") for t in lines}) == len(lines) == 6  # one metric per subplot
    knowledge = next(s for s in specs if "Knowledge QA" in str(s["layout"].get("title", {}).get("text", "")))
    chance = next(t for t in knowledge["data"] if t.get("name") == "multiple-choice chance, %")
    assert chance["line"]["dash"] == "dash" and set(values(chance["y"])) == {20.0}
    assert "95% paired bootstrap CI" in texts(at)
    assert all(s["layout"].get("uirevision") == f"{a.id}:tokens" for s in specs)  # zoom survives refresh
    # legend choices: Streamlit sends no trace uid (plotly.io.to_json drops it), so plotly.js matches traces by
    # index: every trace is named and comes in a fixed order (metrics, roles)
    assert all(t.get("name") for s in specs for t in s["data"])
    assert [[t["name"] for t in s["data"]] for s in charts(at.run())] == [[t["name"] for t in s["data"]] for s in specs]
    (warnings,) = [e for e in at.expander if e.label.startswith("Warnings")]
    assert warnings.label == "Warnings (1): latest at step 20" and "IF prompt-level strict fell" in texts(at)
    assert [m.value for m in at.metric][:2] == ["completed", "20 / 20"]
    # the per-prompt tables: pass/fail first, no column an evaluator leaves empty (IFEval has no gold answer)
    ifeval = next(d.value for d in at.dataframe if "response" in d.value.columns and "gold" not in d.value.columns)
    qa = next(d.value for d in at.dataframe if "gold" in d.value.columns)
    assert list(ifeval.columns) == ["passed", "prompt", "response"]
    assert list(qa.columns) == ["passed", "prompt", "response", "gold"]


def test_monitor_keeps_the_warnings_area_when_there_are_none(store):
    _, b = store
    at = open_page(PAGES[1], {"monitor_run": b.id})
    (warnings,) = [e for e in at.expander if e.label.startswith("Warnings")]
    assert warnings.label == "Warnings (0): none" and not at.warning


def test_the_same_gain_reads_the_same_on_home_monitor_and_compare(store):
    """One sign convention: a 30 % perplexity drop is +30 and an 8-point IF drop is -8 on Home's row, Monitor's
    panel and Compare's "vs step 0" curve and trade-off, under the same words (frames.gain_label)."""
    from cptcore import frames

    a, b = store
    row = open_page().dataframe[0].value.set_index("run").loc[a.id]
    monitor = baseline_spec(charts(open_page(PAGES[1], {"monitor_run": a.id})))
    at = open_page(PAGES[2], {"compare_runs": [a.id, b.id]})
    at.selectbox(key="compare_metric").set_value("eval/domain_ppl").run()
    at.checkbox(key="compare_change").check().run()
    compare_domain = next(t for t in charts(at)[0]["data"] if t["name"] == a.id)
    tradeoff = next(s for s in charts(at) if "Trade-off" in str(s["layout"]["title"]["text"]))
    final = next(t for t in tradeoff["data"] if t["name"] == a.id)
    at.selectbox(key="compare_metric").set_value("eval/if_prompt_strict").run()
    compare_if = next(t for t in charts(at)[0]["data"] if t["name"] == a.id)
    for metric, home, compare, column in (("eval/domain_ppl", row["domain gain"], compare_domain, "domain gain"),
                                          ("eval/if_prompt_strict", row["IF change"], compare_if, "IF change")):
        shown = values(subplot(monitor, metric)[0]["y"])[-1]
        assert home == pytest.approx(shown) == pytest.approx(values(compare["y"])[-1]), metric
        assert row[f"{column} CI"].endswith(frames.gain_label(metric)) and frames.gain_label(metric) in \
            subplot(monitor, metric)[1]
    assert row["domain gain"] == pytest.approx(30.0) and row["IF change"] == pytest.approx(-8.0)
    assert values(final["x"])[-1] == pytest.approx(30.0) and values(final["y"])[-1] == pytest.approx(-8.0)
    assert tradeoff["layout"]["xaxis"]["title"]["text"] == frames.gain_label("eval/domain_ppl")


def test_monitor_disables_resume_while_another_resume_of_the_run_is_in_flight(store):
    import fcntl

    a, _ = store
    a.write_status("stopped", pid=None)
    at = open_page(PAGES[1], {"monitor_run": a.id})
    assert not at.button(key="resume").disabled
    with open(a.dir / ".resume.lock", "a") as lock:  # as a `cpt resume` (or another tab) checking it right now
        fcntl.flock(lock, fcntl.LOCK_EX)
        at.run()
        assert at.button(key="resume").disabled
        assert at.button(key="resume").help == "A resume of this run is in progress."
    at.run()
    assert not at.button(key="resume").disabled


def test_monitor_stop_button_requests_a_stop(store):
    _, running = store
    at = open_page(PAGES[1], {"monitor_run": running.id})
    at.button(key="stop").click().run()
    assert not at.exception
    assert (running.dir / "stop.json").is_file()


def test_compare_shows_tradeoff_with_frontier_diff_and_paired_items(store):
    a, b = store
    at = open_page(PAGES[2], {"compare_runs": [a.id, b.id]})
    specs = charts(at)
    tradeoff = next(s for s in specs if "Trade-off" in str(s["layout"]["title"]["text"]))
    frontier = next(t for t in tradeoff["data"] if t["name"] == "Pareto frontier")
    assert sorted(values(frontier["x"])) == pytest.approx([10.0, 30.0])  # neither run dominates the other
    diff = frame_with(at, "key").set_index("key")
    assert {"mix.domain", "mix.replay", "name"} <= set(diff.index) and "train.lr" not in diff.index
    pairs = frame_with(at, "response A")
    assert len(pairs) == 4 and list(pairs.columns) == ["change", "passed A", "passed B", "prompt", "response A",
                                                       "response B"]  # pass/fail first
    paired = frame_with(at, "verdict").set_index("metric")
    assert paired.loc["IF prompt-level strict", "n"] == 4 and paired.loc["IF prompt-level strict", "unit"] == "points"
    assert tradeoff["layout"]["xaxis"]["title"]["text"] == "domain ppl, % drop (higher is better)"


def test_compare_tradeoff_can_use_general_kl_for_retention_with_paired_error_bars(store):
    a, b = store
    at = open_page(PAGES[2], {"compare_runs": [a.id, b.id]})
    at.selectbox(key="tradeoff_y").set_value("eval/general_kl").run()
    assert not at.exception
    tradeoff = next(s for s in charts(at) if "Trade-off" in str(s["layout"]["title"]["text"]))
    assert "general KL, nats/token, sign flipped (higher is better" in tradeoff["layout"]["yaxis"]["title"]["text"]
    bars = [t for t in tradeoff["data"] if t.get("name", "").endswith("95% paired CI")]
    assert len(bars) == 2 and all("error_x" in t and "error_y" in t for t in bars)
    at.selectbox(key="pair_eval").set_value("knowledge_qa").run()
    assert frame_with(at, "verdict").set_index("metric").loc["QA exact match", "n"] == 2


def test_compare_metric_and_axis_choice_redraws_the_curves(store):
    a, b = store
    at = open_page(PAGES[2], {"compare_runs": [a.id, b.id]})
    at.selectbox(key="compare_metric").set_value("train/loss").run()
    at.radio(key="compare_x").set_value("tokens").run()
    curves = charts(at)[0]
    assert curves["layout"]["xaxis"]["title"]["text"] == "tokens seen"
    assert max(values(curves["data"][0]["x"])) == 20 * 512
    assert curves["layout"]["uirevision"] == "compare:train/loss:tokens:False"


def test_compare_keeps_each_runs_colour_when_another_run_is_selected(store):
    a, b = store
    c = write_run(home(), "third", replay=0.15, domain_drop=0.2, if_drop=2)

    def colours(at):
        specs = charts(at)
        tradeoff = next(s for s in specs if "Trade-off" in str(s["layout"]["title"]["text"]))
        curves = {t["name"]: t["line"]["color"] for t in specs[0]["data"] if "fill" not in t}
        points = {t["name"]: t["marker"]["color"] for t in tradeoff["data"] if t["name"] in (a.id, b.id, c.id)}
        assert curves == points  # one colour per run on both charts
        return curves

    at = open_page(PAGES[2], {"compare_runs": [a.id, b.id]})
    before = colours(at)
    at.multiselect(key="compare_select").set_value([c.id, a.id, b.id]).run()  # the new run put first
    after = colours(at)
    assert after[a.id] == before[a.id] and after[b.id] == before[b.id]
    assert len(set(after.values())) == 3


# --- the Launch form ---------------------------------------------------------------------------
def smoke_form() -> AppTest:
    at = open_page(PAGES[0])
    at.selectbox(key="launch_recipe").set_value("smoke.yaml").run()
    assert not at.exception
    return at


def mix(at: AppTest) -> list[float]:
    return [at.slider(key=f"mix.{r}").value for r in ("domain", "replay", "instruct")]


def test_every_preset_opens_in_the_form_with_the_plans_token_budget():
    from cptcore import forms
    from cptcore.plan import counter_for, plan

    at = open_page(PAGES[0])
    options = at.selectbox(key="launch_recipe").options
    assert "smoke.yaml" in options and "built-in defaults" in options
    for option in options:
        at.selectbox(key="launch_recipe").set_value(option).run()
        assert not at.exception, option
        assert "Invalid settings" not in texts(at), (option, texts(at))
        assert sum(mix(at)) == 100, option
        cfg = RunConfig.load(ROOT / "experiments" / option) if option != "built-in defaults" else RunConfig()
        expected = forms.budget_rows(plan(cfg, count=counter_for(cfg)))
        table = frame_with(at, "input tokens trained")
        assert list(table["role"]) == [r["role"] for r in expected], option
        assert list(table["input tokens trained"]) == [r["input tokens trained"] for r in expected], option
        assert [None if p != p else p for p in table["passes"]] == [r["passes"] for r in expected], option


def test_mix_sliders_always_sum_to_100():
    at = smoke_form()
    assert sum(mix(at)) == 100
    for key, value in [("mix.domain", 60), ("mix.replay", 37.5), ("mix.instruct", 0), ("mix.domain", 100),
                       ("mix.replay", 12.5), ("mix.instruct", 55)]:
        at.slider(key=key).set_value(value).run()
        assert not at.exception
        assert sum(mix(at)) == 100, mix(at)
        assert at.slider(key=key).value == value


def test_launching_from_the_form_creates_the_run_it_shows(no_spawn):
    at = smoke_form()
    at.slider(key="mix.replay").set_value(30).run()
    at.number_input(key="train.max_steps").set_value(3).run()
    at.button(key="launch").click().run()
    assert not at.exception
    runs = list_runs(home())
    assert len(runs) == 1 and no_spawn == [runs[0].id]
    cfg = runs[0].config()
    assert cfg.model.name == "tiny-random-llama" and cfg.train.max_steps == 3
    assert cfg.mix.replay == pytest.approx(0.30) and sum(cfg.mix.shares().values()) == pytest.approx(1)
    assert at.session_state["monitor_run"] == runs[0].id
    assert at.title[0].value == "Monitor"  # switched pages


def test_form_values_survive_a_visit_to_another_page():
    at = smoke_form()
    at.number_input(key="train.max_steps").set_value(33).run()
    at.slider(key="mix.instruct").set_value(20).run()
    at.switch_page("views/2_Monitor.py").run()
    at.switch_page("views/1_Launch.py").run()
    assert at.number_input(key="train.max_steps").value == 33 and at.slider(key="mix.instruct").value == 20
    assert sum(mix(at)) == 100


def test_a_token_budget_sets_the_steps():
    at = smoke_form()  # smoke: batch 8 x accumulation 1 x 128 tokens = 1,024 tokens per step
    at.number_input(key="token_budget").set_value(100_000).run()
    assert at.number_input(key="train.max_steps").value == 98  # 100,000 / 1,024 rounded up
    assert "98 steps x 8 sequences (8 batch x 1 accumulation x 1 process) x 128 tokens = 100,352 input tokens" \
        in texts(at)


def test_pre_launch_check_flags_a_constructed_pitfall():
    at = smoke_form()
    at.slider(key="mix.replay").set_value(0).run()
    assert "No replay data" in texts(at)
    at.number_input(key="train.lr").set_value(5e-4).run()
    assert "LR 5e-4 is above the 1e-5 .. 5e-5 range for an instruct model" in texts(at)
    at.radio(key="train.method").set_value("lora").run()
    assert "above the" not in texts(at)  # 5e-4 is within the LoRA range
    assert "Recommended for instruct / lora: 1e-4 .. 5e-4" in texts(at)


def test_save_as_yaml_writes_the_file_cpt_train_runs():
    at = smoke_form()
    at.number_input(key="train.max_steps").set_value(7).run()
    at.button(key="save_yaml").click().run()
    saved = RunConfig.load(home() / "configs" / "smoke.yaml")
    assert saved.train.max_steps == 7 and saved.model.name == "tiny-random-llama"


def test_queue_sweep_queues_the_mix_by_lr_grid(no_spawn):
    at = smoke_form()
    at.text_input(key="sweep_shares").set_value("0.1, 0.2").run()
    at.text_input(key="sweep_lrs").set_value("1e-3, 2e-3").run()
    at.button(key="sweep").click().run()
    assert not at.exception, texts(at)
    cfgs = [r.config() for r in list_runs(home())]
    assert sorted((c.mix.replay, c.train.lr) for c in cfgs) == [(0.1, 1e-3), (0.1, 2e-3), (0.2, 1e-3), (0.2, 2e-3)]
    assert len(no_spawn) == 4


def test_invalid_settings_are_named_and_block_the_launch():
    at = smoke_form()
    at.text_input(key="model.name").set_value("").run()
    at.text_input(key="data.domain").set_value("").run()
    assert "Invalid settings: mix.domain is 0.85 but data.domain lists no sources" in texts(at)
    assert not [b for b in at.button if b.key == "launch"]


# --- the Data page -----------------------------------------------------------------------------
def test_data_page_reports_problems_with_line_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("CPT_DATA_DIRS", str(tmp_path))  # a folder the user allowed the dashboard to read
    bad = tmp_path / "docs.jsonl"
    bad.write_text('{"text": "a"}\n{oops\n{"text": ""}\n{"text": "a"}\n')
    at = open_page(PAGES[3])
    at.text_input(key="data_path").set_value(str(bad)).run()
    problems = frame_with(at, "problem")["problem"].tolist()
    assert problems[0].startswith("line 2: malformed JSON")
    assert "line 3: empty text" in problems and "line 4: duplicate of line 1" in problems


def test_data_page_refuses_a_typed_path_outside_the_allowed_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("CPT_DATA_DIRS", raising=False)
    outside = tmp_path / "private.jsonl"
    outside.write_text('{"text": "secret"}\n')
    at = open_page(PAGES[3])
    at.text_input(key="data_path").set_value(str(outside)).run()
    assert not at.exception and any("outside the folders" in e.value for e in at.error)
    assert not any("secret" in str(d.value) for d in at.dataframe)


def test_data_upload_is_confined_to_the_data_folder():
    at = open_page(PAGES[3])
    at.get("file_uploader")[0].upload("../../evil.jsonl", b'{"prompt": "Q?", "response": "A."}\n').run()
    assert not at.exception
    assert [p.name for p in (home() / "data").iterdir()] == ["evil.jsonl"]
    assert not (home().parent / "evil.jsonl").exists()
    at.selectbox(key="data_source").set_value(str((home() / "data" / "evil.jsonl").resolve())).run()
    assert [m.value for m in at.metric][:2] == ["1", "chat"]


def test_mitigation_settings_load_from_a_recipe_and_reach_the_launched_config(no_spawn):
    at = open_page(PAGES[0])
    at.selectbox(key="launch_recipe").set_value("recipes/ewc_smoke.yaml").run()
    assert at.checkbox(key="ewc.enabled").value and not at.checkbox(key="progressive.enabled").value
    assert at.number_input(key="long_context.yarn_factor").value is None
    at.checkbox(key="progressive.enabled").check().run()
    at.number_input(key="long_context.yarn_factor").set_value(2.0).run()
    at.number_input(key="train.max_steps").set_value(3).run()
    at.button(key="launch").click().run()
    assert not at.exception
    cfg = list_runs(home())[0].config()
    assert cfg.ewc.enabled and cfg.progressive.enabled and cfg.long_context.yarn_factor == 2.0


def test_an_unreadable_source_is_named_and_the_plan_still_shows():
    at = smoke_form()
    at.text_input(key="data.domain").set_value("/nowhere/docs.jsonl").run()
    assert not at.exception
    assert "Data problem: /nowhere/docs.jsonl: file not found" in texts(at)
    table = frame_with(at, "input tokens trained")
    assert table["passes"].isna().all() and table["input tokens trained"].sum() > 0  # uncounted, but planned


def test_monitor_and_compare_name_the_data_each_evaluation_measured(store):
    a, b = store
    mine = "held-out split of your domain data docs.jsonl: 8 of 40 documents (seed 0), never trained on"
    a.write_manifest({"evaluations": {"domain_ppl": mine, "knowledge_mc": "not run: no QA about your documents"}})
    b.write_manifest({"evaluations": {"domain_ppl": "bundled fictional-town held-out documents "
                                                    "(builtin:knowledge_heldout)"}})
    at = open_page(PAGES[1], {"monitor_run": a.id})
    assert f"Measured on: domain_ppl: {mine}." in texts(at)
    assert "Measured on: knowledge_mc: not run: no QA about your documents." in texts(at)
    at = open_page(PAGES[2], {"compare_runs": [a.id, b.id]})
    warning = "\n".join(w.value for w in at.warning)
    assert "domain_ppl measures different data" in warning and "not comparable" in warning


def test_launch_says_what_each_evaluation_measures_and_offers_qa_for_own_documents(tmp_path):
    docs = tmp_path / "mine.jsonl"
    docs.write_text("".join(json.dumps({"text": f"Manual page {i}: the pump model P{i} needs a {i} mm seal."}) + "\n"
                            for i in range(40)))
    at = smoke_form()
    at.multiselect(key="eval.evaluators").set_value(["domain_ppl", "knowledge_mc"]).run()
    assert "bundled fictional-town held-out documents" in texts(at)  # smoke trains the bundled documents
    at.text_input(key="data.domain").set_value(str(docs)).run()
    assert not at.exception
    shown = texts(at)
    assert f"held-out split of your domain data {docs}: 8 of 40 documents" in shown
    assert "not run: no QA about your documents" in shown
    at.button(key="to_data_qa").click().run()
    assert at.title[0].value == "Data"


# --- Home at a glance and the Launch form's numbers (issue: a dashboard that reads at a glance) ---------
def test_home_shows_the_deciding_columns_and_hides_the_rest_behind_a_chooser(store):
    from cptcore.runs.table import DEFAULT_COLUMNS

    a, _ = store
    at = open_page()
    shown = list(at.dataframe[0].proto.column_order)
    assert shown == list(DEFAULT_COLUMNS) == ["run", "status", "domain gain", "IF change", "general change",
                                              "warnings", "mix"]
    table = at.dataframe[0].value.set_index("run")
    assert table.loc[a.id, "general change"] == pytest.approx(-5.0)  # replay ppl 30 -> 31.5: 5 % worse
    assert at.dataframe[0].proto.placeholder == "—"  # a run without evaluations shows a dash, not "None"
    at.multiselect(key="home_columns").set_value(["tokens", "lr", "time"]).run()
    assert list(at.dataframe[0].proto.column_order) == [*DEFAULT_COLUMNS, "tokens", "time", "lr"]
    assert at.dataframe[0].value.set_index("run").loc[a.id, "lr"] == "3e-5"


def test_the_first_sidebar_entry_is_home_and_pages_keep_their_paths():
    at = open_page()
    pages = list(at._registered_pages.values())  # what st.navigation registered, in sidebar order
    assert [p["page_name"] for p in pages] == ["Home", "Launch", "Monitor", "Compare", "Data", "Advisor"]
    assert [p["url_pathname"] for p in pages[1:]] == ["Launch", "Monitor", "Compare", "Data", "Advisor"]
    assert at.title[0].value == "CPT Studio"


def test_launch_budget_table_counts_read_with_thousands_separators_and_no_none():
    at = open_page(PAGES[0])
    budget = next(d for d in at.dataframe if "input tokens trained" in d.value.columns)
    config = json.loads(budget.proto.columns)
    assert config["input tokens trained"]["type_config"]["format"] == "%,d" and budget.proto.placeholder == "—"
    assert at.number_input(key="train.lr").proto.format == "%e"  # the browser shows 1e-4, not 1.00e-04
    assert "Recommended for instruct / full: 1e-5 .. 5e-5" in texts(at)


def test_a_mix_slider_moved_from_100_back_to_0_splits_the_rest():
    at = smoke_form()
    at.slider(key="mix.replay").set_value(100).run()
    at.slider(key="mix.replay").set_value(0).run()
    assert not at.exception
    assert mix(at) == [50, 0, 50]
    assert "No replay data" in texts(at)


def test_budget_and_checks_follow_the_sliders_in_the_same_run():
    at = smoke_form()
    for replay in (0, 30, 0):
        at.slider(key="mix.replay").set_value(replay).run()
        shares = frame_with(at, "input tokens trained").set_index("role")["share of input tokens %"]
        assert shares.get("replay", 0) == pytest.approx(replay) and shares.sum() == pytest.approx(100)
        assert ("No replay data" in texts(at)) == (replay == 0)
