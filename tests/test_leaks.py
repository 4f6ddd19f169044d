"""The leak guard: a run never trains on its own evaluation items (held-out QA pairs and documents)."""
import subprocess
import sys
from pathlib import Path

import pytest

from cptcore.cli import main
from cptcore.data.leaks import check_leaks, normalize
from cptcore.data.sources import DataError
from cptcore.plan import plan
from cptcore.runs import Run, list_runs

from conftest import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
QA = [{"question": "Who founded Peimaevre Works?", "answer": "Vostousk Latryl"},
      {"question": "Which river flows through Zetrei?", "answer": "Thikresk"}]
HELDOUT = ["Zetrei sits on the river Thikresk, and its market sells lace from the hills.",
           "The harbour archive of Breskol keeps maps older than the town bridge."]


@pytest.fixture
def eval_cfg(tiny_cfg, tmp_path):
    """The tiny config with small local evaluation sets (tiny_cfg's training data holds none of them)."""
    qa = write_jsonl(tmp_path / "eval_qa.jsonl", QA)
    held = write_jsonl(tmp_path / "eval_docs.jsonl", [{"text": t} for t in HELDOUT])
    return tiny_cfg.with_overrides({"eval.qa_source": str(qa), "eval.domain_heldout": str(held)})


def refusal(cfg) -> str:
    with pytest.raises(DataError) as e:
        check_leaks(cfg, plan(cfg))
    assert len(str(e.value).splitlines()) == 1
    return str(e.value)


def test_normalize_lowercases_strips_punctuation_and_collapses_whitespace():
    assert normalize("  Who founded\tPeimaevre  Works?\n") == "who founded peimaevre works"
    assert normalize("Dru's pop. is 48,213!") == "drus pop is 48213"


def test_clean_sources_pass(eval_cfg):
    check_leaks(eval_cfg, plan(eval_cfg))


def test_a_chat_record_holding_a_heldout_qa_pair_is_refused_with_its_file_and_row(eval_cfg, tmp_path):
    chat = write_jsonl(tmp_path / "chat.jsonl", [
        {"prompt": "What is a lantern?", "response": "A lamp."},
        {"messages": [{"role": "user", "content": "which river flows through ZETREI"},
                      {"role": "assistant", "content": "Thikresk."}]}])
    msg = refusal(eval_cfg.with_overrides({"data.instruct": str(chat)}))
    assert msg.startswith(f"data.instruct {chat} row 2 contains held-out QA pair 2 of eval.qa_source")
    assert "1 of its 2 rows" in msg


def test_a_heldout_conversation_trained_as_instructions_is_refused(eval_cfg):
    cfg = eval_cfg.with_overrides({"data.instruct": "builtin:instruct_heldout"})
    assert "row 1 contains held-out conversation 1 of eval.instruct_heldout" in refusal(cfg)


def test_the_evaluation_qa_file_itself_is_refused_as_qa_data(eval_cfg):
    cfg = eval_cfg.with_overrides({"recipe": "cpt_then_it", "data.qa": str(eval_cfg.eval.qa_source.path)})
    assert "data.qa" in refusal(cfg) and "2 of its 2 rows" in refusal(cfg)


def test_a_document_holding_a_heldout_document_is_refused(eval_cfg, tmp_path):
    docs = write_jsonl(tmp_path / "docs.jsonl", [{"text": "Some other text about copper."},
                                                 {"text": "Intro.  " + HELDOUT[1].upper() + " And more."}])
    msg = refusal(eval_cfg.with_overrides({"data.domain": str(docs)}))
    assert f"data.domain {docs} row 2 contains held-out document 2 of eval.domain_heldout" in msg


def test_only_the_rows_trained_are_checked(eval_cfg, tmp_path):
    docs = write_jsonl(tmp_path / "docs.jsonl", [{"text": "Clean text about copper."}, {"text": HELDOUT[0]}])
    first_row = eval_cfg.with_overrides({"data.domain": {"path": str(docs), "max_rows": 1}})
    check_leaks(first_row, plan(first_row))
    refusal(eval_cfg.with_overrides({"data.domain": str(docs)}))


def test_bundled_eval_sets_as_training_data_are_refused_naming_the_bundled_file():
    from cptcore.config import RunConfig

    msg = refusal(RunConfig().with_overrides({"data.replay": "builtin:replay_heldout"}))
    assert msg.startswith("data.replay builtin:replay_heldout (cptcore/assets/replay/heldout.jsonl) row 1 "
                          "contains held-out document 1 of eval.replay_heldout")


def test_cpt_launch_refuses_before_a_run_exists(eval_cfg, tmp_path, capsys):
    path = eval_cfg.with_overrides({"data.domain": str(eval_cfg.eval.domain_heldout.path)}).save(tmp_path / "c.yaml")
    assert main(["launch", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "eval_docs.jsonl row 1 contains held-out document 1" in err
    assert list_runs(tmp_path / "runs") == []


def test_train_run_refuses_before_building_data_and_records_it(eval_cfg, tmp_path):
    from cptcore.train import train_run

    cfg = eval_cfg.with_overrides({"data.domain": str(eval_cfg.eval.domain_heldout.path)})
    run = Run.create(tmp_path / "runs", cfg)
    with pytest.raises(DataError, match="held-out document"):
        train_run(run, progress=False)
    assert run.status()["status"] == "failed"


def test_a_sweep_point_that_leaks_queues_nothing(eval_cfg, tmp_path):
    from cptcore.config import ConfigError
    from cptcore.runs.sweep import sweep

    held = str(eval_cfg.eval.domain_heldout.path)
    with pytest.raises(ConfigError, match=r"--grid point data.domain=.*held-out document"):
        sweep(eval_cfg, {"data.domain": [str(eval_cfg.data.domain[0].path), held]}, tmp_path / "runs")
    assert list_runs(tmp_path / "runs") == []


def test_the_bundled_demo_passes_fast_without_torch():
    code = ("import sys, time\n"
            "from cptcore.config import RunConfig\nfrom cptcore.plan import plan\n"
            "from cptcore.data.leaks import check_leaks\n"
            "cfg = RunConfig.load('experiments/demo.yaml')\n"
            "for recipe in ('cpt', 'pit_plus'):\n"
            "    c = cfg.with_overrides({'recipe': recipe})\n"
            "    t = time.perf_counter(); check_leaks(c, plan(c))\n"
            "    print(f'leak check, demo.yaml recipe {recipe}: {time.perf_counter() - t:.3f} s')\n"
            "print('torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    print("\n".join(lines[:-1]))
    assert lines[-1] == "False"
    assert all(float(l.split(": ")[1].split()[0]) < 5 for l in lines[:-1])  # ~0.1 s; generous for busy CI
