"""Slurm: an sbatch script that runs a config under `srun torchrun` on N nodes, written into a new run's folder.

    cpt slurm experiments/smoke.yaml --nodes 4 --gpus-per-node 8    # prints the script's path; submit with sbatch
"""
from __future__ import annotations

import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ..config import ConfigError, RunConfig
from .store import Run, atomic_write

# what sbatch accepts; anything else (a newline above all) would inject lines into the script
TIME_RE = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$|^\d+-\d{1,2}$")
PARTITION_RE = re.compile(r"^[A-Za-z0-9_.,-]{1,128}$")


def check_slurm_args(nodes: int, gpus_per_node: int, time_limit: str, partition: str | None, cpus_per_task: int) -> None:
    """Refuse values sbatch would not take before they are written into #SBATCH lines."""
    for name, v in (("--nodes", nodes), ("--gpus-per-node", gpus_per_node), ("--cpus-per-task", cpus_per_task)):
        if not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name}: must be a positive integer, got {v!r}")
    if not TIME_RE.match(time_limit or ""):
        raise ConfigError(f"--time: {time_limit!r} is not a Slurm time (minutes, MM:SS, HH:MM:SS, D-HH or "
                          "D-HH:MM:SS)")
    if partition is not None and not PARTITION_RE.match(partition):
        raise ConfigError(f"--partition: {partition!r} is not a partition name (letters, digits, _ . , -)")


def slurm_script(cfg: RunConfig, run: Run, nodes: int, gpus_per_node: int, time_limit: str = "24:00:00",
                 partition: str | None = None, cpus_per_task: int = 8) -> str:
    """An sbatch script: one `srun` task per node runs torchrun, which starts one process per GPU."""
    home = run.dir.parent.resolve()
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        f"# CPT Studio run {run.id}: {nodes} node(s) x {gpus_per_node} GPU process(es), strategy {cfg.launch.strategy}.",
        f"# Submit: sbatch {q(str(run.dir / 'job.sbatch'))}    Watch: CPT_HOME={q(str(home))} cpt status {run.id}",
        f"#SBATCH --job-name=cpt-{re.sub(r'[^A-Za-z0-9_.-]', '-', cfg.name)[:40]}",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={gpus_per_node}",
        f"#SBATCH --cpus-per-task={cpus_per_task}",
        f"#SBATCH --time={time_limit}",
        f"#SBATCH --output={run.dir}/slurm-%j.log",
    ] + ([f"#SBATCH --partition={partition}"] if partition else []) + [
        "set -euo pipefail",
        f"export CPT_HOME={q(str(home))}  # must be a filesystem every node sees",
        "export PYTHONUNBUFFERED=1",
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        f"cd {q(os.getcwd())}",
        f"srun --kill-on-bad-exit=1 {q(sys.executable)} -m torch.distributed.run \\",
        f'  --nnodes "$SLURM_NNODES" --nproc_per_node {gpus_per_node} \\',
        '  --rdzv_id "$SLURM_JOB_ID" --rdzv_backend c10d --rdzv_endpoint "$head_node:29500" \\',
        f"  -m cptcore train {q(str(run.config_path.resolve()))} --run-id {run.id} --no-progress",
    ]
    return "\n".join(lines) + "\n"


def write_slurm(cfg: RunConfig, home: Path | str | None, nodes: int, gpus_per_node: int, **kw: Any) -> tuple[Run, Path]:
    """Create the run (status queued) and its sbatch script in the run directory."""
    check_slurm_args(nodes, gpus_per_node, kw.get("time_limit", "24:00:00"), kw.get("partition"),
                     kw.get("cpus_per_task", 8))
    run = Run.create(home, cfg)
    atomic_write(run.launcher_path, {"launcher": "slurm", "host": None, "time": time.time(), "cwd": os.getcwd()})
    path = run.dir / "job.sbatch"
    path.write_text(slurm_script(cfg, run, nodes, gpus_per_node, **kw), encoding="utf-8")
    path.chmod(0o755)
    return run, path
