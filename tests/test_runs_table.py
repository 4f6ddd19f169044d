"""The runs table, built from the run folders for `cpt runs` and the home page alike."""
import json
import shutil

import pandas as pd
import pytest

from cptcore.runs import Run, list_runs
from cptcore.runs.table import run_row, runs_table
from run_store import fixture_config, make_run, write_run


def test_a_row_has_config_summary_status_and_final_metrics(tmp_path):
    run = make_run(tmp_path, name="alpha", steps=4, **{"mix.domain": 0.8, "mix.replay": 0.15, "train.lr": 2e-5})
    run.write_status("completed", result={"train_loss": 1.5, "steps": 4})
    row = run_row(run)
    assert row["id"] == run.id and row["name"] == "alpha" and row["status"] == "completed"
    assert row["mix"] == {"domain": 0.8, "replay": 0.15, "instruct": 0.05}
    assert row["lr"] == 2e-5 and row["max_steps"] == 4 and row["step"] == 4 and row["progress"] == 1.0
    assert row["final_metrics"] == {"train/loss": 1.0, "result/train_loss": 1.5, "result/steps": 4}
    assert row["tokens"] == 400 and row["created"] and row["ended"]
    assert "final_metrics" not in run_row(run, metrics=False)
    json.dumps(row)  # `cpt runs --json` prints it as is


def test_tags_and_notes_show_in_the_table_and_a_deleted_run_disappears(tmp_path):
    a, b = make_run(tmp_path, "a"), make_run(tmp_path, "b")
    a.set_tags(["baseline", "replay"])
    a.set_note("first try")
    table = runs_table(list_runs(tmp_path)).set_index("run")
    assert table.loc[a.id, "tags"] == "baseline, replay" and table.loc[a.id, "note"] == "first try"
    assert table.loc[b.id, "tags"] == "" and table.loc[a.id, "mix"] == "85/10/5"
    b.write_status("failed", error="ValueError: boom")
    assert runs_table(list_runs(tmp_path)).set_index("run").loc[b.id, "error"] == "ValueError: boom"
    shutil.rmtree(a.dir)
    assert list(runs_table(list_runs(tmp_path))["run"]) == [b.id]


def test_a_run_with_a_broken_config_still_gets_a_row(tmp_path):
    run = make_run(tmp_path, "broken")
    run.config_path.write_text("model: [unclosed\n")
    row = run_row(run)
    assert row["id"] == run.id and row["model"] == "?" and row["status"] == "completed"


def test_runs_table_reports_progress_gain_and_if_change(tmp_path):
    done = write_run(tmp_path, "done", domain_drop=0.2, if_drop=4, warning=True)
    empty = Run.create(tmp_path, fixture_config("queued"))
    table = runs_table([done, empty]).set_index("run")
    assert table.loc[done.id, "progress"] == 1.0 and table.loc[done.id, "status"] == "completed"
    assert table.loc[done.id, "domain gain"] == pytest.approx(20.0)
    assert table.loc[done.id, "IF change"] == pytest.approx(-4.0)
    assert table.loc[done.id, "warnings"] == 1 and table.loc[done.id, "mix"] == "85/10/5"
    assert table.loc[empty.id, "status"] == "queued" and table.loc[empty.id, "progress"] == 0
    assert pd.isna(table.loc[empty.id, "domain gain"])


def test_a_staged_run_shows_the_mix_its_plan_trains_not_the_config_mix(tmp_path):
    from cptcore.plan import plan

    run = make_run(tmp_path, "pit", steps=10, recipe="pit")
    assert run_row(run, metrics=False)["mix"]["instruct"] == pytest.approx(0.05)  # no data built yet: the config
    planned = plan(run.config())
    run.write_manifest({"plan": planned.to_dict()})
    row = run_row(run, metrics=False)
    assert row["mix"] == pytest.approx(planned.requested) and row["mix"]["instruct"] > 0.15  # the QA stage counts


def test_home_shows_the_deciding_columns_first_and_the_rest_on_request(tmp_path):
    from cptcore.runs.table import DEFAULT_COLUMNS, EXTRA_COLUMNS, HOME_COLUMNS, home_columns

    assert DEFAULT_COLUMNS == ("run", "status", "domain gain", "IF change", "general change", "warnings", "mix")
    assert set(HOME_COLUMNS) == set(DEFAULT_COLUMNS) | set(EXTRA_COLUMNS)
    assert len(HOME_COLUMNS) == len(set(HOME_COLUMNS))
    assert home_columns() == list(DEFAULT_COLUMNS)
    assert home_columns(["lr", "tokens", "unknown"]) == [*DEFAULT_COLUMNS, "tokens", "lr"]  # in the listed order
    table = runs_table([write_run(tmp_path, "done")])
    assert list(table.columns) == list(HOME_COLUMNS)


def test_general_change_lr_and_time_read_for_people(tmp_path):
    done = write_run(tmp_path, "done", lr=5e-5)
    running = write_run(tmp_path, "live", status="running")
    queued = Run.create(tmp_path, fixture_config("queued"))
    table = runs_table([done, running, queued]).set_index("run")
    assert table.loc[done.id, "general change"] == pytest.approx(-5.0)  # replay ppl rose 5 %: negative is worse
    assert table.loc[done.id, "general change CI"].endswith("general (replay) ppl, % drop (higher is better)")
    assert table.loc[done.id, "lr"] == "5e-5" and table.loc[done.id, "time"].endswith(" s")
    assert table.loc[running.id, "time"].endswith(" s")
    assert table.loc[queued.id, "time"] == "—" and pd.isna(table.loc[queued.id, "general change"])
    assert table.loc[queued.id, "general change CI"] == ""
