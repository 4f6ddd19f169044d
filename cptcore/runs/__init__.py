"""Run state on disk, read and written in one place.

    store.py        run folders: config, status, manifest, tags/note/group; atomic writes
    metrics.py      the metric stream: writer, tailer, the latest-attempt rule
    checkpoints.py  list, check (torch-free) and pick checkpoints
    queue.py        one run per slot, in launch order
    liveness.py     is a queued/running run still alive?
    launch.py       launch, stop, resume, delete; the queued process's training
    sweep.py        grids of runs            slurm.py   sbatch scripts
"""
from .store import Run, RunError, cpt_home, list_runs, newest_first

__all__ = ["Run", "RunError", "cpt_home", "list_runs", "newest_first"]
