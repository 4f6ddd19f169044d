"""The metric stream: metrics.jsonl written by MetricWriter, tailed by StreamTail, read with latest_attempt.

One record per line: {"step", "tokens", "time", "name", "value", "attempt", ...}; value None marks an event
(`event/*`, with a "message"). A resumed run appends the steps after its checkpoint again with a higher attempt,
so every reader keeps, per (name, step), the record of the latest attempt (`latest_attempt_index`).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..files import dumps, restore_nonfinite


class MetricWriter:
    """Appends records to metrics.jsonl; one write() per line so readers never see half a record."""

    def __init__(self, path: Path, attempt: int = 1, start_time: float | None = None):
        self.path = Path(path)
        self.attempt = attempt
        torn = repair_torn_tail(self.path)
        if start_time is None:  # a resumed attempt continues the time axis where the previous one stopped
            start_time = time.time() - (last_time(self.path) if attempt > 1 else 0.0)
        self.start_time = start_time
        self._fh = open(self.path, "a", encoding="utf-8")
        if torn:
            self.event("event/stream_repaired", f"dropped a torn last line ({torn} bytes) that an interrupted "
                       "write left (full disk, kill -9): the next record would have been glued to it", 0, 0,
                       bytes_dropped=torn)

    def write(self, name: str, value: float | None, step: int, tokens: int, **extra: Any) -> dict:
        rec = {"step": int(step), "tokens": int(tokens), "time": round(time.time() - self.start_time, 3),
               "name": name, "value": None if value is None else float(value), "attempt": self.attempt, **extra}
        self._fh.write(dumps(rec) + "\n")  # strict JSON: a NaN value is written as null with a flag
        self._fh.flush()
        return rec

    def event(self, name: str, message: str, step: int, tokens: int, **extra: Any) -> dict:
        return self.write(name, None, step, tokens, message=message, **extra)

    def close(self) -> None:
        self._fh.close()


def last_time(path: Path, tail_bytes: int = 1 << 16) -> float:
    """The `time` of the stream's last readable record (0.0 when there is none)."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - tail_bytes))
            data = fh.read()
    except FileNotFoundError:
        return 0.0
    for rec in reversed(parse_records(data)):
        if isinstance(rec.get("time"), (int, float)):
            return float(rec["time"])
    return 0.0


def repair_torn_tail(path: Path) -> int:
    """Cut an unfinished last line (no newline) off the stream; returns the bytes cut (0: nothing torn).

    Appending after one would glue the next record onto it and lose both to every reader."""
    try:
        with open(path, "rb+") as fh:
            size = fh.seek(0, 2)
            if size == 0:
                return 0
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return 0
            back = min(size, 1 << 20)
            fh.seek(size - back)
            tail = fh.read(back)
            cut = size - back + tail.rfind(b"\n") + 1 if b"\n" in tail else (0 if back == size else size)
            fh.truncate(cut)
            return size - cut
    except FileNotFoundError:
        return 0


# --- tailing ---------------------------------------------------------------------------------
@dataclass
class StreamTail:
    """Tails an append-only file by byte offset. read() returns the complete lines appended since the last
    call; a partial last line is held back until its writer finishes it; a file that shrank is read again."""
    path: Path
    offset: int = 0  # bytes read from the file, the held-back partial line included
    partial: bytes = field(default=b"", repr=False)

    @property
    def complete(self) -> int:
        """Bytes of the file covered by the complete lines returned so far."""
        return self.offset - len(self.partial)

    def start_at(self, offset: int) -> None:
        """Continue after `offset` bytes of complete lines read elsewhere (a cache of the file's start)."""
        self.offset, self.partial = offset, b""

    def read(self, fh=None) -> tuple[bytes, bool]:
        """(complete new lines, True if the file shrank and was read again from its start)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return b"", False
        restarted = size < self.offset
        if restarted:
            self.start_at(0)
        if fh is None:
            with open(self.path, "rb") as own:
                own.seek(self.offset)
                chunk = own.read()
        else:
            fh.seek(self.offset)
            chunk = fh.read()
        self.offset += len(chunk)
        data = self.partial + chunk
        cut = data.rfind(b"\n") + 1  # b"" held back when the chunk ended with a newline
        self.partial = data[cut:]
        return data[:cut], restarted


MALFORMED = "event/malformed_line"


def parse_json_lines(data: bytes) -> list[dict]:
    """Complete JSONL lines of any objects (per-item evaluation files): a line that is not one is skipped."""
    out = []
    for line in data.split(b"\n"):
        if line.strip():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(restore_nonfinite(rec) if "nonfinite" in rec else rec)
    return out


def parse_records(data: bytes) -> list[dict]:
    """Complete JSONL lines -> records. A line that is not a record (not JSON, or without a name and an integer
    step) is not fatal and not hidden: it becomes an `event/malformed_line` event that quotes it, at the step
    of the record before it, so Monitor's events and `cpt metrics` show that something was lost there."""
    out, step, attempt = [], 0, 1
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if isinstance(rec, dict) and "name" in rec and isinstance(rec.get("step"), int):
            out.append(restore_nonfinite(rec) if "nonfinite" in rec else rec)
            step, attempt = rec["step"], rec.get("attempt") or attempt
            continue
        text = line.decode("utf-8", "replace").strip()
        quoted = text if len(text) <= 80 else text[:77] + "..."
        out.append({"step": step, "tokens": 0, "time": None, "name": MALFORMED, "value": None, "attempt": attempt,
                    "message": f"a line of the metric stream is not a record and was skipped ({len(line)} bytes "
                               f"after step {step}): {quoted}"})
    return out


@dataclass
class MetricReader:
    """The records appended to a metrics.jsonl since the last read_new() (all of them on the first call)."""
    path: Path
    tail: StreamTail = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.tail = StreamTail(self.path)

    def read_new(self) -> list[dict]:
        data, _ = self.tail.read()
        return parse_records(data)


# --- the latest-attempt rule -----------------------------------------------------------------
def latest_attempt_index(names: np.ndarray, steps: np.ndarray, attempts: np.ndarray) -> np.ndarray:
    """Positions of the records that win their (name, step): the highest attempt, and of equal attempts the
    later line. `names` are integer codes; the result is sorted by (name code, step)."""
    n = len(names)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # the last key sorts first: by name, step, attempt, then line order; the last of each (name, step) wins
    order = np.lexsort((np.arange(n), np.asarray(attempts), np.asarray(steps), np.asarray(names)))
    nm, st = np.asarray(names)[order], np.asarray(steps)[order]
    last = np.ones(n, dtype=bool)
    last[:-1] = (nm[1:] != nm[:-1]) | (st[1:] != st[:-1])
    return order[last]


def latest_attempt(records: list[dict]) -> list[dict]:
    """Values (latest attempt per (name, step), sorted by step then name), then the events in file order."""
    values = [r for r in records if r.get("value") is not None]
    events = [r for r in records if r.get("value") is None]
    codes = {name: i for i, name in enumerate(sorted({str(r["name"]) for r in values}))}
    keep = latest_attempt_index(np.array([codes[str(r["name"])] for r in values], dtype=np.int64),
                                np.array([int(r["step"]) for r in values], dtype=np.int64),
                                np.array([int(r.get("attempt") or 1) for r in values], dtype=np.int64))
    kept = [values[i] for i in keep]
    kept.sort(key=lambda r: (r["step"], r["name"]))
    return kept + events


def baseline(records: list[dict]) -> dict[str, float]:
    """The step-0 evaluation (the starting model), latest attempt: what every "change from step 0" is against."""
    return {r["name"]: r["value"] for r in latest_attempt(records)
            if r["step"] == 0 and str(r["name"]).startswith("eval/")}
