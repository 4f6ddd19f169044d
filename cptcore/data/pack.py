"""Pack variable-length examples into fixed-length sequences: no padding, no truncation, no dropped document.

Examples are laid end to end (text rows already end with EOS) and cut every seq_len tokens; a document
longer than seq_len simply continues in the next sequence. When a role's examples run out, the next pass
starts with a fresh seeded shuffle, so every document is seen once per pass.

Tokens live in flat int32 arrays and a pass is one vectorized gather, read with a cursor: memory stays at a
few bytes per token and packing time linear in the corpus (a list popped from the front is quadratic:
experiments/benchmarks/bench_packing.py).
"""
from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np


def flatten(arrays: Sequence) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=np.int32) for a in arrays]) if len(arrays) else np.zeros(0, np.int32)


class Packer:
    """Yields (input_ids, labels) int32 arrays of exactly seq_len tokens from one role's examples."""

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
        self.passes_started = 0
        self._buf_ids = np.zeros(0, np.int32)
        self._buf_labels = np.zeros(0, np.int32)
        self._pos = 0

    def _pass_order(self) -> np.ndarray:
        order = list(range(self.n_examples))
        random.Random(self.seed * 1_000_003 + self.passes_started).shuffle(order)
        self.passes_started += 1
        return np.asarray(order, dtype=np.int64)

    def _refill(self) -> None:
        order = self._pass_order()
        lens = self.lengths[order]
        # token positions of the documents in pass order: each document's start, then +0, +1, ... within it
        ends = np.cumsum(lens)
        idx = np.repeat(self.starts[order] - (ends - lens), lens) + np.arange(ends[-1])
        rest = slice(self._pos, None)
        self._buf_ids = np.concatenate([self._buf_ids[rest], self.ids[idx]])
        self._buf_labels = (self._buf_ids if self.labels is self.ids else
                            np.concatenate([self._buf_labels[rest], self.labels[idx]]))
        self._pos = 0

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        while len(self._buf_ids) - self._pos < self.seq_len:
            self._refill()
        window = slice(self._pos, self._pos + self.seq_len)
        self._pos += self.seq_len
        return self._buf_ids[window].copy(), self._buf_labels[window].copy()
