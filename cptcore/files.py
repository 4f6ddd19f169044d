"""Writing files so that a reader (the dashboard, another process) sees the old or the new content, never half.

A leaf module: config, runs and evaluation all import it, it imports nothing of cptcore.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path


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
