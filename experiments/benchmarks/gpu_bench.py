"""GPU check: tokens/s and MFU of a bare torch loop and of `cpt`'s GPU options, same model, same batches.

    bash experiments/benchmarks/gpu_check.sh                    # one CUDA GPU: the demo's model, seq_len 2048, bf16
    python experiments/benchmarks/gpu_bench.py --cpu --tiny     # dry run on a CPU: tiny model, seq_len 128, 2 steps

Rows (each: warm-up steps, then timed steps; the time of a step runs from the end of the previous one, the
GPU synchronised, so data, logging and the optimizer are in it):
  bare loop          make_model's model (fp32 weights) under bf16 autocast, fused AdamW, the packed batches of
                     the demo mix, HF's own loss: the loop of bench_training.py on a GPU
  cpt packed         the real `cpt train` path (train_run: HF Trainer, exact mix, per-role loss, metric stream)
  cpt per_document   train.attention=per_document (position ids restart at each document)
  cpt fused kernels  train.fused_kernels=true (Liger RMSNorm/RoPE/SwiGLU + fused linear cross-entropy)
  cpt compile        train.compile=true (torch.compile; its compile falls in the warm-up steps)
  2 processes        one training step loop in 2 processes (torchrun): FSDP if it runs, else DDP; NCCL first,
                     gloo if NCCL refuses two processes on one GPU
MFU = 6 x parameters x tokens/s / peak dense bf16 FLOP/s of the GPU (table PEAK_BF16 below; the 6N count
leaves out attention's own FLOPs, which the "+attn" column adds as 12 x layers x hidden x seq_len per token).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PEAK_BF16 = {  # dense bf16 tensor-core FLOP/s, from the vendors' data sheets (no sparsity)
    "H200": 989e12, "H100": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12,
}
BUDGET_S = 270  # the whole check must end within 5 minutes: rows that would start later are skipped


def peak_flops(device: str) -> tuple[float | None, str]:
    """(peak bf16 FLOP/s, what was assumed) for the first GPU, or None where the table has no entry."""
    import torch

    if device != "cuda":
        return None, "CPU dry run: no MFU"
    name = torch.cuda.get_device_name(0)
    for key, peak in PEAK_BF16.items():  # in table order: A100 before A10, L40S before L4
        if key in name.upper().replace("NVIDIA ", ""):
            return peak, f"{name}: peak dense bf16 {peak / 1e12:.0f} TFLOP/s assumed"
    return None, f"{name}: not in the peak table (PEAK_BF16): no MFU"


def bench_config(a):
    from cptcore.config import RunConfig

    return RunConfig.load(ROOT / "experiments" / "demo.yaml").with_overrides({
        "model.name": a.model, "train.max_steps": a.warmup + a.steps, "train.batch_size": a.batch,
        "data.seq_len": a.seq_len, "eval.evaluators": [], "train.save_every_steps": 1_000_000,
        "train.log_every_steps": 1, "train.device": "cpu" if a.cpu else "cuda",
    })


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def rate(times: list[float], warmup: int, tokens_per_step: int) -> float:
    """Tokens/s over the steps after warm-up; times[i] is when step i ended."""
    timed = len(times) - warmup
    return timed * tokens_per_step / (times[-1] - times[warmup - 1])


def bare_loop(cfg, a, device: str) -> dict:
    import torch

    from cptcore.data.mix import build_mix
    from cptcore.train import make_model

    torch.manual_seed(0)
    model, tok = make_model(cfg, device)
    shape = dict(params=sum(p.numel() for p in model.parameters()), layers=model.config.num_hidden_layers,
                 hidden=model.config.hidden_size)
    ids_all, labels_all = build_mix(cfg, tok).materialize()
    b = a.batch
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                            fused=device == "cuda")  # what the Trainer uses (adamw_torch_fused)
    model.train()
    times = []
    for step in range(a.warmup + a.steps):
        ids = torch.from_numpy(ids_all[step * b:(step + 1) * b]).long().to(device, non_blocking=True)
        labels = torch.from_numpy(labels_all[step * b:(step + 1) * b]).long().to(device, non_blocking=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model(input_ids=ids, labels=labels, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        times.append(time.perf_counter())
    del model, opt
    return {"tps": rate(times, a.warmup, b * a.seq_len), **shape}


def cpt_row(cfg, a, device: str, overrides: list[str]) -> dict:
    """train_run on a temporary CPT_HOME, timed by a callback added to the real trainer."""
    import cptcore.stream as stream
    from transformers import TrainerCallback

    from cptcore.runs import Run
    from cptcore.train import train_run

    times: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            sync(device)
            times.append(time.perf_counter())

    make = stream.make_trainer_class

    def timed_trainer_class():
        base = make()

        class Timed(base):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.add_callback(StepClock())

        return Timed

    stream.make_trainer_class = timed_trainer_class  # train() imports it at call time
    try:
        with tempfile.TemporaryDirectory() as home:
            run = Run.create(home, cfg.with_overrides(overrides))
            train_run(run, progress=False)
    finally:
        stream.make_trainer_class = make
    return {"tps": rate(times, a.warmup, a.batch * a.seq_len)}


# --- two processes ---------------------------------------------------------------------------------------
def worker(a) -> None:
    """One rank of the 2-process row (started by torchrun): a bare loop under DDP or FSDP, both ranks on the
    GPU they share (or on one GPU each where there are two)."""
    import torch
    import torch.distributed as dist

    from cptcore.data.mix import build_mix
    from cptcore.train import make_model

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = "cpu" if a.cpu else "cuda"
    if device == "cuda":
        torch.cuda.set_device(rank % torch.cuda.device_count())
    dist.init_process_group(a.backend, device_id=torch.device("cuda", torch.cuda.current_device())
                            if a.backend == "nccl" else None)
    probe = torch.ones(1, device=device)
    dist.all_reduce(probe)  # fail fast (NCCL refuses two ranks on one GPU) before the model loads
    cfg = bench_config(a).with_overrides({"train.batch_size": a.batch * world})
    torch.manual_seed(0)
    model, tok = make_model(cfg, device)
    ids_all, labels_all = build_mix(cfg, tok).materialize()
    if a.strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
    else:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if device == "cuda" else None)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    model.train()
    times, b, g = [], a.batch, a.batch * world
    for step in range(a.warmup + a.steps):
        rows = slice(step * g + rank * b, step * g + (rank + 1) * b)  # this rank's part of the global batch
        ids = torch.from_numpy(ids_all[rows]).long().to(device)
        labels = torch.from_numpy(labels_all[rows]).long().to(device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model(input_ids=ids, labels=labels, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        dist.barrier()
        times.append(time.perf_counter())
    if rank == 0:
        print("RESULT " + json.dumps({"tps": rate(times, a.warmup, g * a.seq_len), "loss": float(loss)}), flush=True)
    dist.destroy_process_group()


def two_processes(a, left_s: float) -> tuple[dict | None, str]:
    """(result, what ran) of the first 2-process setup that works; the reasons the others failed."""
    tries = [("fsdp", "gloo"), ("ddp", "gloo")] if a.cpu else [("fsdp", "nccl"), ("fsdp", "gloo"), ("ddp", "nccl"),
                                                               ("ddp", "gloo")]
    failed = []
    deadline = time.time() + left_s
    for strategy, backend in tries:
        left = deadline - time.time()
        if left < 20:
            failed.append(f"{strategy}/{backend}: skipped (time budget)")
            continue
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__,
               "--worker", "--strategy", strategy, "--backend", backend, *forwarded(a)]
        env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=min(left, 120), env=env, cwd=ROOT)
        except subprocess.TimeoutExpired:
            failed.append(f"{strategy}/{backend}: timed out")
            continue
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                return {**json.loads(line[7:]), "how": f"{strategy.upper()} {backend}"}, "; ".join(failed)
        failed.append(f"{strategy}/{backend}: {last_error(proc.stdout + proc.stderr)}")
    return None, "; ".join(failed)


def last_error(log: str) -> str:
    """The most telling line of a failed worker's log (the exception, else the last line)."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "error" in ln:
            return ln[:200]
    return (lines[-1] if lines else "no output")[:200]


def forwarded(a) -> list[str]:
    out = ["--model", a.model, "--seq-len", str(a.seq_len), "--batch", str(a.batch), "--steps", str(a.steps),
           "--warmup", str(a.warmup)]
    return out + (["--cpu"] if a.cpu else [])


# --- the table -----------------------------------------------------------------------------------------
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="dry run on the CPU (no GPU needed; no MFU)")
    p.add_argument("--tiny", action="store_true", help="tiny-random-llama, seq_len 128, batch 2, 2 steps after 1")
    p.add_argument("--model", default=None, help="default: the demo's model (smollm2-135m-instruct)")
    p.add_argument("--seq-len", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (>= 1; compile happens here)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--strategy", default="ddp", help=argparse.SUPPRESS)
    p.add_argument("--backend", default="gloo", help=argparse.SUPPRESS)
    a = p.parse_args()
    tiny = dict(model="tiny-random-llama", seq_len=128, batch=2, steps=2, warmup=1)
    full = dict(model="smollm2-135m-instruct", seq_len=2048, batch=8, steps=10, warmup=3)
    for k, v in (tiny if a.tiny else full).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.warmup = max(1, a.warmup)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if a.worker:
        worker(a)
        return 0
    import torch

    if not a.cpu and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible to torch (a dry run on a CPU: --cpu --tiny)")
        return 1
    t_start = time.time()
    device = "cpu" if a.cpu else "cuda"
    peak, assumed = peak_flops(device)
    cfg = bench_config(a)
    tokens_per_step = a.batch * a.seq_len
    print(f"model {a.model}, batch {a.batch} x seq_len {a.seq_len} = {tokens_per_step:,} tokens/step, "
          f"{a.warmup} warm-up + {a.steps} timed steps per row, {'fp32 (CPU)' if a.cpu else 'bf16 autocast'}; "
          f"torch {torch.__version__}")
    print(assumed, flush=True)

    free(device)
    base = bare_loop(cfg, a, device)
    params, layers, hidden = base["params"], base["layers"], base["hidden"]
    flops_6n = 6 * params
    flops_attn = flops_6n + 12 * layers * hidden * a.seq_len
    print(f"parameters {params:,} (6N = {flops_6n / 1e9:.2f} GFLOP/token; +attn {flops_attn / 1e9:.2f})\n")
    print(f"{'row':34} {'tokens/s':>12} {'vs bare':>8} {'MFU 6N':>8} {'+attn':>7} {'peak GiB':>9}  note")

    def show(name: str, res: dict | None, note: str = "", gpus: int = 1) -> None:
        if res is None:
            print(f"{name:34} {'-':>12} {'-':>8} {'-':>8} {'-':>7} {'-':>9}  {note}", flush=True)
            return
        tps = res["tps"]
        mfu = f"{flops_6n * tps / (peak * gpus):.1%}" if peak else "-"
        mfu_a = f"{flops_attn * tps / (peak * gpus):.1%}" if peak else "-"
        mem = f"{res['mem'] / 2**30:.1f}" if res.get("mem") else "-"
        print(f"{name:34} {tps:>12,.0f} {tps / base['tps']:>7.2f}x {mfu:>8} {mfu_a:>7} {mem:>9}  {note}", flush=True)

    base["mem"] = peak_memory(device)
    show("bare loop (torch AdamW, packed)", base)
    import importlib.util

    liger = importlib.util.find_spec("liger_kernel") is not None
    rows = [("cpt packed", ["train.attention=packed"], ""),
            ("cpt per_document", ["train.attention=per_document"], ""),
            ("cpt + fused kernels (Liger)", ["train.fused_kernels=true"],
             "" if liger and not a.cpu else ("needs CUDA" if a.cpu else "liger-kernel not installed: pip install "
                                             "liger-kernel")),
            ("cpt + torch.compile", ["train.compile=true"], "")]
    for name, overrides, skip in rows:
        if skip:
            show(name, None, f"skipped: {skip}")
            continue
        if time.time() - t_start > BUDGET_S:
            show(name, None, "skipped: time budget of the check spent")
            continue
        free(device)
        try:
            res = cpt_row(cfg, a, device, overrides)
            res["mem"] = peak_memory(device)
            show(name, res)
        except Exception as e:  # noqa: BLE001 - one row fails, the table goes on
            show(name, None, f"failed: {type(e).__name__}: {str(e).splitlines()[0][:150] if str(e) else ''}")
    free(device)
    left = BUDGET_S + 25 - (time.time() - t_start)
    res, why = two_processes(a, left)
    gpus = min(2, torch.cuda.device_count()) if device == "cuda" else 1
    where = f"{gpus} GPU{'s' if gpus > 1 else ''}" if device == "cuda" else "CPU"
    if res:
        show(f"2 processes, {res['how']} ({where})", res, f"tokens/s of both; {why}" if why else "tokens/s of both",
             gpus=gpus)
    else:
        show(f"2 processes ({where})", None, f"none ran: {why}")
    print(f"\ntotal {time.time() - t_start:.0f} s")
    return 0


def peak_memory(device: str) -> int | None:
    import torch

    if device != "cuda":
        return None
    return torch.cuda.max_memory_allocated()


def free(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


if __name__ == "__main__":
    sys.exit(main())
