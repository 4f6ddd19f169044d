"""Run directories: config, manifest, status and the append-only metric stream.

Files are the only state shared between a training process and its readers (CLI, dashboard):
  CPT_HOME/<run_id>/config.yaml     the exact RunConfig that runs
  CPT_HOME/<run_id>/status.json     status, pid, times, error (rewritten atomically)
  CPT_HOME/<run_id>/manifest.json   data sources, rows, tokens, sha256 of local files
  CPT_HOME/<run_id>/metrics.jsonl   one JSON record per line, appended by the main process only
  CPT_HOME/<run_id>/log.txt         stdout/stderr of background runs
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .config import RunConfig

STATUSES = ("queued", "running", "completed", "failed", "stopped")
FINAL_STATUSES = ("completed", "failed", "stopped")


class RunError(ValueError):
    """A problem with a run id or run directory that the user can act on."""


def cpt_home() -> Path:
    return Path(os.environ.get("CPT_HOME", "runs")).expanduser()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


@dataclass
class Run:
    dir: Path

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def config_path(self) -> Path:
        return self.dir / "config.yaml"

    @property
    def status_path(self) -> Path:
        return self.dir / "status.json"

    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.jsonl"

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def log_path(self) -> Path:
        return self.dir / "log.txt"

    @property
    def checkpoints_dir(self) -> Path:
        return self.dir / "checkpoints"

    # --- create / open -----------------------------------------------------------------------
    @classmethod
    def create(cls, home: Path | str | None, cfg: RunConfig, status: str = "queued") -> "Run":
        home = Path(home) if home is not None else cpt_home()
        home.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", cfg.name).strip("-")[:40] or "run"
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{secrets.token_hex(2)}"
        run = cls(home / run_id)
        run.dir.mkdir()
        cfg.save(run.config_path)  # config first: even a failed start is reproducible
        run.write_status(status, created=time.time())
        return run

    @classmethod
    def open(cls, home: Path | str | None, run_id: str) -> "Run":
        home = Path(home) if home is not None else cpt_home()
        if not run_id or "/" in run_id or run_id in (".", ".."):
            raise RunError(f"invalid run id {run_id!r}")
        run = cls(home / run_id)
        if not run.status_path.is_file():
            matches = [p for p in home.glob(f"*{run_id}*") if (p / "status.json").is_file()] if home.is_dir() else []
            if len(matches) == 1:
                return cls(matches[0])
            if len(matches) > 1:
                raise RunError(f"run id {run_id!r} is ambiguous: {', '.join(sorted(m.name for m in matches))}")
            raise RunError(f"unknown run id {run_id!r} in {home}")
        return run

    def config(self) -> RunConfig:
        return RunConfig.load(self.config_path)

    # --- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {"status": "unknown"}

    def write_status(self, status: str, **fields: Any) -> dict[str, Any]:
        assert status in STATUSES, status
        data = self.status() if self.status_path.exists() else {}
        data.update(fields)
        data["status"] = status
        data["updated"] = time.time()
        if status == "running":
            data.setdefault("started", time.time())
        if status in FINAL_STATUSES:
            data["ended"] = time.time()
        _atomic_write(self.status_path, json.dumps(data, indent=1))
        return data

    def write_manifest(self, manifest: dict) -> None:
        _atomic_write(self.manifest_path, json.dumps(manifest, indent=1))

    def manifest(self) -> dict:
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}

    # --- metric stream -----------------------------------------------------------------------
    def read_metrics(self) -> list[dict]:
        return MetricReader(self.metrics_path).read_new()

    def last_checkpoint(self) -> Path | None:
        ckpts = sorted(self.checkpoints_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
        return ckpts[-1] if ckpts else None


class MetricWriter:
    """Appends records to metrics.jsonl; one write() per line so readers never see half a record."""

    def __init__(self, path: Path, attempt: int = 1, start_time: float | None = None):
        self.path = Path(path)
        self.attempt = attempt
        self.start_time = start_time if start_time is not None else time.time()
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, name: str, value: float | None, step: int, tokens: int, **extra: Any) -> dict:
        rec = {"step": int(step), "tokens": int(tokens), "time": round(time.time() - self.start_time, 3),
               "name": name, "value": None if value is None else float(value), "attempt": self.attempt, **extra}
        self._fh.write(json.dumps(rec) + "\n")
        self._fh.flush()
        return rec

    def event(self, name: str, message: str, step: int, tokens: int, **extra: Any) -> dict:
        return self.write(name, None, step, tokens, message=message, **extra)

    def close(self) -> None:
        self._fh.close()


@dataclass
class MetricReader:
    """Tails metrics.jsonl by byte offset; holds back a partial last line; restarts if the file shrank."""
    path: Path
    offset: int = 0
    _partial: bytes = field(default=b"", repr=False)

    def read_new(self) -> list[dict]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:
            self.offset, self._partial = 0, b""
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # b"" when the chunk ended with a newline
        out = []
        for line in lines:
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out


def latest_attempt(records: list[dict]) -> list[dict]:
    """Keep, for each (name, step), the record of the latest attempt (resumed runs rewrite steps)."""
    best: dict[tuple, dict] = {}
    events = []
    for r in records:
        if r.get("value") is None:
            events.append(r)
            continue
        key = (r["name"], r["step"])
        if key not in best or r.get("attempt", 1) >= best[key].get("attempt", 1):
            best[key] = r
    return sorted(best.values(), key=lambda r: (r["step"], r["name"])) + events


def list_runs(home: Path | str | None = None) -> list[Run]:
    home = Path(home) if home is not None else cpt_home()
    if not home.is_dir():
        return []
    return sorted((Run(p) for p in home.iterdir() if (p / "status.json").is_file()), key=lambda r: r.id)


def iter_metric_rows(run: Run) -> Iterator[dict]:
    yield from latest_attempt(run.read_metrics())


def newest_first(runs: list[Run]) -> list[str]:
    """Run ids, most recently created first (the order every run picker shows)."""
    return [r.id for r in sorted(runs, key=lambda r: r.status().get("created") or 0, reverse=True)]
