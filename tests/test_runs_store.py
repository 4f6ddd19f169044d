"""Run folders and the metric stream: create/open, status, meta, atomic writes, the tailer, the latest-attempt
rule and checkpoint listing."""
import json
import math
import threading
import time

import pytest

from cptcore.config import RunConfig
from cptcore.runs import Run, RunError, list_runs, newest_first
from cptcore.runs.checkpoints import list_checkpoints
from cptcore.runs.metrics import MetricReader, MetricWriter, StreamTail, latest_attempt
from cptcore.runs.store import atomic_write
from run_store import make_run


# --- run folders ------------------------------------------------------------------------------
def test_create_writes_the_config_first_and_open_finds_a_run_by_its_id_a_unique_prefix_or_its_tag(tmp_path):
    run = Run.create(tmp_path, RunConfig(name="my run/1"))
    assert run.config().name == "my run/1" and run.status()["status"] == "queued"
    assert Run.open(tmp_path, run.id[-4:]).id == run.id  # the tag after the last dash
    assert Run.open(tmp_path, run.id[:-2]).id == run.id  # a prefix
    with pytest.raises(RunError, match="unknown run id 'nope'"):
        Run.open(tmp_path, "nope")
    other = Run.create(tmp_path, RunConfig(name="my run/2"))
    assert newest_first(list_runs(tmp_path))[0] == other.id
    for name in ("20261201-000000-a-aaaa", "20261201-000000-b-bbbb"):  # created in the same second
        (tmp_path / name).mkdir()
        (tmp_path / name / "status.json").write_text('{"status": "queued"}')
    with pytest.raises(RunError, match="ambiguous"):
        Run.open(tmp_path, "20261201-000000")
    assert Run.open(tmp_path, "20261201-000000-b").id == "20261201-000000-b-bbbb"


@pytest.mark.parametrize("spec", ["../x", "*", "?", "2*", "[0-9]*", ".hidden", "a/b"])
def test_open_refuses_paths_and_wildcards(tmp_path, spec):
    Run.create(tmp_path, RunConfig(name="r"))
    with pytest.raises(RunError, match="invalid run id"):
        Run.open(tmp_path, spec)


def test_open_never_matches_a_substring_in_the_middle_of_an_id(tmp_path):
    run = Run.create(tmp_path, RunConfig(name="middle"))
    for part in ("middle", run.id[3:10], "2"):
        with pytest.raises(RunError, match="unknown run id"):
            Run.open(tmp_path, part)


def test_status_keeps_fields_and_stamps_start_and_end(tmp_path):
    run = Run.create(tmp_path, RunConfig(name="s"))
    run.write_status("running", pid=42)
    st = run.write_status("completed", step=3)
    assert st["pid"] == 42 and st["step"] == 3 and st["started"] <= st["ended"]
    with pytest.raises(AssertionError):
        run.write_status("exploded")


def test_atomic_write_leaves_no_temporary_files_and_readers_never_see_half_a_file(tmp_path):
    path = tmp_path / "status.json"
    big = {"x": "y" * 200_000}
    atomic_write(path, {"x": ""})
    seen, stop = [], threading.Event()

    def read():
        while not stop.is_set():
            seen.append(json.loads(path.read_text()))  # a torn write would fail to parse

    t = threading.Thread(target=read)
    t.start()
    for _ in range(50):
        atomic_write(path, big)
        atomic_write(path, {"x": ""})
    stop.set()
    t.join()
    assert seen and all(len(s["x"]) in (0, 200_000) for s in seen)
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_tags_note_and_group_live_in_meta_json(tmp_path):
    run = make_run(tmp_path)
    run.set_tags(["baseline", "replay", "baseline"])
    run.set_note("first try")
    run.set_meta(group="g1")
    assert json.loads(run.meta_path.read_text()) == {"tags": ["baseline", "replay"], "note": "first try",
                                                    "group": "g1"}


# --- the metric stream ------------------------------------------------------------------------
def test_the_tailer_returns_each_complete_line_once_and_holds_back_a_partial_one(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = StreamTail(path)
    assert tail.read() == (b"", False)  # no file yet
    path.write_bytes(b'{"a": 1}\n{"a": ')
    assert tail.read() == (b'{"a": 1}\n', False)
    assert tail.complete == 9 and tail.offset == path.stat().st_size
    with open(path, "ab") as fh:
        fh.write(b'2}\n')
    assert tail.read() == (b'{"a": 2}\n', False)
    assert tail.read() == (b"", False)
    path.write_bytes(b'{"a": 3}\n')  # rewritten shorter: read again from the start
    assert tail.read() == (b'{"a": 3}\n', True)


def test_metric_reader_reports_malformed_lines_as_events_instead_of_hiding_them(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"name": "a", "step": 1, "value": 1}\nnot json\n[1, 2]\n{"name": "b", "step": 1, "value": 2}\n'
                    '{"s{"step": 56, "name": "train/loss", "value": 1.0}\n')
    recs = MetricReader(path).read_new()
    assert [r["name"] for r in recs] == ["a", "event/malformed_line", "event/malformed_line", "b",
                                         "event/malformed_line"]
    bad = [r for r in recs if r["name"] == "event/malformed_line"]
    assert all(r["value"] is None and r["step"] == 1 for r in bad)
    assert "not json" in bad[0]["message"] and '{"s{"step": 56' in bad[2]["message"]
    from cptcore.frames import load_metrics

    m = load_metrics(path)  # Monitor's events list shows them too
    assert list(m.events["name"]) == ["event/malformed_line"] * 3 and list(m.values["name"]) == ["a", "b"]


def test_latest_attempt_keeps_the_resumed_records_and_the_later_line_of_equal_attempts(tmp_path):
    path = tmp_path / "metrics.jsonl"
    w1 = MetricWriter(path, attempt=1)
    for s in (1, 2, 3):
        w1.write("train/loss", 10.0 + s, s, s)
    w1.write("train/loss", 99.0, 3, 3)  # same attempt, same step, later line: this one counts
    w1.event("event/warning", "spike", 3, 3)
    w1.close()
    w2 = MetricWriter(path, attempt=2)  # resumed from step 1
    for s in (2, 3, 4):
        w2.write("train/loss", 20.0 + s, s, s)
    w2.write("eval/domain_ppl", 7.0, 2, 2)
    w2.close()
    kept = latest_attempt(MetricReader(path).read_new())
    values = [(r["step"], r["name"], r["value"]) for r in kept if r["value"] is not None]
    assert values == [(1, "train/loss", 11.0), (2, "eval/domain_ppl", 7.0), (2, "train/loss", 22.0),
                      (3, "train/loss", 23.0), (4, "train/loss", 24.0)]
    assert [r["message"] for r in kept if r["value"] is None] == ["spike"]
    # the order of the lines decides between equal attempts, not their values
    assert [r["value"] for r in latest_attempt(MetricReader(path).read_new()[:4]) if r["step"] == 3] == [99.0]


def test_checkpoints_are_listed_by_step_not_by_name(tmp_path):
    for name in ("checkpoint-10", "checkpoint-9", "checkpoint-100", "corrupt-checkpoint-200-17", "checkpoint-x"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
    run = Run(tmp_path)
    assert [p.name for p in list_checkpoints(run.checkpoints_dir)] == ["checkpoint-9", "checkpoint-10",
                                                                       "checkpoint-100"]
    assert run.last_checkpoint().name == "checkpoint-100"
    assert Run(tmp_path / "none").last_checkpoint() is None


def test_a_torn_last_line_is_cut_before_the_next_attempt_appends(tmp_path):
    """A full disk left `{"s` with no newline: the resumed attempt's first record must not be glued to it."""
    path = tmp_path / "metrics.jsonl"
    w = MetricWriter(path)
    w.write("train/loss", 2.0, 55, 0)
    w.close()
    with open(path, "a") as fh:
        fh.write('{"s')
    w = MetricWriter(path, attempt=2)
    w.write("train/loss", 1.9, 56, 0)
    w.close()
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line parses: nothing glued, nothing hidden
    assert [(r["name"], r["step"]) for r in records] == [("train/loss", 55), ("event/stream_repaired", 0),
                                                         ("train/loss", 56)]
    assert records[1]["bytes_dropped"] == 3
    MetricWriter(path, attempt=3).close()  # a clean stream is left alone
    assert path.read_text().splitlines() == lines


def strict_loads(text: str):
    """json.loads that rejects NaN / Infinity, like other tools' parsers."""
    return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"bare {c}")))


def test_nan_is_written_as_null_with_a_flag_and_read_back_as_nan(tmp_path):
    path = tmp_path / "metrics.jsonl"
    w = MetricWriter(path)
    w.write("train/grad_norm", float("nan"), 1, 0, ci_low=float("-inf"))
    w.write("train/loss", 2.0, 1, 0)
    w.close()
    raw = [strict_loads(line) for line in path.read_text().splitlines()]  # strict JSON on disk
    assert raw[0]["value"] is None and raw[0]["nonfinite"] == {"value": "nan", "ci_low": "-inf"}
    rec = MetricReader(path).read_new()[0]
    assert rec["name"] == "train/grad_norm" and math.isnan(rec["value"]) and rec["ci_low"] == float("-inf")


def test_cpt_metrics_json_is_strict_json(tmp_path, monkeypatch, capsys):
    from cptcore.cli import main

    monkeypatch.setenv("CPT_HOME", str(tmp_path))
    run = Run.create(tmp_path, RunConfig(name="nan"))
    w = MetricWriter(run.metrics_path)
    w.write("train/grad_norm", float("inf"), 1, 0)
    w.close()
    assert main(["metrics", run.id, "--format", "json"]) == 0
    (rec,) = [strict_loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rec["value"] is None and rec["nonfinite"] == {"value": "inf"}


def test_the_final_status_is_written_on_a_full_disk_by_giving_up_the_reserve(tmp_path, monkeypatch):
    import errno

    import cptcore.runs.store as store

    run = Run.create(tmp_path, RunConfig(name="full"))
    assert run.reserve_path.stat().st_size == store.RESERVE_BYTES
    real, calls = store.atomic_write, []

    def full_once(path, data):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(store, "atomic_write", full_once)
    run.write_status("failed", error="disk full: ...")
    assert run.status()["status"] == "failed" and not run.reserve_path.exists()
    monkeypatch.setattr(store, "atomic_write", lambda p, d: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError):  # no reserve left: the caller learns it
        run.write_status("running")


def test_a_dead_run_on_a_full_disk_is_reported_failed_with_the_cause_and_listings_do_not_crash(tmp_path, monkeypatch):
    import errno

    import cptcore.runs.store as store
    from cptcore.runs import liveness

    run = Run.create(tmp_path, RunConfig(name="dead"))
    run.write_status("running", pid=2 ** 22 + 7, started=time.time())  # a pid that is not alive
    run.log_path.write_text("Traceback ...\nOSError: [Errno 28] No space left on device\n")
    run.reserve_path.unlink()
    monkeypatch.setattr(store, "atomic_write", lambda p, d: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    st = liveness.refresh(run)
    assert st["status"] == "failed" and st["error"].startswith("disk full: OSError: [Errno 28]")
    assert "not recorded in status.json" in st["error"]


def test_a_full_disk_error_names_the_disk():
    import errno

    from cptcore.train import describe_error

    msg = describe_error(OSError(errno.ENOSPC, "No space left on device"))
    assert msg.startswith("disk full: ") and "cpt resume" in msg
    # safetensors (Rust) reports the same full disk in its own exception type
    rust = type("SafetensorError", (Exception,), {})("Error while serializing: I/O error: No space left on device "
                                                      "(os error 28)")
    assert describe_error(rust).startswith("disk full: SafetensorError")
