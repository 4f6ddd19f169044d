"""A run's checkpoints: list them by step, pick the newest usable one, and check one without loading torch.

The checks read headers and sizes (no tensors), and at resume the checksums the training process wrote when it
saved the folder (checksums.json: sha256 of every file, ~1 s per GB), so a checkpoint with flipped bytes of the
same size is set aside rather than resumed from.
"""
from __future__ import annotations

import json
import os
import re
import struct
import zipfile
from pathlib import Path

from ..hashing import sha256_file as sha256
from .store import Run, RunError


def checkpoint_step(path: Path) -> int | None:
    """The step of a `checkpoint-<step>` folder (None for anything else, e.g. corrupt-checkpoint-4-...)."""
    prefix, _, digits = Path(path).name.rpartition("-")
    return int(digits) if prefix == "checkpoint" and digits.isdigit() else None


def list_checkpoints(folder: Path) -> list[Path]:
    """The checkpoint-<step> folders under `folder`, oldest step first."""
    found = [p for p in Path(folder).glob("checkpoint-*") if checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def pick_checkpoint(run: Run) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest usable checkpoint and the newer ones skipped, with why (None: no checkpoint was saved);
    RunError if checkpoints exist but none is usable."""
    ckpts = list_checkpoints(run.checkpoints_dir)[::-1]
    if not ckpts:
        return None, []  # nothing saved yet (or stopped while queued): it starts again from step 0
    skipped = []
    for c in ckpts:
        problem = check_checkpoint(c)
        if problem is None:
            return c, skipped
        skipped.append((c, problem))
    reasons = "; ".join(f"{c.name}: {why}" for c, why in skipped)
    raise RunError(f"cannot resume {run.id}: no usable checkpoint ({reasons})")


CHECKSUMS = "checksums.json"


def write_checksums(folder: Path) -> None:
    """Record size and sha256 of every file in a saved checkpoint folder (written last, atomically). Rank 0
    writes them; other ranks' RNG files (rng_state_1.pth, ...) may still be in flight then, so they are left out."""
    folder = Path(folder)
    sums = {p.name: {"size": p.stat().st_size, "sha256": sha256(p)} for p in sorted(folder.iterdir())
            if p.is_file() and p.name != CHECKSUMS and not re.fullmatch(r"rng_state_[1-9]\d*\.pth", p.name)}
    tmp = folder / f".{CHECKSUMS}.part"
    tmp.write_text(json.dumps(sums, indent=1), encoding="utf-8")
    os.replace(tmp, folder / CHECKSUMS)


def verify_checksums(folder: Path) -> str | None:
    """None when every file listed in checksums.json has its recorded size and sha256 (or the folder has no
    checksums: saved by an older version, or by a crash before they were written), else the first mismatch."""
    f = Path(folder) / CHECKSUMS
    if not f.is_file():
        return None
    try:
        sums = json.loads(f.read_text(encoding="utf-8"))
        for name, want in sums.items():
            p = Path(folder) / name
            if not p.is_file():
                return f"{name} is missing (listed in {CHECKSUMS})"
            if p.stat().st_size != want["size"] or sha256(p) != want["sha256"]:
                return f"{name} is corrupt (its sha256 differs from the one recorded at save)"
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
        return f"{CHECKSUMS} is corrupt"
    return None


def check_checkpoint(path: Path, checksums: bool = True) -> str | None:
    """None when an HF checkpoint folder is complete, else why not: headers and sizes (no tensors), then, with
    checksums=True, the sha256 of every file recorded at save."""
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
    return verify_checksums(path) if checksums else None


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
    except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, IndexError,
            AttributeError):
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
