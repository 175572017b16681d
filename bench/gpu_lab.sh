#!/usr/bin/env bash
# The committed lab workflow (workflows/phi35-travel.yaml) on one CUDA GPU, at full size
# (docs/gpu.md "The lab on one GPU").
#
#   bash bench/gpu_lab.sh OUTDIR [full|small] [DATA_FILE]
#
# On the GPU host, from the repo root, with the wheels carried in .whl/ (docs/gpu.md):
#  1. installs .whl/*.whl into /tmp/site (no index, no deps) and puts it on PYTHONPATH;
#  2. builds a random Phi-3.5-mini stand-in on the GPU (bench/build_phi3_lab.py);
#  3. copies the committed workflow into a scratch repository, byte for byte but for the one
#     line that names the model (`hf: microsoft/Phi-3.5-mini-instruct` -> `path: ../phi35`),
#     with the lab's data file at workflows/data/data_sample_travel.jsonl;
#  4. `olivepipe plan`, then `olivepipe apply --json --target chat` (every node but register,
#     which needs Azure credentials), then the same apply again (all cached);
#  5. polls GPU memory and the summed resident memory of the machine's processes twice a
#     second; OUTDIR/summary.json has per node: time, GPU peak, host RSS peak, output size.
set -uo pipefail
out="$(mkdir -p "${1:?output folder}" && cd "$1" && pwd)"
size="${2:-full}"
data="$(readlink -f "${3:-../shared/data/data_sample_travel.jsonl}")"
repo="$(pwd)"
work="${LAB_WORK:-/tmp/lab-$size}"
# LAB_REUSE=1: keep $work (its cache and model) from an earlier run that stopped: what finished stays cached
if [ -n "${LAB_REUSE:-}" ] && [ -d "$work/ws" ]; then
  for f in "$work"/events-lab*.jsonl; do [ -f "$f" ] && mv "$f" "${f%.jsonl}-before-reuse.jsonl"; done
else
  rm -rf "$work"
fi
mkdir -p "$work/ws/workflows/data" "$work/ws/.git"
exec > >(tee "$out/run.log") 2>&1
t_all=$(date +%s)
say() { echo "[$(date +%H:%M:%S) +$(( $(date +%s) - t_all ))s] $*"; }

source "$repo/bench/gpu_env.sh"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  hostname; python3 --version
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

python3 "$repo/bench/gpu_lab_report.py" poll "$work/gpumem.txt" &
poll=$!
trap 'kill $poll 2>/dev/null' EXIT

say "build $size model"
[ -f "$work/ws/phi35/config.json" ] && [ -n "${LAB_REUSE:-}" ] || \
  python3 bench/build_phi3_lab.py "$work/ws/phi35" --size "$size" --device "${LAB_BUILD_DEVICE:-cuda}" > "$work/build.json" || exit 1
cat "$work/build.json"
cp "$data" "$work/ws/workflows/data/data_sample_travel.jsonl" || exit 1
sed 's|^    hf: microsoft/Phi-3.5-mini-instruct$|    path: ../phi35|' workflows/phi35-travel.yaml > "$work/ws/workflows/phi35-travel.yaml"
diff workflows/phi35-travel.yaml "$work/ws/workflows/phi35-travel.yaml" > "$work/workflow.diff"
cat "$work/workflow.diff"
cd "$work/ws"
stamp() { python3 "$repo/bench/gpu_lab_report.py" stamp; }
wf=workflows/phi35-travel.yaml

say "plan"
python3 -m olivepipe.cli plan "$wf" > "$work/plan.txt" 2>&1; cat "$work/plan.txt"
python3 -m olivepipe.cli plan --json "$wf" > "$work/plan.json" 2>/dev/null
say "apply"
python3 -m olivepipe.cli apply --json --target chat "$wf" 2> "$work/apply.err" | stamp > "$work/events-lab.jsonl"
say "apply: exit ${PIPESTATUS[0]}"; cut -c1-400 "$work/events-lab.jsonl"
say "second apply (cache check)"
python3 -m olivepipe.cli apply --json --target chat "$wf" 2>/dev/null | stamp > "$work/events-lab-again.jsonl"
say "second apply: exit ${PIPESTATUS[0]}"
kill $poll 2>/dev/null
for n in quantize finetune dequantize onnx adapters chat; do
  echo "size $n $(du -sbL "workflows/outputs/phi35-travel/$n" 2>/dev/null | cut -f1)"
done > "$work/sizes.txt"
cat "$work/sizes.txt"
python3 "$repo/bench/gpu_lab_report.py" summary "$work" > "$out/summary.json"
python3 - "$work" "$out/summary.json" <<'PY'
import json, sys
from pathlib import Path
work, path = Path(sys.argv[1]), sys.argv[2]
s = json.load(open(path))
s["model"] = json.load(open(work / "build.json"))
s["versions"] = (work / "versions.txt").read_text().splitlines()
sizes = {l.split()[1]: int(l.split()[2]) for l in (work / "sizes.txt").read_text().splitlines() if len(l.split()) == 3}
for wf in s["workflows"].values():
    for n, d in wf.get("nodes", {}).items():
        d["output_bytes"] = sizes.get(n)
rep = work / "ws/workflows/outputs/phi35-travel/chat/report.json"
if rep.exists():
    s["chat"] = json.load(open(rep))
json.dump(s, open(path, "w"), indent=2)
PY
cp -r .olivepipe/logs "$work/logs" 2>/dev/null; cp -r workflows/.olivepipe/logs "$work/logs" 2>/dev/null
tar -czf "$out/bundle.tar.gz" -C "$work" --exclude=ws --exclude=cache . 2>/dev/null
say "done: $(ls "$out")"
