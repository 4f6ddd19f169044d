"""Supervision inside the training process: heartbeat and graceful stop (checkpoint checks: runs/checkpoints.py).

`cpt stop RUN` only writes <run>/stop.json; the Supervisor sees it at the next step boundary, asks the Trainer to
save a checkpoint and end, and marks status.json `stop_requested` so train_run finishes the run as `stopped`.
Under torchrun every rank must stop on the same step (or the next collective hangs), so the flag is all-reduced.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from transformers import TrainerCallback

from .runs.metrics import MetricWriter
from .runs.store import Run, stop_request_path

HEARTBEAT_EVERY_S = 5.0
# Fault-injection knob for tests: seconds to sleep after each step, so a kill or stop reliably lands mid-run
# even on a machine fast enough to finish a tiny run between two polls. Unset (0) in normal use.
STEP_DELAY_ENV = "CPT_STEP_DELAY_S"


def write_eval_status(run: Run, evaluating: dict | None, eval_seconds: dict | None = None) -> bool:
    """status.json's `evaluating` field: where the evaluation running now is (None once it has ended), as
    EvalCallback reports it: {phase: baseline|periodic|final, step, evaluator, index, count, evaluators, done,
    total, started, evaluator_started, updated, attempt}. eval_seconds: seconds each evaluator took the last
    time it ran (what progress.run_progress estimates the evaluations left from). The heartbeat is refreshed
    too: an evaluation takes minutes without a training step, and the process is alive all along.

    Written only while the run is queued or running (its status is kept); never raises (a progress report must
    not end a training run). Returns whether it was written."""
    try:
        status = run.status().get("status")
        if status not in ("queued", "running"):
            return False
        fields = {"evaluating": evaluating, "heartbeat": time.time()}
        if eval_seconds is not None:
            fields["eval_seconds"] = dict(eval_seconds)
        run.write_status(status, **fields)
        return True
    except (OSError, ValueError, TypeError):
        return False


class Supervisor(TrainerCallback):
    """Heartbeat (step, max_steps) into status.json every few seconds; checkpoint-and-stop on request."""

    def __init__(self, run: Run, writer: MetricWriter | None, every_s: float = HEARTBEAT_EVERY_S,
                 tokens_per_step: int = 0):
        self.run, self.writer, self.every_s = run, writer, every_s
        self.tokens_per_step = tokens_per_step  # the plan's, for the stop event's token count
        self.main = int(os.environ.get("RANK", "0")) == 0
        self._last = 0.0
        self.step_delay_s = float(os.environ.get(STEP_DELAY_ENV) or 0)
        self.stopped_at: int | None = None

    def _beat(self, state, force: bool = False, **fields) -> None:
        now = time.time()
        if self.main and (force or now - self._last >= self.every_s):
            self.run.write_status("running", step=int(state.global_step), max_steps=int(state.max_steps),
                                  heartbeat=now, **fields)
            self._last = now

    def _stop_requested(self, args) -> bool:
        flag = stop_request_path(self.run).exists()
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            import torch

            t = torch.tensor([1.0 if flag else 0.0], device=args.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)  # every rank stops on the same step
            flag = bool(t.item() > 0)
        return flag

    def on_train_begin(self, args, state, control, **kwargs):
        self._beat(state, force=True, host=socket.gethostname())  # liveness checks pids only on this host

    def on_step_end(self, args, state, control, **kwargs):
        if self.step_delay_s:
            time.sleep(self.step_delay_s)
        if self.stopped_at is None and self._stop_requested(args):
            self.stopped_at = state.global_step
            control.should_save = True  # the Trainer saves checkpoint-<step> right after this callback
            control.should_training_stop = True
            self._beat(state, force=True, stop_requested=True)
            if self.writer is not None:
                self.writer.event("event/stopped", f"stop requested: checkpoint at step {state.global_step}",
                                  state.global_step, state.global_step * self.tokens_per_step)
            return
        self._beat(state)

    def on_log(self, args, state, control, **kwargs):
        self._beat(state, force=True)  # the status step never lags the stream's last record

    def on_evaluate(self, args, state, control, **kwargs):
        self._beat(state)

    def on_save(self, args, state, control, **kwargs):
        name = f"checkpoint-{state.global_step}"
        if self.main:  # the Trainer has written the folder: seal it, so later corruption is caught at resume
            from .runs.checkpoints import write_checksums

            write_checksums(Path(args.output_dir) / name)
        self._beat(state, force=True, last_checkpoint=name)

