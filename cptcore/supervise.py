"""Supervision inside the training process: heartbeat, graceful stop, and checkpoint checks for resume.

`cpt stop RUN` only writes <run>/stop.json; the Supervisor sees it at the next step boundary, asks the Trainer to
save a checkpoint and end, and marks status.json `stop_requested` so train_run finishes the run as `stopped`.
Under torchrun every rank must stop on the same step (or the next collective hangs), so the flag is all-reduced.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import time
import zipfile
from pathlib import Path

from transformers import TrainerCallback

from .launch import stop_request_path
from .runs import MetricWriter, Run

HEARTBEAT_EVERY_S = 5.0
# Fault-injection knob for tests: seconds to sleep after each step, so a kill or stop reliably lands mid-run
# even on a machine fast enough to finish a tiny run between two polls. Unset (0) in normal use.
STEP_DELAY_ENV = "CPT_STEP_DELAY_S"


class Supervisor(TrainerCallback):
    """Heartbeat (step, max_steps) into status.json every few seconds; checkpoint-and-stop on request."""

    def __init__(self, run: Run, writer: MetricWriter | None, every_s: float = HEARTBEAT_EVERY_S):
        self.run, self.writer, self.every_s = run, writer, every_s
        self.main = int(os.environ.get("RANK", "0")) == 0
        self._last = 0.0
        self.step_delay_s = float(os.environ.get(STEP_DELAY_ENV) or 0)
        self.stopped_at: int | None = None
        try:
            cfg = run.config()
            self.tokens_per_step = cfg.train.tokens_per_step(cfg.data.seq_len) * int(os.environ.get("WORLD_SIZE", "1"))
        except Exception:  # noqa: BLE001 - tokens are only a label on the stop event
            self.tokens_per_step = 0

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
        self._beat(state)

    def on_evaluate(self, args, state, control, **kwargs):
        self._beat(state)

    def on_save(self, args, state, control, **kwargs):
        self._beat(state, force=True, last_checkpoint=f"checkpoint-{state.global_step}")


# --- checkpoint checks ---------------------------------------------------------------------------
def check_checkpoint(path: Path) -> str | None:
    """None when an HF checkpoint folder looks complete, else why not (cheap: headers and sizes, no tensors)."""
    path = Path(path)
    if not path.is_dir():
        return "not a folder"
    state = path / "trainer_state.json"
    if not state.is_file():  # the Trainer writes it last: its absence means saving was interrupted
        return "partial: no trainer_state.json (saving was interrupted)"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return "trainer_state.json is corrupt"
    weights = [p for p in path.iterdir() if p.suffix == ".safetensors" or p.name in ("pytorch_model.bin",)]
    sharded = any(p.name.startswith("pytorch_model_fsdp") for p in path.iterdir())
    if not weights and not sharded:
        return "no model weights (model.safetensors or adapter_model.safetensors)"
    for w in weights:
        problem = check_safetensors(w) if w.suffix == ".safetensors" else check_torch_zip(w)
        if problem:
            return problem
    for name in ("optimizer.pt", "scheduler.pt"):
        f = path / name
        if f.exists():
            problem = check_torch_zip(f)
            if problem:
                return problem
        elif not sharded and name == "optimizer.pt":
            return "no optimizer.pt (cannot resume the optimizer state)"
    for f in path.glob("rng_state*.pth"):
        problem = check_torch_zip(f)
        if problem:
            return problem
    return None


def check_safetensors(path: Path) -> str | None:
    """A truncated or garbled safetensors file fails its header or its size check."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > size:
                return f"{path.name} is corrupt (bad header)"
            header = json.loads(fh.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, IndexError):
        return f"{path.name} is corrupt (unreadable header)"
    if size != 8 + n + end:
        return f"{path.name} is truncated ({size} of {8 + n + end} bytes)"
    return None


def check_torch_zip(path: Path) -> str | None:
    """torch.save files are zip archives: a truncated one has no readable central directory."""
    try:
        with zipfile.ZipFile(path) as z:
            z.infolist()
    except (OSError, zipfile.BadZipFile):
        return f"{path.name} is truncated or corrupt"
    return None
