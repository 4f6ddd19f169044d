"""general_kl: how far the model's next-token distributions moved from the starting model's (nats per token).

Perplexity on general text cannot show forgetting when the replay data is text of the same kind: training
on it lowers the perplexity while the model changes. The KL divergence KL(start || now) per token, averaged
over held-out general text and chat-formatted held-out instruction responses, is 0 at step 0 and grows with
every change of behaviour, whichever way the likelihood of the text moves.

The starting model's distributions are computed once (at step 0) and kept: for each scored position its
top-k tokens' log-probabilities (`eval.kl_top_k`). The KL is then taken between the two distributions
coarsened to those k tokens plus one "all others" bucket. Coarsening never increases a KL (data-processing
inequality), so the value is a lower bound of the full-vocabulary KL; with k = 32 the bucket holds a few
percent of the starting model's mass on general text.
"""
from __future__ import annotations

from pathlib import Path

from .generate import eval_mode, model_device, padding_side
from .stats import Score, ratio_score

IGNORE = -100


def encode_items(tokenizer, texts: list[tuple], chats: list[tuple], kind: str, window: int) -> list[tuple]:
    """(id, ids, scored) per item: documents score every next token, conversations the assistant tokens.

    texts / chats are (id, text) / (id, messages) pairs; each item is cut to `window` tokens."""
    from ..data.formats import encode_chat

    out = []
    for item_id, text in texts:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"][:window]
        out.append((item_id, ids, [True] * (len(ids) - 1)))
    for item_id, messages in chats:
        ids, labels = encode_chat(tokenizer, messages, kind)
        ids, labels = ids[:window], labels[:window]
        out.append((item_id, ids, [lab != IGNORE for lab in labels[1:]]))  # position t predicts token t+1
    return [it for it in out if any(it[2])]


def _log_probs(model, tokenizer, items: list[tuple], batch_size: int, progress=None):
    """Yields (item index, log-probs [scored positions, vocab]) for every item; progress(done, total), if given,
    before the first batch and once a batch's items have been consumed."""
    import torch

    device = model_device(model)
    if progress is not None:
        progress(0, len(items))
    with eval_mode(model), padding_side(tokenizer, "right"):
        for start in range(0, len(items), batch_size):
            part = items[start:start + batch_size]
            batch = tokenizer.pad({"input_ids": [ids for _, ids, _ in part]}, return_tensors="pt")
            logits = model(input_ids=batch["input_ids"].to(device),
                           attention_mask=batch["attention_mask"].to(device)).logits.float()
            for row, (_, ids, scored) in enumerate(part):
                pos = torch.tensor([t for t, s in enumerate(scored) if s], device=device)
                yield start + row, torch.log_softmax(logits[row, pos], dim=-1)
            if progress is not None:
                progress(min(start + batch_size, len(items)), len(items))


def reference(model, tokenizer, items: list[tuple], top_k: int, batch_size: int = 8, progress=None) -> dict:
    """The starting model's top-k log-probs at every scored position of every item (kept on the CPU).
    progress(done, total): items, after each batch."""
    ref = {}
    for i, logp in _log_probs(model, tokenizer, items, batch_size, progress):
        vals, idx = logp.topk(min(top_k, logp.shape[-1]), dim=-1)
        ref[items[i][0]] = {"logp": vals.cpu(), "idx": idx.cpu()}
    return ref


def save_reference(ref: dict, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(ref, tmp)
    tmp.replace(path)


def load_reference(path: Path) -> dict:
    import torch

    return torch.load(path, weights_only=True)


def kl_to_reference(ref_logp, ref_idx, logp):
    """Per-position KL(start || now) over the k reference tokens plus the bucket of all other tokens."""
    import torch

    p = ref_logp.exp()
    q_logp = logp.gather(-1, ref_idx)
    tiny = torch.finfo(p.dtype).tiny
    p_rest = (1 - p.sum(-1)).clamp(min=tiny)
    q_rest = (1 - q_logp.exp().sum(-1)).clamp(min=tiny)
    return (p * (ref_logp - q_logp)).sum(-1) + p_rest * (p_rest.log() - q_rest.log())


def general_kl(model, tokenizer, items: list[tuple], ref: dict, n_text: int,
               batch_size: int = 8, progress=None) -> tuple[list[Score], list[dict]]:
    """Mean KL per scored token (token-weighted over items, CI by resampling items); rows per item.

    The first n_text items are documents, the rest conversations; both means go in the record too.
    progress(done, total): items, after each batch."""
    missing = [it[0] for it in items if it[0] not in ref]
    if missing:
        raise ValueError(f"general_kl: the starting model's reference lacks item {missing[0]!r}; it is "
                         "computed at step 0 with the same eval settings")
    rows = []
    for i, logp in _log_probs(model, tokenizer, items, batch_size, progress):
        r = ref[items[i][0]]
        device = logp.device
        kl = kl_to_reference(r["logp"].to(device), r["idx"].to(device), logp).clamp(min=0)
        rows.append({"id": items[i][0], "part": "text" if i < n_text else "chat", "tokens": int(kl.numel()),
                     "kl_sum": float(kl.sum()), "kl": float(kl.mean())})

    def part_mean(part: str) -> float | None:
        sel = [r for r in rows if r["part"] == part]
        toks = sum(r["tokens"] for r in sel)
        return sum(r["kl_sum"] for r in sel) / toks if toks else None

    score = ratio_score("eval/general_kl", [(r["kl_sum"], r["tokens"]) for r in rows], "mean",
                        ids=[r["id"] for r in rows], unit="nats/token", kl_text=part_mean("text"),
                        kl_chat=part_mean("chat"), scored_tokens=sum(r["tokens"] for r in rows))
    return [score], rows
