"""Streaming sources (`streaming: true`): a datasets IterableDataset tokenized as training reads it.

A corpus that should not be downloaded or cached whole (a hub dataset of billions of tokens, a folder of
Arrow/Parquet/JSONL shards) is read row by row, tokenized in small batches and packed into the same
seq_len sequences as the token cache's Packer gives (no padding, EOS between documents, documents continue
across sequences). Nothing is held but the rows of one batch and the tokens not yet cut.

Sequences come in order. sequence(k) behind the last one restarts the stream and reads forward, so a
resumed run, or a rank of a multi-process run that reads every n-th sequence, gets exactly the sequences a
single uninterrupted reader would; it pays the tokenization of what it skips. A stream is read in its own
order on every pass (no shuffle: the order decides the data position a resume restores); its size is not known
before one pass ends, so the plan and the manifest leave its passes empty.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import numpy as np

from ..config import SourceConfig
from .formats import detect_format, encode_rows
from .sources import DataError, iter_records

STREAM_BATCH_ROWS = 64  # rows per tokenizer call: small, so the first sequence is ready quickly


def stream_entry(source: SourceConfig) -> dict:
    """A streaming source's manifest entry: what it is, not its counts (those are in the metric stream)."""
    return {"path": source.path, "local": False, "streaming": True, "format": source.format, "rows": None,
            "examples": None, "tokens": None, "loss_tokens": None, "files": []}


class StreamPacker:
    """Packs one role's sources, read as streams, into (input_ids, labels) int32 sequences of seq_len."""

    random_access = False  # sequences are cut in order (MixedData does not count them ahead)

    def __init__(self, sources: list[SourceConfig], tokenizer, kind: str, seq_len: int, seed: int,
                 loss_on: str = "answers", domain_as: str = "as_is"):
        if domain_as == "facts":
            raise DataError(f"{sources[0].path}: domain_as=facts needs the whole document set; it cannot stream")
        self.sources, self.tokenizer, self.kind = sources, tokenizer, kind
        self.seq_len, self.seed, self.loss_on = seq_len, seed, loss_on
        self.tokens_per_pass: int | None = None  # known once a pass has ended
        self.entries = [stream_entry(s) for s in sources]
        self._restart()

    def _restart(self) -> None:
        self._pass_tokens, self._k = 0, 0
        self._examples = self._read()
        self._buffer: deque = deque()  # (ids, labels) pieces not yet cut
        self._buffered = 0
        self._last: tuple[int, list[int]] | None = None  # (k, piece lengths) of the last sequence cut

    def _read(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One pass: each source in order, as the stream gives its rows."""
        from .cache import batches

        for j, source in enumerate(self.sources):
            fmt, row = None, 1
            for batch in batches(iter_records(source), STREAM_BATCH_ROWS):
                fmt = fmt or detect_format(batch, source)
                yield from self._encode(batch, fmt, source, row, j)
                row += len(batch)

    def _encode(self, batch, fmt, source, row, j):
        self.entries[j]["format"] = fmt
        for ids, labels in encode_rows(batch, fmt, source, self.tokenizer, self.kind, first_row=row):
            ids = np.asarray(ids, dtype=np.int32)
            labels = ids if (labels is ids or self.loss_on == "all") else np.asarray(labels, dtype=np.int32)
            if len(ids):
                yield ids, labels

    def _fill(self) -> None:
        while self._buffered < self.seq_len:
            try:
                ids, labels = next(self._examples)
            except StopIteration:
                if self._pass_tokens == 0:
                    raise DataError(f"{self.sources[0].path}: the stream has no tokens") from None
                if self.tokens_per_pass is None:
                    self.tokens_per_pass = self._pass_tokens
                self._pass_tokens = 0
                self._examples = self._read()
                continue
            self._pass_tokens += len(ids)
            self._buffer.append((ids, labels))
            self._buffered += len(ids)

    def _cut(self) -> tuple[np.ndarray, np.ndarray, list[int]]:
        self._fill()
        ids, labels, pieces, need = [], [], [], self.seq_len
        while need:
            a, b = self._buffer[0]
            take = min(len(a), need)
            ids.append(a[:take])
            labels.append(b[:take])
            pieces.append(take)
            if take == len(a):
                self._buffer.popleft()
            else:
                self._buffer[0] = (a[take:], b[take:])
            need -= take
        self._buffered -= self.seq_len
        self._k += 1
        return np.concatenate(ids), np.concatenate(labels), pieces

    def sequence(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k-th sequence of the stream (0-based), cut in order (see the module docstring)."""
        if k < self._k:
            self._restart()
        while self._k < k:
            self._cut()
        ids, labels, pieces = self._cut()
        self._last = (k, pieces)
        return ids, labels

    def positions(self, k: int) -> np.ndarray:
        """Position ids of sequence k, restarting at 0 at each document piece (train.attention per_document)."""
        if self._last is None or self._last[0] != k:
            self.sequence(k)
        return np.concatenate([np.arange(n, dtype=np.int32) for n in self._last[1]])
