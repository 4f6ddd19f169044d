"""The SQLite catalog: an index rebuilt from run directories, safe under concurrent writers and readers."""
import json
import multiprocessing as mp
import sqlite3
import threading

from cptcore.catalog import Catalog, read_meta
from cptcore.config import RunConfig
from cptcore.runs import MetricWriter, Run


def make_run(home, name="r", status="completed", steps=3, **cfg_overrides):
    cfg = RunConfig(name=name).with_overrides({"train.max_steps": steps, **cfg_overrides})
    run = Run.create(home, cfg)
    w = MetricWriter(run.metrics_path)
    for s in range(1, steps + 1):
        w.write("train/loss", 5.0 - s, s, s * 100)
    w.close()
    run.write_status(status, step=steps, max_steps=steps)
    return run


def test_sync_indexes_config_summary_status_and_final_metrics(tmp_path):
    run = make_run(tmp_path, name="alpha", steps=4, **{"mix.domain": 0.8, "mix.replay": 0.15, "train.lr": 2e-5})
    cat = Catalog(tmp_path)
    assert cat.sync() == 1
    [row] = cat.rows()
    assert row["id"] == run.id and row["name"] == "alpha" and row["status"] == "completed"
    assert row["mix"] == {"domain": 0.8, "replay": 0.15, "instruct": 0.05}
    assert row["lr"] == 2e-5 and row["max_steps"] == 4 and row["step"] == 4
    assert row["final_metrics"]["train/loss"] == 1.0  # the last step's value
    assert row["created"] and row["ended"]


def test_sync_only_rereads_changed_runs_and_drops_deleted_ones(tmp_path):
    import shutil

    a, b = make_run(tmp_path, "a"), make_run(tmp_path, "b")
    cat = Catalog(tmp_path)
    assert cat.sync() == 2
    assert cat.sync() == 0  # nothing changed
    b.write_status("failed", error="ValueError: boom")
    assert cat.sync() == 1
    assert {r["id"]: r["status"] for r in cat.rows()} == {a.id: "completed", b.id: "failed"}
    shutil.rmtree(a.dir)
    cat.sync()
    assert [r["id"] for r in cat.rows()] == [b.id]


def test_tags_and_notes_survive_a_rebuild_because_they_live_in_the_run_dir(tmp_path):
    run = make_run(tmp_path)
    cat = Catalog(tmp_path)
    cat.set_tags(run, ["baseline", "replay", "baseline"])
    cat.set_note(run, "first try")
    assert read_meta(run) == {"tags": ["baseline", "replay"], "note": "first try"}
    cat.path.unlink()  # lose the cache entirely
    cat.close()
    cat = Catalog(tmp_path)
    assert cat.rebuild() == 1
    [row] = cat.rows()
    assert row["tags"] == ["baseline", "replay"] and row["note"] == "first try"


def test_corrupt_catalog_is_set_aside_and_rebuilt(tmp_path):
    run = make_run(tmp_path)
    (tmp_path / "catalog.db").write_bytes(b"this is not a database" * 100)
    cat = Catalog(tmp_path)
    cat.sync()
    assert [r["id"] for r in cat.rows()] == [run.id]
    assert list(tmp_path.glob("catalog.corrupt-*.db"))


def test_wal_mode_and_busy_timeout_are_set(tmp_path):
    cat = Catalog(tmp_path)
    cat.sync()
    conn = cat._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000


def test_one_connection_per_thread(tmp_path):
    cat = Catalog(tmp_path)
    conns = []
    t = threading.Thread(target=lambda: conns.append(cat._conn()))
    t.start()
    t.join()
    assert conns[0] is not cat._conn()
    assert cat._conn() is cat._conn()


def _hammer(home, n, errors, write_status=True):
    """Sync, annotate and read the catalog over and over (one process or thread of the stress test)."""
    try:
        cat = Catalog(home)
        runs = [Run(p) for p in sorted(home.iterdir()) if (p / "status.json").exists()]
        for i in range(n):
            run = runs[i % len(runs)]
            if write_status:  # as a training process would (one writer per run directory)
                run.write_status("running", step=i)
            cat.sync()
            cat.set_note(run, f"note {i}")
            assert cat.rows()
    except Exception as e:  # noqa: BLE001 - report any failure, "database is locked" included
        errors.put(repr(e))


def test_concurrent_writers_and_readers_never_see_database_locked(tmp_path):
    for i in range(4):
        make_run(tmp_path, f"r{i}")
    errors = mp.get_context("fork").Queue()
    procs = [mp.get_context("fork").Process(target=_hammer, args=(tmp_path, 40, errors)) for _ in range(4)]
    threads = [threading.Thread(target=_hammer, args=(tmp_path, 40, errors, False)) for _ in range(2)]
    for p in procs + threads:
        p.start()
    for p in procs + threads:
        p.join(timeout=120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    assert all(p.exitcode == 0 for p in procs)
    assert len(Catalog(tmp_path).rows()) == 4


def test_write_retries_a_busy_database_instead_of_failing(tmp_path):
    cat = Catalog(tmp_path)
    cat.sync()
    blocker = sqlite3.connect(tmp_path / "catalog.db", timeout=0, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")  # hold the write lock for a moment
    threading.Timer(0.5, lambda: blocker.execute("COMMIT")).start()
    run = make_run(tmp_path)
    assert cat.sync([run]) == 1  # waited for the lock instead of raising "database is locked"
    assert json.loads(json.dumps(cat.rows()))[0]["id"] == run.id
