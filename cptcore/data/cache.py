"""Tokenize once: every source's tokens on disk, memory-mapped, keyed by everything they depend on.

    cpt prepare experiments/demo.yaml [--num-proc 2]    # also done on demand by cpt plan, Launch and cpt train

    CPT_HOME/cache/tokens/KEY/ids.bin      token ids, documents end to end (uint16 when the vocabulary fits)
                              labels.bin   int32 labels, -100 off the assistant turns (chat sources only)
                              lengths.npy  tokens per example (int64)
                              entry.json   the manifest entry: rows, examples, tokens, loss tokens, files

KEY is the sha256 of: CACHE_VERSION; the source's content (the sha256 of each of its files with its name in the
folder, memoized by path, size and mtime in cache/file_hashes.json (cptcore/hashing.py) so an unchanged file is
read once; a hub dataset:
its id, subset, split and datasets' fingerprint of the files downloaded); every setting that changes its rows
(format, text_field, max_rows, keep, drop, holdout, holdout_seed); the tokenizer (sha256 of its Rust
serialization, its chat template and EOS); the model kind (chat layout), loss_on and domain_as. The source's
path is not in it: the same file elsewhere is the same entry, and a changed file is a new one.

An entry is written into KEY.tmp-PID-N and renamed whole when complete, so a reader never sees half of one; two
processes preparing the same source each write their own and the first rename wins. Rows are read one at a
time (sources.iter_records) and tokenized in batches, by `num_proc` processes when asked, so memory follows a
batch, not the corpus. Why our own files rather than `datasets` Arrow (datasets.map) or litdata: measured in
experiments/benchmarks/bench_data.py (tokens/s and peak RSS of both on the same corpus); the packer reads
slices of one flat array per source, which a memmap gives for free.
Streaming sources (`streaming: true`) are not cached: StreamPacker tokenizes them as training reads them.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..config import SourceConfig
from ..hashing import HashMemo, sha256_json
from .formats import IGNORE, detect_format, encode_rows, facts_source_rows
from .pack import Shard
from .sources import DataError, iter_records, local_path, source_files

CACHE_VERSION = 1
BATCH_ROWS = 1000          # rows per tokenization batch
BATCH_CHARS = 1 << 22      # characters per batch (a batch of long documents stays ~4 MB of text)
ROW_SETTINGS = ("format", "text_field", "max_rows", "keep", "drop", "holdout", "holdout_seed")
_OPEN: dict[str, tuple[Shard, dict]] = {}  # entries opened by this process (memmaps are cheap, entry.json is read once)


def cache_root() -> Path:
    from ..runs.store import cpt_home

    return cpt_home() / "cache"


# --- keys --------------------------------------------------------------------------------------
def _backend(tokenizer):
    """The Rust tokenizer behind a transformers fast tokenizer or a cptcore.tokenizer.TextTokenizer."""
    return getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tok", None)


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of what decides the ids: the tokenizer's serialization, chat template and EOS. The transformers
    tokenizer training uses and the torch-free one `cpt plan` counts with give the same fingerprint."""
    backend = _backend(tokenizer)
    h = hashlib.sha256()
    if backend is not None:
        h.update(backend.to_str().encode())
    else:  # a slow tokenizer: its vocabulary
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(str(getattr(tokenizer, "chat_template", None)).encode())
    h.update(str(tokenizer.eos_token_id).encode())
    return h.hexdigest()


def vocab_size(tokenizer) -> int:
    backend = _backend(tokenizer)
    return backend.get_vocab_size(with_added_tokens=True) if backend is not None else len(tokenizer)


def source_files_hashed(source: SourceConfig) -> list[dict]:
    """The manifest's files of a local source: path, bytes and sha256 (memoized)."""
    memo = HashMemo(cache_root())
    out = [{"path": str(f), "bytes": f.stat().st_size, "sha256": memo.sha256(f)} for f in source_files(source)]
    memo.save()
    return out


def source_key(source: SourceConfig, tokenizer, kind: str, loss_on: str, domain_as: str) -> tuple[str, list[dict]]:
    """(cache key, the manifest's files) of a source as these settings tokenize it."""
    files = source_files_hashed(source)
    if files:
        root = local_path(source)
        content = [[str(Path(f["path"]).relative_to(root)) if root.is_dir() else "", f["sha256"]] for f in files]
    else:
        from .sources import hub_fingerprint

        content = ["hub", source.path, source.subset, source.split, hub_fingerprint(source)]
    settings = {k: getattr(source, k) for k in ROW_SETTINGS}
    parts = [CACHE_VERSION, content, settings, tokenizer_fingerprint(tokenizer), kind, loss_on, domain_as]
    return sha256_json(parts)[:32], files


# --- reading -----------------------------------------------------------------------------------
def cached_source(source: SourceConfig, tokenizer, kind: str, loss_on: str = "answers", domain_as: str = "as_is",
                  num_proc: int = 1, progress: bool = False) -> tuple[Shard, dict]:
    """A source's tokens (memory-mapped) and manifest entry, tokenized now only if no entry has them."""
    key, files = source_key(source, tokenizer, kind, loss_on, domain_as)
    folder = cache_root() / "tokens" / key
    if key not in _OPEN or not folder.is_dir():
        if not (folder / "entry.json").is_file():
            write_entry(folder, source, tokenizer, kind, loss_on, domain_as, num_proc, progress)
        _OPEN[key] = open_entry(folder)
    shard, entry = _OPEN[key]
    # the entry is content-addressed: name the files where they are now
    return shard, {**entry, "path": source.path, "local": local_path(source) is not None, "files": files,
                   "cache": key}


def open_entry(folder: Path) -> tuple[Shard, dict]:
    entry = json.loads((folder / "entry.json").read_text())
    ids = np.memmap(folder / "ids.bin", dtype=entry["dtype"], mode="r") if entry["tokens"] else np.zeros(0, np.int32)
    labels = np.memmap(folder / "labels.bin", dtype=np.int32, mode="r") if entry["has_labels"] else None
    return Shard(ids, labels, np.load(folder / "lengths.npy")), entry


# --- writing -----------------------------------------------------------------------------------
def write_entry(folder: Path, source: SourceConfig, tokenizer, kind: str, loss_on: str, domain_as: str,
                num_proc: int = 1, progress: bool = False) -> None:
    """Tokenize a source into `folder` (atomically: a temporary folder renamed whole)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}-{next(_SERIAL)}")
    tmp.mkdir()
    try:
        entry = _tokenize_into(tmp, source, tokenizer, kind, loss_on, domain_as, num_proc, progress)
        (tmp / "entry.json").write_text(json.dumps(entry))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished the same entry first: keep theirs
            if not (folder / "entry.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_SERIAL = itertools.count()


def batches(rows: Iterator[dict], max_rows: int | None = None) -> Iterator[list[dict]]:
    """Rows in lists of at most max_rows (default BATCH_ROWS) rows and about BATCH_CHARS characters of text."""
    batch, chars, max_rows = [], 0, max_rows or BATCH_ROWS
    for r in rows:
        batch.append(r)
        chars += sum(len(v) for v in r.values() if isinstance(v, str))
        if len(batch) >= max_rows or chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _tokenize_into(folder: Path, source: SourceConfig, tokenizer, kind: str, loss_on: str, domain_as: str,
                   num_proc: int, progress: bool) -> dict:
    rows: Iterator[dict] = iter_records(source)
    if domain_as == "facts":  # documents turned into fact instructions (small: held whole)
        rows = iter(facts_source_rows(list(rows), source.text_field))
        source = source.model_copy(update={"format": "chat"})
    first = next(rows)
    fmt = detect_format([first], source)
    has_labels = fmt == "chat" and loss_on != "all"
    dtype = np.uint16 if vocab_size(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.uint32
    n_rows = n_tokens = n_loss = 0
    lengths: list[np.ndarray] = []
    bar = _bar(source, progress)
    with open(folder / "ids.bin", "wb") as ids_fh, open(folder / "labels.bin", "wb") as lab_fh:
        encode = _encoder(tokenizer, fmt, source, kind, num_proc)
        for batch, encoded in encode(batches(itertools.chain([first], rows))):
            n_rows += len(batch)
            if encoded:
                lengths.append(np.fromiter((len(ids) for ids, _ in encoded), np.int64, len(encoded)))
                ids_all = np.concatenate([np.asarray(ids) for ids, _ in encoded])
                ids_fh.write(ids_all.astype(dtype).tobytes())
                n_tokens += len(ids_all)
                if has_labels:
                    labels = np.concatenate([np.asarray(lab, dtype=np.int32) for _, lab in encoded])
                    lab_fh.write(labels.tobytes())
                    n_loss += int(np.count_nonzero(labels != IGNORE))
                else:
                    n_loss += len(ids_all)
            if bar is not None:
                bar.update(sum(len(v) for r in batch for v in r.values() if isinstance(v, str)))
                bar.set_postfix(rows=f"{n_rows:,}", tokens=f"{n_tokens:,}")
    if bar is not None:
        bar.close()
    if not has_labels:
        (folder / "labels.bin").unlink()
    if n_tokens == 0:
        raise DataError(f"{source.path}: every row is empty")
    if n_loss == 0:
        raise DataError(f"{source.path}: no trainable tokens (chat records without assistant turns?)")
    np.save(folder / "lengths.npy", np.concatenate(lengths))
    return {"format": fmt, "rows": n_rows, "examples": int(sum(len(x) for x in lengths)), "tokens": n_tokens,
            "loss_tokens": n_loss, "dtype": np.dtype(dtype).name, "has_labels": has_labels,
            "version": CACHE_VERSION}


def _bar(source: SourceConfig, progress: bool):
    if not progress:
        return None
    from tqdm.auto import tqdm

    try:
        total = sum(f.stat().st_size for f in source_files(source)) or None
    except (OSError, DataError):
        total = None
    return tqdm(total=total, unit="B", unit_scale=True, desc=f"tokenizing {source.path}", leave=False)


# --- batch encoders: in this process, or by a pool of processes ---------------------------------
_WORKER: dict = {}


def _encode_batch(batch: list[dict], first_row: int = 1) -> list[tuple]:
    w = _WORKER
    return encode_rows(batch, w["fmt"], w["source"], w["tokenizer"], w["kind"], first_row=first_row)


def _worker_init(tokenizer, fmt: str, source: SourceConfig, kind: str) -> None:
    _WORKER.update(tokenizer=tokenizer, fmt=fmt, source=source, kind=kind)


def _encoder(tokenizer, fmt: str, source: SourceConfig, kind: str,
             num_proc: int) -> Callable[[Iterator[list[dict]]], Iterator[tuple[list[dict], list]]]:
    """A function from batches of rows to (batch, encoded rows) in order. With num_proc > 1, batches go to a
    pool of forked processes, at most 2 x num_proc in flight (Pool.imap would read the whole corpus ahead)."""
    _worker_init(tokenizer, fmt, source, kind)

    def serial(batches):
        row = 1
        for b in batches:
            yield b, _encode_batch(b, row)
            row += len(b)

    if num_proc <= 1:
        return serial

    def parallel(batches):
        import multiprocessing as mp

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # each process tokenizes on one thread
        with mp.get_context("fork").Pool(num_proc, _worker_init, (tokenizer, fmt, source, kind)) as pool:
            window: deque = deque()
            row = 1
            for b in batches:
                window.append((b, pool.apply_async(_encode_batch, (b, row))))
                row += len(b)
                if len(window) >= 2 * num_proc:
                    b0, res = window.popleft()
                    yield b0, res.get()
            while window:
                b0, res = window.popleft()
                yield b0, res.get()

    return parallel
