"""Evaluations follow the data: which documents each evaluator measures, and the held-out split of a user's own.

An evaluation source left at `auto` (the default of eval.domain_heldout, eval.replay_heldout, eval.qa_source)
resolves here, once per use, from the data the run trains on:
- the role's data is bundled (`builtin:`): the bundled held-out set of that role;
- the role's data is the user's own: a seeded held-out split **of those documents**. The first user source of
  the role trains with `holdout: train` (its held-out documents removed) and the evaluator reads the same source
  with `holdout: heldout`. Whole documents (rows) are held out, never chunks: documents with the same
  normalized text share a key and fall on the same side, so a duplicate cannot leak a held-out document.
- QA: the user's `NAME.qa_test.jsonl` written by `cpt synth` beside the `NAME.qa_train.jsonl` in data.qa; with
  none, knowledge_mc and knowledge_qa are not run (a question about other documents measures noise).
`none` turns an evaluator off. Splits apply only when the evaluator that reads them runs, so a run without
evaluations trains on everything.

Split size: 5% of the documents, at least HOLDOUT_FLOOR = 8 (fewer gives a paired bootstrap over documents too
few distinct resamples to mean anything) and at most HOLDOUT_CAP = 200 (eval.max_docs samples 32 per
evaluation; a large corpus loses no more than 200 documents to evaluation). A source with fewer than
2 x HOLDOUT_FLOOR documents is refused with what to do. Which documents: the k smallest
sha256(f"{seed}:{key}") over the distinct document keys, so the split does not depend on row order.
Imports no torch.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..config import RunConfig, SourceConfig

HOLDOUT_SHARE = 0.05
HOLDOUT_FLOOR = 8
HOLDOUT_CAP = 200
BUNDLED = {"domain": "builtin:knowledge_heldout", "replay": "builtin:replay_heldout", "qa": "builtin:knowledge_qa_test"}
# which evaluators read which held-out field, and the data role it is split from
READERS = {"domain_heldout": ("domain", ("domain_ppl",)),
           "replay_heldout": ("replay", ("replay_ppl", "general_kl"))}
QA_READERS = ("knowledge_mc", "knowledge_qa")


def is_bundled(source: SourceConfig) -> bool:
    return source.path.startswith("builtin:")


def document_key(text: str) -> str:
    """sha256 of the text normalized as the leak guard normalizes it (lower-case, punctuation deleted, whitespace
    collapsed): the identity of a document for the split, so near-copies fall on the same side."""
    from .leaks import normalize

    return hashlib.sha256(normalize(text).encode("utf-8")).hexdigest()


def row_text(row: dict, text_field: str) -> str:
    if text_field in row:
        return str(row[text_field])
    return " ".join(f"{k}={row[k]}" for k in sorted(row) if not str(k).startswith("_"))  # chat rows: all fields


def holdout_count(n: int) -> int:
    return min(HOLDOUT_CAP, max(HOLDOUT_FLOOR, round(HOLDOUT_SHARE * n)))


def split_indices(rows: list[dict], source: SourceConfig) -> tuple[list[int], list[str]]:
    """(indices of the held-out rows, their document keys); DataError when the source is too small."""
    keys = [document_key(row_text(r, source.text_field)) for r in rows]
    held = holdout_keys(keys, source)
    idx = [i for i, key in enumerate(keys) if key in held]
    return idx, [keys[i] for i in idx]


def holdout_keys(keys, source: SourceConfig) -> set[str]:
    """The document keys held out among `keys` (an iterable: sources.iter_records streams them); DataError when
    the source is too small."""
    from .sources import DataError

    distinct = sorted(set(keys))
    if len(distinct) < 2 * HOLDOUT_FLOOR:
        raise DataError(f"{source.path}: {len(distinct)} distinct document(s), too few to hold out "
                        f"{HOLDOUT_FLOOR} for evaluation and train on the rest (at least {2 * HOLDOUT_FLOOR}): "
                        "add documents (split one long file into several), or set eval.domain_heldout / "
                        "eval.replay_heldout to a separate file, or to none")
    k = holdout_count(len(distinct))
    rank = sorted(distinct, key=lambda d: hashlib.sha256(f"{source.holdout_seed}:{d}".encode()).hexdigest())
    return set(rank[:k])


def qa_test_beside(qa: list[SourceConfig]) -> SourceConfig | None:
    """The qa_test file `cpt synth` wrote next to a user's qa_train file in data.qa (None without one)."""
    for src in qa:
        if is_bundled(src) or "qa_train" not in Path(src.path).name:
            continue
        test = Path(src.path).with_name(Path(src.path).name.replace("qa_train", "qa_test"))
        if test.is_file():
            return SourceConfig(path=str(test))
    return None


def resolve(cfg: RunConfig) -> RunConfig:
    """The config with every `auto` evaluation source made concrete, the held-out markers set on the training
    sources, and evaluators without a source dropped. Idempotent: a resolved config comes back unchanged."""
    e = cfg.eval
    updates, data_updates = {}, {}
    evaluators = list(e.evaluators)
    for field, (role, readers) in READERS.items():
        src = getattr(e, field)
        if src.path == "none":
            evaluators = [x for x in evaluators if x not in readers]
            continue
        if src.path != "auto":
            continue
        sources = getattr(cfg.data, role)
        own = [i for i, s in enumerate(sources) if not is_bundled(s)]
        if not own or not any(x in evaluators for x in readers):
            updates[field] = SourceConfig(path=BUNDLED[role]) if not own else src
            continue
        first = sources[own[0]].model_copy(update={"holdout": "train", "holdout_seed": e.seed})
        data_updates[role] = [first if i == own[0] else s for i, s in enumerate(sources)]
        updates[field] = first.model_copy(update={"holdout": "heldout"})
    if e.qa_source.path == "none":
        evaluators = [x for x in evaluators if x not in QA_READERS]
    elif e.qa_source.path == "auto":
        own_docs = any(not is_bundled(s) for s in cfg.data.domain)
        found = qa_test_beside(cfg.data.qa) if own_docs else SourceConfig(path=BUNDLED["qa"])
        if found is None:
            evaluators = [x for x in evaluators if x not in QA_READERS]
            updates["qa_source"] = SourceConfig(path="none")
        else:
            updates["qa_source"] = found
    if evaluators != e.evaluators:
        updates["evaluators"] = evaluators
    if not updates and not data_updates:
        return cfg
    out = {"eval": e.model_copy(update=updates)}
    if data_updates:
        out["data"] = cfg.data.model_copy(update=data_updates)
    return cfg.model_copy(update=out)


def describe_sources(cfg: RunConfig) -> dict[str, str]:
    """One line per evaluator saying which data it measures (or why it is not run), for the launch message,
    the manifest and Monitor's panels. Reads the held-out splits' sizes (no torch)."""
    requested = cfg.eval.evaluators
    r = resolve(cfg)
    e = r.eval
    out = {}
    for field, (role, readers) in READERS.items():
        src = getattr(e, field)
        for name in readers:
            if name not in requested:
                continue
            if name not in e.evaluators:
                out[name] = f"not run ({field}: none)"
            else:
                out[name] = source_line(src, role)
    for name in QA_READERS:
        if name not in requested:
            continue
        if name in e.evaluators:
            out[name] = ("bundled test questions about the fictional entities (builtin:knowledge_qa_test)"
                         if is_bundled(e.qa_source) else f"questions about your documents: {e.qa_source.path}")
        else:
            out[name] = ("not run: no QA about your documents (generate it with `cpt synth DOCS` or on the Data "
                         "page, then train on NAME.qa_train.jsonl as data.qa or set eval.qa_source)")
    return out


def source_line(src: SourceConfig, role: str) -> str:
    if is_bundled(src):
        what = {"domain": "bundled fictional-town held-out documents", "replay": "bundled held-out general text"}
        return f"{what.get(role, 'bundled data')} ({src.path})"
    if src.holdout == "heldout":
        from .sources import iter_records

        try:
            n = sum(1 for _ in iter_records(src.model_copy(update={"holdout": "all"})))
            k = sum(1 for _ in iter_records(src))
            return (f"held-out split of your {role} data {src.path}: {k} of {n} documents "
                    f"(seed {src.holdout_seed}), never trained on")
        except ValueError as err:  # DataError: the launch check reports it
            return f"held-out split of {src.path}: {err}"
    return f"{src.path}"


def heldout_manifest(cfg: RunConfig) -> dict:
    """Per role with an automatic split: the source, how many documents of how many, which rows, their keys."""
    from .sources import iter_records

    r = resolve(cfg)
    out = {}
    for field, (role, _) in READERS.items():
        src = getattr(r.eval, field)
        if src.holdout != "heldout":
            continue
        every = [document_key(row_text(r, src.text_field)) for r in iter_records(src.model_copy(update={"holdout": "all"}))]
        held = holdout_keys(every, src)
        idx = [i for i, key in enumerate(every) if key in held]
        keys = [every[i] for i in idx]
        out[role] = {"source": src.path, "documents": len(idx), "of": len(every), "seed": src.holdout_seed,
                     "rows": idx, "sha256": keys}
    return out
