"""Shared fixtures: tiny data files and configs that train in seconds on a CPU."""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cptcore.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("river mountain company founded city people music science history harbour lantern copper "
         "orchard festival engineer bridge archive meadow").split()


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def data_files(tmp_path):
    rnd = random.Random(0)
    docs = write_jsonl(tmp_path / "docs.jsonl",
                       [{"text": " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(5, 400)))} for _ in range(40)])
    replay = tmp_path / "replay.txt"
    replay.write_text(" ".join(rnd.choice(WORDS) for _ in range(1500)), encoding="utf-8")
    chat = write_jsonl(tmp_path / "chat.jsonl",
                       [{"prompt": f"What is {rnd.choice(WORDS)}?", "response": f"It is a {rnd.choice(WORDS)}."}
                        for _ in range(30)])
    return {"domain": docs, "replay": replay, "instruct": chat}


@pytest.fixture
def tiny_cfg(data_files):
    return RunConfig.from_dict({
        "name": "tiny",
        "model": {"name": "tiny-random-llama"},
        "data": {role: str(p) for role, p in data_files.items()} | {"seq_len": 64},
        "mix": {"domain": 0.6, "replay": 0.3, "instruct": 0.1},
        "train": {"max_steps": 6, "batch_size": 4, "lr": 1e-3, "log_every_steps": 1},
        "eval": {"evaluators": []},
    })


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CPT_HOME", str(tmp_path / "runs"))


@pytest.fixture
def no_spawn(monkeypatch):
    """Launch creates the run exactly as in production but starts no training process."""
    from cptcore.runs import launch

    spawned = []
    monkeypatch.setattr(launch, "spawn", lambda run, cwd=None, cfg=None: spawned.append(run.id) or 0)
    return spawned


@pytest.fixture
def slow_steps(monkeypatch):
    """Each step of a launched run takes >= 0.25 s, so the fault lands mid-run however fast the machine is."""
    from cptcore.supervise import STEP_DELAY_ENV

    monkeypatch.setenv(STEP_DELAY_ENV, "0.25")


# --- the dashboard server (browser and server tests) ---------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str, every: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def server(tmp_path):
    """`streamlit run app.py` on a free local port with CPT_HOME in tmp_path; stopped (with its runs) after."""
    port, home = free_port(), tmp_path / "runs"
    # >= 0.05 s per step: the 400-step run stays live long enough to watch and stop on however fast a machine
    env = dict(os.environ, CPT_HOME=str(home), PYTHONUNBUFFERED="1", CPT_STEP_DELAY_S="0.05")
    log = open(tmp_path / "streamlit.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            return urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok"
        except OSError:
            return False

    try:
        wait_until(healthy, 60, "the streamlit server")
        yield url, home
    finally:
        for st in home.glob("*/launcher.json"):  # training processes this test started
            pgid = json.loads(st.read_text()).get("pgid")
            if pgid:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
