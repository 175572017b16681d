#!/usr/bin/env bash
# Two independent GPU branches of the lab on ONE GPU at full Phi-3.5-mini size, run at once:
# AWQ on the base (gpu_memory_gb 10) and LoRA on the base (gpu_memory_gb 24) both fit on an
# H200, so the scheduler packs them onto GPU 0 (gpus.py) and the makespan approaches the
# longer branch instead of the sum. Records per-node times, the makespan and GPU memory.
#
#   bash bench/gpu_branches.sh OUTDIR [small|full] [LORA_STEPS]
set -uo pipefail
out="$(mkdir -p "${1:?output folder}" && cd "$1" && pwd)"
size="${2:-full}"
steps="${3:-100}"
repo="$(pwd)"
work="/tmp/branches-$size"
rm -rf "$work" && mkdir -p "$work/ws"
exec > >(tee "$out/run.log") 2>&1
t_all=$(date +%s)
say() { echo "[$(date +%H:%M:%S) +$(( $(date +%s) - t_all ))s] $*"; }
source "$repo/bench/gpu_env.sh"
( while :; do echo "$(date +%s.%N) $(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)"; sleep 0.5; done ) > "$out/gpumem.txt" 2>/dev/null &
poll=$!
trap 'kill $poll 2>/dev/null' EXIT
say "build $size model"
python3 bench/build_phi3_lab.py "$work/ws/phi35" --size "$size" --device cuda > "$out/build.json" || exit 1
cp -r examples/travel-tiny/data "$work/ws/data"
cd "$work/ws"
cat > branches.yaml <<EOF2
olivepipe: 1
name: branches
models:
  phi35: {path: phi35}
datasets:
  travel:
    files: data/travel.jsonl
    text_template: "<|user|>\n{prompt}<|end|>\n<|assistant|>\n{response}<|end|>"
    max_seq_len: 1024
nodes:
  quantize: {pass: awq, input: phi35, data: travel, device: gpu, gpu_memory_gb: 10, params: {bits: 4}}
  finetune: {pass: lora, input: phi35, data: travel, device: gpu, gpu_memory_gb: 24, params: {max_steps: $steps}}
EOF2
python3 -m olivepipe.cli plan branches.yaml > "$out/plan.txt" 2>&1; cat "$out/plan.txt"
say "apply both branches at once"
t0=$(date +%s.%N)
python3 -m olivepipe.cli apply --json branches.yaml > "$out/events.jsonl" 2> "$out/apply.err"
rc=$?
python3 -c "import sys,time; print(f'makespan_s {time.time()-float(sys.argv[1]):.1f} rc {sys.argv[2]}')" "$t0" "$rc" | tee "$out/makespan.txt"
kill $poll 2>/dev/null
grep -h "CUDA_VISIBLE_DEVICES\|olivepipe:" .olivepipe/logs/branches/*.log 2>/dev/null | head -20 > "$out/pins.txt"
for f in .olivepipe/logs/branches/*.log; do tail -5 "$f" > "$out/tail-$(basename "$f")"; done
say "done"
