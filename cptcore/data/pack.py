"""Pack variable-length examples into fixed-length sequences: no padding, no truncation, no dropped document.

Examples are laid end to end (text rows already end with EOS) and cut every seq_len tokens; a document
longer than seq_len simply continues in the next sequence. When a role's examples run out, the next pass
starts with a fresh seeded shuffle, so every document is seen once per pass.
"""
from __future__ import annotations

import random

import numpy as np


class Packer:
    """Yields (input_ids, labels) int32 arrays of exactly seq_len tokens from one role's examples."""

    def __init__(self, examples: list[tuple[list[int], list[int]]], seq_len: int, seed: int):
        if not examples:
            raise ValueError("Packer needs at least one example")
        self.examples = examples
        self.seq_len = seq_len
        self.seed = seed
        self.tokens_per_pass = sum(len(ids) for ids, _ in examples)
        self.passes_started = 0
        self._ids: list[int] = []
        self._labels: list[int] = []
        self._order: list[int] = []

    def _refill(self) -> None:
        order = list(range(len(self.examples)))
        random.Random(self.seed * 1_000_003 + self.passes_started).shuffle(order)
        self.passes_started += 1
        for i in order:
            ids, labels = self.examples[i]
            self._ids.extend(ids)
            self._labels.extend(labels)

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        while len(self._ids) < self.seq_len:
            self._refill()
        ids = np.asarray(self._ids[: self.seq_len], dtype=np.int32)
        labels = np.asarray(self._labels[: self.seq_len], dtype=np.int32)
        del self._ids[: self.seq_len], self._labels[: self.seq_len]
        return ids, labels
