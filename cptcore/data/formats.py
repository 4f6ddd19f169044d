"""Raw text vs chat records, and their token ids with loss labels.

Raw text trains on every token. Chat records (messages, prompt/response, question/answer) go through the
model's chat template (instruct models) or a plain "User:/Assistant:" layout (base models) and train on
assistant tokens only: labels are -100 elsewhere.
"""
from __future__ import annotations

import numpy as np

from ..config import SourceConfig
from .sources import DataError, local_path, read_records, sha256, source_files

IGNORE = -100
TOKENIZE_BATCH = 1000
PAIR_FIELDS = (("prompt", "response"), ("question", "answer"), ("instruction", "output"))


def detect_format(rows: list[dict], source: SourceConfig) -> str:
    """'text' or 'chat', from the source's setting or its columns; errors name the missing column."""
    cols = set(rows[0])
    is_chat = "messages" in cols or any(a in cols and b in cols for a, b in PAIR_FIELDS)
    if source.format == "chat" or (source.format == "auto" and is_chat):
        if not is_chat:
            raise DataError(f"{source.path}: chat format needs a 'messages' column or prompt/response pair "
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
            return [{"role": "user", "content": str(rec[a])}, {"role": "assistant", "content": str(rec[b])}]
    raise DataError(f"{where}: record has no messages or prompt/response fields")


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


def encode_rows(rows: list[dict], fmt: str, source: SourceConfig, tokenizer, kind: str) -> list[tuple]:
    """(ids, labels) per row (int32 arrays for text, lists for chat). Text rows get an EOS separator appended;
    nothing is truncated."""
    out = []
    eos = tokenizer.eos_token_id
    if fmt == "text":
        texts = []
        for i, r in enumerate(rows, 1):
            t = r.get(source.text_field)
            if not isinstance(t, str):
                raise DataError(f"{source.path}: row {i}: {source.text_field!r} is missing or not text")
            texts.append(t)
        keep = [t for t in texts if t.strip()]
        for k in range(0, len(keep), TOKENIZE_BATCH):  # int32 arrays as we go: 4 bytes a token, not ~36 in lists
            for ids in tokenizer(keep[k:k + TOKENIZE_BATCH], add_special_tokens=False)["input_ids"]:
                arr = np.asarray(list(ids) + [eos], dtype=np.int32)
                out.append((arr, arr))  # raw text trains on every token: labels are the ids
        return out
    for i, r in enumerate(rows, 1):
        out.append(encode_chat(tokenizer, to_messages(r, f"{source.path}: row {i}"), kind))
    return out


def facts_source_rows(rows: list[dict], text_field: str) -> list[dict]:
    from ..synth import facts_from_documents  # Knowledge-Instruct without a model

    facts = facts_from_documents(rows, text_field)
    if not facts:
        raise DataError("domain_as=facts: no sentence names its document's entity (give documents an "
                        "'entity' field, or write facts with `cpt synth DOCS --kind facts`)")
    return facts


def encode_source(source: SourceConfig, tokenizer, kind: str, loss_on: str = "answers",
                  domain_as: str = "as_is") -> tuple[list, dict]:
    """Encode one source: its (ids, labels) examples and its manifest entry (rows, tokens, loss tokens, files).

    domain_as=facts turns documents into fact instructions; loss_on=all also trains on prompt tokens."""
    rows = read_records(source)
    if domain_as == "facts":
        rows = facts_source_rows(rows, source.text_field)
        source = source.model_copy(update={"format": "chat"})
    fmt = detect_format(rows, source)
    encoded = encode_rows(rows, fmt, source, tokenizer, kind)
    if not encoded:
        raise DataError(f"{source.path}: every row is empty")
    if loss_on == "all":  # also learn the prompts (raw text already trains on every token)
        encoded = [(ids, ids) for ids, _ in encoded]
    n_tokens = sum(len(ids) for ids, _ in encoded)
    n_loss = sum(len(ids) if lab is ids else int(np.count_nonzero(np.asarray(lab) != IGNORE)) for ids, lab in encoded)
    if n_loss == 0:
        raise DataError(f"{source.path}: no trainable tokens (chat records without assistant turns?)")
    files = [{"path": str(f), "bytes": f.stat().st_size, "sha256": sha256(f)} for f in source_files(source)]
    entry = {"path": source.path, "local": local_path(source) is not None, "format": fmt, "rows": len(rows),
             "examples": len(encoded), "tokens": n_tokens, "loss_tokens": n_loss, "files": files}
    return encoded, entry


def source_entry(source: SourceConfig, tokenizer, kind: str, loss_on: str = "answers",
                 domain_as: str = "as_is") -> dict:
    """One pass over a source, counted (what `cpt plan` and the Launch budget need)."""
    return encode_source(source, tokenizer, kind, loss_on, domain_as)[1]
