"""Mix shares in two units: input tokens (every token read) and loss tokens (label positions that carry loss)."""
import numpy as np
import pytest

from cptcore import forms, plan as plan_module
from cptcore.config import ROLES, ConfigError
from cptcore.data.formats import IGNORE
from cptcore.data.mix import MixedData, build_mix, loss_positions
from cptcore.data.schedule import input_shares, loss_shares, ramp_targets
from cptcore.models import load_tokenizer
from cptcore.plan import counter_for, describe, plan


@pytest.fixture(scope="module")
def tok():
    from cptcore.config import RunConfig

    return load_tokenizer(RunConfig(model={"name": "tiny-random-llama"}).model)


def built(cfg, tok, n=200, **overrides):
    """The mix of a run that trains n sequences (one per step), planned with its sources counted."""
    cfg = cfg.with_overrides({"train.batch_size": 1, "train.max_steps": n, **overrides})
    return build_mix(cfg, tok, plan(cfg, count=counter_for(cfg)))


def test_loss_token_shares_count_the_label_positions_that_carry_loss_exactly():
    x = IGNORE
    labels = np.array([[1, 2, 3, 4, 5],    # domain: raw text, loss on labels[1:] = 4 positions
                       [x, x, x, 5, 6],    # instruct: 2 answer tokens
                       [7, x, x, x, 8],    # instruct: 1 (position 0 predicts nothing: not counted)
                       [1, 2, 3, 4, 5]])   # replay: 4
    roles = np.array([0, 2, 2, 1], dtype=np.int8)
    data = MixedData(None, roles, np.zeros(4, np.int8), np.zeros(4, np.int32), loss_positions(labels))
    assert loss_positions(labels).tolist() == [4, 2, 1, 4]
    assert data.realized_shares(4) == {"domain": 0.25, "replay": 0.25, "instruct": 0.5}
    assert data.realized_shares(4, unit="loss_tokens") == {"domain": 4 / 11, "replay": 4 / 11, "instruct": 3 / 11}
    assert data.realized_shares(4, start=1, unit="loss_tokens") == {"domain": 0.0, "replay": 4 / 7,
                                                                    "instruct": 3 / 7}


def test_loss_shares_and_input_shares_convert_into_each_other_row_by_row():
    fractions = np.array([1.0, 0.98, 0.12])
    loss = np.array([0.55, 0.15, 0.30])
    tokens = input_shares(loss, fractions)
    assert tokens.sum() == pytest.approx(1) and tokens[2] > 0.7  # 30 % of the loss on QA is most of the input
    assert loss_shares(tokens, fractions) == pytest.approx(loss)
    ramp = ramp_targets(dict(zip(ROLES, loss)), 0.2, 0.5, 10)
    assert loss_shares(input_shares(ramp, fractions), fractions) == pytest.approx(ramp)
    assert input_shares(np.array([0.7, 0.3, 0.0]), np.array([1.0, 0.5, 0.0]))[2] == 0  # unused role stays 0


def test_with_loss_tokens_the_built_mix_realizes_the_requested_loss_shares(tiny_cfg, tok):
    shares = {"mix.domain": 0.5, "mix.replay": 0.2, "mix.instruct": 0.3}
    data = built(tiny_cfg, tok, **shares, **{"mix.unit": "loss_tokens"})
    stage = data.plan.stages[0]
    assert stage.unit == "loss_tokens" and stage.loss_shares == {"domain": 0.5, "replay": 0.2, "instruct": 0.3}
    assert stage.loss_fractions[2] < 0.6  # chat trains on the answers only
    realized = data.realized_shares(len(data), unit="loss_tokens")
    for role in ROLES:
        assert realized[role] == pytest.approx(stage.loss_shares[role], abs=0.02), role
    assert data.realized_shares(len(data))["instruct"] > 0.45  # it takes far more of the input to get there
    assert data.requested_shares(len(data), unit="loss_tokens") == pytest.approx(stage.loss_shares)
    assert data.manifest["realized_loss"] == pytest.approx(realized)


def test_with_tokens_the_built_mix_realizes_the_input_shares_and_the_plan_estimates_the_loss(tiny_cfg, tok):
    data = built(tiny_cfg, tok, **{"mix.instruct": 0.3, "mix.replay": 0.2, "mix.domain": 0.5})
    stage = data.plan.stages[0]
    realized = data.realized_shares(len(data))
    for role in ROLES:
        assert abs(realized[role] - stage.shares[role]) <= 1 / len(data) + 1e-9, role
    loss = data.realized_shares(len(data), unit="loss_tokens")
    assert loss["instruct"] < 0.2 < stage.shares["instruct"]  # 30 % of the input is far less of the loss
    for role in ROLES:  # the plan's estimate from the sources' loss fraction
        assert loss[role] == pytest.approx(stage.loss_shares[role], abs=0.03), role
    assert data.manifest["realized"] == realized and data.manifest["realized_loss"] == loss


def test_every_stage_of_a_staged_run_targets_its_own_loss_shares(tiny_cfg, tok):
    stages = [{"name": "docs", "budget": 0.5, "mix": {"domain": 0.7, "replay": 0.3, "instruct": 0.0}},
              {"name": "chat", "budget": 0.5, "mix": {"domain": 0.2, "replay": 0.1, "instruct": 0.7}}]
    data = built(tiny_cfg, tok, 240, stages=stages, **{"mix.unit": "loss_tokens"})
    for s in data.plan.stages:
        assert s.unit == "loss_tokens" and s.loss_shares == stages[s.index]["mix"]
        realized = data.realized_shares(s.first_seq + s.sequences, start=s.first_seq, unit="loss_tokens")
        for role in ROLES:
            assert realized[role] == pytest.approx(s.loss_shares[role], abs=0.03), (s.name, role)
    text = describe(data.plan, tiny_cfg.with_overrides({"mix.unit": "loss_tokens"}))
    assert "of loss tokens (≈" in text and "% of input" in text


def test_stage_mixes_are_read_in_the_runs_unit(tiny_cfg):
    stages = [{"name": "only", "mix": {"domain": 0.5, "replay": 0.5, "instruct": 0.0, "unit": "tokens"}}]
    cfg = tiny_cfg.with_overrides({"stages": stages, "mix.unit": "loss_tokens"})
    assert cfg.stages[0].mix.unit == "loss_tokens"
    assert cfg.with_overrides({"mix.unit": "tokens"}).stages[0].mix.unit == "tokens"  # a saved config follows


def test_loss_tokens_without_a_counting_tokenizer_says_what_to_set(tiny_cfg, monkeypatch):
    monkeypatch.setattr(plan_module, "counter_for", lambda cfg: None)
    with pytest.raises(ConfigError, match="mix.unit=tokens"):
        plan(tiny_cfg.with_overrides({"mix.unit": "loss_tokens"}))


def test_the_budget_table_shows_input_and_loss_shares_per_row(tiny_cfg):
    for unit in ("tokens", "loss_tokens"):
        cfg = tiny_cfg.with_overrides({"mix.unit": unit})
        rows = forms.budget_rows(plan(cfg, count=counter_for(cfg)))
        assert sum(r["share of input tokens %"] for r in rows) == pytest.approx(100)
        assert sum(r["share of loss tokens % (≈)"] for r in rows) == pytest.approx(100)
        instruct = next(r for r in rows if r["role"] == "instruct")
        assert instruct["share of loss tokens % (≈)"] < instruct["share of input tokens %"]
    uncounted = forms.budget_rows(plan(tiny_cfg))
    assert all(r["share of loss tokens % (≈)"] is None for r in uncounted)


def test_the_mix_chart_names_its_unit_and_draws_loss_token_shares():
    from cptcore import charts, frames

    recs = [{"step": s, "tokens": s, "time": s, "name": n, "value": v, "attempt": 1} for s in (1, 2)
            for n, v in (("mix/instruct", 0.3), ("mix_loss/instruct", 0.05), ("mix_loss/requested/instruct", 0.06))]
    m = frames.metrics_from_records(recs)
    tokens, loss = charts.mix_figure(m, "step"), charts.mix_figure(m, "step", unit="loss_tokens")
    assert "input tokens" in tokens.layout.yaxis.title.text and "input tokens" in tokens.layout.title.text
    assert "loss tokens" in loss.layout.yaxis.title.text and "loss tokens" in loss.layout.title.text
    assert [list(t.y) for t in loss.data] == [[5.0, 5.0], [6.0, 6.0]]  # realized, then requested (dotted)
    assert [t.name for t in tokens.data] == ["instruct realized"]
