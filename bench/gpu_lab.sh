#!/usr/bin/env bash
# The Phi-3.5 travel lab's own order on one CUDA GPU through olivepipe, and the nearest
# working route for its model-builder step (docs/gpu.md "The lab's order on an H200").
#
#   bash bench/gpu_lab.sh OUTDIR [small|full] [LORA_STEPS]
#
# On the GPU host, from the repo root, with the wheels carried in .whl/ (see docs/gpu.md):
#  1. installs .whl/*.whl into /tmp/site (no index, no deps) and puts it on PYTHONPATH;
#  2. builds a random Phi-3.5-mini stand-in on the GPU (bench/build_phi3_lab.py);
#  3. `olivepipe apply --json` of the lab's order: awq (gpu) -> lora on the AWQ checkpoint
#     (gpu) -> model-builder int4 with the adapter (cpu) -> extract-adapters -> generate;
#  4. the nearest working route for the model-builder step: the AWQ checkpoint dequantized
#     to fp16 (bench/awq_dequant.py), model-builder int4 (block 128, asymmetric) with the
#     LoRA adapter in extra_options.adapter_path -> extract-adapters -> generate; on `small`
#     also the base model + the same adapter (route B);
#  5. polls GPU memory every 0.5 s; per-node time and peak GPU memory go to summary.json.
# OUTDIR gets summary.json, run.log and bundle.tar.gz (workflows, events, node logs,
# plans, versions, GPU memory trace, generate reports).
set -uo pipefail
out="$(mkdir -p "${1:?output folder}" && cd "$1" && pwd)"
size="${2:-small}"
steps="${3:-$([ "$size" = full ] && echo 100 || echo 20)}"
repo="$(pwd)"
work="/tmp/lab-$size"
rm -rf "$work" && mkdir -p "$work/ws"
exec > >(tee "$out/run.log") 2>&1
t_all=$(date +%s)
say() { echo "[$(date +%H:%M:%S) +$(( $(date +%s) - t_all ))s] $*"; }

source "$repo/bench/gpu_env.sh"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 --version
  python3 - <<'PY'
from importlib.metadata import version
for p in ("olive-ai", "autoawq", "gptqmodel", "torch", "transformers", "peft", "accelerate", "datasets",
          "onnxruntime", "onnxruntime-genai", "onnx", "triton", "huggingface_hub", "safetensors", "pypcre"):
    try:
        print(p, version(p))
    except Exception as e:
        print(p, "missing", type(e).__name__)
PY
  nproc; free -g | head -2
} > "$work/versions.txt" 2>&1
cat "$work/versions.txt"

( while :; do echo "$(date +%s.%N) $(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)"; sleep 0.5; done ) > "$work/gpumem.txt" 2>/dev/null &
poll=$!
trap 'kill $poll 2>/dev/null' EXIT

say "build $size model"
python3 bench/build_phi3_lab.py "$work/ws/phi35" --size "$size" --device "${LAB_BUILD_DEVICE:-cuda}" > "$work/build.json" || exit 1
cat "$work/build.json"
cp -r examples/travel-tiny/data "$work/ws/data"
# LAB_AWQ_MODEL=FOLDER (rehearsing this script on a CPU): that AWQ checkpoint stands in for the quantize node
quantize='quantize: {pass: awq, input: phi35, data: travel, device: gpu, params: {bits: 4}}'
awq_src=outputs/lab/quantize/model
lora_dev=gpu
if [ -n "${LAB_AWQ_MODEL:-}" ]; then
  cp -r "$LAB_AWQ_MODEL" "$work/ws/quantized"
  quantize='# quantize: replaced by LAB_AWQ_MODEL'; awq_src=quantized; lora_dev=cpu
fi
cd "$work/ws"

cat > lab.yaml <<EOF
# The lab's own order (workflows/phi35-travel.yaml, Azure registration left out), on a local stand-in model.
olivepipe: 1
name: lab
models:
  phi35: {path: phi35}$([ -n "${LAB_AWQ_MODEL:-}" ] && printf '\n  quantize: {path: quantized}')
datasets:
  travel:
    files: data/travel.jsonl
    text_template: "<|user|>\n{prompt}<|end|>\n<|assistant|>\n{response}<|end|>"
    max_seq_len: 1024
nodes:
  $quantize
  finetune: {pass: lora, input: quantize, data: travel, device: $lora_dev, params: {max_steps: $steps}}
  onnx:     {pass: model-builder, input: finetune, device: cpu, params: {precision: int4}}
  adapters: {pass: extract-adapters, input: onnx, device: cpu}
  chat:     {kind: generate, input: adapters, prompts: ["what is the best thing to see in chicago"], max_new_tokens: 100}
EOF
stamp() { python3 "$repo/bench/gpu_lab_report.py" stamp; }

say "plan lab"
python3 -m olivepipe.cli plan lab.yaml > "$work/plan-lab.txt" 2>&1; cat "$work/plan-lab.txt"
say "apply lab"
python3 -m olivepipe.cli apply --json lab.yaml 2> "$work/apply-lab.err" | stamp > "$work/events-lab.jsonl"
say "apply lab: exit ${PIPESTATUS[0]}"; cut -c1-400 "$work/events-lab.jsonl"

adapter="$(readlink -f outputs/lab/finetune/adapter 2>/dev/null)"
if [ -f "$adapter/adapter_config.json" ] && [ -f "$awq_src/config.json" ]; then
  say "dequantize the AWQ checkpoint"
  t0=$(date +%s.%N)
  python3 "$repo/bench/awq_dequant.py" "$awq_src" awq_dq > "$work/dequant.json" && \
    python3 -c "import sys,time,json; d=json.load(open(sys.argv[2])); d['seconds']=round(time.time()-float(sys.argv[1]),1); json.dump(d,open(sys.argv[2],'w'))" "$t0" "$work/dequant.json"
  cat "$work/dequant.json"; echo
  routeb=""
  [ "$size" = small ] && routeb="
  onnx_base:     {pass: model-builder, input: phi35, device: cpu, params: {precision: int4, extra_options: {adapter_path: \"$adapter\"}}}
  adapters_base: {pass: extract-adapters, input: onnx_base, device: cpu}
  chat_base:     {kind: generate, input: adapters_base, prompts: [\"what is the best thing to see in chicago\"], max_new_tokens: 100}"
  cat > route.yaml <<EOF
# Nearest working route for the lab's model-builder step: the AWQ checkpoint's own weights (dequantized),
# int4 on AWQ's group size, the LoRA adapter trained on the AWQ checkpoint.
olivepipe: 1
name: route
models:
  awq_dq: {path: awq_dq}
  phi35: {path: phi35}
nodes:
  onnx_dq:     {pass: model-builder, input: awq_dq, device: cpu, params: {precision: int4, extra_options: {adapter_path: "$adapter", int4_block_size: 128, int4_is_symmetric: false}}}
  adapters_dq: {pass: extract-adapters, input: onnx_dq, device: cpu}
  chat_dq:     {kind: generate, input: adapters_dq, prompts: ["what is the best thing to see in chicago"], max_new_tokens: 100}$routeb
EOF
  say "apply route"
  python3 -m olivepipe.cli apply --json route.yaml 2> "$work/apply-route.err" | stamp > "$work/events-route.jsonl"
  say "apply route: exit ${PIPESTATUS[0]}"; cut -c1-400 "$work/events-route.jsonl"
else
  say "no AWQ checkpoint + adapter: route not tried"
fi

say "second apply of the lab (cache check)"
python3 -m olivepipe.cli apply --json --target finetune lab.yaml 2>/dev/null | stamp > "$work/events-lab-again.jsonl"
kill $poll 2>/dev/null
python3 "$repo/bench/gpu_lab_report.py" summary "$work" > "$out/summary.json"
python3 - "$work/build.json" "$work/versions.txt" "$out/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[3]))
s["model"] = json.load(open(sys.argv[1]))
s["versions"] = open(sys.argv[2]).read().splitlines()
json.dump(s, open(sys.argv[3], "w"), indent=2)
PY
mkdir -p "$work/reports"
for n in chat chat_dq chat_base; do
  for wf in lab route; do [ -f "outputs/$wf/$n/report.json" ] && cp "outputs/$wf/$n/report.json" "$work/reports/$wf-$n.json"; done
done
cp -r .olivepipe/logs "$work/logs" 2>/dev/null
cp lab.yaml route.yaml "$work/" 2>/dev/null
du -shL outputs/*/* 2>/dev/null | sed 's#^#size #' > "$work/sizes.txt"
tar -czf "$out/bundle.tar.gz" -C "$work" --exclude=ws --exclude=cache . 2>/dev/null
say "done: $(ls "$out")"
