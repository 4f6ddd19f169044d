"""Fault injection, end to end: real background runs of experiments/smoke.yaml through the `cpt` command line,
hit by the faults users hit, then resumed. Prints one row per case: records lost, the status the fault left,
the final status, and the message the user saw.

    python experiments/benchmarks/fault_injection.py [--steps 20] [--keep]

Cases
- disk-full: CPT_HOME on a 48 MiB tmpfs (root: a real full disk; otherwise a size-capped folder is not
  possible, so the case is skipped) filled with a ballast file mid-run; the ballast is removed and the run resumed.
- torn-line: a stopped run's stream ends in `{"s` without a newline (what a full disk leaves); then resumed.
- nan: a local model folder with NaN weights (as a diverged or badly converted model): the run must fail at a
  named step, never end "completed" with loss 0.0.
- double-resume: two `cpt resume` processes started together on one stopped run: one resumes, one refuses.
- deleted-folder: the run was launched from a folder that is deleted before `cpt resume` (builtin data: it
  resumes); and the same with a relative data path (it must refuse clearly and stay stopped).
- kill-9: the training process is killed mid-run, then resumed.

"Lost records" counts the train/loss steps 1..max_steps missing from the latest-attempt view of the stream,
plus lines the reader reports as malformed (event/malformed_line): 0 means every step is there exactly once.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "experiments" / "smoke.yaml"


def cpt(home: Path, *args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "CPT_HOME": str(home), **(env or {})}
    return subprocess.run([sys.executable, "-m", "cptcore.cli", *args], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=600)


def status(home: Path, run_id: str) -> dict:
    out = cpt(home, "status", run_id, "--json")
    return json.loads(out.stdout) if out.returncode == 0 else {"status": "?", "error": out.stderr.strip()}


def wait(home: Path, run_id: str, done, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = status(home, run_id)
        if done(st):
            return st
        time.sleep(0.5)
    raise RuntimeError(f"{run_id}: timed out, status {status(home, run_id)}")


def ended(st: dict) -> bool:
    return st.get("status") in ("completed", "failed", "stopped")


def logged_step(home: Path, run_id: str) -> int:
    from cptcore.runs.metrics import parse_records

    path = home / run_id / "metrics.jsonl"
    recs = parse_records(path.read_bytes()) if path.exists() else []
    return max([r["step"] for r in recs if r["name"] == "train/loss"], default=0)


def lost_records(home: Path, run_id: str, steps: int) -> tuple[int, int]:
    """(train/loss steps missing or duplicated in the latest-attempt view, malformed lines reported)."""
    from cptcore.runs.metrics import MALFORMED, latest_attempt, parse_records

    recs = parse_records((home / run_id / "metrics.jsonl").read_bytes())
    loss = [r["step"] for r in latest_attempt(recs) if r["name"] == "train/loss"]
    missing = len(set(range(1, steps + 1)) - set(loss)) + (len(loss) - len(set(loss)))
    return missing, sum(r["name"] == MALFORMED for r in recs)


def launch(home: Path, steps: int, *sets: str, cwd: Path = ROOT, config: Path = SMOKE) -> str:
    out = cpt(home, "launch", str(config), "--set", f"train.max_steps={steps}", *[x for s in sets for x in
              ("--set", s)], cwd=cwd, env={"CPT_STEP_DELAY_S": "0.25"})
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return out.stdout.split()[0]


def stop_at(home: Path, run_id: str, step: int) -> dict:
    wait(home, run_id, lambda st: ended(st) or logged_step(home, run_id) >= step)
    cpt(home, "stop", run_id)
    return wait(home, run_id, ended)


def resume(home: Path, run_id: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return cpt(home, "resume", run_id, cwd=cwd, env={"CPT_STEP_DELAY_S": "0"})


def row(case: str, home: Path, run_id: str, steps: int, after_fault: dict, message: str) -> dict:
    final = wait(home, run_id, ended)
    missing, malformed = lost_records(home, run_id, steps) if final["status"] == "completed" else (None, None)
    return {"case": case, "lost": missing, "malformed": malformed, "after_fault": after_fault.get("status"),
            "final": final["status"], "message": message}


# --- the cases -------------------------------------------------------------------------------
def disk_full(base: Path, steps: int) -> dict:
    mount = base / "tmpfs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        return {"case": "disk-full", "lost": None, "malformed": None, "after_fault": "-", "final": "-",
                "message": "skipped: mounting a tmpfs needs root"}
    try:
        home = mount / "runs"
        run_id = launch(home, steps, "train.save_every_steps=4")
        wait(home, run_id, lambda st: ended(st) or logged_step(home, run_id) >= steps // 2)
        ballast = mount / "ballast"
        subprocess.run(["dd", "if=/dev/zero", f"of={ballast}", "bs=1M"], capture_output=True)  # until ENOSPC
        after = wait(home, run_id, ended, timeout=120)
        listing = cpt(home, "runs")  # must not crash on the full disk
        ballast.unlink()
        out = resume(home, run_id)
        msg = after.get("error", "") + ("" if listing.returncode == 0 else f" | cpt runs failed: {listing.stderr}")
        if out.returncode != 0:
            msg += f" | resume: {out.stderr.strip()}"
        r = row("disk-full", home, run_id, steps, after, msg)
        return r
    finally:
        time.sleep(0.5)
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def torn_line(base: Path, steps: int) -> dict:
    home = base / "torn"
    run_id = launch(home, steps)
    after = stop_at(home, run_id, steps // 2)
    with open(home / run_id / "metrics.jsonl", "a") as fh:
        fh.write('{"s')  # a write cut off by a full disk or kill -9
    out = resume(home, run_id)
    final = wait(home, run_id, ended)
    from cptcore.runs.metrics import parse_records

    repaired = [r["message"] for r in parse_records((home / run_id / "metrics.jsonl").read_bytes())
                if r["name"] == "event/stream_repaired"]
    msg = (repaired[0] if repaired else "no repair event") + ("" if out.returncode == 0 else f" | {out.stderr}")
    return row("torn-line", home, run_id, steps, after, msg) | {"final": final["status"]}


def nan(base: Path, steps: int) -> dict:
    """A local model folder whose final norm is NaN (what a diverged or badly converted model is)."""
    import torch

    from cptcore.config import ModelConfig
    from cptcore.models import load_model

    model, tok = load_model(ModelConfig(name="tiny-random-llama"))
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    folder = base / "nan-model"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    home = base / "nan"
    run_id = launch(home, steps, f"model.name={folder}")
    final = wait(home, run_id, ended)
    return {"case": "nan", "lost": None, "malformed": None, "after_fault": final["status"],
            "final": final["status"], "message": final.get("error", "")}


def double_resume(base: Path, steps: int) -> dict:
    home = base / "double"
    run_id = launch(home, steps)
    after = stop_at(home, run_id, steps // 2)
    e = {**os.environ, "CPT_HOME": str(home), "CPT_STEP_DELAY_S": "0"}
    procs = [subprocess.Popen([sys.executable, "-m", "cptcore.cli", "resume", run_id], cwd=ROOT, env=e,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    ok = sum(rc == 0 for rc, _, _ in outs)
    refusal = next((err.strip().splitlines()[-1] for rc, _, err in outs if rc != 0), "both resumed")
    r = row("double-resume", home, run_id, steps, after, f"{ok} of 2 resumed; the other: {refusal}")
    attempts = status(home, run_id).get("attempt")
    r["message"] += f" (attempts: {attempts})"
    return r


def deleted_folder(base: Path, steps: int, relative: bool) -> dict:
    home = base / ("deleted-rel" if relative else "deleted")
    folder = Path(tempfile.mkdtemp(dir=base))
    config = SMOKE
    if relative:
        (folder / "docs.txt").write_text("\n\n".join(f"Document {i} about the river Velmora and its "
                                                     f"bridges, number {i}." for i in range(40)), encoding="utf-8")
        config = folder / "mine.yaml"
        config.write_text(SMOKE.read_text().replace("builtin:knowledge_docs", "docs.txt"), encoding="utf-8")
    run_id = launch(home, steps, cwd=folder, config=config)
    after = stop_at(home, run_id, steps // 2)
    shutil.rmtree(folder)
    out = resume(home, run_id, cwd=base)
    msg = "resumed" if out.returncode == 0 else out.stderr.strip().splitlines()[-1]
    case = "deleted-folder (relative data)" if relative else "deleted-folder (builtin data)"
    if relative:
        st = status(home, run_id)
        return {"case": case, "lost": None, "malformed": None, "after_fault": after["status"], "final": st["status"],
                "message": f"exit {out.returncode}: {msg}"}
    return row(case, home, run_id, steps, after, msg)


def kill_9(base: Path, steps: int) -> dict:
    home = base / "kill"
    run_id = launch(home, steps, "train.save_every_steps=4")
    wait(home, run_id, lambda st: logged_step(home, run_id) >= steps // 2)
    os.kill(status(home, run_id)["pid"], signal.SIGKILL)
    after = wait(home, run_id, lambda st: st.get("status") != "running", timeout=60)
    out = resume(home, run_id)
    return row("kill-9", home, run_id, steps, after, after.get("error", "") +
               ("" if out.returncode == 0 else f" | {out.stderr}"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--keep", action="store_true", help="keep the runs' folder")
    args = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="cpt-faults-"))
    t0 = time.time()
    rows = []
    cases = [("disk-full", lambda: disk_full(base, args.steps)), ("torn-line", lambda: torn_line(base, args.steps)),
             ("nan", lambda: nan(base, args.steps)), ("double-resume", lambda: double_resume(base, args.steps)),
             ("deleted-folder", lambda: deleted_folder(base, args.steps, relative=False)),
             ("deleted-folder-rel", lambda: deleted_folder(base, args.steps, relative=True)),
             ("kill-9", lambda: kill_9(base, args.steps))]
    for name, case in cases:
        try:
            rows.append(case())
        except Exception as e:  # noqa: BLE001 - a case that breaks the harness is a row, not the end
            rows.append({"case": name, "lost": None, "malformed": None, "after_fault": "?", "final": "?",
                         "message": f"harness error: {type(e).__name__}: {e}"})
        print(f"  {rows[-1]['case']}: done ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    print(f"\nFault injection: experiments/smoke.yaml, {args.steps} steps per run, CPT_STEP_DELAY_S=0.25 "
          f"({time.time() - t0:.0f} s)\n")
    print("| case | lost records | malformed lines | status after the fault | final status | message |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        lost = "-" if r["lost"] is None else r["lost"]
        bad = "-" if r["malformed"] is None else r["malformed"]
        print(f"| {r['case']} | {lost} | {bad} | {r['after_fault']} | {r['final']} | {r['message']} |")
    if args.keep:
        print(f"\nruns kept under {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
