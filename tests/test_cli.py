"""The `cpt` command: bad input is one line and exit code 2; `cpt runs` lists what the run folders say."""
import json
import subprocess
import os
import sys
import time

import pytest

from cptcore.cli import main
from cptcore.config import RunConfig
from cptcore.runs import Run, list_runs
from cptcore.runs import liveness
from cptcore.runs.metrics import MetricWriter

PY = [sys.executable, "-c"]


def sleeper(seconds=60):
    """A stand-in for a training process: its own session, like a launched run."""
    return subprocess.Popen([*PY, f"import time; time.sleep({seconds})"], start_new_session=True)


def running_run(home, pid):
    run = Run.create(home, RunConfig(name="live"))
    run.write_status("running", pid=pid, started=time.time(), host=liveness.HOST)
    return run


# --- CLI: bad input is one line and a non-zero exit ----------------------------------------------
def finished_run(home, status):
    run = Run.create(home, RunConfig(name=status))
    run.write_status(status, started=time.time())
    return run


S = "experiments/smoke.yaml"


@pytest.mark.parametrize("argv, message", [
    (["status", "nope"], "unknown run id 'nope'"),
    (["logs", "nope"], "unknown run id 'nope'"),
    (["stop", "nope"], "unknown run id 'nope'"),
    (["resume", "nope"], "unknown run id 'nope'"),
    (["delete", "nope", "--yes"], "unknown run id 'nope'"),
    (["stop", "{completed}"], "already completed: nothing to stop"),
    (["resume", "{completed}"], "already completed: nothing to resume"),
    (["delete", "{running}"], "is running: stop it first"),
    (["sweep", "experiments/smoke.yaml", "--grid", "train.nope=1,2"], "train.nope: unknown field"),
    (["sweep", "experiments/smoke.yaml", "--grid", "train.max_steps=10,0"], "train.max_steps=0"),
    (["launch", "experiments/smoke.yaml", "--set", "launch.launcher=mpi"], "launch.launcher"),
    (["launch", "missing.yaml"], "missing.yaml: config file not found"),
    (["train", "missing.yaml"], "missing.yaml: config file not found"),
    (["sweep", "missing.yaml", "--grid", "train.lr=1,2"], "missing.yaml: config file not found"),
    (["metrics", "nope"], "unknown run id 'nope'"),
    (["delete", "2", "--yes"], "unknown run id '2'"),        # a digit of some id is not that run
    (["delete", "?", "--yes"], "invalid run id '?'"),         # nor is a glob
    (["status", "*"], "invalid run id '*'"),
    (["sweep", "experiments/smoke.yaml", "--grid", "mix.replay=1.5"], "mix.replay=1.5"),
    # data and model errors: `cpt launch` (and train, plan) refuse them before anything is queued
    (["launch", S, "--set", "data.domain=typo-docs.jsonl"], "typo-docs.jsonl: file not found"),
    (["launch", S, "--set", "model.name=typo-model"], "model.name: unknown model 'typo-model'"),
    (["launch", S, "--set", "data.seq_len=100000"], "exceeds the context of tiny-random-llama (2,048 tokens)"),
    (["train", S, "--set", "data.seq_len=100000"], "exceeds the context of tiny-random-llama (2,048 tokens)"),
    (["launch", S, "--set", "train.max_steps=1000000000"], "more than one run plans"),
    (["launch", S, "--set", "progressive.enabled=true", "--set", "train.max_steps=10000000"],
     "progressive.enabled schedules each of its 80,000,000 sequences"),
    (["launch", S, "--set", "train.lr=-1"], "smoke.yaml with --set: train.lr: Input should be greater than 0"),
    (["launch", S, "--set", "train.batch_size=0"], "train.batch_size: Input should be greater than 0"),
    (["launch", "{empty}"], "the config file is empty"),
    (["plan", "README.md"], "README.md line 6: invalid YAML"),
    (["launch", S, "--set", "data.domain={bad}"], "bad.jsonl:2: malformed JSON"),
    (["launch", S, "--set", "data.domain={latin}"], "latin.txt: not UTF-8 text"),
    (["launch", S, "--set", "data.qa={bad}", "--set", "recipe=pit"], "recipe pit: data.qa: "),
    (["launch", S, "--set", "data.replay=builtin:nope"], "unknown bundled dataset 'builtin:nope'"),
    (["launch", S, "--set", "eval.evaluators=[nope]"], "eval.evaluators: unknown evaluator 'nope'"),
    (["plan", S, "--set", "recipe=nope"], "recipe: unknown recipe"),
    (["plan", S, "--set", "mix.domain=0", "--set", "mix.replay=0", "--set", "mix.instruct=0"], "must sum to 1"),
    (["launch", S, "--set", "nope"], "--set 'nope': expected section.key=value"),
    (["sweep", S, "--grid", "train.lr=abc"], "--grid point train.lr=abc"),
    (["score-if", "{bad}"], "bad.jsonl:2: malformed JSON"),
    (["eval", "--model", "typo-model", "--suite", "ifeval"], "--model: 'typo-model' is not a built-in model"),
])
def test_bad_input_gives_one_line_and_a_nonzero_exit(tmp_path, monkeypatch, capsys, argv, message):
    home = tmp_path / "runs"
    monkeypatch.setenv("CPT_HOME", str(home))
    done = finished_run(home, "completed")
    live = sleeper()
    try:
        running = running_run(home, live.pid)
        (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": broken\n')
        (tmp_path / "empty.yaml").write_text("")
        (tmp_path / "latin.txt").write_bytes(b"\xff\xfe caf\xe9")
        files = {k: str(tmp_path / f) for k, f in (("bad", "bad.jsonl"), ("empty", "empty.yaml"), ("latin", "latin.txt"))}
        argv = [a.format(completed=done.id, running=running.id, **files) for a in argv]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
        assert len(list_runs(home)) == 2  # nothing queued, nothing deleted
    finally:
        live.kill()
        live.wait()


def test_delete_asks_first_and_removes_a_finished_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CPT_HOME", str(tmp_path))
    run = finished_run(tmp_path, "failed")
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["delete", run.id]) == 1 and run.dir.exists()
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    assert main(["delete", run.id]) == 0 and not run.dir.exists()




# --- cpt runs ---------------------------------------------------------------------------------------
def test_runs_json_lists_each_run_with_its_status_and_final_metrics(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CPT_HOME", str(tmp_path))
    done = Run.create(tmp_path, RunConfig(name="done").with_overrides({"mix.replay": 0.2, "mix.domain": 0.75}))
    w = MetricWriter(done.metrics_path)
    w.write("train/loss", 2.5, 1, 64)
    w.write("train/loss", 2.0, 2, 128)
    w.close()
    done.write_status("completed", step=2)
    queued = Run.create(tmp_path, RunConfig(name="waiting"))
    assert main(["runs", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[done.id]["status"] == "completed" and rows[queued.id]["status"] == "queued"
    assert rows[done.id]["final_metrics"] == {"train/loss": 2.0} and rows[done.id]["step"] == 2
    assert rows[done.id]["mix"] == {"domain": 0.75, "replay": 0.2, "instruct": 0.05}
    assert main(["runs"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["RUN", "STATUS", "STEP", "MODEL", "MIX"]
    assert any(line.startswith(done.id) and "completed" in line and "0.75/0.20/0.05" in line for line in out)


def test_runs_marks_a_run_whose_process_died_as_failed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CPT_HOME", str(tmp_path))
    p = subprocess.Popen([*PY, "pass"])
    p.wait()
    run = running_run(tmp_path, p.pid)
    assert main(["runs", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["id"] == run.id and row["status"] == "failed" and "ended without a final status" in row["error"]


def test_runs_on_an_empty_home_says_how_to_start(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CPT_HOME", str(tmp_path / "none"))
    assert main(["runs"]) == 0 and "no runs in" in capsys.readouterr().out
    assert main(["runs", "--json"]) == 0 and json.loads(capsys.readouterr().out) == []


def test_an_unexpected_error_is_one_line_naming_the_traceback_file(tmp_path, monkeypatch, capsys):
    import cptcore.cli as cli

    monkeypatch.setenv("CPT_HOME", str(tmp_path))
    monkeypatch.setattr(cli, "cmd_runs", lambda args: (_ for _ in ()).throw(TypeError("boom")))
    assert cli.main(["runs"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: unexpected TypeError: boom (traceback in ")
    (log,) = (tmp_path / ".logs").glob("cli-*.log")
    assert "Traceback" in log.read_text() and "TypeError: boom" in log.read_text()


def test_a_closed_pipe_ends_quietly(tmp_path):
    import subprocess

    home = tmp_path / "runs"
    for i in range(150):  # ~150 kB of JSON: more than a pipe holds, so the writer meets the closed pipe
        Run.create(home, RunConfig(name=f"r{i}"))
    # `cpt runs --json | head -c 10`: read 10 bytes, then close the pipe as head does
    proc = subprocess.Popen([sys.executable, "-m", "cptcore", "runs", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "CPT_HOME": str(home)})
    head = proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and err == "" and len(head) == 10


@pytest.mark.parametrize("override", ["data.domain=typo-docs.jsonl", "model.name=typo-model"])
def test_a_typo_in_cpt_train_leaves_no_failed_run_behind(tmp_path, monkeypatch, capsys, override):
    monkeypatch.setenv("CPT_HOME", str(tmp_path / "runs"))
    assert main(["train", "experiments/smoke.yaml", "--no-progress", "--set", override]) == 2
    assert "typo" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or list_runs(tmp_path / "runs") == []
