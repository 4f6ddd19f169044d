import json

import numpy as np
import pytest

from cptcore.config import ROLES, RunConfig, SourceConfig
from cptcore.data.formats import IGNORE, encode_chat
from cptcore.data.mix import build_mix
from cptcore.data.schedule import DeficitScheduler
from cptcore.data.pack import Packer
from cptcore.data.sources import DataError, read_records
from cptcore.models import load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(RunConfig(model={"name": "tiny-random-llama"}).model)


def mix_of(cfg, tok, n):
    """The data of a run that trains exactly n sequences (one per step)."""
    return build_mix(cfg.with_overrides({"train.batch_size": 1, "train.max_steps": n}), tok)


@pytest.mark.parametrize("shares", [(0.6, 0.3, 0.1), (0.9, 0.07, 0.03), (0.5, 0.5, 0.0), (1.0, 0.0, 0.0)])
def test_schedule_hits_every_share_within_one_sequence(shares):
    n = 1000
    roles = DeficitScheduler().schedule(shares, n)
    counts = np.bincount(roles, minlength=3)
    for k, s in enumerate(shares):
        assert abs(counts[k] - s * n) <= 1
        if s == 0:
            assert counts[k] == 0
    # also exact on every prefix: the live mix never drifts
    for prefix in (10, 37, 500):
        c = np.bincount(roles[:prefix], minlength=3)
        assert all(abs(c[k] - shares[k] * prefix) <= 1 for k in range(3))


def test_packing_never_drops_or_truncates_a_document():
    lengths = [3, 17, 5, 40, 1, 8]  # 74 tokens: not a multiple of seq_len
    docs = [([i] * n, [i] * n) for i, n in enumerate(lengths, start=1)]
    p = Packer(docs, seq_len=8, seed=0)
    stream = np.concatenate([p.next()[0] for _ in range(2 * 74 // 8 + 1)])  # two full passes and a bit
    first_pass = stream[:74]
    for i, n in enumerate(lengths, start=1):  # each document whole and contiguous, none cut short
        where = np.flatnonzero(first_pass == i)
        assert len(where) == n and (np.diff(where) == 1).all()
    second_pass = stream[74:148]
    assert sorted(second_pass.tolist()) == sorted(first_pass.tolist())  # the remainder rolls into pass 2


def test_mixed_tokens_match_requested_shares_exactly(tiny_cfg, tok):
    data = mix_of(tiny_cfg, tok, 200)
    input_ids, labels = data.materialize()
    assert input_ids.shape == (200, 64)
    realized = data.realized_shares(200)
    for role in ROLES:
        assert abs(realized[role] - getattr(tiny_cfg.mix, role)) <= 0.01
    man = data.manifest["roles"]
    assert len(man["domain"]["sources"][0]["files"][0]["sha256"]) == 64
    assert man["domain"]["tokens_trained"] == (data.roles == 0).sum() * 64
    assert man["domain"]["loss_tokens_trained"] == (labels[data.roles == 0][:, 1:] != IGNORE).sum()


def test_one_scheduler_follows_changing_targets_and_restarts():
    """A progressive ramp (a target per sequence) and a restart after a mix change use the same scheduler."""
    s = DeficitScheduler()
    ramp = np.column_stack([np.linspace(0.2, 0.8, 400), np.linspace(0.8, 0.2, 400), np.zeros(400)])
    roles = s.schedule(ramp, 400)
    expected = ramp.cumsum(axis=0)
    for prefix in (50, 200, 400):
        counts = np.bincount(roles[:prefix], minlength=3)
        assert all(abs(counts[k] - expected[prefix - 1, k]) <= 1 for k in range(3))
    assert (roles[:100] == 1).mean() > (roles[300:] == 1).mean()  # replay fades as domain ramps up
    s.restart()
    after = s.schedule([0.0, 0.0, 1.0], 5)
    assert (after == 2).all()


def test_same_seed_same_data_other_seed_other_order(tiny_cfg, tok):
    a = mix_of(tiny_cfg, tok, 50)
    b = mix_of(tiny_cfg, tok, 50)
    c = mix_of(tiny_cfg.with_overrides(["train.seed=1"]), tok, 50)
    assert np.array_equal(a.materialize()[0], b.materialize()[0])
    assert not np.array_equal(a.materialize()[0], c.materialize()[0])


def test_zero_share_role_is_absent(tiny_cfg, tok):
    cfg = tiny_cfg.with_overrides(["mix.domain=0.7", "mix.replay=0.3", "mix.instruct=0", "data.instruct=/missing"])
    data = mix_of(cfg, tok, 40)
    assert "instruct" not in data.manifest["roles"] and not (data.roles == 2).any()


def test_chat_loss_mask_covers_assistant_tokens_only(tok):
    msgs = [{"role": "user", "content": "Name a river."}, {"role": "assistant", "content": "The Velmora river."}]
    ids, labels = encode_chat(tok, msgs, "instruct")
    trained = tok.decode([t for t, l in zip(ids, labels) if l != IGNORE])
    assert trained.startswith("The Velmora river.") and "Name a river" not in trained
    assert "<|im_end|>" in trained  # the model learns to stop
    ids_b, labels_b = encode_chat(tok, msgs, "base")
    trained_b = tok.decode([t for t, l in zip(ids_b, labels_b) if l != IGNORE])
    assert "Velmora river." in trained_b and "Name a river" not in trained_b


def test_text_and_chat_roles_mix_with_correct_masks(tiny_cfg, tok):
    data = mix_of(tiny_cfg, tok, 100)
    _, labels = data.materialize()
    text_rows = labels[data.roles == 0]
    chat_rows = labels[data.roles == 2]
    assert (text_rows != IGNORE).all()  # raw text: every token trains
    assert (chat_rows == IGNORE).any() and (chat_rows != IGNORE).any()


@pytest.mark.parametrize("content, message", [
    ("", "file is empty"),
    ('{"text": "ok"}\n{"text": broken\n', r":2: malformed JSON"),
])
def test_bad_files_name_the_problem(tmp_path, content, message):
    f = tmp_path / "d.jsonl"
    f.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_records(SourceConfig(path=str(f)))


def test_non_utf8_and_missing_files(tmp_path):
    f = tmp_path / "latin.txt"
    f.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_records(SourceConfig(path=str(f)))
    with pytest.raises(DataError, match="file not found"):
        read_records(SourceConfig(path=str(tmp_path / "nope.jsonl")))


def test_missing_column_is_named(tmp_path, tiny_cfg, tok):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"body": "hello"}) + "\n", encoding="utf-8")
    cfg = tiny_cfg.with_overrides([f"data.domain={f}"])
    with pytest.raises(DataError, match="missing column 'text'"):
        mix_of(cfg, tok, 10)


def test_keep_and_drop_select_rows_by_a_field_after_max_rows(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps({"text": f"doc {i}", "entity_id": f"e-{i % 4}"}) + "\n" for i in range(12)))
    keep = read_records(SourceConfig(path=str(f), max_rows=8, keep={"entity_id": ["e-1", "e-2"]}))
    assert [r["text"] for r in keep] == ["doc 1", "doc 2", "doc 5", "doc 6"]
    drop = read_records(SourceConfig(path=str(f), drop={"entity_id": ["e-0", "e-1", "e-2"]}))
    assert [r["text"] for r in drop] == ["doc 3", "doc 7", "doc 11"]
    with pytest.raises(DataError, match="no rows left after keep/drop"):
        read_records(SourceConfig(path=str(f), keep={"entity_id": ["nobody"]}))


def test_a_sequence_cut_on_demand_is_the_one_cut_in_order():
    lengths = [3, 17, 5, 40, 1, 8]
    docs = [([i] * n, [i] * n) for i, n in enumerate(lengths, start=1)]
    in_order = Packer(docs, seq_len=8, seed=3)
    stream = [in_order.next()[0] for _ in range(40)]  # five passes
    fresh = Packer(docs, seq_len=8, seed=3)
    for k in (39, 0, 17, 9, 9, 25):  # any order, as a resumed run that skips batches asks
        assert np.array_equal(fresh.sequence(k)[0], stream[k])


def test_huge_max_steps_plans_fast_and_holds_no_tokens_until_fetched(tiny_cfg, tok):
    import time

    from cptcore.plan import plan

    t0 = time.perf_counter()
    p = plan(tiny_cfg.with_overrides({"train.max_steps": 10_000_000}))  # 40M sequences (batch 4)
    assert time.perf_counter() - t0 < 30  # a Python loop per sequence took minutes
    assert p.sequences == 40_000_000 and p.stages[0].order.nbytes == 40_000_000
    counts = np.bincount(p.stages[0].order, minlength=3)
    assert all(abs(counts[k] - getattr(tiny_cfg.mix, r) * p.sequences) <= 1 for k, r in enumerate(ROLES))

    cfg = tiny_cfg.with_overrides({"train.batch_size": 1, "train.max_steps": 200_000})
    data = build_mix(cfg, tok)
    held = data.roles.nbytes + data.stage.nbytes + data.rank.nbytes + data.loss_counts.nbytes
    assert held == 10 * 200_000  # bookkeeping only: the tokens would be 200,000 x 64 x 8 bytes
    last = data.fetch(199_999)
    again = build_mix(cfg, tok)
    for i in range(199_990, 200_000):  # fetched late and out of order: still the same sequence
        again.fetch(i)
    assert np.array_equal(again.fetch(199_999)[0], last[0]) and last[2] == data.roles[199_999]
    assert data.manifest["realized_loss"] is None  # too large to cut up front: the stream counts it


def test_a_run_larger_than_a_plan_can_hold_is_refused_with_what_to_change(tiny_cfg):
    from cptcore.config import ConfigError
    from cptcore.plan import plan

    with pytest.raises(ConfigError, match=r"train.max_steps=1,000,000,000 x 4 sequences per step .* lower train.max_steps"):
        plan(tiny_cfg.with_overrides({"train.max_steps": 1_000_000_000}))
    with pytest.raises(ConfigError, match="progressive.enabled schedules each of its"):
        plan(tiny_cfg.with_overrides({"train.max_steps": 10_000_000, "progressive.enabled": True}))
