"""The mix advisor: the law recovers known parameters, refuses pure noise, recommends within the budget; the pilot
sweep and `cpt mixlaw` on a stored pilot group."""
import json

import numpy as np
import pytest

from cptcore import mixlaw as M
from cptcore.cli import main
from cptcore.runs import cpt_home, list_runs
from cptcore.runs.groups import read_group
from run_store import pilot_truth, write_pilot_group

SHARES = (0.0, 0.1, 0.2, 0.4, 0.6)


def synthetic_points(params, item_sd=1.0, seed=0, share_matters=True, n_items=60):
    """Points of a 'mean' metric: each run evaluated at 4 steps, items = the law's value + item noise."""
    rng = np.random.default_rng(seed)
    run, share, tokens, step, num = [], [], [], [], []
    for i, r in enumerate(SHARES):
        for st in (7, 14, 21, 28):
            y = M.law(params, r if share_matters else 0.3, st / 28)
            run.append(i), share.append(r), tokens.append(st * 1024), step.append(st)
            num.append(y + rng.normal(0, item_sd, n_items))
    num = np.array(num)
    zeros = np.zeros_like(num)
    return M.Points("eval/synthetic", "mean", np.array(run), np.array(share), np.array(tokens, float), np.array(step),
                    num, np.ones_like(num), zeros, np.ones_like(num))


# --- the law -----------------------------------------------------------------------------------
def test_the_share_term_is_continuous_through_b_zero():
    r = np.linspace(0, 1, 11)
    assert np.allclose(M.share_term(0.0, r), r)
    assert np.allclose(M.share_term(1e-6, r), r, atol=1e-6)
    assert np.allclose(M.share_term(2.0, r), (np.exp(2 * r) - 1) / 2)


def test_the_fit_recovers_known_parameters_from_noisy_points():
    true = (2.0, -6.0, -3.0, 0.7)
    fit = M.fit_metric(synthetic_points(true), 28 * 1024)
    c, k, b, alpha = fit["params"]
    assert alpha == pytest.approx(0.7, abs=0.1)
    assert b == pytest.approx(-3.0, abs=1.5)
    grid = np.linspace(0, 0.6, 13)
    assert np.abs(M.law(fit["params"], grid, 1.0) - M.law(true, grid, 1.0)).max() < 0.15  # item sd 1, n 60
    assert fit["usable"] and fit["reasons"] == []
    assert fit["loro"] < fit["loro_null"]
    lo, hi = fit["effect_ci"]
    true_effect = float(M.law(true, 0.6, 1.0) - M.law(true, 0.0, 1.0))
    assert lo < true_effect < hi < 0


def test_the_fit_without_noise_is_exact():
    true = (0.5, 1.5, 2.0, 1.0)
    fit = M.fit_metric(synthetic_points(true, item_sd=1e-9), 28 * 1024, n_boot=20)
    assert fit["params"] == pytest.approx(list(true), abs=1e-6)


def test_pure_noise_is_refused():
    """The share changes nothing: the advisor must say so, not draw a curve through noise."""
    refused = [not M.fit_metric(synthetic_points((2.0, -6.0, -3.0, 0.7), seed=s, share_matters=False), 28 * 1024,
                                n_boot=200, seed=s)["usable"] for s in range(20)]
    assert sum(refused) >= 18, f"{sum(refused)} of 20 pure-noise pilots refused"


# --- recommendation ----------------------------------------------------------------------------
@pytest.fixture
def pilot(tmp_path):
    home = tmp_path / "runs"
    write_pilot_group(home, SHARES)
    return home


def test_the_recommendation_respects_the_budget_and_is_the_best_share_within_it(pilot):
    result, rec = M.advise("pilot-fixture", pilot, "qa_mc_acc", {"general_kl": 0.06})
    share = rec["share"]
    assert 0.0 < share < 0.6
    fits = result["fits"]
    at = M.predict(fits["eval/general_kl"], share)
    assert at["low"][0] >= -0.06  # the pessimistic end of the KL prediction meets the budget
    just_below = M.predict(fits["eval/general_kl"], share - 0.6 / 100)
    assert just_below["low"][0] < -0.06  # a share just lower (more domain data) would break it
    # knowledge falls with replay here: the best feasible share is the lowest feasible one
    assert rec["feasible"][0] == pytest.approx(share)
    assert sum(rec["mix"].values()) == pytest.approx(1) and rec["mix"]["replay"] == pytest.approx(share, abs=1e-4)
    # the truth of the fixture agrees: the KL budget binds between replay 0.2 and 0.4
    assert -pilot_truth(0.2, 1)["eval/general_kl"] > 0.06 > -pilot_truth(0.4, 1)["eval/general_kl"]
    assert 0.2 < share < 0.4
    # a tighter budget needs more replay; an impossible one gets a refusal, not a share
    _, tighter = M.advise("pilot-fixture", pilot, "qa_mc_acc", {"general_kl": 0.03})
    assert tighter["share"] > share
    _, impossible = M.advise("pilot-fixture", pilot, "qa_mc_acc", {"general_kl": 0.001})
    assert impossible["share"] is None and "no share" in impossible["refused"][0]


def test_a_budget_on_a_noise_only_metric_is_refused(pilot):
    result, rec = M.advise("pilot-fixture", pilot, "qa_mc_acc", {"if_prompt_strict": 2})
    assert not result["fits"]["eval/if_prompt_strict"]["usable"]
    assert rec["share"] is None and rec["refused"][0].startswith("if_prompt_strict: ")


def test_the_fit_and_every_recommendation_are_saved_with_the_group(pilot):
    M.advise("pilot-fixture", pilot, "domain_ppl", {"replay_ppl": 20})
    M.advise("pilot-fixture", pilot, "qa_mc_acc", {"general_kl": 0.06})
    saved = json.loads((pilot / "groups" / "pilot-fixture" / "mixlaw.json").read_text())
    assert [r["objective"] for r in saved["recommendations"]] == ["eval/domain_ppl", "eval/qa_mc_acc"]
    assert saved["runs"] == [{"id": r.id, "share": r.config().mix.replay, "status": "completed",
                              "mix": r.config().mix.shares()} for r in list_runs(pilot)]
    assert set(saved["fits"]) == set(M.LAW_METRICS) and len(saved["fits"]["eval/domain_ppl"]["boot"]) == M.N_BOOT
    assert saved["base_config"] == read_group("pilot-fixture", pilot)["config"]


def test_a_new_evaluation_refits_and_an_unchanged_group_does_not(pilot):
    first = M.fit_group("pilot-fixture", pilot)
    assert M.fit_group("pilot-fixture", pilot)["created"] == first["created"]
    run = list_runs(pilot)[0]
    with open(run.metrics_path, "a") as fh:
        fh.write(json.dumps({"name": "train/loss", "value": 1.0, "step": 21, "tokens": 0, "time": 0}) + "\n")
    assert M.fit_group("pilot-fixture", pilot)["created"] > first["created"]


# --- pilot sweep and cpt mixlaw ----------------------------------------------------------------
def test_a_pilot_sweep_varies_one_share_and_records_the_group(tiny_cfg, no_spawn, capsys):
    path = tiny_cfg.save(cpt_home() / "configs" / "tiny.yaml")
    assert main(["sweep", str(path), "--pilot", "replay=0.4,0,0.1,0.2", "--name", "p1"]) == 0
    assert "cpt mixlaw p1" in capsys.readouterr().err
    runs = sorted(list_runs(cpt_home()), key=lambda r: r.config().mix.replay)
    assert len(runs) == 4 == len(no_spawn)
    group = read_group("p1")
    assert group["kind"] == "pilot" and group["role"] == "replay" and group["shares"] == [0, 0.1, 0.2, 0.4]
    assert sorted(group["runs"]) == sorted(r.id for r in runs)
    base = tiny_cfg.to_dict()
    for r, share in zip(runs, group["shares"]):
        cfg = r.config().to_dict()
        assert cfg["mix"]["replay"] == pytest.approx(share) and sum(r.config().mix.shares().values()) == pytest.approx(1)
        ratio = base["mix"]["domain"] / base["mix"]["instruct"]
        assert cfg["mix"]["domain"] == pytest.approx(ratio * cfg["mix"]["instruct"])  # the others rescaled
        assert {k: v for k, v in cfg.items() if k not in ("mix", "name")} == \
            {k: v for k, v in base.items() if k not in ("mix", "name")}  # nothing else differs
        assert r.meta()["group"] == "p1"


@pytest.mark.parametrize("pilot, message", [
    ("replay=0,0.1,0.2", "3 shares; a mixing law needs at least 4"),
    ("lr=1,2,3,4", "ROLE one of domain, replay, instruct"),
    ("replay=0,0.1,0.2,1", "replay=1: a share must be in [0, 1)"),
    ("replay=0,0.1,0.1,0.2", "a share is given twice"),
    ("replay=0,a,0.1,0.2", "shares must be numbers"),
])
def test_a_bad_pilot_is_refused_in_one_line_before_any_run(tiny_cfg, no_spawn, capsys, pilot, message):
    path = tiny_cfg.save(cpt_home() / "configs" / "tiny.yaml")
    assert main(["sweep", str(path), "--pilot", pilot]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert list_runs(cpt_home()) == [] and no_spawn == []


def test_cpt_mixlaw_prints_the_laws_and_the_recommendation(pilot, monkeypatch, capsys):
    monkeypatch.setenv("CPT_HOME", str(pilot))
    assert main(["mixlaw", "pilot-fixture", "--budget", "general_kl=0.06"]) == 0
    out = capsys.readouterr().out
    assert "recommended: replay = 0.3" in out and "general KL <= 0.06 nats/token" in out
    assert "if_prompt_strict" in out and "REFUSED" in out and "no better than the noise" in out
    assert main(["mixlaw", "pilot-fixture", "--budget", "general_kl=0.06", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rec = data["recommendation"]
    assert rec["share"] == pytest.approx(float(out.split("recommended: replay = ")[1].split()[0]), abs=5e-3)
    fit = data["fits"]["eval/domain_ppl"]
    assert {"params", "loro", "loro_null", "noise", "effect_ci", "usable"} <= set(fit) and "boot" not in fit


def test_cpt_mixlaw_launches_the_recommended_mix(pilot, monkeypatch, no_spawn, capsys):
    monkeypatch.setenv("CPT_HOME", str(pilot))
    from cptcore.runs import launch

    monkeypatch.setattr(launch, "check_startable", lambda cfg: None)  # the fixture's data are not on disk
    monkeypatch.setattr(launch, "check_leaks", lambda cfg, plan: None)
    assert main(["mixlaw", "pilot-fixture", "--budget", "general_kl=0.06", "--launch"]) == 0
    new = [r for r in list_runs(pilot) if r.id == no_spawn[0]][0]
    saved = json.loads((pilot / "groups" / "pilot-fixture" / "mixlaw.json").read_text())
    assert new.config().mix.replay == pytest.approx(saved["recommendations"][-1]["share"], abs=1e-4)
    assert new.meta()["tags"] == ["mixlaw:pilot-fixture"]


@pytest.mark.parametrize("args, message", [
    (["mixlaw", "nope"], "no group 'nope'"),
    (["mixlaw", "pilot-fixture", "--budget", "general_kl"], "expected METRIC=MAX_DECLINE"),
    (["mixlaw", "pilot-fixture", "--budget", "loss=1"], "the metric must be one of"),
    (["mixlaw", "pilot-fixture", "--launch", "--budget", "general_kl=0.0001"], "no recommendation to launch"),
])
def test_cpt_mixlaw_errors_are_one_line(pilot, monkeypatch, capsys, args, message):
    monkeypatch.setenv("CPT_HOME", str(pilot))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cpt_mixlaw_refuses_a_plain_sweep_group(tiny_cfg, no_spawn, capsys):
    path = tiny_cfg.save(cpt_home() / "configs" / "tiny.yaml")
    assert main(["sweep", str(path), "--grid", "train.lr=1e-3,2e-3", "--name", "lrs"]) == 0
    assert main(["mixlaw", "lrs"]) == 2
    assert "not a pilot" in capsys.readouterr().err


def test_pilots_that_evaluated_different_data_are_flagged(pilot, capsys, monkeypatch):
    runs = list_runs(pilot)
    for i, r in enumerate(runs):
        r.write_manifest({"evaluations": {"domain_ppl": "16 held-out documents" if i else "your file a.jsonl"}})
    monkeypatch.setenv("CPT_HOME", str(pilot))
    assert main(["mixlaw", "pilot-fixture"]) == 0
    out = capsys.readouterr().out
    assert "warning: domain_ppl measures different data" in out and "must evaluate the same data" in out


def test_a_pilot_with_a_grid_is_refused(tiny_cfg, no_spawn, capsys):
    path = tiny_cfg.save(cpt_home() / "configs" / "tiny.yaml")
    assert main(["sweep", str(path), "--pilot", "replay=0,0.1,0.2,0.4", "--grid", "train.lr=1e-3,2e-3"]) == 2
    assert "--pilot varies one share and nothing else" in capsys.readouterr().err and no_spawn == []
    assert main(["sweep", str(path)]) == 2
    assert "give --grid" in capsys.readouterr().err
