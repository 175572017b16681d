#!/usr/bin/env bash
# Real AWQ through olivepipe on a CUDA machine (see docs/gpu.md for what ran and its output).
# Usage on the GPU host, from the repo root, with olivepipe's deps importable:
#   bash bench/gpu_awq.sh OUTDIR
# It rehearses workflows/phi35-travel.yaml: the hub model becomes a tiny phi3, but with
# CUDA and autoawq present the AWQ node runs for real (no stand-in). Then it asks for
# `finetune` too, to record exactly how LoRA on the AWQ checkpoint fails in this stack.
set -uo pipefail
out="${1:?output folder}"
mkdir -p "$out"
export OLIVEPIPE_CACHE_DIR="${OLIVEPIPE_CACHE_DIR:-/tmp/olivepipe-gpu-cache}"
py="${PYTHON:-python3}"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$py" - <<'PY'
from importlib.metadata import version
for p in ("olive-ai", "autoawq", "torch", "transformers", "peft", "datasets", "onnxruntime", "accelerate"):
    try:
        print(p, version(p))
    except Exception as e:
        print(p, "missing", e)
PY
} > "$out/versions.txt" 2>&1
timed() { local f="$1"; shift; local t0; t0=$(date +%s.%N); "$@"; python3 -c "import sys,time; print(f\"{time.time()-float(sys.argv[1]):.2f} s wall\")" "$t0" > "$f"; }
cd workflows
"$py" -m olivepipe.cli plan --rehearse --target quantize phi35-travel.yaml > "$out/plan-quantize.txt" 2>&1
timed "$out/time-quantize.txt" "$py" -m olivepipe.cli apply --rehearse --target quantize --json phi35-travel.yaml > "$out/apply-quantize.json" 2> "$out/apply-quantize.err"
timed "$out/time-quantize-again.txt" "$py" -m olivepipe.cli apply --rehearse --target quantize --json phi35-travel.yaml > "$out/apply-quantize-again.json" 2>&1
"$py" -m olivepipe.cli apply --rehearse --target finetune --json phi35-travel.yaml > "$out/apply-finetune.json" 2> "$out/apply-finetune.err"
cp -rL outputs/phi35-travel@rehearsal/quantize "$out/awq-checkpoint" 2>/dev/null
cp -r .olivepipe/logs "$out/logs" 2>/dev/null
cp .olivepipe/rehearsal.lock "$out/rehearsal.lock" 2>/dev/null
ls -la "$out"
