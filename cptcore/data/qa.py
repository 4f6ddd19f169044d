"""QA pairs in the formats people already have, read the same way for evaluation and for training.

A row is QA when it has {question, answer}, {question, answers} (strings, SQuAD {text, answer_start} objects or
the hub's {text: [...], answer_start: [...]}), {prompt, completion}, or chat `messages` with one user turn and
one assistant turn. SQuAD v1/v2 JSON files ({"data": [{"paragraphs": [{"qas": ...}]}]}) are flattened by the
reader into one row per answerable question, or into one row per paragraph when read as documents.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .sources import DataError

QA_FIELDS = "question/answer, question/answers, prompt/completion, messages"


def answer_texts(value) -> list[str]:
    """The distinct non-empty answer strings of an `answers` value, in order (first = the answer)."""
    if isinstance(value, dict):  # the hub's SQuAD column: {text: [...], answer_start: [...]}
        value = value.get("text")
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    out = []
    for a in value:
        text = a.get("text") if isinstance(a, dict) else a
        text = "" if text is None else str(text).strip()
        if text and text not in out:
            out.append(text)
    return out


def _chat_pair(msgs, where: str) -> tuple[str, str]:
    if not isinstance(msgs, list) or not all(isinstance(m, dict) and "role" in m and "content" in m for m in msgs):
        raise DataError(f"{where}: 'messages' must be a list of {{role, content}} objects")
    user = [str(m["content"]) for m in msgs if m["role"] == "user"]
    assistant = [str(m["content"]) for m in msgs if m["role"] == "assistant"]
    if len(user) != 1 or len(assistant) != 1:
        raise DataError(f"{where}: 'messages' must hold one user turn and one assistant turn to be a QA pair "
                        f"(found {len(user)} user, {len(assistant)} assistant)")
    return user[0], assistant[0]


def qa_pair(row: dict, where: str) -> tuple[str, list[str]] | None:
    """(question, gold answers) of one row, the first answer being the answer; None when it has no QA fields.
    An empty answer list means the question is unanswerable (SQuAD v2)."""
    if "question" in row and "answer" in row:
        first = "" if row["answer"] is None else str(row["answer"]).strip()
        rest = [a for a in answer_texts(row.get("answers")) if a != first]
        return str(row["question"] or ""), ([first] + rest) if first else rest
    if "question" in row and "answers" in row:
        return str(row["question"] or ""), answer_texts(row["answers"])
    if "prompt" in row and "completion" in row:
        return str(row["prompt"] or ""), answer_texts(row["completion"])
    if "messages" in row:
        question, answer = _chat_pair(row["messages"], where)
        return question, answer_texts(answer)
    return None


def _impossible(value) -> bool:
    """SQuAD v2's is_impossible, also when a CSV or parquet file holds it as text or 0/1."""
    return value is not None and str(value).strip().lower() in ("true", "1")


def _row_number(row: dict, i: int) -> int:
    """1-based row of the source: evaluation samples keep their source index in `_row`."""
    return row["_row"] + 1 if isinstance(row.get("_row"), int) else i


def qa_items(rows: list[dict], where: str) -> list[dict]:
    """The rows with `question`, `answer` (str) and `answers` (list[str], the answer first) set, other fields kept.

    Unanswerable rows (is_impossible true, or an empty answers list) are skipped with a warning on stderr;
    rows that are not QA, or have no question or an empty answer, raise a DataError naming `where` and the row."""
    out, skipped = [], 0
    for i, row in enumerate(rows, 1):
        n = _row_number(row, i)
        pair = qa_pair(row, f"{where}: row {n}")
        if pair is None:
            found = ", ".join(sorted(k for k in row if not str(k).startswith("_"))) or "nothing"
            raise DataError(f"{where}: row {n}: no recognizable QA fields ({QA_FIELDS}); found: {found}")
        question, answers = pair
        if not question.strip():
            raise DataError(f"{where}: row {n}: empty question")
        if _impossible(row.get("is_impossible")) or (not answers and "answers" in row and "answer" not in row):
            skipped += 1
            continue
        if not answers:
            raise DataError(f"{where}: row {n}: empty answer")
        out.append({**row, "question": question.strip(), "answer": answers[0], "answers": answers})
    if skipped:
        warn_unanswerable(where, skipped, len(rows))
    if rows and not out:
        raise DataError(f"{where}: no answerable questions ({skipped} of {len(rows)} are unanswerable)")
    return out


def warn_unanswerable(where, skipped: int, total: int) -> None:
    print(f"warning: {where}: skipped {skipped} of {total} unanswerable questions", file=sys.stderr)


# --- SQuAD JSON files --------------------------------------------------------------------------
def is_squad(data) -> bool:
    """A SQuAD v1/v2 file: {"data": [{"title", "paragraphs": [...]}, ...]}."""
    articles = data.get("data") if isinstance(data, dict) else None
    return (isinstance(articles, list) and bool(articles)
            and all(isinstance(a, dict) and isinstance(a.get("paragraphs"), list) for a in articles))


def squad_rows(data: dict, path: Path, text_field: str) -> list[dict]:
    """One row per answerable question {id, question, answer, answers, context, title}; with text_field
    `context`, one row per distinct paragraph {context, title} instead, so the same file serves as documents."""
    docs, rows, seen, total = [], [], set(), 0
    for a, article in enumerate(data["data"]):
        title = article.get("title")
        for p in article["paragraphs"]:
            if not isinstance(p, dict):
                raise DataError(f"{path}: data[{a}]: each paragraph must be an object with context and qas")
            context = p.get("context")
            if text_field == "context":
                if isinstance(context, str) and context.strip() and context not in seen:
                    seen.add(context)
                    docs.append({"context": context, "title": title})
                continue
            for q in p.get("qas") or []:
                total += 1
                answers = answer_texts(q.get("answers"))
                if _impossible(q.get("is_impossible")) or not answers:
                    continue
                rows.append({"id": q.get("id"), "question": str(q.get("question") or "").strip(),
                             "answer": answers[0], "answers": answers, "context": context, "title": title})
    if text_field == "context":
        if not docs:
            raise DataError(f"{path}: SQuAD file has no paragraph contexts")
        return docs
    if not rows:
        raise DataError(f"{path}: SQuAD file has no answerable questions (0 of {total})")
    if len(rows) < total:
        warn_unanswerable(path, total - len(rows), total)
    return rows
