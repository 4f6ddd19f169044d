"""GPU readiness options that a CPU can check: per-document attention (position ids restart at each document),
the fused-kernels refusal and its loss plumbing, torch.compile passed to the Trainer, SDPA by default."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cptcore.cli import main
from cptcore.config import ConfigError, ModelConfig
from cptcore.data.mix import build_mix
from cptcore.data.pack import Packer
from cptcore.models import load_model
from cptcore.runs import Run, list_runs
from cptcore.stream import MixDataset, RoleLossMeter, make_trainer_class, use_fused_head
from cptcore.train import FUSED_KERNELS_HELP, train_run, training_args


@pytest.fixture(scope="module")
def tiny():
    model, tok = load_model(ModelConfig(name="tiny-random-llama"))
    return model.eval(), tok


def two_documents(vocab: int):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randint(3, vocab, (13,), generator=g), torch.randint(3, vocab, (19,), generator=g)
    ids = torch.cat([a, b])[None]
    pos = torch.cat([torch.arange(13), torch.arange(19)])[None]
    return a, b, ids, pos


def test_tiny_model_attends_with_sdpa(tiny):
    assert tiny[0].config._attn_implementation == "sdpa"


def test_per_document_positions_keep_attention_inside_each_document(tiny):
    model, tok = tiny
    a, b, ids, pos = two_documents(len(tok))
    with torch.no_grad():
        alone = model(input_ids=b[None], use_cache=False).logits
        per_doc = model(input_ids=ids, position_ids=pos, use_cache=False).logits[:, 13:]
        packed = model(input_ids=ids, use_cache=False).logits[:, 13:]
    assert torch.allclose(per_doc, alone, atol=1e-5)
    assert not torch.allclose(packed, alone, atol=1e-3)  # packed: the second document sees the first


def trainer_for(model, tmp_path):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", disable_tqdm=True)
    return make_trainer_class()(model=model, args=args, role_meter=RoleLossMeter())


def test_training_loss_with_position_ids_is_each_documents_own_loss(tiny, tmp_path):
    """Through the trainer's compute_loss (which must not hand the model a cache: with one, transformers
    ignores position_ids when it builds the mask): the loss equals the documents' losses computed apart."""
    model, tok = tiny
    a, b, ids, pos = two_documents(len(tok))
    trainer = trainer_for(model, tmp_path)
    with torch.no_grad():
        apart = torch.cat([model(input_ids=a[None]).logits, model(input_ids=b[None]).logits], dim=1)
        expected = F.cross_entropy(apart[0, :-1], ids[0, 1:], reduction="sum")
        trainer.compute_loss(model, {"input_ids": ids, "labels": ids, "role": torch.tensor([0]), "position_ids": pos})
        got = trainer.role_meter.loss_sum[0]
        trainer.role_meter.reset()
        trainer.compute_loss(model, {"input_ids": ids, "labels": ids, "role": torch.tensor([0])})
        packed = trainer.role_meter.loss_sum[0]
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    assert float(packed) != pytest.approx(float(expected), rel=1e-3)


def test_packer_positions_restart_at_every_document_and_at_a_continued_one():
    # token = 100 * document + offset within it, so each position says where it came from
    docs = [np.arange(n, dtype=np.int32) + 100 * d for d, n in enumerate([5, 11, 3, 8, 2])]
    packer = Packer([(x, x) for x in docs], seq_len=7, seed=0)
    continued = 0
    for k in range(12):  # several passes: documents continue across sequences and across passes
        ids, _ = packer.sequence(k)
        pos = packer.positions(k)
        assert pos.dtype == np.int32 and pos.shape == (7,)
        for j in range(7):
            same_piece = j > 0 and ids[j] == ids[j - 1] + 1
            assert pos[j] == (pos[j - 1] + 1 if same_piece else 0), (k, ids, pos)
        continued += int(ids[0] % 100 != 0)  # the sequence starts inside a document: its position is still 0
    assert continued >= 3


def test_mixed_data_serves_per_document_positions(tiny_cfg):
    from cptcore.models import load_tokenizer

    data = build_mix(tiny_cfg, load_tokenizer(tiny_cfg.model))
    rows = MixDataset(data, per_document=True)
    assert "position_ids" not in MixDataset(data)[0]
    for i in range(len(rows)):
        row = rows[i]
        pos = row["position_ids"]
        assert pos.shape == row["input_ids"].shape and pos[0] == 0
        np.testing.assert_array_equal(pos.numpy(), data.positions(i))
    chat = [rows[i]["position_ids"] for i in range(len(rows)) if rows[i]["role"] == 2]
    assert chat and all((p == 0).sum() > 1 for p in chat)  # short chat examples: several documents a sequence


def test_fused_kernels_on_cpu_is_refused_in_one_line(tmp_path, tiny_cfg, capsys):
    path = tiny_cfg.save(tmp_path / "c.yaml")
    code = main(["train", str(path), "--no-progress", "--set", "train.fused_kernels=true", "--set", "train.device=cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"error: {FUSED_KERNELS_HELP}") and len(err.splitlines()) == 1, err
    assert list_runs(tmp_path / "runs") == []  # refused before a run exists (runs.launch.check_launcher)


def test_fused_kernels_without_cuda_fail_the_run_that_got_past_the_launch_check(tiny_cfg):
    """A run launched where CUDA was expected but is missing in the training process still fails in one line."""
    from cptcore.train import check_gpu_options

    with pytest.raises(ConfigError, match="train.fused_kernels needs CUDA"):
        check_gpu_options(tiny_cfg.with_overrides({"train.fused_kernels": True}), "cpu")


def reference_fused_loss(hidden, weight, targets, bias=None):
    """What Liger's fused linear cross-entropy computes (reduction none), in plain torch for a CPU."""
    return F.cross_entropy(F.linear(hidden, weight, bias).float(), targets, ignore_index=-100, reduction="none")


def test_fused_head_gives_the_same_loss_and_gradients_per_role(tmp_path, monkeypatch):
    """The fused path (lm_head returns per-token losses) feeds the per-role meter exactly like the logits path."""
    monkeypatch.setattr("cptcore.stream.fused_token_loss", reference_fused_loss)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(3, 200, (3, 24), generator=g)
    labels = ids.clone()
    labels[1, :10] = -100  # a chat row: no loss on the prompt
    roles = torch.tensor([0, 2, 1])
    results = []
    for fused in (False, True):
        model, _ = load_model(ModelConfig(name="tiny-random-llama"))
        model.train()
        trainer = trainer_for(model, tmp_path)
        if fused:
            trainer.fused_head = use_fused_head(model)
        loss = trainer.compute_loss(model, {"input_ids": ids, "labels": labels.clone(), "role": roles})
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        results.append((loss.detach(), trainer.role_meter.loss_sum.clone(), grads))
        model.eval()
        assert model(input_ids=ids[:1]).logits.shape[-1] == model.config.vocab_size  # evaluation: plain logits
    (l0, m0, g0), (l1, m1, g1) = results
    assert torch.allclose(l0, l1, atol=1e-6) and torch.allclose(m0, m1, atol=1e-6)
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(g0, g1))


def test_compile_reaches_the_trainer(tmp_path, tiny_cfg):
    run = Run.create(tmp_path / "runs", tiny_cfg.with_overrides(["train.compile=true"]))
    assert training_args(run.config(), run, "cpu", progress=False).torch_compile
    assert not training_args(tiny_cfg, run, "cpu", progress=False).torch_compile


def test_two_steps_with_per_document_attention(tmp_path, tiny_cfg):
    losses = {}
    for attention in ("packed", "per_document"):
        cfg = tiny_cfg.with_overrides(["train.max_steps=2", f"train.attention={attention}"])
        run = Run.create(tmp_path / attention, cfg)
        assert train_run(run, progress=False)["steps"] == 2
        assert run.status()["status"] == "completed"
        losses[attention] = [r["value"] for r in run.read_metrics() if r["name"] == "train/loss"]
    # step 2 packs several short chat examples a row (step 1 holds no document boundary): the positions reached it
    assert losses["per_document"][1] != pytest.approx(losses["packed"][1], rel=1e-6)
