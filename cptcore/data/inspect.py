"""A data source before a run: rows, columns, format, a preview, tokens and the problems found (malformed
lines, empty rows, duplicates, each with its line number); uploads stored under CPT_HOME/data; the documents'
report (held-out split, duplicates, long documents, passes at a token budget) and saving reviewed QA.

Never imports streamlit (the Data page renders what these return) nor torch.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config import SourceConfig

MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # keep in step with server.maxUploadSize in .streamlit/config.toml
DATA_SUFFIXES = (".txt", ".md", ".jsonl", ".json", ".parquet", ".csv")
DATA_DIRS_ENV = "CPT_DATA_DIRS"  # folders (os.pathsep-separated) the Data page may read besides CPT_HOME/data
MAX_WALK_FILES = 2000            # a typed folder with more entries is not walked (listing /usr blocked the page)
PREVIEW_CHARS = 2000             # per previewed field
LONG_DOC_CHARS = 100_000         # a document this long is cut into many training sequences and QA passages


def readable_path(path: str, home: Path) -> str | None:
    """Why the Data page must not read a typed path, or None when it may.

    The dashboard answers whoever reaches its port, so a typed path is confined: bundled sets, hub dataset
    ids, and files or folders (symlinks resolved) inside CPT_HOME/data or a folder listed in $CPT_DATA_DIRS."""
    if path.startswith("builtin:"):
        return None
    p = Path(path).expanduser()
    if not p.exists() and path.count("/") == 1 and not p.suffix and not path.startswith("."):
        return None  # a hub dataset id
    allowed = [Path(home) / "data"] + [Path(d).expanduser() for d in os.environ.get(DATA_DIRS_ENV, "").split(os.pathsep)
                                       if d.strip()]
    real = p.resolve()
    if not any(real == a.resolve() or a.resolve() in real.parents for a in allowed):
        return (f"{path}: outside the folders the dashboard may read ({', '.join(str(a) for a in allowed)}); "
                f"upload the file, or add its folder to ${DATA_DIRS_ENV} before starting the dashboard")
    if real.is_dir():
        with os.scandir(real) as it:
            for n, _ in enumerate(it, 1):
                if n > MAX_WALK_FILES:
                    return f"{path}: more than {MAX_WALK_FILES:,} entries: point at a file or a smaller folder"
    return None


def _clip(value):
    return value[:PREVIEW_CHARS] + " …" if isinstance(value, str) and len(value) > PREVIEW_CHARS else value


@dataclass
class SourceReport:
    """What a data source holds and what is wrong with it."""
    path: str
    format: str | None = None
    rows: int = 0
    columns: list[str] = field(default_factory=list)
    preview: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tokens: int | None = None


def _rows_with_lines(source: SourceConfig) -> tuple[list[tuple[int, dict]], list[str]]:
    """(line or row number, record) pairs; JSONL lines that do not parse become problems, not errors."""
    from .sources import jsonl_lines, read_records, source_files

    files = source_files(source)
    if len(files) == 1 and files[0].suffix == ".jsonl":
        problems: list[str] = []
        rows = jsonl_lines(files[0], problems)
        return (rows[: source.max_rows] if source.max_rows else rows), problems
    return list(enumerate(read_records(source), 1)), []


def _is_empty(rec: dict, fmt: str, text_field: str) -> bool:
    if fmt == "text":
        v = rec.get(text_field)
        return not isinstance(v, str) or not v.strip()
    msgs = rec.get("messages")
    if isinstance(msgs, list):
        return not any(str(m.get("content", "")).strip() for m in msgs
                       if isinstance(m, dict) and m.get("role") == "assistant")
    from .formats import PAIR_FIELDS

    return not any(str(rec.get(b, "")).strip() for a, b in PAIR_FIELDS if a in rec)


def inspect_source(source: SourceConfig, tokenizer=None, kind: str = "instruct", preview_rows: int = 5,
                   max_problems: int = 50) -> SourceReport:
    """Rows, columns, format (text vs chat), a preview, tokens (with a tokenizer) and the problems found:
    malformed lines, empty rows and duplicates, each with its line number."""
    from .formats import detect_format, encode_rows
    from .sources import DataError

    report = SourceReport(path=source.path)
    try:
        rows, report.problems = _rows_with_lines(source)
    except DataError as e:
        report.problems.append(str(e))
        return report
    report.rows = len(rows)
    if not rows:
        report.problems.append("no readable rows")
        return report
    report.columns = sorted({k for _, r in rows for k in r})
    report.preview = [{k: _clip(v) for k, v in r.items()} for _, r in rows[:preview_rows]]
    try:
        report.format = detect_format([r for _, r in rows], source)
    except DataError as e:
        report.problems.append(str(e))
        return report
    seen: dict[str, int] = {}
    good = []
    for line, rec in rows:
        if _is_empty(rec, report.format, source.text_field):
            report.problems.append(f"line {line}: empty {'text' if report.format == 'text' else 'response'}")
            continue
        digest = hashlib.sha1(json.dumps(rec, sort_keys=True, default=str).encode()).hexdigest()
        if digest in seen:
            report.problems.append(f"line {line}: duplicate of line {seen[digest]}")
        else:
            seen[digest] = line
        good.append(rec)
    if tokenizer is not None and good:
        try:
            report.tokens = sum(len(ids) for ids, _ in encode_rows(good, report.format, source, tokenizer, kind))
        except DataError as e:
            report.problems.append(str(e))
    if len(report.problems) > max_problems:
        hidden = len(report.problems) - max_problems
        report.problems = report.problems[:max_problems] + [f"... and {hidden} more"]
    return report


RESERVED_NAMES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def safe_upload_name(filename: str) -> str:
    """A plain file name from whatever the browser sent: no folders, no leading dots, a data suffix."""
    name = Path(str(filename).replace("\\", "/")).name
    stem, suffix = Path(name).stem, Path(name).suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise ValueError(f"{filename!r}: unsupported file type (use {', '.join(DATA_SUFFIXES)})")
    stem = re.sub(r"[^\w.-]+", "_", stem).strip("._-")[:80] or "upload"  # \w keeps é, ü, 中 ...
    if stem.split(".")[0].upper() in RESERVED_NAMES:  # CON.txt cannot be opened on Windows shares
        stem += "_"
    return stem + suffix


def save_upload(home: Path, filename: str, data: bytes, max_bytes: int = MAX_UPLOAD_BYTES) -> Path:
    """Store uploaded bytes under CPT_HOME/data only (never executed); an existing different file is kept."""
    if len(data) > max_bytes:
        raise ValueError(f"{filename!r}: {len(data) / 1e6:.1f} MB is over the {max_bytes / 1e6:.0f} MB upload limit")
    folder = (Path(home) / "data").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    name = safe_upload_name(filename)
    dest = folder / name
    n = 1
    while dest.exists() and dest.read_bytes() != data:
        dest = folder / f"{Path(name).stem}-{n}{Path(name).suffix}"
        n += 1
    if dest.resolve().parent != folder:
        raise ValueError(f"{filename!r}: refusing to write outside {folder}")
    import os
    import tempfile

    # a fresh, exclusively created temp file in the target folder: a planted .part symlink is never followed
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def user_files(home: Path) -> list[Path]:
    folder = Path(home) / "data"
    return sorted(p for p in folder.glob("*") if p.is_file() and p.suffix in DATA_SUFFIXES) if folder.is_dir() else []


# --- the documents' report: what a run will do with them ----------------------------------------------
@dataclass
class DocumentReport:
    """Numbers a run derives from a source's documents (rows): the held-out split, duplicates, long documents,
    and how many passes a token budget makes over them."""
    documents: int = 0
    distinct: int = 0
    tokens: int | None = None
    holdout: int | None = None          # documents (distinct keys) held out for evaluation
    holdout_rows: int | None = None     # rows they cover (duplicates go with their original)
    holdout_note: str = ""              # how the split is made, or why none can be
    exact_duplicates: list[tuple[int, int]] = field(default_factory=list)  # (row, row it repeats), 1-based
    near_duplicates: list[tuple[int, int]] = field(default_factory=list)
    long_documents: list[int] = field(default_factory=list)  # rows over LONG_DOC_CHARS
    budget_tokens: int = 0
    domain_share: float = 0.0
    passes: float | None = None         # budget x share / tokens


def near_key(text: str) -> str:
    """document_key of the text with digits (and punctuation) replaced by spaces: documents that differ only in
    their numbers (a template filled in again, a dated copy) share it."""
    from .heldout import document_key

    return document_key(re.sub(r"[\W\d_]+", " ", text))


def document_report(source: SourceConfig, tokens: int | None = None, budget_tokens: int = 1_000_000,
                    domain_share: float = 0.85) -> DocumentReport:
    """The held-out split (cptcore.data.heldout) a run on these documents makes, exact duplicates (same
    document_key, the split's identity of a document), near-duplicates (same near_key, not exact), documents
    over LONG_DOC_CHARS, and passes = budget x share / tokens (tokens: the page's count, None unknown)."""
    from .heldout import document_key, holdout_count, is_bundled, row_text, split_indices
    from .sources import DataError, read_records

    rep = DocumentReport(tokens=tokens, budget_tokens=budget_tokens, domain_share=domain_share)
    try:
        rows = read_records(source.model_copy(update={"holdout": "all"}))
    except DataError as e:
        rep.holdout_note = str(e)
        return rep
    texts = [row_text(r, source.text_field) for r in rows]
    rep.documents = len(rows)
    first, first_near = {}, {}
    for n, text in enumerate(texts, 1):
        key, near = document_key(text), near_key(text)
        if key in first:
            rep.exact_duplicates.append((n, first[key]))
        elif near in first_near:
            rep.near_duplicates.append((n, first_near[near]))
        first.setdefault(key, n)
        first_near.setdefault(near, n)
        if len(text) > LONG_DOC_CHARS:
            rep.long_documents.append(n)
    rep.distinct = len(first)
    if is_bundled(source):
        rep.holdout_note = "bundled data: evaluated on its own bundled held-out set, nothing is split off"
    else:
        try:
            idx, _ = split_indices(rows, source)
            rep.holdout, rep.holdout_rows = holdout_count(rep.distinct), len(idx)
            rep.holdout_note = (f"{rep.holdout} of {rep.distinct} distinct documents ({len(idx)} rows) are held out "
                                "for domain_ppl (seeded by eval.seed) and never trained on")
        except DataError as e:
            rep.holdout_note = str(e)
    if tokens:
        rep.passes = budget_tokens * domain_share / tokens
    return rep


def save_qa(home: Path, name: str, records: list[dict], keep: list[bool] | None = None,
            seed: int = 0) -> tuple[Path, Path]:
    """The pairs the user kept, written as CPT_HOME/data/NAME.qa_train.jsonl and NAME.qa_test.jsonl (both or
    neither); distractors are redrawn from the kept pairs. ValueError when a side would be empty."""
    from ..synth import finish_qa, write_qa

    kept = [dict(r) for r, k in zip(records, keep if keep is not None else [True] * len(records)) if k]
    finish_qa(kept, seed)
    stem = Path(safe_upload_name(f"{name or 'documents'}.jsonl")).stem
    folder = (Path(home) / "data").resolve()
    return write_qa(kept, folder / f"{stem}.jsonl")
