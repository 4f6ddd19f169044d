"""general_kl: 0 for the starting model, > 0 once it changed, the reference kept on disk for resume."""
import pytest
import torch

from cptcore.config import ModelConfig, RunConfig
from cptcore.evaluate.suite import EvalError, Suite
from cptcore.models import load_model


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    return load_model(ModelConfig(name="tiny-random-llama"))


def cfg():
    return RunConfig().with_overrides({"model.name": "tiny-random-llama", "eval.max_docs": 4, "eval.kl_top_k": 8})


def test_kl_is_zero_for_the_starting_model_and_grows_when_it_changes(tiny, tmp_path):
    model, tok = tiny
    ref = tmp_path / "ref.pt"
    suite = Suite(cfg(), reference_path=ref)
    [s0], rows = suite.run("general_kl", model, tok)
    assert ref.is_file() and s0.value == pytest.approx(0.0, abs=1e-6) and s0.n == 8  # 4 texts + 4 chats
    assert {r["part"] for r in rows} == {"text", "chat"} and s0.extra["unit"] == "nats/token"
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    [s1], _ = suite.run("general_kl", model, tok)
    assert s1.value > 0.001 and s1.ci_low > 0
    # a new process (resume, `cpt eval RUN`) reads the same reference instead of taking a new one
    [s2], _ = Suite(cfg(), reference_path=ref, compute_reference=False).run("general_kl", model, tok)
    assert s2.value == pytest.approx(s1.value, rel=1e-5)


def test_kl_without_a_saved_reference_is_a_clear_error(tiny, tmp_path):
    with pytest.raises(EvalError, match="no step-0 reference"):
        Suite(cfg(), reference_path=tmp_path / "none.pt", compute_reference=False).run("general_kl", *tiny)


def test_coarsened_kl_is_a_lower_bound_of_the_full_kl():
    from cptcore.evaluate.general_kl import kl_to_reference

    torch.manual_seed(1)
    p = torch.log_softmax(torch.randn(5, 50), -1)
    q = torch.log_softmax(torch.randn(5, 50), -1)
    full = (p.exp() * (p - q)).sum(-1)
    for k in (1, 5, 20, 50):
        vals, idx = p.topk(k, -1)
        coarse = kl_to_reference(vals, idx, q)
        assert (coarse <= full + 1e-5).all()
    assert kl_to_reference(*p.topk(50, -1), q) == pytest.approx(full, abs=1e-4)
