"""`cpt eval`: any model, folder or run; identical numbers on a second call; bad input named in one line."""
import json

import pytest

from cptcore.cli import main
from cptcore.runs import Run, cpt_home


def eval_json(capsys, *argv):
    assert main(["eval", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_is_identical_on_a_second_call(capsys, tmp_path):
    argv = ["--model", "tiny-random-llama", "--suite", "ifeval,coherence", "--limit", "3", "--out", str(tmp_path)]
    first, second = eval_json(capsys, *argv), eval_json(capsys, *argv)
    assert first == second
    assert set(first["scores"]) >= {"eval/if_prompt_strict", "eval/if_prompt_loose", "eval/if_inst_strict",
                                    "eval/if_inst_loose", "eval/coherence_distinct2"}
    assert all({"value", "n", "ci_low", "ci_high"} <= set(s) for s in first["scores"].values())
    assert len((tmp_path / "ifeval-step000000.jsonl").read_text().splitlines()) == 3


def test_eval_prints_a_table_with_n_and_ci(capsys):
    assert main(["eval", "--model", "tiny-random-llama", "--suite", "ifeval", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "eval/if_prompt_strict" in out and "95% CI" in out and "N" in out


@pytest.mark.parametrize("argv, message", [
    (["--suite", "ifeval,magic"], "--suite: unknown evaluator 'magic'"),
    (["--suite", "ifeval", "--limit", "500"], "--limit=500 but the bundled IFEval suite has 75 prompts"),
    (["--suite", "ifeval", "--limit", "0"], "--limit must be > 0"),
])
def test_bad_eval_input_is_one_line_and_exit_2(capsys, argv, message):
    assert main(["eval", "--model", "tiny-random-llama", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_unknown_model_is_named(capsys):
    assert main(["eval", "--model", "no-such-model", "--suite", "ifeval"]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_a_run_id_evaluates_that_runs_last_checkpoint(capsys, tiny_cfg, tmp_path):
    from cptcore.train import train

    heldout = tmp_path / "held.jsonl"
    heldout.write_text("".join(json.dumps({"text": f"harbour lantern {i} copper meadow"}) + "\n" for i in range(4)))
    cfg = tiny_cfg.with_overrides({"train.max_steps": 2, "eval.domain_heldout": str(heldout)})
    run = Run.create(cpt_home(), cfg)
    train(cfg, run, progress=False)
    capsys.readouterr()  # the trainer's own log lines
    out = eval_json(capsys, "--model", run.id, "--suite", "domain_ppl", "--limit", "4")
    assert out["resolved"].startswith(f"run {run.id}") and out["scores"]["eval/domain_ppl"]["n"] == 4
