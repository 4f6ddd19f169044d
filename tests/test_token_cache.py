"""Tokenize once (cptcore/data/cache.py) and stream (cptcore/data/streaming.py): same tokens as tokenizing in
memory, nothing tokenized twice, entries complete or absent, streams cut in order and resumable."""
import json
import shutil

import numpy as np
import pytest

from cptcore.config import ModelConfig, RunConfig, SourceConfig
from cptcore.data import cache, formats
from cptcore.data.cache import cache_root, cached_source, source_key, tokenizer_fingerprint
from cptcore.data.formats import detect_format, encode_rows
from cptcore.data.pack import Packer
from cptcore.data.sources import read_records
from cptcore.data.streaming import StreamPacker
from cptcore.models import load_tokenizer
from cptcore.tokenizer import load_text_tokenizer

TINY = ModelConfig(name="tiny-random-llama")


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(TINY)


def in_memory(source: SourceConfig, tok, kind="base"):
    rows = read_records(source)
    return encode_rows(rows, detect_format(rows, source), source, tok, kind)


def write_docs(path, n=40, words=30, seed=0):
    rng = np.random.default_rng(seed)
    vocab = "river mountain company founded city people music science harbour lantern copper orchard".split()
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            text = " ".join(rng.choice(vocab, size=int(rng.integers(5, words)))) + f" document {i}."
            fh.write(json.dumps({"text": text}) + "\n")
    return path


def count_encodes(monkeypatch):
    calls = []
    real = formats.encode_rows

    def counting(*a, **k):
        calls.append(len(a[0]))
        return real(*a, **k)

    monkeypatch.setattr(cache, "encode_rows", counting)
    return calls


def test_cached_tokens_equal_tokenizing_in_memory_and_pack_the_same(tmp_path, tok):
    src = SourceConfig(path=str(write_docs(tmp_path / "docs.jsonl")))
    shard, entry = cached_source(src, tok, "base")
    examples = in_memory(src, tok)
    assert isinstance(shard.ids, np.memmap) and shard.ids.dtype == np.uint16  # the tiny vocabulary fits 16 bits
    assert entry["rows"] == entry["examples"] == len(examples) == 40
    assert entry["tokens"] == entry["loss_tokens"] == sum(len(ids) for ids, _ in examples)
    np.testing.assert_array_equal(shard.ids, np.concatenate([ids for ids, _ in examples]))
    a, b = Packer.from_shards([shard], 16, seed=1), Packer(examples, 16, seed=1)
    for k in (0, 3, 50, 7):  # across passes, out of order
        for x, y in zip(a.sequence(k), b.sequence(k)):
            np.testing.assert_array_equal(x, y)
            assert x.dtype == np.int32


def test_chat_labels_are_cached_with_their_mask(tmp_path, tok):
    f = tmp_path / "chat.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"question {i}?", "response": f"answer {i}."}) + "\n"
                         for i in range(12)))
    src = SourceConfig(path=str(f))
    shard, entry = cached_source(src, tok, "instruct")
    examples = in_memory(src, tok, "instruct")
    assert entry["format"] == "chat" and shard.labels is not None
    np.testing.assert_array_equal(shard.labels, np.concatenate([np.asarray(lab) for _, lab in examples]))
    assert entry["loss_tokens"] == int((np.asarray(shard.labels) != -100).sum()) < entry["tokens"]
    for (ids, labels), (want_ids, want_labels) in zip(shard.examples(), examples, strict=True):  # one by one
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_array_equal(labels, want_labels)
    # loss_on=all trains on prompts too: another entry, without labels
    all_shard, all_entry = cached_source(src, tok, "instruct", loss_on="all")
    assert all_shard.labels is None and all_entry["cache"] != entry["cache"]


def test_a_second_use_tokenizes_nothing_and_a_copy_elsewhere_hits(tmp_path, tok, monkeypatch):
    calls = count_encodes(monkeypatch)
    f = write_docs(tmp_path / "docs.jsonl")
    cached_source(SourceConfig(path=str(f)), tok, "base")
    assert calls
    calls.clear()
    cache._OPEN.clear()  # a new process: only the files on disk
    cached_source(SourceConfig(path=str(f)), tok, "base")
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(f, other / "renamed.jsonl")
    _, entry = cached_source(SourceConfig(path=str(other / "renamed.jsonl")), tok, "base")
    assert calls == []
    assert entry["path"].endswith("renamed.jsonl") and entry["files"][0]["path"].endswith("renamed.jsonl")


def test_the_key_follows_content_settings_and_tokenizer(tmp_path, tok):
    f = write_docs(tmp_path / "docs.jsonl")
    src = SourceConfig(path=str(f))
    key = source_key(src, tok, "base", "answers", "as_is")[0]
    assert source_key(src, tok, "base", "answers", "as_is")[0] == key
    assert source_key(src.model_copy(update={"max_rows": 5}), tok, "base", "answers", "as_is")[0] != key
    assert source_key(src, tok, "instruct", "answers", "as_is")[0] != key
    with open(f, "a") as fh:
        fh.write(json.dumps({"text": "one more document."}) + "\n")
    assert source_key(src, tok, "base", "answers", "as_is")[0] != key


def test_counting_and_training_tokenizers_share_entries(tok):
    """`cpt plan` counts with the torch-free tokenizer, training reads with transformers': one cache entry."""
    assert tokenizer_fingerprint(load_text_tokenizer(TINY)) == tokenizer_fingerprint(tok)


def test_a_failed_tokenization_leaves_no_entry(tmp_path, tok, monkeypatch):
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps({"text": "fine."}) + "\n" + "{not json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: malformed JSON"):
        cached_source(SourceConfig(path=str(f)), tok, "base")
    tokens = cache_root() / "tokens"
    assert not any(tokens.iterdir())  # neither an entry nor a temporary folder


def test_parallel_tokenization_writes_the_same_entry(tmp_path, tok, monkeypatch):
    monkeypatch.setattr(cache, "BATCH_ROWS", 7)  # several batches, several in flight
    f = write_docs(tmp_path / "docs.jsonl", n=60)
    one, _ = cached_source(SourceConfig(path=str(f)), tok, "base")
    ids, lengths = np.array(one.ids), np.array(one.lengths)
    shutil.rmtree(cache_root() / "tokens")
    cache._OPEN.clear()
    two, _ = cached_source(SourceConfig(path=str(f)), tok, "base", num_proc=2)
    np.testing.assert_array_equal(two.ids, ids)
    np.testing.assert_array_equal(two.lengths, lengths)


def test_cpt_prepare_fills_the_cache_that_training_reads(tmp_path, tiny_cfg, monkeypatch, capsys):
    from cptcore.cli import main
    from cptcore.data.mix import build_mix

    path = tmp_path / "cfg.yaml"
    tiny_cfg.save(path)
    assert main(["prepare", str(path)]) == 0
    assert "prepared in" in capsys.readouterr().out
    calls = count_encodes(monkeypatch)
    cache._OPEN.clear()
    data = build_mix(RunConfig.load(path), load_tokenizer(tiny_cfg.model))
    assert calls == [] and len(data) > 0
    assert {e["cache"] for r in data.manifest["roles"].values() for e in r["sources"]}


# --- streaming -----------------------------------------------------------------------------------
@pytest.fixture
def arrow_folder(tmp_path):
    from datasets import Dataset

    rows = [json.loads(line) for line in write_docs(tmp_path / "docs.jsonl", n=30).read_text().splitlines()]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "arrow"))
    return tmp_path / "arrow", rows


def test_a_streaming_source_packs_the_documents_in_their_order(arrow_folder, tok):
    folder, rows = arrow_folder
    packer = StreamPacker([SourceConfig(path=str(folder), streaming=True)], tok, "base", 16, seed=0)
    ids = tok([r["text"] for r in rows], add_special_tokens=False)["input_ids"]
    stream = np.concatenate([list(x) + [tok.eos_token_id] for x in ids])
    got = np.concatenate([packer.sequence(k)[0] for k in range(len(stream) // 16)])
    np.testing.assert_array_equal(got, stream[: len(got)])
    assert packer.tokens_per_pass is None  # not known before a pass ends
    later = packer.sequence(len(stream) // 16 + 3)[0]  # into the second pass: the same order again
    assert packer.tokens_per_pass == len(stream) and len(later) == 16


def test_a_resumed_stream_reads_exactly_where_it_was(arrow_folder, tok):
    folder, _ = arrow_folder
    src = [SourceConfig(path=str(folder), streaming=True)]
    straight = StreamPacker(src, tok, "base", 16, seed=0)
    expected = [straight.sequence(k)[0] for k in range(12)]
    resumed = StreamPacker(src, tok, "base", 16, seed=0)
    np.testing.assert_array_equal(resumed.sequence(9)[0], expected[9])  # a resume skips forward
    np.testing.assert_array_equal(resumed.sequence(2)[0], expected[2])  # going back restarts the stream
    pos = resumed.positions(2)
    assert pos[0] == 0 and len(pos) == 16


def test_jsonl_streams_through_datasets_and_trains(tmp_path, tiny_cfg):
    from cptcore.data.mix import build_mix
    from cptcore.plan import counter_for, plan

    docs = write_docs(tmp_path / "stream.jsonl", n=80)
    cfg = tiny_cfg.model_copy(update={"data": tiny_cfg.data.model_copy(
        update={"replay": [SourceConfig(path=str(docs), streaming=True)]})})
    p = plan(cfg, count=counter_for(cfg))
    assert p.roles["replay"].available is None and p.roles["domain"].available  # a stream is not counted ahead
    data = build_mix(cfg, load_tokenizer(cfg.model), p)
    roles = [data.fetch(i)[2] for i in range(len(data))]
    assert 1 in roles  # replay sequences were cut from the stream
    assert data.manifest["roles"]["replay"]["passes"] is None
    assert data.manifest["roles"]["replay"]["sources"][0]["streaming"] is True


def test_loss_token_shares_refuse_a_stream(tmp_path, tiny_cfg):
    from cptcore.config import ConfigError
    from cptcore.plan import counter_for, plan

    docs = write_docs(tmp_path / "stream.jsonl")
    cfg = RunConfig.from_dict({**tiny_cfg.to_dict(), "mix": {**tiny_cfg.mix.model_dump(), "unit": "loss_tokens"},
                               "data": {**tiny_cfg.data.model_dump(), "replay": [{"path": str(docs),
                                                                                  "streaming": True}]}})
    with pytest.raises(ConfigError, match="data.replay streams"):
        plan(cfg, count=counter_for(cfg))
