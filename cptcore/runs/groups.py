"""Run groups on disk: what a sweep queued, and what was concluded from it, kept together so a choice made from
a pilot sweep can be reviewed and reproduced later.

  CPT_HOME/groups/<group>/group.json    kind (sweep | pilot), the grid or the pilot's role and shares, the base
                                        config, the run ids in launch order
  CPT_HOME/groups/<group>/mixlaw.json   the last `cpt mixlaw` fit: laws, parameters, leave-one-run-out errors,
                                        the budget and the recommendation (written by cptcore/mixlaw.py)

Runs also carry their group in meta.json (store.py); a group folder holds no status.json, so list_runs never
mistakes it for a run.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from .store import Run, RunError, atomic_write, cpt_home, list_runs, read_json

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")


def groups_dir(home: Path | str | None = None) -> Path:
    return (Path(home) if home is not None else cpt_home()) / "groups"


def check_group_name(name: str) -> str:
    if not NAME.fullmatch(name or ""):
        raise RunError(f"group name {name!r}: use letters, digits, '.', '_' and '-' (at most 120, no leading '.')")
    return name


def group_path(group: str, home: Path | str | None = None, file: str = "group.json") -> Path:
    return groups_dir(home) / check_group_name(group) / file


def write_group(group: str, home: Path | str | None, **record: Any) -> dict:
    """Write group.json (atomically): the record plus the group's name and creation time."""
    data = {"group": group, "created": time.time(), **record}
    path = group_path(group, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)
    return data


def read_group(group: str, home: Path | str | None = None) -> dict:
    """group.json, or a RunError naming the groups there are."""
    data = read_json(group_path(group, home))
    if not data:
        known = list_groups(home)
        raise RunError(f"no group {group!r} in {groups_dir(home)}"
                       + (f" (groups: {', '.join(known[:8])}{', ...' if len(known) > 8 else ''})" if known else
                          " (start one: cpt sweep CONFIG --pilot replay=0,0.05,0.1,0.2,0.4)"))
    return data


def list_groups(home: Path | str | None = None, kind: str | None = None) -> list[str]:
    """Group names, newest first; only those of one kind (e.g. "pilot") when given."""
    rows = []
    folder = groups_dir(home)
    if folder.is_dir():
        for p in folder.iterdir():
            data = read_json(p / "group.json")
            if data and (kind is None or data.get("kind") == kind):
                rows.append((data.get("created") or 0, p.name))
    return [name for _, name in sorted(rows, reverse=True)]


def group_runs(group: str, home: Path | str | None = None) -> list[Run]:
    """The group's runs in launch order (those deleted since are left out)."""
    home = Path(home) if home is not None else cpt_home()
    ids = read_group(group, home).get("runs") or []
    by_id = {r.id: r for r in list_runs(home)}
    return [by_id[i] for i in ids if i in by_id]
