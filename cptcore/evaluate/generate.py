"""Batched greedy generation shared by the generation-based evaluators (knowledge_qa, ifeval, coherence).

Left padding keeps every prompt's last token at the same position so one `generate` call with a KV cache
serves a whole batch; prompts are sorted by length first so batches carry little padding.
Benchmark: python experiments/benchmarks/bench_generation.py
"""
from __future__ import annotations

import contextlib
import copy


def format_prompt(tokenizer, prompt: str, chat: bool) -> str:
    """Instruct models see the prompt through their chat template, base models see it as plain text."""
    if chat:
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    return prompt


@contextlib.contextmanager
def eval_mode(model):
    """Evaluation without dropout or gradients; restores train mode afterwards (the trainer's model is shared)."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def padding_side(tokenizer, side: str):
    old = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        yield tokenizer
    finally:
        tokenizer.padding_side = old


def model_device(model):
    return next(model.parameters()).device


def greedy_config(model, tokenizer, max_new_tokens: int):
    """The model's generation config made greedy (sampling knobs cleared so nothing warns or samples)."""
    from transformers import GenerationConfig

    base = getattr(model, "generation_config", None)
    gc = copy.deepcopy(base) if isinstance(base, GenerationConfig) else GenerationConfig()
    gc.do_sample, gc.num_beams = False, 1
    gc.temperature = gc.top_p = gc.top_k = None
    gc.max_new_tokens, gc.max_length = max_new_tokens, None
    gc.use_cache = True  # training may have switched it off for gradient checkpointing
    gc.pad_token_id = tokenizer.pad_token_id
    eos = {tokenizer.eos_token_id}
    if gc.eos_token_id is not None:
        eos |= set(gc.eos_token_id if isinstance(gc.eos_token_id, list) else [gc.eos_token_id])
    gc.eos_token_id = sorted(e for e in eos if e is not None)
    return gc


def generate(model, tokenizer, prompts: list[str], *, chat: bool, max_new_tokens: int = 96,
             batch_size: int = 8, token_counts: list[int] | None = None,
             ended: list[bool] | None = None, progress=None) -> list[str]:
    """Greedy responses (new text only, special tokens removed) in the order of `prompts`.

    progress(done, total), if given, is called before the first batch and after each one with the number of
    prompts answered so far.
    token_counts, if given, receives each response's generated-token count (up to and including EOS);
    ended receives whether it stopped at EOS (False: cut at max_new_tokens, the response is truncated).
    """
    import torch

    texts = [format_prompt(tokenizer, p, chat) for p in prompts]
    # the chat template already holds its special tokens; plain prompts get the tokenizer's usual ones
    encoded = [tokenizer(t, add_special_tokens=not chat)["input_ids"] for t in texts]
    order = sorted(range(len(texts)), key=lambda i: (-len(encoded[i]), i))
    out: list[str] = [""] * len(texts)
    counts = [0] * len(texts)
    stopped = [False] * len(texts)
    gc = greedy_config(model, tokenizer, max_new_tokens)
    device = model_device(model)
    if progress is not None:
        progress(0, len(texts))
    with eval_mode(model), padding_side(tokenizer, "left"):
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items()}
            generated = model.generate(**batch, generation_config=gc)
            new_tokens = generated[:, batch["input_ids"].shape[1]:]
            for i, row in zip(idx, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                out[i] = row
            eos_hit = torch.isin(new_tokens, torch.tensor(gc.eos_token_id, device=device))
            for i, row_ended in zip(idx, eos_hit):
                hits = row_ended.nonzero()
                counts[i] = int(hits[0]) + 1 if len(hits) else new_tokens.shape[1]
                stopped[i] = bool(len(hits))
            if progress is not None:
                progress(min(start + batch_size, len(order)), len(texts))
    if token_counts is not None:
        token_counts.extend(counts)
    if ended is not None:
        ended.extend(stopped)
    return out
