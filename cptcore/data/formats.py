"""Raw text vs chat records, and their token ids with loss labels.

Raw text trains on every token. Chat records (messages, prompt/response, prompt/completion, question/answer,
question/answers, instruction/output) go through the model's chat template (instruct models) or a plain
"User:/Assistant:" layout (base models) and train on assistant tokens only: labels are -100 elsewhere.

Long documents are tokenized in pieces of at most CHUNK_CHARS characters, at most TOKENIZE_CHARS per tokenizer
call: a fast tokenizer holds ~150 bytes per character of its input while it works (one call on a 50 MB text
peaks at 7.2 GB), so memory follows the call, not the document (experiments/benchmarks/bench_long_document.py).
The pieces' ids are joined: a document stays one example, and held-out splits stay whole documents.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..config import SourceConfig
from .qa import answer_texts
from .sources import DataError

IGNORE = -100
TOKENIZE_BATCH = 1000  # texts (or pieces) per tokenizer call
TOKENIZE_CHARS = 1 << 18  # characters per tokenizer call (~25 MB of tokenizer memory)
CHUNK_CHARS = 1 << 16  # longest piece of a document handed to the tokenizer
PAIR_FIELDS = (("prompt", "response"), ("prompt", "completion"), ("question", "answer"), ("question", "answers"),
               ("instruction", "output"))


def detect_format(rows: list[dict], source: SourceConfig) -> str:
    """'text' or 'chat', from the source's setting or its columns; errors name the missing column."""
    cols = set(rows[0])
    is_chat = "messages" in cols or any(a in cols and b in cols for a, b in PAIR_FIELDS)
    if source.format == "chat" or (source.format == "auto" and is_chat):
        if not is_chat:
            raise DataError(f"{source.path}: chat format needs a 'messages' column or a "
                            f"{', '.join(a + '/' + b for a, b in PAIR_FIELDS)} pair "
                            f"(found: {', '.join(sorted(cols))})")
        return "chat"
    if source.text_field not in cols:
        raise DataError(f"{source.path}: missing column {source.text_field!r} (found: {', '.join(sorted(cols))}); "
                        f"set text_field or use chat records")
    return "text"


def to_messages(rec: dict, where: str) -> list[dict]:
    if "messages" in rec:
        msgs = rec["messages"]
        if not isinstance(msgs, list) or not all(isinstance(m, dict) and "role" in m and "content" in m for m in msgs):
            raise DataError(f"{where}: 'messages' must be a list of {{role, content}} objects")
        return [{"role": m["role"], "content": str(m["content"])} for m in msgs]
    for a, b in PAIR_FIELDS:
        if a in rec and b in rec:
            answer = rec[b]
            if b == "answers":  # a list of strings or SQuAD {text, answer_start} objects: train on the first
                answer = next(iter(answer_texts(answer)), None)
                if answer is None:
                    raise DataError(f"{where}: 'answers' holds no answer text (an unanswerable question?)")
            return [{"role": "user", "content": str(rec[a])}, {"role": "assistant", "content": str(answer)}]
    raise DataError(f"{where}: record has no messages or {', '.join(a + '/' + b for a, b in PAIR_FIELDS)} fields")


def plain_chat(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The layout base models see: no special tokens they were never trained on."""
    names = {"user": "Question", "assistant": "Answer", "system": "Context"}
    text = "".join(f"{names.get(m['role'], m['role'].title())}: {m['content']}\n" for m in messages)
    return text + ("Answer:" if add_generation_prompt else "")


def render_chat(tokenizer, messages: list[dict], kind: str, add_generation_prompt: bool = False) -> str:
    if kind == "instruct" and tokenizer.chat_template:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return plain_chat(messages, add_generation_prompt)


def encode_chat(tokenizer, messages: list[dict], kind: str) -> tuple[list[int], list[int]]:
    """Token ids and labels for one conversation; labels keep only assistant turns (and their end marker)."""
    full = render_chat(tokenizer, messages, kind)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = len(render_chat(tokenizer, messages[:i], kind, add_generation_prompt=True))
        if kind != "instruct" or not tokenizer.chat_template:
            start = len(render_chat(tokenizer, messages[:i], kind)) + len("Answer:")
        end = len(render_chat(tokenizer, messages[: i + 1], kind))
        if not full.startswith(render_chat(tokenizer, messages[: i + 1], kind)):
            raise DataError("the chat template does not render conversations prefix-consistently; "
                            "cannot locate assistant tokens")
        spans.append((start, end))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = [tid if any(s <= a and b <= e and b > a for s, e in spans) else IGNORE
              for tid, (a, b) in zip(ids, enc["offset_mapping"])]
    if kind != "instruct" or not tokenizer.chat_template:  # base layout: close each answer with EOS
        ids.append(tokenizer.eos_token_id)
        labels.append(tokenizer.eos_token_id)
    return ids, labels


def text_chunks(text: str, size: int = CHUNK_CHARS) -> Iterator[str]:
    """Consecutive pieces of `text`, each of at most `size` characters, that join back into it (one at a time:
    a list of them would be one more copy of the document).

    Each cut falls just before a space between two words: GPT-2-style byte-level BPE tokenizers (SmolLM2, the
    tiny test tokenizer; Llama 3 and Qwen split there too) start a new token at that space, so the pieces' ids
    equal one call's ids. Without such a space in the
    last half of a piece it cuts before any whitespace, else (no whitespace at all) anywhere: only those cuts
    can change a token or two at the cut."""
    start = 0
    while len(text) - start > size:
        lo, hi = start + max(1, size // 2), start + size  # hi < len(text), so text[cut + 1] exists
        cut = text.rfind(" ", lo, hi)
        while cut != -1 and (text[cut - 1].isspace() or text[cut + 1].isspace()):
            cut = text.rfind(" ", lo, cut)
        if cut == -1:
            cut = max(text.rfind(ch, lo, hi) for ch in "\n\t\r ")
        if cut == -1:
            cut = hi
        yield text[start:cut]
        start = cut
    yield text[start:]


def encode_texts(tokenizer, texts: list[str], chunk_chars: int = CHUNK_CHARS, batch_chars: int = TOKENIZE_CHARS,
                 end: int | None = None) -> list[np.ndarray]:
    """Token ids (int32) of each text, without special tokens, then `end` if given (joined in the same copy).

    Texts are cut by text_chunks and the pieces sent in calls of at most TOKENIZE_BATCH pieces and `batch_chars`
    characters (a piece alone may reach `chunk_chars`), so tokenizer memory is bounded by the call however long
    a document is."""
    parts: list[list[np.ndarray] | None] = [[] for _ in texts]
    call, size = [], 0  # the (text index, piece) pairs of the next tokenizer call, and their characters
    for i, text in enumerate(texts):
        for piece in text_chunks(text, chunk_chars) if len(text) > chunk_chars else [text]:
            if call and (size + len(piece) > batch_chars or len(call) >= TOKENIZE_BATCH):
                _tokenize_call(tokenizer, call, parts)
                call, size = [], 0
            call.append((i, piece))
            size += len(piece)
    if call:
        _tokenize_call(tokenizer, call, parts)
    out, tail = [], [] if end is None else [np.asarray([end], dtype=np.int32)]
    for i, p in enumerate(parts):
        parts[i] = None  # each document's pieces go as soon as they are joined
        out.append(np.concatenate(p + tail) if p or tail else np.zeros(0, np.int32))
    return out


def _tokenize_call(tokenizer, call: list[tuple[int, str]], parts: list[list[np.ndarray]]) -> None:
    ids = tokenizer([piece for _, piece in call], add_special_tokens=False)["input_ids"]
    for (owner, _), piece_ids in zip(call, ids):
        parts[owner].append(np.asarray(piece_ids, dtype=np.int32))


def encode_rows(rows: list[dict], fmt: str, source: SourceConfig, tokenizer, kind: str,
                first_row: int = 1) -> list[tuple]:
    """(ids, labels) per row (int32 arrays for text, lists for chat). Text rows get an EOS separator appended;
    nothing is truncated. first_row: the number of rows[0] in its source, for errors."""
    out = []
    eos = tokenizer.eos_token_id
    if fmt == "text":
        texts = []
        for i, r in enumerate(rows, first_row):
            t = r.get(source.text_field)
            if not isinstance(t, str):
                raise DataError(f"{source.path}: row {i}: {source.text_field!r} is missing or not text")
            texts.append(t)
        keep = [t for t in texts if t and not t.isspace()]  # (not t.strip(): a copy of each document)
        for ids in encode_texts(tokenizer, keep, end=eos):  # int32 arrays: 4 bytes a token, not ~36 in lists
            out.append((ids, ids))  # raw text trains on every token: labels are the ids
        return out
    for i, r in enumerate(rows, first_row):
        out.append(encode_chat(tokenizer, to_messages(r, f"{source.path}: row {i}"), kind))
    return out


def facts_source_rows(rows: list[dict], text_field: str) -> list[dict]:
    from ..synth import facts_from_documents  # Knowledge-Instruct without a model

    facts = facts_from_documents(rows, text_field)
    if not facts:
        raise DataError("domain_as=facts: no sentence names its document's entity (give documents an "
                        "'entity' field, or write facts with `cpt synth DOCS --kind facts`)")
    return facts


def source_entry(source: SourceConfig, tokenizer, kind: str, loss_on: str = "answers",
                 domain_as: str = "as_is", num_proc: int = 1, progress: bool = False) -> dict:
    """One pass over a source, counted (what `cpt plan` and the Launch budget need): from the token cache,
    which this fills if needed, so training reads the same tokens without tokenizing again."""
    from .cache import cached_source

    return cached_source(source, tokenizer, kind, loss_on, domain_as, num_proc, progress)[1]
