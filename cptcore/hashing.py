"""Content hashes the caches share (the token cache, cptcore/data/cache.py; the step-0 baseline cache,
cptcore/evaluate/baseline.py): files are hashed once and remembered by path, size and mtime, so a 7B model or a
100M-token corpus is read once, not at every run. Imports no torch."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

MEMO_FILE = "file_hashes.json"


def sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def sha256_file(path: Path | str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class HashMemo:
    """sha256 of files, read again only when a file's (resolved path, size, mtime_ns) changed; kept in
    FOLDER/file_hashes.json (save() writes it atomically, merged with what other processes added)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / MEMO_FILE
        self.memo = _read(self.path)
        self.changed = False

    def sha256(self, path: Path | str) -> str:
        real = Path(path).resolve()  # hub snapshots are symlinks to blobs
        st = real.stat()
        hit = self.memo.get(str(real))
        if hit and hit[:2] == [st.st_size, st.st_mtime_ns]:
            return hit[2]
        digest = sha256_file(real)
        self.memo[str(real)] = [st.st_size, st.st_mtime_ns, digest]
        self.changed = True
        return digest

    def save(self) -> None:
        if not self.changed:
            return
        from .files import atomic_write

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, {**_read(self.path), **self.memo})
            self.changed = False
        except OSError:  # a read-only or full CPT_HOME: hashing again next time is all it costs
            pass


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
