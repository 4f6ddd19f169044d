"""Sweeps: a grid of config changes queued as one named group of background runs.

    cpt sweep experiments/smoke.yaml --grid mix.replay=0.05,0.25 --grid train.lr=1e-3,3e-3   # 4 runs
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


def sweep(cfg: RunConfig, grid: dict[str, list[str]], home: Path | str | None = None,
          group: str | None = None) -> tuple[str, list[Run]]:
    """Validate every grid point, then queue them all as one named group; they run one after another."""
    configs = sweep_configs(cfg, grid)  # raises before anything is created
    for c in configs:
        check_launcher(c)
    group = group or f"{cfg.name}-sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    return group, [launch(c, home, group=group) for c in configs]
