"""A long document is tokenized in bounded pieces into ONE example, with the ids of a single tokenizer call."""
import random

import numpy as np
import pytest

from cptcore.config import ModelConfig, SourceConfig
from cptcore.data.cache import cached_source
from cptcore.data.formats import encode_texts, text_chunks
from cptcore.models import load_tokenizer

WORDS = ("the of and river mountain company founded in 1847 city people's music, science history harbour lantern "
         "copper orchard festival engineer bridge archive meadow naïve café — 東京 well-known").split()


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(ModelConfig(name="tiny-random-llama"))


def document(chars: int, seed: int = 0) -> str:
    """English-like paragraphs with punctuation, digits, accents, CJK, double spaces and blank lines."""
    rnd, parts, n = random.Random(seed), [], 0
    while n < chars:
        sentence = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(4, 30))).capitalize()
        sentence += rnd.choice([". ", "? ", ".  ", ".\n\n", "!\n", ". "])
        parts.append(sentence)
        n += len(sentence)
    return "".join(parts)


class Recording:
    """The real tokenizer, recording the length of every text it is handed, call by call."""

    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, []

    def __call__(self, texts, **kwargs):
        self.calls.append([len(t) for t in ([texts] if isinstance(texts, str) else texts)])
        return self.tokenizer(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


@pytest.fixture(scope="module")
def long_doc():
    return document(2_000_000)


def test_pieces_join_back_and_respect_the_size(long_doc):
    pieces = list(text_chunks(long_doc, 65_536))
    assert "".join(pieces) == long_doc
    assert max(map(len, pieces)) <= 65_536 and min(map(len, pieces[:-1])) >= 65_536 // 2
    for p in pieces[1:]:  # each cut falls just before a space between two words
        assert p[0] == " " and not p[1].isspace()


def test_text_without_whitespace_is_still_cut():
    text = "x" * 1000
    pieces = list(text_chunks(text, 64))
    assert "".join(pieces) == text and max(map(len, pieces)) == 64


def test_long_document_is_one_example_with_the_ids_of_one_call(tmp_path, tok, long_doc):
    """Cuts before a space between words leave byte-level BPE ids unchanged: exact equality is required."""
    f = tmp_path / "book.txt"
    f.write_text(long_doc, encoding="utf-8")
    recorder = Recording(tok)
    shard, entry = cached_source(SourceConfig(path=str(f)), recorder, "base")  # into the token cache
    assert entry["rows"] == entry["examples"] == len(shard.lengths) == 1
    one_call = np.asarray(tok(long_doc, add_special_tokens=False)["input_ids"] + [tok.eos_token_id], np.int32)
    assert shard.labels is None  # raw text: the labels are the ids
    np.testing.assert_array_equal(np.asarray(shard.ids, dtype=np.int32), one_call)
    assert len(recorder.calls) > 1  # it was not one call
    assert max(n for call in recorder.calls for n in call) <= 65_536


def test_the_tokenizer_never_sees_more_than_a_piece_or_a_call_budget(tok):
    texts = [document(50_000, seed=1), "short one.", document(3_000, seed=2), " ", document(20_000, seed=3)]
    recorder = Recording(tok)
    ids = encode_texts(recorder, texts, chunk_chars=4_096, batch_chars=10_000)
    assert max(n for call in recorder.calls for n in call) <= 4_096
    assert all(sum(call) <= 10_000 or len(call) == 1 for call in recorder.calls)
    for text, got in zip(texts, ids):
        np.testing.assert_array_equal(got, tok(text, add_special_tokens=False)["input_ids"])


def test_short_documents_are_still_batched_together(tok):
    recorder = Recording(tok)
    encode_texts(recorder, [f"document number {i}." for i in range(300)])
    assert len(recorder.calls) == 1 and len(recorder.calls[0]) == 300
