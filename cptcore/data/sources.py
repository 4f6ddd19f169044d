"""Read data sources: local files and folders, bundled `builtin:` sets, and hub datasets.

Every problem is a DataError whose message names the file (and line) and what is wrong.
"""
from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

from ..config import SourceConfig

ASSETS = Path(__file__).resolve().parents[1] / "assets"
BUILTIN = {
    "knowledge_docs": "knowledge/docs.jsonl",          # fictional entities, several paraphrases each
    "knowledge_heldout": "knowledge/heldout_docs.jsonl",  # one unseen paraphrase per entity (perplexity)
    "knowledge_qa_train": "knowledge/qa_train.jsonl",  # QA about train-split entities (may be trained on)
    "knowledge_qa_test": "knowledge/qa_test.jsonl",    # QA about test-split entities (never trained on)
    "replay": "replay/train.jsonl",                    # general text written by the starting model
    "replay_heldout": "replay/heldout.jsonl",
    "instruct": "instruct/train.jsonl",                # general instructions with the model's own answers
    "instruct_heldout": "instruct/heldout.jsonl",
}
SUFFIXES = (".txt", ".md", ".jsonl", ".json", ".parquet", ".csv")


class DataError(ValueError):
    """A data problem the user can fix; the message names the file, line or column."""


def local_path(source: SourceConfig) -> Path | None:
    """The local file or folder behind a source, or None for a hub dataset."""
    if source.path.startswith("builtin:"):
        name = source.path.removeprefix("builtin:")
        if name not in BUILTIN:
            raise DataError(f"unknown bundled dataset {source.path!r}; bundled: "
                            + ", ".join(f"builtin:{k}" for k in BUILTIN))
        return ASSETS / BUILTIN[name]
    p = Path(source.path).expanduser()
    if p.exists() or p.suffix in SUFFIXES or source.path.startswith((".", "/", "~")):
        return p
    return None


def source_files(source: SourceConfig) -> list[Path]:
    path = local_path(source)
    if path is None:
        return []
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix in SUFFIXES)
        if not files:
            raise DataError(f"{path}: folder has no {'/'.join(SUFFIXES)} files")
        return files
    if path.suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type {path.suffix!r} (use {', '.join(SUFFIXES)})")
    return [path]


def read_records(source: SourceConfig) -> list[dict]:
    """All rows of a source as dicts (a .txt/.md file is one document in the `text` field)."""
    return list(iter_records(source))


def iter_records(source: SourceConfig) -> Iterator[dict]:
    """The rows of read_records one at a time, so a corpus larger than RAM can be tokenized (cptcore/data/cache.py):
    memory holds one row (a .txt file, a .json or .csv file, a hub split's rows as Arrow reads them), plus, for a
    held-out split, one 32-byte key per document. Errors are raised as the rows are reached."""
    held = None
    if source.holdout != "all":  # the automatic held-out split of a user's documents: a first pass for its keys
        from .heldout import document_key, holdout_keys, row_text

        held = holdout_keys((document_key(row_text(r, source.text_field)) for r in _kept_rows(source)), source)
    n = 0
    for row in _kept_rows(source):
        if held is not None:
            from .heldout import document_key, row_text

            if (document_key(row_text(row, source.text_field)) in held) != (source.holdout == "heldout"):
                continue
        n += 1
        yield row
    if not n:
        raise DataError(f"{source.path}: no rows" + (" left after keep/drop" if source.keep or source.drop else ""))


def _kept_rows(source: SourceConfig) -> Iterator[dict]:
    """The source's first max_rows rows that keep/drop let through."""
    files = [] if source.streaming else source_files(source)
    rows = _read_hub(source) if not files else (r for f in files for r in _read_file(f, source.text_field))
    if source.max_rows:
        rows = itertools.islice(rows, source.max_rows)
    keep = {field: set(map(str, values)) for field, values in (source.keep or {}).items()}
    drop = {field: set(map(str, values)) for field, values in (source.drop or {}).items()}
    for r in rows:
        if all(str(_field(r, f, source)) in wanted for f, wanted in keep.items()) and \
                not any(str(_field(r, f, source)) in unwanted for f, unwanted in drop.items()):
            yield r


def _field(row: dict, field: str, source: SourceConfig):
    """A row's value of `field` for keep/drop; `document_key` (the normalized-text hash QA rows from `cpt synth`
    name their document by) is computed when the row has no such field."""
    if field == "document_key" and field not in row:
        from .heldout import document_key, row_text

        return document_key(row_text(row, source.text_field))
    return row.get(field)


def _read_text(path: Path) -> str:
    """The file as one string (its bytes are freed as soon as it is decoded: about 2x the file at the peak)."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}); convert it with iconv -t utf-8") from None


def _text_lines(path: Path):
    """(line number, text) of each line, read one line at a time: a big JSONL file is never held whole."""
    offset = 0
    with open(path, "rb") as fh:
        for i, raw in enumerate(fh, 1):
            try:
                yield i, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{i}: not UTF-8 text (byte {offset + e.start}); "
                                "convert it with iconv -t utf-8") from None
            offset += len(raw)


def jsonl_lines(path: Path, problems: list[str] | None = None) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line; errors name the file and the line. With a `problems`
    list, bad and blank lines are recorded there ("line 3: ...") and skipped instead (the Data page's report)."""
    return list(iter_jsonl(path, problems))


def iter_jsonl(path: Path, problems: list[str] | None = None) -> Iterator[tuple[int, dict]]:
    """jsonl_lines one line at a time."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    for i, line in _text_lines(path):
        problem = None
        if not line.strip():
            if problems is not None:
                problems.append(f"line {i}: blank line")
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            problem = f"malformed JSON ({e.msg})"
        else:
            if not isinstance(rec, dict):
                problem = f"expected a JSON object, got {type(rec).__name__}"
        if problem is None:
            yield i, rec
        elif problems is None:
            raise DataError(f"{path}:{i}: {problem}")
        else:
            problems.append(f"line {i}: {problem}")


def _read_file(path: Path, text_field: str) -> Iterator[dict]:
    """A file's rows, one at a time where the format allows (.jsonl lines, .parquet row groups)."""
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    if path.suffix in (".txt", ".md"):
        text = _read_text(path)
        if not text or text.isspace():  # not text.strip(): that would copy the whole file once more
            raise DataError(f"{path}: file has only whitespace")
        yield {text_field: text}
        return
    if path.suffix == ".jsonl":
        n = 0
        for _, rec in iter_jsonl(path):
            n += 1
            yield rec
        if not n:
            raise DataError(f"{path}: file has no records")
        return
    if path.suffix == ".json":
        try:
            data = json.loads(_read_text(path))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
        from .qa import is_squad, squad_rows

        if is_squad(data):
            yield from squad_rows(data, path, text_field)
            return
        if isinstance(data, dict):
            data = next((v for v in data.values() if isinstance(v, list)), None)
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError(f"{path}: expected a list of objects (or an object holding one)")
        yield from data
        return
    if path.suffix == ".parquet":
        yield from _parquet_rows(path)
        return
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except Exception as e:  # noqa: BLE001 - pandas raises many types
        raise DataError(f"{path}: cannot read {path.suffix} file ({type(e).__name__}: {e})") from None
    yield from frame.to_dict(orient="records")


def _parquet_rows(path: Path) -> Iterator[dict]:
    """A Parquet file's rows, one batch of 1,024 in memory at a time."""
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=1024)
        for batch in batches:
            yield from batch.to_pylist()
    except Exception as e:  # noqa: BLE001 - pyarrow raises many types
        raise DataError(f"{path}: cannot read .parquet file ({type(e).__name__}: {e})") from None


def _read_hub(source: SourceConfig) -> Iterator[dict]:
    """A hub dataset's rows as datasets reads them (memory-mapped Arrow; an IterableDataset with streaming)."""
    try:
        ds = stream_dataset(source) if source.streaming else _load_hub(source)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - hub errors vary; one line for the user
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{source.path}: not a local file and not loadable from the hub ({first})") from None
    for rec in ds:
        yield dict(rec)


def _load_hub(source: SourceConfig):
    from datasets import load_dataset

    return load_dataset(source.path, source.subset, split=source.split)


STREAM_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".txt": "text",
                   ".arrow": "arrow"}


def stream_dataset(source: SourceConfig):
    """A `streaming: true` source as a datasets IterableDataset: a hub id, a folder written by
    Dataset.save_to_disk, a folder of .arrow/.parquet/.jsonl files, or one such file. Nothing is downloaded
    or loaded whole: rows arrive as they are read."""
    from datasets import load_dataset, load_from_disk

    path = Path(source.path).expanduser()
    if not path.exists():
        return load_dataset(source.path, source.subset, split=source.split, streaming=True)
    if path.is_dir() and (path / "state.json").is_file():  # Dataset.save_to_disk
        ds = load_from_disk(str(path))
        return (ds[source.split] if hasattr(ds, "keys") else ds).to_iterable_dataset()
    files = sorted(f for f in path.rglob("*") if f.suffix in STREAM_BUILDERS) if path.is_dir() else [path]
    builders = {STREAM_BUILDERS.get(f.suffix) for f in files}
    if not files or len(builders) != 1 or None in builders:
        raise DataError(f"{path}: streaming reads one kind of {', '.join(STREAM_BUILDERS)} files "
                        f"(found: {', '.join(sorted({f.suffix for f in files})) or 'none'})")
    return load_dataset(builders.pop(), data_files=[str(f) for f in files], split="train", streaming=True)


def hub_fingerprint(source: SourceConfig) -> str:
    """datasets' fingerprint of a hub split as downloaded (it changes when the downloaded files do)."""
    try:
        ds = _load_hub(source)
    except Exception as e:  # noqa: BLE001 - hub errors vary; one line for the user
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{source.path}: not a local file and not loadable from the hub ({first})") from None
    return ds._fingerprint
