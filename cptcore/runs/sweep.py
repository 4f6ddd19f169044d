"""Sweeps: a grid of config changes queued as one named group of background runs.

    cpt sweep experiments/smoke.yaml --grid mix.replay=0.05,0.25 --grid train.lr=1e-3,3e-3   # 4 runs
    cpt sweep experiments/demo.yaml --pilot replay=0,0.05,0.1,0.2,0.4   # a pilot for `cpt mixlaw GROUP`

A pilot is a sweep over one mix share and nothing else (the other shares rescaled in proportion, as in a grid),
so every run evaluates the same items and differs only in that share; groups.py records it.
"""
from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from ..config import ROLES, ConfigError, RunConfig
from ..data.leaks import check_leaks
from ..data.sources import DataError
from ..plan import plan as make_plan
from .launch import check_launcher, launch
from .groups import check_group_name, write_group
from .store import Run


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """['mix.replay=0.05,0.1', 'train.lr=2e-5,1e-4'] -> {key: [values]}; commas inside [...] stay."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or "." not in key or not values.strip():
            raise ConfigError(f"--grid {item!r}: expected section.key=v1,v2,...")
        parts, depth, cur = [], 0, ""
        for ch in values:
            if ch in "[{":
                depth += 1
            elif ch in "]}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur.strip())
                cur = ""
            else:
                cur += ch
        parts.append(cur.strip())
        if key.strip() in grid:
            raise ConfigError(f"--grid {key}: given twice")
        grid[key.strip()] = [p for p in parts if p]
    return grid


def point_changes(cfg: RunConfig, point: dict[str, Any]) -> dict[str, Any]:
    """The overrides of one grid point; mix shares it does not name are rescaled to keep the sum 1."""
    changes = dict(point)
    fixed = {k.split(".", 1)[1]: v for k, v in point.items() if k.startswith("mix.") and k.split(".", 1)[1] in ROLES}
    if fixed:
        try:
            mix = cfg.mix.rebalanced(fixed)
        except (TypeError, ValueError) as e:  # ConfigError, or a share that is not a number
            raise ConfigError(str(e)) from None
        changes.update({f"mix.{r}": v for r, v in mix.shares().items()})
    return changes


def sweep_configs(cfg: RunConfig, grid: dict[str, list[str]]) -> list[RunConfig]:
    """One validated config per grid point, named after its values."""
    import yaml

    configs = []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        where = " ".join(f"{k}={v}" for k, v in zip(keys, values))
        try:
            point = {k: yaml.safe_load(v) for k, v in zip(keys, values)}
            changes = point_changes(cfg, point)
            changes["name"] = f"{cfg.name}-" + "-".join(f"{k.split('.')[-1]}{v}" for k, v in zip(keys, values))
            point_cfg = cfg.with_overrides(changes)
            check_leaks(point_cfg, make_plan(point_cfg))  # no steps or data, eval items trained on: before any run
            configs.append(point_cfg)
        except (ConfigError, DataError, yaml.YAMLError) as e:
            raise ConfigError(f"--grid point {where}: {str(e).removeprefix('--set: ')}") from None
    return configs


MIN_PILOT_SHARES = 4  # the share law has 3 parameters; leave-one-run-out must still fit it on the rest


def parse_pilot(text: str) -> tuple[str, list[float]]:
    """'replay=0,0.05,0.1' -> ('replay', [0.0, 0.05, 0.1]): one role, at least MIN_PILOT_SHARES distinct shares."""
    role, sep, values = text.partition("=")
    role = role.strip().removeprefix("mix.")
    if not sep or role not in ROLES:
        raise ConfigError(f"--pilot {text!r}: expected ROLE=s1,s2,... with ROLE one of {', '.join(ROLES)}")
    try:
        shares = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--pilot {text!r}: shares must be numbers between 0 and 1") from None
    bad = [s for s in shares if not 0 <= s < 1]
    if bad:
        raise ConfigError(f"--pilot {role}={bad[0]:g}: a share must be in [0, 1) (the other roles need room)")
    if len(set(shares)) != len(shares):
        raise ConfigError(f"--pilot {text!r}: a share is given twice")
    if len(shares) < MIN_PILOT_SHARES:
        raise ConfigError(f"--pilot {text!r}: {len(shares)} shares; a mixing law needs at least {MIN_PILOT_SHARES} "
                          "(3 parameters in the share, and leave-one-run-out fits it on the others); 5 are better")
    return role, sorted(shares)


def sweep(cfg: RunConfig, grid: dict[str, list[str]], home: Path | str | None = None,
          group: str | None = None, pilot: tuple[str, list[float]] | None = None) -> tuple[str, list[Run]]:
    """Validate every grid point, then queue them all as one named group; they run one after another.

    With `pilot` (role, shares) the grid is that one share; group.json records it for `cpt mixlaw`."""
    if pilot:
        if grid:
            raise ConfigError("--pilot varies one share and nothing else: drop --grid (use --set for fixed changes)")
        grid = {f"mix.{pilot[0]}": [f"{s:g}" for s in pilot[1]]}
    configs = sweep_configs(cfg, grid)  # raises before anything is created
    for c in configs:
        check_launcher(c)
    kind = "pilot" if pilot else "sweep"
    group = check_group_name(group or f"{cfg.name}-{kind}-{time.strftime('%Y%m%d-%H%M%S')}")
    runs = [launch(c, home, group=group) for c in configs]
    record = {"kind": kind, "grid": grid, "config": cfg.to_dict(), "runs": [r.id for r in runs]}
    if pilot:
        record.update(role=pilot[0], shares=pilot[1])
    write_group(group, home, **record)
    return group, runs
