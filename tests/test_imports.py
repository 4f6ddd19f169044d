"""Import-time checks: the dashboard's pages load no torch/transformers, and the module graph has no back edges."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "app.py", *sorted((ROOT / "views").glob("*.py"))]
HEAVY = ("torch", "transformers")


def top_level_imports(path: Path, package: str = "cptcore") -> set[str]:
    """Modules of `package` that a file imports at module level (not inside functions)."""
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == package}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == package:
            for a in node.names:  # `from cptcore import frames` imports the module cptcore.frames
                sub = f"{node.module}.{a.name}"
                is_module = (ROOT / Path(*sub.split("."))).with_suffix(".py").is_file() or \
                    (ROOT / Path(*sub.split("."))).is_dir()
                found.add(sub if is_module else node.module)
    return found


def test_the_page_import_list_is_parsed():
    mods = set().union(*(top_level_imports(p) for p in PAGES))
    assert {"cptcore.runs", "cptcore.frames", "cptcore.charts"} <= mods  # the parser sees what pages use


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_a_page_imports_no_torch_or_transformers(page):
    mods = sorted(top_level_imports(page))
    code = ("import importlib, json, sys\n"
            f"for m in {mods!r}:\n"
            "    importlib.import_module(m)\n"
            f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    loaded = json.loads(p.stdout.strip().splitlines()[-1])
    if loaded:  # name the module that pulls it in, for the fix
        culprits = []
        for m in mods:
            q = subprocess.run([sys.executable, "-c", f"import importlib, sys; importlib.import_module({m!r}); "
                                f"print(any(h in sys.modules for h in {list(HEAVY)!r}))"],
                               capture_output=True, text=True, cwd=ROOT, timeout=300)
            if q.stdout.strip().endswith("True"):
                culprits.append(m)
        pytest.fail(f"{page.name} imports {', '.join(loaded)} at import time, through {', '.join(culprits)}")


def test_runs_package_and_supervise_are_not_a_circle():
    """cptcore.runs never imports the trainer side at module level; advise never imports cli."""
    for path in (ROOT / "cptcore" / "runs").glob("*.py"):
        mods = top_level_imports(path) | {f"cptcore.{n.module}" for n in ast.parse(path.read_text()).body
                                          if isinstance(n, ast.ImportFrom) and n.level == 2 and n.module}
        assert not mods & {"cptcore.train", "cptcore.supervise", "cptcore.stream"}, path.name
        text = path.read_text()
        assert "\nimport torch" not in text and "\nfrom transformers" not in text, path.name
    advise = ast.parse((ROOT / "cptcore" / "advise.py").read_text())
    imported = {n.module for n in ast.walk(advise) if isinstance(n, ast.ImportFrom)}
    assert "cli" not in imported and "cptcore.cli" not in imported


def test_resume_and_stop_from_the_dashboard_load_no_torch(tmp_path):
    """Monitor's Stop and Resume buttons run in the server process: checkpoint checks must stay torch-free."""
    code = f"""
import json, sys, time
sys.path.insert(0, {str(ROOT / "tests")!r})
from cptcore.config import RunConfig
from cptcore.runs import Run, launch
from run_store import fake_checkpoint
run = Run.create({str(tmp_path)!r}, RunConfig(name="r"))
run.write_status("failed", started=time.time(), error="boom")
fake_checkpoint(run.checkpoints_dir, 2)
launch.spawn = lambda run, cwd=None, cfg=None: 0  # no training process: only the dashboard's side is measured
_, skipped = launch.resume(run)
assert run.status()["resumed_from"] == "checkpoint-2", run.status()
run.write_status("running", pid=None)
launch.request_stop(run)
print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1]) == []


def test_launch_and_data_pages_count_tokens_without_torch(tmp_path):
    """Token counting for the budget table and the Data page reads tokenizer.json only (cptcore/tokenizer.py)."""
    code = f"""
import json, os, sys
os.environ["CPT_HOME"] = {str(tmp_path)!r}
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({str(ROOT / "app.py")!r}, default_timeout=60).run()
at.switch_page("views/1_Launch.py").run()
at.selectbox(key="launch_recipe").set_value("smoke.yaml").run()
assert not at.exception, at.exception
passes = [d.value for d in at.dataframe if "passes" in d.value.columns][0]["passes"]
assert passes.notna().all(), passes  # counted: the tiny model's tokenizer is on disk
at.switch_page("views/4_Data.py").run()
at.text_input(key="data_model").set_value("tiny-random-llama").run()
assert not at.exception and at.metric[2].value != "—", at.metric[2].value
print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout.strip().splitlines()[-1]) == []
