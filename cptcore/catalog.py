"""A SQLite index of the runs in CPT_HOME, for fast tables, filters, tags and notes.

The run directories stay the source of truth (config.yaml, status.json, metrics.jsonl, meta.json);
the catalog is a cache rebuilt from them at any time (`cpt runs --rebuild`) and re-synced on every look:
a row is refreshed when its status.json or meta.json changed. Tags, notes and the sweep group live in
<run>/meta.json first, so a rebuild loses nothing.

Concurrency: WAL mode (readers never block the writer), busy_timeout, `BEGIN IMMEDIATE` for writes (so a
reader upgrading to a writer cannot hit SQLITE_BUSY without waiting), one connection per thread, and a short
retry around writes: "database is locked" never reaches the user. Do not put CPT_HOME on NFS (SQLite locking).
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from .runs import FINAL_STATUSES, Run, cpt_home, latest_attempt, list_runs

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT, grp TEXT, status TEXT, model TEXT, recipe TEXT,
    mix_domain REAL, mix_replay REAL, mix_instruct REAL, lr REAL, max_steps INTEGER, step INTEGER,
    created REAL, started REAL, ended REAL, error TEXT, final_metrics TEXT, tags TEXT, note TEXT,
    attempt INTEGER, source_mtime REAL
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE INDEX IF NOT EXISTS runs_grp ON runs(grp);
"""
COLUMNS = ("id", "name", "grp", "status", "model", "recipe", "mix_domain", "mix_replay", "mix_instruct", "lr",
           "max_steps", "step", "created", "started", "ended", "error", "final_metrics", "tags", "note",
           "attempt", "source_mtime")

_local = threading.local()  # sqlite3 connections must not cross threads: one per (thread, database)


def read_meta(run: Run) -> dict[str, Any]:
    """Tags, note and sweep group of a run (user-editable, so not in status.json)."""
    try:
        return json.loads((run.dir / "meta.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def write_meta(run: Run, **fields: Any) -> dict[str, Any]:
    meta = read_meta(run)
    meta.update(fields)
    tmp = run.dir / f".meta.json.{os.getpid()}.{threading.get_ident()}.tmp"
    tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    tmp.replace(run.dir / "meta.json")
    return meta


def final_metrics(run: Run) -> dict[str, float]:
    """Last value of every metric in the stream (latest attempt per step), plus the trainer's result."""
    out: dict[str, float] = {}
    for r in latest_attempt(run.read_metrics()):
        if r.get("value") is not None:
            out[r["name"]] = r["value"]  # records are sorted by step: the last one wins
    for k, v in (run.status().get("result") or {}).items():
        if isinstance(v, (int, float)):
            out[f"result/{k}"] = v
    return out


def _row(run: Run, previous: dict | None) -> dict[str, Any]:
    """A catalog row from the run directory; final metrics are computed once, when the run ends."""
    st = run.status()
    meta = read_meta(run)
    try:
        cfg = run.config().to_dict()
    except Exception:  # noqa: BLE001 - a broken config must not hide the run from the table
        cfg = {}
    mix, train = cfg.get("mix", {}), cfg.get("train", {})
    status = st.get("status", "unknown")
    metrics = None
    if status in FINAL_STATUSES:
        if previous and previous.get("status") == status and previous.get("final_metrics") \
                and previous.get("ended") == st.get("ended"):
            metrics = previous["final_metrics"]
        else:
            metrics = json.dumps(final_metrics(run))
    return {
        "id": run.id, "name": cfg.get("name", run.id), "grp": meta.get("group"), "status": status,
        "model": cfg.get("model", {}).get("name", "?"),
        "recipe": cfg.get("recipe") or train.get("method"),
        "mix_domain": mix.get("domain"), "mix_replay": mix.get("replay"), "mix_instruct": mix.get("instruct"),
        "lr": train.get("lr"), "max_steps": st.get("max_steps") or train.get("max_steps"), "step": st.get("step"),
        "created": st.get("created"), "started": st.get("started"), "ended": st.get("ended"),
        "error": st.get("error"), "final_metrics": metrics, "tags": json.dumps(meta.get("tags", [])),
        "note": meta.get("note", ""), "attempt": st.get("attempt"), "source_mtime": _source_mtime(run),
    }


def _source_mtime(run: Run) -> float:
    m = 0.0
    for p in (run.status_path, run.dir / "meta.json", run.config_path):
        try:
            m = max(m, p.stat().st_mtime_ns / 1e9)
        except OSError:
            pass
    return m


class Catalog:
    """The runs table of one CPT_HOME, kept in CPT_HOME/catalog.db."""

    def __init__(self, home: Path | str | None = None):
        self.home = Path(home) if home is not None else cpt_home()
        self.path = self.home / "catalog.db"

    # --- connection ------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conns = getattr(_local, "conns", None)
        if conns is None:
            conns = _local.conns = {}
        key = str(self.path.resolve())
        conn = conns.get(key)
        if conn is None:
            self.home.mkdir(parents=True, exist_ok=True)
            conn = self._open()
            conns[key] = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(SCHEMA)
            return conn
        except sqlite3.DatabaseError as e:
            conn.close()
            if "locked" in str(e) or "busy" in str(e):
                raise
            # a corrupt cache: set it aside and start over (the run directories have everything)
            self.path.replace(self.path.with_name(f"catalog.corrupt-{int(time.time())}.db"))
            return self._open()

    def close(self) -> None:
        conns = getattr(_local, "conns", {})
        conn = conns.pop(str(self.path.resolve()), None)
        if conn is not None:
            conn.close()

    def _write(self, fn) -> Any:
        """Run fn(conn) in one IMMEDIATE transaction, retrying the rare busy error instead of surfacing it."""
        conn = self._conn()
        for attempt in range(20):
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                if ("locked" in str(e) or "busy" in str(e)) and attempt < 19:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise
            try:
                out = fn(conn)
                conn.execute("COMMIT")
                return out
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params: Iterable = ()) -> list[dict[str, Any]]:
        conn = self._conn()
        for attempt in range(20):
            try:
                cur = conn.execute(sql, tuple(params))
                names = [d[0] for d in cur.description]
                return [dict(zip(names, row)) for row in cur.fetchall()]
            except sqlite3.OperationalError as e:
                if ("locked" in str(e) or "busy" in str(e)) and attempt < 19:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise
        return []

    # --- sync from run directories --------------------------------------------------------------
    def sync(self, runs: list[Run] | None = None) -> int:
        """Refresh rows whose files changed (all runs by default); drop rows of deleted runs. Returns rows updated."""
        full = runs is None
        runs = list_runs(self.home) if runs is None else runs
        known = {r["id"]: r for r in self._read("SELECT * FROM runs")}
        fresh = []
        for run in runs:
            prev = known.get(run.id)
            if prev is None or prev["source_mtime"] != _source_mtime(run):
                fresh.append(_row(run, prev))
        gone = set(known) - {r.id for r in runs} if full else set()
        if not fresh and not gone:
            return 0

        def apply(conn: sqlite3.Connection) -> None:
            conn.executemany(f"INSERT OR REPLACE INTO runs ({', '.join(COLUMNS)}) "
                             f"VALUES ({', '.join('?' * len(COLUMNS))})",
                             [tuple(r[c] for c in COLUMNS) for r in fresh])
            conn.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in gone])

        self._write(apply)
        return len(fresh)

    def rebuild(self) -> int:
        """Forget every row and re-read every run directory."""
        self._write(lambda conn: conn.execute("DELETE FROM runs"))
        return self.sync()

    def remove(self, run_id: str) -> None:
        self._write(lambda conn: conn.execute("DELETE FROM runs WHERE id = ?", (run_id,)))

    # --- queries --------------------------------------------------------------------------------
    def rows(self, status: str | None = None, group: str | None = None) -> list[dict[str, Any]]:
        """Catalog rows as plain dicts (mix, tags and final metrics decoded), oldest first."""
        where, params = [], []
        if status:
            where.append("status = ?")
            params.append(status)
        if group:
            where.append("grp = ?")
            params.append(group)
        sql = "SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY created, id"
        return [decode(r) for r in self._read(sql, params)]

    # --- user annotations -----------------------------------------------------------------------
    def set_tags(self, run: Run, tags: list[str]) -> None:
        write_meta(run, tags=sorted(set(tags)))
        self.sync([run])

    def set_note(self, run: Run, note: str) -> None:
        write_meta(run, note=note)
        self.sync([run])


def decode(row: dict[str, Any]) -> dict[str, Any]:
    """A catalog row in the shape `cpt runs --json` prints."""
    return {
        "id": row["id"], "name": row["name"], "group": row["grp"], "status": row["status"],
        "step": row["step"], "max_steps": row["max_steps"], "model": row["model"], "recipe": row["recipe"],
        "mix": {"domain": row["mix_domain"], "replay": row["mix_replay"], "instruct": row["mix_instruct"]},
        "lr": row["lr"], "attempt": row["attempt"], "created": row["created"], "started": row["started"],
        "ended": row["ended"], "error": row["error"],
        "final_metrics": json.loads(row["final_metrics"]) if row["final_metrics"] else {},
        "tags": json.loads(row["tags"] or "[]"), "note": row["note"] or "",
    }
