"""Writing files so that a reader (the dashboard, another process) sees the old or the new content, never half.

A leaf module: config, runs and evaluation all import it, it imports nothing of cptcore.
"""
from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path
from typing import Any


def finite(obj: Any) -> Any:
    """obj with every NaN/inf float replaced by None; a dict that held one says which in "nonfinite"
    ({key: "nan" | "inf" | "-inf"}), so strict JSON parsers accept it and nothing is silently lost."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        out, flags = {}, {}
        for k, v in obj.items():
            if isinstance(v, float) and not math.isfinite(v):
                flags[k] = "nan" if v != v else ("inf" if v > 0 else "-inf")
                out[k] = None
            else:
                out[k] = finite(v)
        if flags:
            out["nonfinite"] = {**out.get("nonfinite", {}), **flags}
        return out
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs) -> str:
    """Strict JSON (no bare NaN or Infinity, which other tools' parsers reject): see finite()."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)


def restore_nonfinite(rec: dict) -> dict:
    """The inverse of finite() for one record: its flagged keys become float NaN / inf again."""
    for k, v in (rec.pop("nonfinite", None) or {}).items():
        rec[k] = float(v)
    return rec


def atomic_write(path: Path | str, data: str | bytes | dict | list) -> Path:
    """Write a file so readers see the old or the new content, never half of it (dicts and lists as JSON)."""
    path = Path(path)
    if isinstance(data, (dict, list)):
        data = json.dumps(data, indent=1)
    # unique per process and thread: two writers never share a temporary file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data, encoding="utf-8")
    tmp.replace(path)
    return path
