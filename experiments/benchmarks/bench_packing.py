"""Packing time and memory as the corpus grows: cptcore's flat-array Packer against a list-based one.

    python experiments/benchmarks/bench_packing.py [--sizes 1e6,4e6,8e6] [--seq-len 256]

The baseline is the packer cptcore shipped first (and the usual hand-written one): examples as Python lists,
a pass appended to a list and each sequence cut off its front (`del buf[:seq_len]`, which moves the rest of the
list every time). Both are fed the same synthetic documents (20-400 tokens, like short domain documents) as
the tokenizer hands them over (generation included for both) and must yield identical sequences; each packs one
full pass. Columns: seconds, and peak Python memory (tracemalloc) of examples + packer + packing, per token.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


class ListPacker:
    """The baseline: Python lists throughout."""

    def __init__(self, examples, seq_len: int, seed: int):
        self.examples, self.seq_len, self.seed, self.passes_started = examples, seq_len, seed, 0
        self._ids: list[int] = []
        self._labels: list[int] = []

    def _refill(self) -> None:
        order = list(range(len(self.examples)))
        random.Random(self.seed * 1_000_003 + self.passes_started).shuffle(order)
        self.passes_started += 1
        for i in order:
            ids, labels = self.examples[i]
            self._ids.extend(ids)
            self._labels.extend(labels)

    def next(self):
        while len(self._ids) < self.seq_len:
            self._refill()
        ids = np.asarray(self._ids[: self.seq_len], dtype=np.int32)
        labels = np.asarray(self._labels[: self.seq_len], dtype=np.int32)
        del self._ids[: self.seq_len], self._labels[: self.seq_len]
        return ids, labels


def token_lists(total: int, seed: int = 0):
    """Documents as a fast tokenizer returns them (lists of ints), one at a time, the same for every call."""
    rng = np.random.default_rng(seed)
    n = 0
    while n < total:
        length = int(rng.integers(20, 401))
        yield rng.integers(300, 49_000, length).tolist()
        n += length


def measure(make_examples, packer_cls, total: int, seq_len: int) -> tuple[float, float, np.ndarray]:
    """(seconds, peak bytes per token, checksum of the sequences) for building examples and packing one pass."""
    tracemalloc.start()
    t0 = time.perf_counter()
    examples = make_examples()
    packer = packer_cls(examples, seq_len, 0)
    n_seq = total // seq_len
    check = np.zeros(seq_len, dtype=np.int64)
    for _ in range(n_seq):
        ids, _ = packer.next()
        check += ids
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak / total, check


def main() -> None:
    from cptcore.data.pack import Packer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1e6,4e6,8e6", help="corpus sizes in tokens")
    p.add_argument("--seq-len", type=int, default=256)
    a = p.parse_args()
    print(f"seq_len {a.seq_len}; one pass over the corpus; time includes turning token lists into examples\n")
    print("| tokens | list packer s | cptcore s | speed-up | list B/token | cptcore B/token | memory ratio |")
    print("|-------:|--------------:|----------:|---------:|-------------:|----------------:|-------------:|")
    for total in (int(float(s)) for s in a.sizes.split(",")):

        def as_lists():  # the list packer keeps the tokenizer's lists (labels shared with ids)
            return [(d, d) for d in token_lists(total)]

        def as_arrays():  # cptcore.data.formats.encode_rows: int32 arrays as it goes, the lists dropped
            out = []
            for d in token_lists(total):
                arr = np.asarray(d, dtype=np.int32)
                out.append((arr, arr))
            return out

        base_s, base_b, base_check = measure(as_lists, ListPacker, total, a.seq_len)
        ours_s, ours_b, ours_check = measure(as_arrays, Packer, total, a.seq_len)
        assert (base_check == ours_check).all(), "the packers disagree"
        print(f"| {total:>10,} | {base_s:>13.2f} | {ours_s:>9.2f} | {base_s / ours_s:>7.1f}x | {base_b:>12.1f} | "
              f"{ours_b:>15.1f} | {base_b / ours_b:>11.1f}x |")


if __name__ == "__main__":
    main()
