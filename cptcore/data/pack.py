"""Pack variable-length examples into fixed-length sequences: no padding, no truncation, no dropped document.

Examples are laid end to end (text rows already end with EOS) and cut every seq_len tokens; a document
longer than seq_len simply continues in the next sequence. When a role's examples run out, the next pass
starts with a fresh seeded shuffle, so every document is seen once per pass.

Tokens live in flat int32 arrays. Sequence k is tokens [k * seq_len, (k + 1) * seq_len) of the endless stream
of passes, so any sequence can be cut on demand (sequence(k)): a pass keeps only its document order and the
cumulative ends of its documents (16 bytes per document), and nothing is packed before the trainer asks for it
(train.max_steps costs no memory). Cutting is linear in seq_len plus a binary search: packing time stays
linear in the corpus (a list popped from the front is quadratic: experiments/benchmarks/bench_packing.py).
"""
from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np


def flatten(arrays: Sequence) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=np.int32) for a in arrays]) if len(arrays) else np.zeros(0, np.int32)


class Packer:
    """Cuts (input_ids, labels) int32 arrays of exactly seq_len tokens from one role's examples: sequence(k)
    on demand, next() in order."""

    def __init__(self, examples: Sequence[tuple[Sequence[int], Sequence[int]]], seq_len: int, seed: int):
        if not len(examples):
            raise ValueError("Packer needs at least one example")
        self.seq_len = seq_len
        self.seed = seed
        self.n_examples = len(examples)
        self.lengths = np.fromiter((len(ids) for ids, _ in examples), dtype=np.int64, count=len(examples))
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.ids = flatten([ids for ids, _ in examples])
        shared = all(labels is ids for ids, labels in examples)  # raw text: labels are the ids themselves
        self.labels = self.ids if shared else flatten([labels for _, labels in examples])
        self.tokens_per_pass = int(self.lengths.sum())
        if self.tokens_per_pass == 0:
            raise ValueError("Packer needs at least one token")
        self._passes: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # the last two passes cut from
        self._next = 0

    def _pass(self, p: int) -> tuple[np.ndarray, np.ndarray]:
        """Pass p's document order (a fresh seeded shuffle per pass) and the cumulative ends of its documents."""
        if p not in self._passes:
            order = list(range(self.n_examples))
            random.Random(self.seed * 1_000_003 + p).shuffle(order)
            order = np.asarray(order, dtype=np.int64)
            if len(self._passes) >= 2:
                del self._passes[min(self._passes)]
            self._passes[p] = (order, np.cumsum(self.lengths[order]))
        return self._passes[p]

    def sequence(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k-th sequence of the stream (0-based): the same arrays whatever was cut before."""
        p, offset = divmod(k * self.seq_len, self.tokens_per_pass)
        pieces, need = [], self.seq_len
        while need:
            order, ends = self._pass(p)
            d = int(np.searchsorted(ends, offset, side="right"))  # the document that holds token `offset`
            while need and d < len(order):
                doc = order[d]
                within = offset - (ends[d] - self.lengths[doc])
                take = int(min(self.lengths[doc] - within, need))
                begin = int(self.starts[doc] + within)
                pieces.append((begin, begin + take))
                need, offset, d = need - take, offset + take, d + 1
            p, offset = p + 1, 0
        index = np.concatenate([np.arange(a, b) for a, b in pieces])
        ids = self.ids[index]
        return ids, (ids.copy() if self.labels is self.ids else self.labels[index])

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        """The next sequence in order (sequence 0, 1, 2, ...)."""
        self._next += 1
        return self.sequence(self._next - 1)
