"""Launch plumbing: grids, queue order, liveness, stop timeouts, checkpoint checks, Slurm scripts, CLI errors."""
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cptcore import launch as L
from cptcore.cli import main
from cptcore.config import ConfigError, RunConfig
from cptcore.runs import Run, list_runs

PY = [sys.executable, "-c"]


def run_cli(*argv):
    """The real `cpt` command in a subprocess: exit code, stdout, stderr."""
    p = subprocess.run([sys.executable, "-m", "cptcore", *argv], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def sleeper(seconds=60):
    """A stand-in for a training process: its own session, like a launched run."""
    return subprocess.Popen([*PY, f"import time; time.sleep({seconds})"], start_new_session=True)


# --- sweeps ---------------------------------------------------------------------------------------
def test_grid_values_split_on_commas_outside_brackets():
    grid = L.parse_grid(["mix.replay=0.05,0.1,0.25", "eval.evaluators=[domain_ppl,replay_ppl],[domain_ppl]"])
    assert grid == {"mix.replay": ["0.05", "0.1", "0.25"],
                    "eval.evaluators": ["[domain_ppl,replay_ppl]", "[domain_ppl]"]}
    with pytest.raises(ConfigError, match="section.key=v1,v2"):
        L.parse_grid(["lr=1,2"])


def test_sweep_rebalances_mix_shares_the_grid_does_not_name():
    cfg = RunConfig(name="s")  # mix 0.85 / 0.10 / 0.05
    configs = L.sweep_configs(cfg, L.parse_grid(["mix.replay=0.05,0.25", "train.lr=2e-5,1e-4"]))
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
        L.sweep(RunConfig(name="s"), L.parse_grid(grid), home)
    assert list_runs(home) == []


# --- queue ----------------------------------------------------------------------------------------
WAITER = """
import sys, time
from cptcore.runs import Run
from cptcore.launch import wait_for_slot
run = Run.open(sys.argv[1], sys.argv[2])
slot = wait_for_slot(run, run.config(), poll_s=0.05)
if slot is None:
    sys.exit(3)
with open(sys.argv[3], "a") as f:
    f.write(f"start {run.id} {time.time()}\\n")
time.sleep(0.4)
with open(sys.argv[3], "a") as f:
    f.write(f"end {run.id} {time.time()}\\n")
"""


def start_waiter(home, run, log, ticket=None, body=WAITER):
    """A queued process as spawn() starts it: holding the ticket taken at launch time."""
    env = dict(os.environ)
    fds = ()
    if ticket is not None:
        env[L.TICKET_ENV] = f"{ticket[0].fileno()}:{ticket[1]}"
        fds = (ticket[0].fileno(),)
    proc = subprocess.Popen([*PY, body, str(home), run.id, str(log)], env=env, pass_fds=fds)
    if ticket is not None:
        ticket[0].close()
    return proc


def test_queued_runs_take_the_slot_one_at_a_time_in_launch_order(tmp_path):
    home, log = tmp_path / "runs", tmp_path / "order.txt"
    runs = [Run.create(home, RunConfig(name=f"q{i}")) for i in range(4)]
    tickets = [L.take_ticket(r, r.config()) for r in runs]  # launch order
    # processes start in reverse order: the launch order still decides
    procs = {r.id: start_waiter(home, r, log, t) for r, t in reversed(list(zip(runs, tickets)))}
    time.sleep(0.2)
    procs[runs[1].id].kill()  # a run that dies in the queue must not block the ones behind it
    for p in procs.values():
        p.wait(timeout=60)
    events = [line.split() for line in log.read_text().splitlines()]
    starts = [e[1] for e in events if e[0] == "start"]
    assert starts == [runs[0].id, runs[2].id, runs[3].id]
    times = [float(e[2]) for e in events]
    assert [e[0] for e in events] == ["start", "end"] * 3 and times == sorted(times)  # never two at once


def test_a_queued_run_stops_without_starting_when_asked(tmp_path):
    home = tmp_path / "runs"
    first, second = Run.create(home, RunConfig(name="a")), Run.create(home, RunConfig(name="b"))
    holder = start_waiter(home, first, tmp_path / "log", body=WAITER.replace("time.sleep(0.4)", "time.sleep(30)"))
    deadline = time.time() + 30
    while not (tmp_path / "log").exists() and time.time() < deadline:
        time.sleep(0.05)
    waiter = start_waiter(home, second, tmp_path / "log")
    time.sleep(1)
    assert L.refresh(second)["status"] == "queued"
    L.request_stop(second)
    assert waiter.wait(timeout=30) == 3
    assert second.status()["status"] == "stopped"
    holder.kill()
    holder.wait()


# --- liveness -------------------------------------------------------------------------------------
def running_run(home, pid, since=None, **fields):
    run = Run.create(home, RunConfig(name="live"))
    run.write_status("running", pid=pid, started=since if since is not None else time.time(), host=L.HOST, **fields)
    return run


def test_a_run_whose_process_died_is_marked_failed_on_the_next_look(tmp_path):
    p = subprocess.Popen([*PY, "pass"])
    p.wait()
    run = running_run(tmp_path, p.pid)
    run.log_path.write_text("step 1\nstep 2\n")
    st = L.look(tmp_path)[0]
    assert st["status"] == "failed" and "ended without a final status" in st["error"]
    assert run.status()["log_tail"] == ["step 1", "step 2"]


def test_a_reused_pid_does_not_keep_a_dead_run_alive(tmp_path):
    proc = sleeper()
    try:
        run = running_run(tmp_path, proc.pid, since=time.time() - 3600)  # the pid was recorded an hour ago
        assert L.refresh(run)["status"] == "failed"
        alive = running_run(tmp_path, proc.pid)
        assert L.refresh(alive)["status"] == "running"
    finally:
        proc.kill()
        proc.wait()


def test_out_of_memory_is_named_in_the_error(tmp_path):
    p = subprocess.Popen([*PY, "pass"])
    p.wait()
    run = running_run(tmp_path, p.pid)
    run.log_path.write_text("loading\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
    assert L.refresh(run)["error"].startswith("out of memory: torch.OutOfMemoryError")


def test_a_queued_run_that_never_started_fails_after_a_grace_period(tmp_path, monkeypatch):
    run = Run.create(tmp_path, RunConfig(name="q"))
    assert L.refresh(run)["status"] == "queued"
    monkeypatch.setattr(L, "START_GRACE_S", -1)
    assert "never started" in L.refresh(run)["error"]


def test_remote_and_slurm_runs_are_judged_by_heartbeat(tmp_path, monkeypatch):
    run = Run.create(tmp_path, RunConfig(name="remote"))
    (run.dir / "launcher.json").write_text(json.dumps({"launcher": "slurm"}))
    assert L.refresh(run)["status"] == "queued"  # waiting in the Slurm queue
    run.write_status("running", pid=1, host="node-17", heartbeat=time.time())
    assert L.refresh(run)["status"] == "running"  # pid 1 here says nothing about node-17
    run.write_status("running", heartbeat=time.time() - L.REMOTE_STALE_S - 5)
    assert "no heartbeat from node-17" in L.refresh(run)["error"]


def test_a_stop_past_its_timeout_kills_the_process_group(tmp_path):
    proc = sleeper()
    run = running_run(tmp_path, proc.pid)
    (run.dir / "launcher.json").write_text(json.dumps({"pid": proc.pid, "pgid": proc.pid, "host": L.HOST}))
    L.request_stop(run, timeout_s=0)
    time.sleep(0.05)
    st = L.refresh(run)
    assert st["status"] == "stopped" and "process killed" in st["note"]
    assert proc.wait(timeout=10) != 0


# --- checkpoints ----------------------------------------------------------------------------------
def fake_checkpoint(folder: Path, step: int) -> Path:
    from safetensors.numpy import save_file

    ck = folder / f"checkpoint-{step}"
    ck.mkdir(parents=True)
    save_file({"w": np.ones((64, 64), dtype=np.float32)}, str(ck / "model.safetensors"))
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        with zipfile.ZipFile(ck / name, "w") as z:
            z.writestr("data.pkl", os.urandom(4096))
    (ck / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return ck


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_checkpoint_check_names_what_is_wrong(tmp_path):
    from cptcore.supervise import check_checkpoint

    ok = fake_checkpoint(tmp_path, 1)
    assert check_checkpoint(ok) is None
    partial = fake_checkpoint(tmp_path, 2)
    (partial / "trainer_state.json").unlink()
    assert "partial" in check_checkpoint(partial)
    cut = fake_checkpoint(tmp_path, 3)
    truncate(cut / "model.safetensors")
    assert "model.safetensors is truncated" in check_checkpoint(cut)
    opt = fake_checkpoint(tmp_path, 4)
    truncate(opt / "optimizer.pt", 0.9)
    assert "optimizer.pt is truncated or corrupt" in check_checkpoint(opt)


def test_resume_falls_back_past_unusable_checkpoints_or_says_it_cannot(tmp_path):
    run = Run.create(tmp_path, RunConfig(name="ck"))
    run.write_status("failed", started=time.time(), error="boom")
    good = fake_checkpoint(run.checkpoints_dir, 2)
    bad = fake_checkpoint(run.checkpoints_dir, 4)
    truncate(bad / "model.safetensors")
    chosen, skipped = L.pick_checkpoint(run)
    assert chosen == good and skipped[0][0] == bad and "truncated" in skipped[0][1]
    truncate(good / "optimizer.pt", 0.9)
    with pytest.raises(L.RunError, match=r"no usable checkpoint \(checkpoint-4: model.safetensors is truncated"):
        L.pick_checkpoint(run)


def test_resume_without_any_checkpoint_starts_again_from_step_0(tmp_path, monkeypatch):
    run = Run.create(tmp_path, RunConfig(name="ck"))
    run.write_status("stopped", started=time.time(), attempt=1, stop_requested=True)
    spawned = []
    monkeypatch.setattr(L, "spawn", lambda r, cwd=None: spawned.append(r.id))
    L.resume(run)
    st = run.status()
    assert spawned == [run.id] and st["status"] == "queued" and st["resumed_from"] is None
    assert st["stop_requested"] is None and run.config().train.resume_from == "last"


# --- scale-out ------------------------------------------------------------------------------------
def test_distributed_commands_run_the_same_entry_point(tmp_path):
    cfg = RunConfig().with_overrides(["launch.launcher=torchrun", "launch.nproc=2"])
    run = Run.create(tmp_path, cfg)
    cmd = L.distributed_command(cfg, run)
    assert cmd[1:7] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    assert cmd[7:11] == ["cptcore", "train", str(run.config_path.resolve()), "--run-id"]
    acc = L.distributed_command(cfg.with_overrides(["launch.launcher=accelerate", "launch.strategy=fsdp"]), run)
    assert "accelerate.commands.launch" in acc and "--use_fsdp" in acc and acc[-6:-4] == ["cptcore", "train"]


def test_gpu_only_launch_settings_are_rejected_on_cpu(monkeypatch):
    monkeypatch.setattr(L, "slot_key", lambda cfg: "cpu")
    with pytest.raises(ConfigError, match="launch.strategy: fsdp needs GPUs"):
        L.check_launcher(RunConfig().with_overrides(["launch.launcher=torchrun", "launch.strategy=fsdp"]))


def test_slurm_script_runs_torchrun_under_srun_with_a_shared_home(tmp_path, monkeypatch, capsys):
    home = tmp_path / "shared" / "runs"
    monkeypatch.setenv("CPT_HOME", str(home))
    assert main(["slurm", "experiments/smoke.yaml", "--nodes", "4", "--gpus-per-node", "8",
                 "--set", "launch.strategy=fsdp"]) == 0
    path = Path(capsys.readouterr().out.strip())
    script = path.read_text()
    run = Run(path.parent)
    assert path.parent.parent == home and run.status()["status"] == "queued"
    for needle in ("#SBATCH --nodes=4", "#SBATCH --gpus-per-node=8", f"export CPT_HOME={home}",
                   "srun --kill-on-bad-exit=1", "-m torch.distributed.run", "--nproc_per_node 8",
                   "--rdzv_backend c10d", f"-m cptcore train {run.config_path} --run-id {run.id}"):
        assert needle in script, needle
    assert run.config().launch.strategy == "fsdp"
    assert L.refresh(run)["status"] == "queued"


# --- CLI: bad input is one line and a non-zero exit ----------------------------------------------
def finished_run(home, status):
    run = Run.create(home, RunConfig(name=status))
    run.write_status(status, started=time.time())
    return run


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
])
def test_bad_input_gives_one_line_and_a_nonzero_exit(tmp_path, monkeypatch, capsys, argv, message):
    home = tmp_path / "runs"
    monkeypatch.setenv("CPT_HOME", str(home))
    done = finished_run(home, "completed")
    live = sleeper()
    try:
        running = running_run(home, live.pid)
        argv = [a.format(completed=done.id, running=running.id) for a in argv]
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


# --- end to end -----------------------------------------------------------------------------------
def test_launch_returns_at_once_and_the_run_outlives_the_launching_process(tmp_path, tiny_cfg):
    home = Path(os.environ["CPT_HOME"])
    cfg_path = tiny_cfg.with_overrides(["train.max_steps=4"]).save(tmp_path / "tiny.yaml")
    t0 = time.time()
    rc, out, err = run_cli("launch", str(cfg_path))  # the launching process exits right away
    elapsed = time.time() - t0
    assert rc == 0 and elapsed < 5, (elapsed, err)
    run_id = out.strip()
    seen = []
    deadline = time.time() + 180
    while time.time() < deadline:
        rc, out, _ = run_cli("runs", "--json")
        row = next(r for r in json.loads(out) if r["id"] == run_id)
        seen.append(row["status"])
        if row["status"] in ("completed", "failed", "stopped"):
            break
        time.sleep(1)
    assert seen[-1] == "completed", Run.open(home, run_id).log_path.read_text()[-2000:]
    assert "running" in seen or "queued" in seen
    assert row["final_metrics"]["train/loss"] > 0 and row["step"] == 4
