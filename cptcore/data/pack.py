"""Pack variable-length examples into fixed-length sequences: no padding, no truncation, no dropped document.

Examples are laid end to end (text rows already end with EOS) and cut every seq_len tokens; a document
longer than seq_len simply continues in the next sequence. When a role's examples run out, the next pass
starts with a fresh seeded shuffle, so every document is seen once per pass.

Tokens live in flat arrays, one per shard: in memory (Packer(examples, ...)) or memory-mapped from the token
cache (Packer.from_shards, cptcore/data/cache.py), so a corpus larger than RAM packs without being read whole.
Sequence k is tokens [k * seq_len, (k + 1) * seq_len) of the endless stream of passes, so any sequence can be
cut on demand (sequence(k)): a pass keeps only its document order and the cumulative ends of its documents
(16 bytes per document), and nothing is packed before the trainer asks for it (train.max_steps costs no
memory). Cutting is linear in seq_len plus a binary search: packing time stays linear in the corpus (a list
popped from the front is quadratic: experiments/benchmarks/bench_packing.py).
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def flatten(arrays: Sequence) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=np.int32) for a in arrays]) if len(arrays) else np.zeros(0, np.int32)


@dataclass
class Shard:
    """One source's tokens: `ids` and `labels` laid end to end (labels None: raw text, the labels are the
    ids), and each example's length. Arrays may be np.memmap views of the token cache."""
    ids: np.ndarray
    labels: np.ndarray | None
    lengths: np.ndarray

    def examples(self):
        """Each example's (ids, labels) as int32 arrays, in order (for inspection and padded baselines)."""
        start = 0
        for n in np.asarray(self.lengths, dtype=np.int64):
            ids = np.asarray(self.ids[start:start + n], dtype=np.int32)
            yield ids, ids if self.labels is None else np.asarray(self.labels[start:start + n], dtype=np.int32)
            start += int(n)


class Packer:
    """Cuts (input_ids, labels) int32 arrays of exactly seq_len tokens from one role's examples: sequence(k)
    on demand, next() in order."""

    def __init__(self, examples: Sequence[tuple[Sequence[int], Sequence[int]]], seq_len: int, seed: int):
        if not len(examples):
            raise ValueError("Packer needs at least one example")
        lengths = np.fromiter((len(ids) for ids, _ in examples), dtype=np.int64, count=len(examples))
        ids = flatten([ids for ids, _ in examples])
        shared = all(labels is ids for ids, labels in examples)  # raw text: labels are the ids themselves
        labels = None if shared else flatten([labels for _, labels in examples])
        self._setup([Shard(ids, labels, lengths)], seq_len, seed)

    @classmethod
    def from_shards(cls, shards: Sequence[Shard], seq_len: int, seed: int) -> "Packer":
        """A packer over several sources' shards, read in place (memory-mapped shards stay on disk)."""
        self = cls.__new__(cls)
        self._setup(list(shards), seq_len, seed)
        return self

    def _setup(self, shards: list[Shard], seq_len: int, seed: int) -> None:
        self.shards, self.seq_len, self.seed = shards, seq_len, seed
        self.lengths = np.concatenate([np.asarray(s.lengths, dtype=np.int64) for s in shards])
        self.n_examples = len(self.lengths)
        if not self.n_examples:
            raise ValueError("Packer needs at least one example")
        # each document's shard and its start within that shard (a document never spans shards)
        self.doc_shard = np.concatenate([np.full(len(s.lengths), j, dtype=np.int32) for j, s in enumerate(shards)])
        self.starts = np.concatenate([np.concatenate([[0], np.cumsum(s.lengths, dtype=np.int64)[:-1]])
                                      if len(s.lengths) else np.zeros(0, np.int64) for s in shards]).astype(np.int64)
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

    def _pieces(self, k: int) -> list[tuple[int, int, int]]:
        """Sequence k as (document, offset within the document, tokens taken) pieces, in order."""
        p, offset = divmod(k * self.seq_len, self.tokens_per_pass)
        pieces, need = [], self.seq_len
        while need:
            order, ends = self._pass(p)
            d = int(np.searchsorted(ends, offset, side="right"))  # the document that holds token `offset`
            while need and d < len(order):
                doc = int(order[d])
                within = int(offset - (ends[d] - self.lengths[doc]))
                take = int(min(self.lengths[doc] - within, need))
                pieces.append((doc, within, take))
                need, offset, d = need - take, offset + take, d + 1
            p, offset = p + 1, 0
        return pieces

    def sequence(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k-th sequence of the stream (0-based): the same arrays whatever was cut before."""
        ids, labels = [], []
        for doc, within, take in self._pieces(k):
            shard = self.shards[self.doc_shard[doc]]
            a = int(self.starts[doc]) + within
            ids.append(shard.ids[a:a + take])
            labels.append(shard.ids[a:a + take] if shard.labels is None else shard.labels[a:a + take])
        return np.concatenate(ids).astype(np.int32), np.concatenate(labels).astype(np.int32)

    def positions(self, k: int) -> np.ndarray:
        """Position ids of sequence k, restarting at 0 at each piece (train.attention per_document): a document
        continued from the previous sequence starts again at 0, as it cannot attend to the part it continues."""
        return np.concatenate([np.arange(take, dtype=np.int32) for _, _, take in self._pieces(k)])

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        """The next sequence in order (sequence 0, 1, 2, ...)."""
        self._next += 1
        return self.sequence(self._next - 1)
