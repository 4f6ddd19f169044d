"""EWC: the penalty is zero at the starting weights, grows as they move, and reaches the loss."""
import pytest
import torch

from cptcore.config import RunConfig
from cptcore.ewc import EWCPenalty, build_ewc, fisher_diagonal
from cptcore.models import load_model
from cptcore.runs import Run
from cptcore.train import train_run


@pytest.fixture
def tiny_model():
    model, tok = load_model(RunConfig(model={"name": "tiny-random-llama"}).model)
    return model, tok


def test_fisher_is_clipped_and_normalized_to_mean_one(tiny_model):
    model, _ = tiny_model
    seqs = [torch.randint(0, 2000, (32,)) for _ in range(3)]
    fisher = fisher_diagonal(model, seqs, clip_quantile=0.99)
    flat = torch.cat([f.flatten() for f in fisher.values()])
    assert flat.mean() == pytest.approx(1.0, rel=1e-4)
    assert (flat >= 0).all() and flat.max() / flat.mean() < 1e4  # the extremes were clipped
    unclipped = fisher_diagonal(model, seqs, clip_quantile=1.0)
    assert torch.cat([f.flatten() for f in unclipped.values()]).max() > flat.max()
    assert set(fisher) == {n for n, p in model.named_parameters() if p.requires_grad}


def test_penalty_is_zero_at_the_start_and_grows_as_weights_move(tiny_model):
    model, _ = tiny_model
    fisher = fisher_diagonal(model, [torch.randint(0, 2000, (32,))])
    ewc = EWCPenalty(model, fisher, lam=10.0)
    assert float(ewc(model).detach()) == 0.0
    values = []
    with torch.no_grad():
        for _ in range(3):
            for p in model.parameters():
                p.add_(1e-3 * torch.randn_like(p))
            values.append(float(ewc(model).detach()))
    assert 0 < values[0] < values[1] < values[2]
    half = EWCPenalty.__new__(EWCPenalty)
    half.__dict__.update(ewc.__dict__, lam=5.0)
    assert float(half(model).detach()) == pytest.approx(values[2] / 2)  # linear in lambda


def test_penalty_has_gradients_pulling_weights_back(tiny_model):
    model, _ = tiny_model
    fisher = fisher_diagonal(model, [torch.randint(0, 2000, (32,))])
    ewc = EWCPenalty(model, fisher, lam=1.0)
    w = model.model.embed_tokens.weight
    with torch.no_grad():
        w.add_(0.01)
    model.zero_grad()
    ewc(model).backward()
    assert (w.grad * 0.01 >= 0).all() and w.grad.abs().sum() > 0  # gradient points back towards the anchor


def test_ewc_run_writes_a_penalty_that_is_zero_until_the_weights_move(tmp_path, tiny_cfg):
    cfg = tiny_cfg.with_overrides({"ewc.enabled": True, "ewc.log10_lambda": 2, "ewc.fisher_sequences": 4,
                                   "train.warmup_ratio": 0, "train.max_steps": 5})
    run = Run.create(tmp_path / "runs", cfg)
    train_run(run, progress=False)
    penalty = [r["value"] for r in run.read_metrics() if r["name"] == "train/ewc_penalty"]
    assert len(penalty) == 5 and penalty[0] == 0.0  # the first step sees the starting weights
    assert all(p > 0 for p in penalty[1:])  # then the weights have moved (it pulls them back: not monotonic)


def test_build_ewc_uses_replay_sequences(tiny_cfg, tiny_model):
    model, tok = tiny_model
    ewc = build_ewc(tiny_cfg.with_overrides({"ewc.enabled": True, "ewc.fisher_sequences": 2,
                                             "ewc.log10_lambda": -1}), model, tok)
    assert ewc.lam == pytest.approx(0.1) and float(ewc(model).detach()) == 0.0
