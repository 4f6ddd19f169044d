"""Read data sources: local files and folders, bundled `builtin:` sets, and hub datasets.

Every problem is a DataError whose message names the file (and line) and what is wrong.
"""
from __future__ import annotations

import hashlib
import json
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
    files = source_files(source)
    if not files:
        rows = _read_hub(source)
    else:
        rows = []
        for f in files:
            rows.extend(_read_file(f, source.text_field))
    if source.max_rows:
        rows = rows[: source.max_rows]
    for field, values in (source.keep or {}).items():
        wanted = set(map(str, values))
        rows = [r for r in rows if str(_field(r, field, source)) in wanted]
    for field, values in (source.drop or {}).items():
        unwanted = set(map(str, values))
        rows = [r for r in rows if str(_field(r, field, source)) not in unwanted]
    if source.holdout != "all":  # the automatic held-out split of a user's documents
        from .heldout import apply_holdout

        rows = apply_holdout(rows, source)
    if not rows:
        raise DataError(f"{source.path}: no rows" + (" left after keep/drop" if source.keep or source.drop else ""))
    return rows


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
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    out = []
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
            out.append((i, rec))
        elif problems is None:
            raise DataError(f"{path}:{i}: {problem}")
        else:
            problems.append(f"line {i}: {problem}")
    return out


def _read_file(path: Path, text_field: str) -> list[dict]:
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    if path.suffix in (".txt", ".md"):
        text = _read_text(path)
        if not text or text.isspace():  # not text.strip(): that would copy the whole file once more
            raise DataError(f"{path}: file has only whitespace")
        return [{text_field: text}]
    if path.suffix == ".jsonl":
        rows = [rec for _, rec in jsonl_lines(path)]
        if not rows:
            raise DataError(f"{path}: file has no records")
        return rows
    if path.suffix == ".json":
        try:
            data = json.loads(_read_text(path))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
        from .qa import is_squad, squad_rows

        if is_squad(data):
            return squad_rows(data, path, text_field)
        if isinstance(data, dict):
            data = next((v for v in data.values() if isinstance(v, list)), None)
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError(f"{path}: expected a list of objects (or an object holding one)")
        return data
    import pandas as pd

    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except Exception as e:  # noqa: BLE001 - pandas/pyarrow raise many types
        raise DataError(f"{path}: cannot read {path.suffix} file ({type(e).__name__}: {e})") from None
    return frame.to_dict(orient="records")


def _read_hub(source: SourceConfig) -> list[dict]:
    from datasets import load_dataset

    try:
        ds = load_dataset(source.path, source.subset, split=source.split, streaming=source.streaming)
    except Exception as e:  # noqa: BLE001 - hub errors vary; one line for the user
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{source.path}: not a local file and not loadable from the hub ({first})") from None
    rows = []
    for i, rec in enumerate(ds):
        if source.max_rows and i >= source.max_rows:
            break
        rows.append(dict(rec))
    return rows


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
