"""Shared fixtures: tiny data files and configs that train in seconds on a CPU."""
import json
import random

import pytest

from cptcore.config import RunConfig

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
def slow_steps(monkeypatch):
    """Each step of a launched run takes >= 0.25 s, so the fault lands mid-run however fast the machine is."""
    from cptcore.supervise import STEP_DELAY_ENV

    monkeypatch.setenv(STEP_DELAY_ENV, "0.25")
