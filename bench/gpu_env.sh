# Shared set-up of the GPU bench scripts (sourced by gpu_lab.sh and gpu_branches.sh, from the repo
# root): the carried wheels on PYTHONPATH, offline switches, and the cache folder under $work.
say "install wheels"
[ -n "${LAB_SKIP_INSTALL:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$repo${PYTHONPATH:+:$PYTHONPATH}"
# pypcre (gptqmodel's regex engine) links libpcre2-8; a copy travels in case the image lacks it
ldconfig -p | grep -q 'libpcre2-8.so.0' || export LD_LIBRARY_PATH="$repo/.whl/lib:${LD_LIBRARY_PATH:-}"
export OLIVE_DISABLE_TELEMETRY=1 ORT_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 CI=1 PYTHONUNBUFFERED=1
export OLIVEPIPE_CACHE_DIR="$work/cache"
