"""domain_ppl and replay_ppl: perplexity on held-out text = exp(mean token loss over all scored tokens).

Documents longer than `window` tokens are scored in consecutive windows (no overlap), so a long document
weighs by its length, exactly as the trainer's packed batches do.
"""
from __future__ import annotations

import math

from .generate import eval_mode, model_device, padding_side
from .stats import Score, ratio_score


def document_losses(model, tokenizer, texts: list[str], window: int = 512,
                    batch_size: int = 8, progress=None) -> list[tuple[float, int]]:
    """(summed next-token loss, number of predicted tokens) per document. progress(done, total), if given, is
    called before the first batch and after each one with the documents fully scored so far."""
    import torch.nn.functional as F

    chunks: list[tuple[int, list[int]]] = []  # (document index, token ids)
    for d, text in enumerate(texts):
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids = ids + [tokenizer.eos_token_id]  # the trainer packs documents with EOS separators
        chunks += [(d, ids[i:i + window]) for i in range(0, len(ids), window) if len(ids[i:i + window]) > 1]
    totals = [[0.0, 0] for _ in texts]
    device = model_device(model)
    if progress is not None:
        progress(0, len(texts))
    with eval_mode(model), padding_side(tokenizer, "right"):
        for start in range(0, len(chunks), batch_size):
            part = chunks[start:start + batch_size]
            batch = tokenizer.pad({"input_ids": [ids for _, ids in part]}, return_tensors="pt")
            input_ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            logits = model(input_ids=input_ids, attention_mask=mask).logits.float()
            loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), input_ids[:, 1:], reduction="none")
            loss = loss * mask[:, 1:]
            for row, (d, _) in enumerate(part):
                totals[d][0] += float(loss[row].sum())
                totals[d][1] += int(mask[row, 1:].sum())
            if progress is not None:  # chunks are in document order: every document before the next chunk's is done
                nxt = start + batch_size
                progress(chunks[nxt][0] if nxt < len(chunks) else len(texts), len(texts))
    return [(s, n) for s, n in totals]


def perplexity(name: str, model, tokenizer, docs: list[dict], text_field: str = "text", window: int = 512,
               batch_size: int = 8, progress=None) -> tuple[list[Score], list[dict]]:
    """The score (exp of the token-weighted mean loss, CI by resampling documents) and per-document rows.
    progress(done, total): documents scored, after each batch (document_losses)."""
    texts = [str(d[text_field]) for d in docs]
    losses = document_losses(model, tokenizer, texts, window, batch_size, progress)
    pairs = [(s, n) for s, n in losses if n > 0]
    from .suite import item_id

    ids = [item_id(d) if item_id(d) is not None else i for i, d in enumerate(docs)]
    scored = [i for i, (_, n) in enumerate(losses) if n > 0]
    score = ratio_score(f"eval/{name}", [losses[i] for i in scored], "exp", ids=[ids[i] for i in scored],
                        unit="ppl", scored_tokens=sum(n for _, n in pairs))
    items = [{"id": ids[i], "tokens": n, "loss": s / n if n else None,
              "ppl": _safe_exp(s / n) if n else None, "text": texts[i][:200]}
             for i, (s, n) in enumerate(losses)]
    return [score], items


def _safe_exp(x: float) -> float:
    return math.exp(min(x, 700.0))
