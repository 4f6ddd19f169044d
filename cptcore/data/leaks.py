"""Leak guard: a run must not train on its own evaluation items.

The evaluation items are every held-out QA pair (question + answer of eval.qa_source), every held-out
document (eval.domain_heldout, eval.replay_heldout) and every held-out conversation (eval.instruct_heldout, its
turns in order), whether or not their evaluator is enabled: a set named as held out stays held out. A training
source the plan reads (data.domain, replay, instruct, qa, facts, or a stage's own sources) is refused with a
DataError naming the file, row and evaluation set when one of its records contains an item: a text record holding
a held-out document (alone or inside a longer text), or a chat record whose turns (user + assistant, in order)
hold a held-out question followed by its answer, or a held-out conversation.

Normalization, for items and records alike (`normalize`): lower-case; delete every character that is not a
letter, digit, underscore or whitespace (Python's `[^\\w\\s]`, Unicode-aware); collapse runs of whitespace to one
space; strip the ends. So "Who founded Peimaevre Works?" + "Dru Latryl." and "who founded peimaevre works dru
latryl" are the same item. Matching is on whole words: each item is hashed by its first ANCHOR words, every
ANCHOR-word window of a record is looked up, and a hit is confirmed word for word, so the check is linear in the
training words. Items shorter than ANCHOR words match only a record that is exactly the item.

Only local files and builtin: sets are read (hub datasets are not downloaded for the check). Imports no torch.
"""
from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path

from ..config import ROLES, RunConfig, SourceConfig
from .formats import detect_format, to_messages
from .sources import ASSETS, DataError, iter_records, local_path, source_files

ANCHOR = 4  # words hashed per item; a QA pair is at least this long ("what is x known for lace")
DATA_FIELDS = ("domain", "replay", "instruct", "qa", "facts")
EVAL_SETS = (("qa_source", "held-out QA pair"), ("domain_heldout", "held-out document"),
             ("replay_heldout", "held-out document"), ("instruct_heldout", "held-out conversation"))
_PUNCT, _SPACE = re.compile(r"[^\w\s]"), re.compile(r"\s+")


def normalize(text: str) -> str:
    """Lower-case, punctuation deleted, whitespace collapsed (see the module docstring)."""
    return _SPACE.sub(" ", _PUNCT.sub("", text.lower())).strip()


def _key(source: SourceConfig) -> str:
    return json.dumps(source.model_dump(), sort_keys=True)


def _file_rows(source: SourceConfig) -> Iterator[tuple[Path, Iterator[dict]]]:
    """(file, its rows one at a time) of a local source, with the source's settings and its max_rows over all
    files (each file's rows must be read before the next file is asked for)."""
    if source.holdout != "all":  # a held-out split is made over the whole source, not per file
        yield Path(source.path), iter_records(source)
        return
    left = source.max_rows
    for f in source_files(source):
        if left is not None and left <= 0:
            break
        seen = [0]

        def counted(rows):
            for r in rows:
                seen[0] += 1
                yield r

        yield f, counted(iter_records(source.model_copy(update={"path": str(f), "max_rows": left})))
        left = None if left is None else left - seen[0]


def _record_text(rec: dict, fmt: str, source: SourceConfig, where: str) -> str:
    if fmt == "chat":
        return " ".join(m["content"] for m in to_messages(rec, where))
    return str(rec.get(source.text_field) or "")


def _item_text(rec: dict, field: str, source: SourceConfig, where: str) -> str:
    """What an evaluation item says: question + answer, a conversation's turns, or a document's text."""
    if field == "qa_source":  # any QA format the evaluation reads (cptcore/data/qa.py)
        from .qa import qa_pair

        pair = qa_pair(rec, where)
        question, answers = (pair[0].strip(), pair[1]) if pair else ("", [])
        return f"{question} {answers[0].strip()}" if question and answers else ""
    if field == "instruct_heldout":
        return " ".join(m["content"] for m in to_messages(rec, where))
    return str(rec.get(source.text_field) or "")


class EvalIndex:
    """The run's evaluation items as normalized word tuples, hashed by their first ANCHOR words."""

    def __init__(self, cfg: RunConfig):
        self.anchors: dict[tuple, list[tuple[tuple, tuple]]] = {}  # first words -> (item words, item)
        self.whole: dict[str, tuple] = {}  # normalized short item -> item
        for field, what in EVAL_SETS:
            source = getattr(cfg.eval, field)
            path = local_path(source)
            if path is None or not path.exists():  # hub sets are not fetched; a missing file is its evaluator's error
                continue
            i = 0
            for f, rows in _file_rows(source):
                for rec in rows:
                    i += 1
                    self.add(normalize(_item_text(rec, field, source, f"{f}: row {i}")), (what, i, field, source.path))

    def add(self, norm: str, item: tuple) -> None:
        words = tuple(norm.split())
        if not words:
            return
        if len(words) < ANCHOR:
            self.whole.setdefault(norm, item)
        else:
            self.anchors.setdefault(words[:ANCHOR], []).append((words, item))

    def find(self, norm: str) -> tuple | None:
        """(what, row, eval field, eval path) of the first evaluation item a normalized record contains."""
        if norm in self.whole:
            return self.whole[norm]
        words = norm.split()
        for i in range(len(words) - ANCHOR + 1):
            for item_words, item in self.anchors.get(tuple(words[i:i + ANCHOR]), ()):
                if tuple(words[i:i + len(item_words)]) == item_words:
                    return item
        return None


def training_sources(cfg: RunConfig, plan) -> list[tuple[str, SourceConfig]]:
    """(config field, source) of every source the plan trains on, each once."""
    from .heldout import resolve

    cfg = resolve(cfg)
    field_of = {_key(s): f"data.{f}" for f in reversed(DATA_FIELDS) for s in getattr(cfg.data, f)}
    out, seen = [], set()
    for stage in plan.stages:
        for role in ROLES:
            if role not in stage.roles:
                continue
            for s in stage.data[role]:
                if _key(s) not in seen:
                    seen.add(_key(s))
                    out.append((field_of.get(_key(s), f"stage {stage.name!r} {role}"), s))
    return out


def check_leaks(cfg: RunConfig, plan) -> None:
    """Refuse (DataError, one line) a run whose training sources contain one of its evaluation items."""
    from .heldout import resolve

    cfg = resolve(cfg)
    index = EvalIndex(cfg)
    if not index.anchors and not index.whole:
        return
    for field, source in training_sources(cfg, plan):
        if local_path(source) is None or source.streaming:  # a stream is not read ahead of training
            continue
        for f, rows in _file_rows(source):  # one row at a time: the corpus may be larger than memory
            first = next(rows, None)
            if first is None:
                continue
            fmt = detect_format([first], source)
            hits, n = [], 0
            for n, rec in enumerate(itertools.chain([first], rows), 1):
                item = index.find(normalize(_record_text(rec, fmt, source, f"{f}: row {n}")))
                if item:
                    hits.append((n, item))
            if hits:
                i, (what, row, eval_field, eval_path) = hits[0]
                name = f"{source.path} ({f.relative_to(ASSETS.parents[1])})" if source.path.startswith("builtin:") \
                    else str(f)
                raise DataError(f"{field} {name} row {i} contains {what} {row} of eval.{eval_field} ({eval_path}); "
                                f"{len(hits)} of its {n} rows hold evaluation items: a run must not train "
                                f"on its own evaluation data (remove them, or set eval.{eval_field} to other data)")
