"""Run directories: paths, create/open, config, status, manifest and the user's tags/note/group.

Files are the only state shared between a training process and its readers (CLI, dashboard):
  CPT_HOME/<run_id>/config.yaml     the exact RunConfig that runs
  CPT_HOME/<run_id>/status.json     status, pid, times, error (rewritten atomically, by the run's own process)
  CPT_HOME/<run_id>/manifest.json   data sources, rows, tokens, sha256 of local files
  CPT_HOME/<run_id>/metrics.jsonl   one JSON record per line, appended by the main process only (metrics.py)
  CPT_HOME/<run_id>/meta.json       tags, note, sweep group (user-editable, so not in status.json)
  CPT_HOME/<run_id>/launcher.json   pid, process group, host, cwd and command of the launched process
  CPT_HOME/<run_id>/stop.json       a stop request (`cpt stop`)
  CPT_HOME/<run_id>/log.txt         stdout/stderr of background runs
  CPT_HOME/<run_id>/checkpoints/    checkpoint-<step> folders (checkpoints.py)
"""
from __future__ import annotations

import errno
import json
import os
import re
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..files import atomic_write  # noqa: F401 - the one atomic writer, used through here by runs/

STATUSES = ("queued", "running", "completed", "failed", "stopped")
ACTIVE_STATUSES = ("queued", "running")
FINAL_STATUSES = ("completed", "failed", "stopped")
HOST = socket.gethostname()


class RunError(ValueError):
    """A problem with a run id or run directory that the user can act on."""


def cpt_home() -> Path:
    return Path(os.environ.get("CPT_HOME", "runs")).expanduser()


def read_json(path: Path | str) -> dict[str, Any]:
    """A small JSON file as a dict ({} when missing or unreadable: a reader never fails on a half-made run)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


_FILES: dict[str, tuple[tuple, object]] = {}  # small files parsed once per (size, mtime): pages reread them often


def cached_file(path: Path, parse) -> object:
    """parse(text) of a small file, re-read only when its size or mtime changed (None when unreadable)."""
    try:
        st = path.stat()
    except OSError:
        return None
    key = (st.st_size, st.st_mtime_ns)
    hit = _FILES.get(str(path))
    if hit and hit[0] == key:
        return hit[1]
    try:
        value = parse(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        value = None
    _FILES[str(path)] = (key, value)
    return value


def _yaml(text: str):
    import yaml

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        raise ValueError(str(e)) from None


RESERVE_BYTES = 64 * 1024
MIN_PREFIX = len("20261201-223106")  # a run id prefix names at least the second the run was created


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
    def meta_path(self) -> Path:
        return self.dir / "meta.json"

    @property
    def launcher_path(self) -> Path:
        return self.dir / "launcher.json"

    @property
    def reserve_path(self) -> Path:
        """RESERVE_BYTES kept from the start, given up on a full disk so the final status can still be written."""
        return self.dir / ".reserve"

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
        try:
            run.reserve_path.write_bytes(b"\0" * RESERVE_BYTES)
        except OSError:
            run.reserve_path.unlink(missing_ok=True)  # no room even now: the run still starts
        return run

    @classmethod
    def open(cls, home: Path | str | None, run_id: str) -> "Run":
        """The run with this id, or the one run whose id starts with it (at least its date and time,
        MIN_PREFIX characters) or whose tag it is (the 4 hex digits after the last dash). Never any other
        substring, and never a glob: `cpt delete 2` must not pick a run whose id happens to contain a 2."""
        home = Path(home) if home is not None else cpt_home()
        if not run_id or any(c in run_id for c in "/\\*?[]") or run_id.startswith("."):
            raise RunError(f"invalid run id {run_id!r} (give a run id or a prefix of one; no paths or wildcards)")
        run = cls(home / run_id)
        if not run.status_path.is_file():
            prefix = len(run_id) >= MIN_PREFIX
            matches = [p for p in home.iterdir()
                       if ((prefix and p.name.startswith(run_id)) or p.name.rsplit("-", 1)[-1] == run_id)
                       and (p / "status.json").is_file()] if home.is_dir() else []
            if len(matches) == 1:
                return cls(matches[0])
            if len(matches) > 1:
                raise RunError(f"run id {run_id!r} is ambiguous: {', '.join(sorted(m.name for m in matches))}")
            raise RunError(f"unknown run id {run_id!r} in {home}")
        return run

    def config(self) -> RunConfig:
        return RunConfig.load(self.config_path)

    def config_dict(self) -> dict:
        """config.yaml as a plain dict, unvalidated and cached ({} when unreadable: listings still show the run)."""
        cfg = cached_file(self.config_path, _yaml)
        return cfg if isinstance(cfg, dict) else {}

    # --- status, manifest, meta --------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return read_json(self.status_path) or {"status": "unknown"}

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
        try:
            atomic_write(self.status_path, data)
        except OSError as e:  # a full disk must not leave a dead run "running": give up the reserve, once
            if e.errno != errno.ENOSPC or not self.reserve_path.exists():
                raise
            self.reserve_path.unlink()
            atomic_write(self.status_path, data)
        return data

    def manifest(self) -> dict:
        """manifest.json (cached; {} before the run has built its data)."""
        manifest = cached_file(self.manifest_path, json.loads)
        return manifest if isinstance(manifest, dict) else {}

    def write_manifest(self, manifest: dict) -> None:
        atomic_write(self.manifest_path, manifest)

    def meta(self) -> dict[str, Any]:
        """Tags, note and sweep group."""
        return read_json(self.meta_path)

    def set_meta(self, **fields: Any) -> dict[str, Any]:
        meta = self.meta()
        meta.update(fields)
        atomic_write(self.meta_path, meta)
        return meta

    def set_tags(self, tags: list[str]) -> dict[str, Any]:
        return self.set_meta(tags=sorted({str(t) for t in tags}))

    def set_note(self, note: str) -> dict[str, Any]:
        return self.set_meta(note=note)

    # --- metric stream and checkpoints -------------------------------------------------------
    def read_metrics(self) -> list[dict]:
        """Every record of metrics.jsonl in file order (all attempts; see metrics.latest_attempt)."""
        from .metrics import MetricReader

        return MetricReader(self.metrics_path).read_new()

    def last_checkpoint(self) -> Path | None:
        from .checkpoints import list_checkpoints

        ckpts = list_checkpoints(self.checkpoints_dir)
        return ckpts[-1] if ckpts else None


def stop_request_path(run: Run) -> Path:
    return run.dir / "stop.json"


def list_runs(home: Path | str | None = None) -> list[Run]:
    home = Path(home) if home is not None else cpt_home()
    if not home.is_dir():
        return []
    return sorted((Run(p) for p in home.iterdir() if (p / "status.json").is_file()), key=lambda r: r.id)


def newest_first(runs: list[Run]) -> list[str]:
    """Run ids, most recently created first (the order every run picker shows)."""
    return [r.id for r in sorted(runs, key=lambda r: r.status().get("created") or 0, reverse=True)]
