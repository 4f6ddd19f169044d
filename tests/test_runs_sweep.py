"""Sweeps: grid parsing, mix rebalancing through MixConfig.rebalanced, and validation before anything is queued."""
import pytest

from cptcore.config import ConfigError, RunConfig
from cptcore.runs import list_runs
from cptcore.runs import sweep as S


# --- sweeps ---------------------------------------------------------------------------------------
def test_grid_values_split_on_commas_outside_brackets():
    grid = S.parse_grid(["mix.replay=0.05,0.1,0.25", "eval.evaluators=[domain_ppl,replay_ppl],[domain_ppl]"])
    assert grid == {"mix.replay": ["0.05", "0.1", "0.25"],
                    "eval.evaluators": ["[domain_ppl,replay_ppl]", "[domain_ppl]"]}
    with pytest.raises(ConfigError, match="section.key=v1,v2"):
        S.parse_grid(["lr=1,2"])


def test_sweep_rebalances_mix_shares_the_grid_does_not_name():
    cfg = RunConfig(name="s")  # mix 0.85 / 0.10 / 0.05
    configs = S.sweep_configs(cfg, S.parse_grid(["mix.replay=0.05,0.25", "train.lr=2e-5,1e-4"]))
    assert len(configs) == 4
    for c in configs:
        assert abs(c.mix.domain + c.mix.replay + c.mix.instruct - 1) < 1e-6
        assert c.mix.domain / c.mix.instruct == pytest.approx(0.85 / 0.05)  # the others keep their ratio
    assert {(c.mix.replay, c.train.lr) for c in configs} == {(0.05, 2e-5), (0.05, 1e-4), (0.25, 2e-5), (0.25, 1e-4)}
    assert len({c.name for c in configs}) == 4


@pytest.mark.parametrize("grid, message", [
    (["train.lrr=1e-4,2e-4"], "train.lrr: unknown field"),
    (["train.lr=1e-4,-1"], "train.lr=-1"),
    (["mix.replay=0.5,1.5"], "mix.replay=1.5"),
])
def test_bad_sweep_grid_is_rejected_before_anything_is_queued(tmp_path, grid, message):
    home = tmp_path / "runs"
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        S.sweep(RunConfig(name="s"), S.parse_grid(grid), home)
    assert list_runs(home) == []
