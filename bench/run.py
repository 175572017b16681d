"""olivepipe benchmarks, side by side with Olive's own `olive run`. Prints one JSON document.

    python bench/run.py [--gb 3] [--skip-olive]

Sections (see docs/performance.md for recorded results):
  noop            fully cached apply of a lab-shaped 6-node pipeline, tiny vs multi-GB artifacts
  hashing         cold content hashing vs the disk's plain read rate; warm (stat-cached) hashing
  materialize     cache-hit materialization of the multi-GB result; store disk use
  olive_cached    `olive run` of the same node configs with Olive's own cache warm
  per_node        olivepipe step vs `olive run --config` of the same JSON, and Olive's own pass time
  incremental     passes run after a leaf param change / a data edit, olivepipe vs Olive's cache
  concurrency     two independent branches with -j 1 vs -j 2
No timed asserts anywhere: this prints numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from olivepipe.keys import key_of  # noqa: E402
from olivepipe.olive.runtime import worker_env  # noqa: E402
from olivepipe.store import materialize  # noqa: E402
from olivepipe.workspace import open_workspace  # noqa: E402

PY = sys.executable
LAB_SHAPE = """\
olivepipe: 1
name: lab-shape
models:
  base: {tiny: {arch: phi3}}
datasets:
  travel: {files: travel.jsonl, text_template: "<|user|>\\n{prompt}<|end|>\\n<|assistant|>\\n{response}<|end|>", max_seq_len: 64}
nodes:
  quantize: {pass: rtn, input: base}
  finetune: {pass: lora, input: quantize, data: travel, params: {max_steps: 100}}
  onnx: {pass: model-builder, input: finetune, params: {precision: int4}}
  adapters: {pass: extract-adapters, input: onnx}
  chat: {kind: generate, input: adapters, prompts: [hi]}
  register: {kind: register, input: adapters, name: ft-for-travel, version: 1}
"""


def _result(stdout: str) -> dict:
    """`apply --json` prints events, one per line, then the result document."""
    return json.loads(stdout.strip().splitlines()[-1])


def sh(args, cwd=None, env=None, timeout=1800):
    t0 = time.perf_counter()
    p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return p, time.perf_counter() - t0


def olivepipe(*args, cwd=None):
    return sh([PY, "-m", "olivepipe.cli", *map(str, args)], cwd=cwd)


def median_wall(args, n=5, cwd=None):
    times = []
    for _ in range(n):
        p, t = sh(args, cwd=cwd)
        assert p.returncode == 0, p.stdout + p.stderr
        times.append(t)
    return round(statistics.median(times), 4), [round(t, 4) for t in times]


def write_big(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for _ in range(size >> 20):
            f.write(block)


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def read_rate(path: Path) -> float:
    t0 = time.perf_counter()
    buf = bytearray(1 << 20)  # same access pattern as hashlib.file_digest
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass
    return path.stat().st_size / (time.perf_counter() - t0) / 1e9


def fake_pipeline(root: Path, big: dict[str, int]) -> Path:
    """Lab-shaped workflow whose results are published to the store directly (sizes in bytes)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "travel.jsonl").write_text('{"prompt": "a", "response": "b"}\n' * 8)
    wf = root / "workflow.yaml"
    wf.write_text(LAB_SHAPE)
    ws = open_workspace(wf)
    ws.store.ensure()
    digests, timings = {}, {}
    for name in ws.steps():
        rec, _ = ws.record(name, digests)
        out = ws.store.staging(name) / "out"
        size = big.get(name, 4096)
        write_big(out / "payload.bin", max(size, 1 << 20)) if size >= 1 << 20 else (
            out.mkdir(parents=True), (out / "payload.bin").write_bytes(os.urandom(size)))
        dropped = drop_caches() if size >= 1 << 20 else False
        t0 = time.perf_counter()
        e = ws.store.publish(key_of(rec), out, {"model": {"type": "hfmodel", "config": {"model_path": "$OUT"}},
                                                "kind": ws.kind(name)})
        timings[name] = {"bytes": e.size, "publish_s": round(time.perf_counter() - t0, 3), "cold": dropped}
        shutil.rmtree(out.parent, ignore_errors=True)
        digests[name] = e.digest
        from olivepipe import lock as lockfile

        lockfile.update(ws.lock_path, ws.lock_name, {name: {"key": e.key, "kind": rec["kind"], "record": rec}})
    return wf, timings


def bench_noop(tmp: Path, gb: float) -> dict:
    res = {}
    small_wf, _ = fake_pipeline(tmp / "noop-small", {})
    big_sizes = {"finetune": int(gb * 2 / 3 * (1 << 30)), "onnx": int(gb / 3 * (1 << 30))}
    big_wf, publish = fake_pipeline(tmp / "noop-big", big_sizes)
    for label, wf in (("tiny_artifacts", small_wf), ("multi_gb_artifacts", big_wf)):
        olivepipe("apply", wf)  # materialize links, warm the validation memo
        med, runs = median_wall([PY, "-m", "olivepipe.cli", "apply", str(wf)])
        res[label] = {"apply_wall_s_median": med, "runs": runs}
    res["multi_gb_artifacts"]["artifact_bytes"] = sum(big_sizes.values())
    res["publish"] = publish
    return res, big_wf


def bench_hashing(big_wf: Path) -> dict:
    from olivepipe.hashing import StatCache, file_digest

    ws = open_workspace(big_wf)
    entry = ws.store.get(ws.lock_nodes()["finetune"]["key"])
    f = entry.tree / "payload.bin"
    size = f.stat().st_size
    cold = drop_caches()
    rr = read_rate(f)
    drop_caches()
    t0 = time.perf_counter()
    file_digest(f)
    hash_s = time.perf_counter() - t0
    sc = StatCache(Path(tempfile.mkdtemp()) / "state.db")
    sc.digest(f)
    t0 = time.perf_counter()
    sc.digest(f)
    warm = time.perf_counter() - t0
    return {"file_bytes": size, "page_cache_dropped": cold, "read_gb_s": round(rr, 3),
            "sha256_gb_s": round(size / hash_s / 1e9, 3), "warm_stat_cached_s": round(warm, 6)}


def bench_materialize(big_wf: Path) -> dict:
    ws = open_workspace(big_wf)
    entry = ws.store.get(ws.lock_nodes()["finetune"]["key"])
    dest = big_wf.parent / "elsewhere" / "finetune"
    t0 = time.perf_counter()
    materialize(entry, dest)
    t = time.perf_counter() - t0
    du = int(subprocess.run(["du", "-sb", str(ws.store.root)], capture_output=True, text=True).stdout.split()[0])
    artifacts = sum(ws.store.get(k).size for k in ws.store.keys())
    return {"entry_bytes": entry.size, "materialize_ms": round(t * 1000, 3),
            "store_du_bytes": du, "sum_of_artifact_bytes": artifacts}


def example_copy(tmp: Path, name: str) -> Path:
    d = tmp / name
    shutil.copytree(REPO / "examples" / "travel-tiny", d, ignore=shutil.ignore_patterns(".olivepipe", "outputs", "olivepipe.lock"))
    return d / "workflow.yaml"


def olive_run(config: dict, cfg_path: Path) -> tuple[subprocess.CompletedProcess, float]:
    cfg_path.write_text(json.dumps(config))
    return sh([PY, "-m", "olive", "run", "--config", str(cfg_path)], env=worker_env(), timeout=1800)


PASS_RE = re.compile(r"Pass (\S+) finished in ([0-9.]+) seconds")


def bench_olive(tmp: Path) -> dict:
    wf = example_copy(tmp, "olive-side")
    p, apply_wall = olivepipe("apply", "--json", "--force-all", wf)
    steps = {s["name"]: s for s in _result(p.stdout)["steps"]}
    from olivepipe.preview import compile_preview

    compiled = compile_preview(open_workspace(wf), ["finetune", "onnx", "adapters"])  # inputs all cached
    per_node, cached = {}, {}
    for n in ("finetune", "onnx", "adapters"):
        cfg = compiled[n]
        cfg["cache_dir"] = str(tmp / f"olive-cache-{n}")
        runs = []
        for i in range(2):  # first fills Olive's cache, second is Olive's own "fully cached" run
            c = json.loads(json.dumps(cfg))
            c["output_dir"] = str(tmp / f"o-{n}-{i}")
            proc, wall = olive_run(c, tmp / f"cfg-{n}-{i}.json")
            m = PASS_RE.findall(proc.stdout + proc.stderr)
            runs.append({"wall_s": round(wall, 3), "rc": proc.returncode,
                         "pass_s": float(m[-1][1]) if m else None})
        # Olive's own pass time inside olivepipe's run of the node, from the node's log
        logged = PASS_RE.findall(Path(steps[n]["log"]).read_text()) if steps[n]["log"] else []
        inside = float(logged[-1][1]) if logged else None
        per_node[n] = {"olive_run_wall_s": runs[0]["wall_s"], "olive_run_pass_s": runs[0]["pass_s"],
                       "olive_run_overhead_s": round(runs[0]["wall_s"] - (runs[0]["pass_s"] or 0), 3),
                       "olivepipe_step_s": round(steps[n]["seconds"], 3), "olivepipe_pass_s": inside,
                       "olivepipe_overhead_s": round(steps[n]["seconds"] - inside, 3) if inside else None}
        cached[n] = runs[1]["wall_s"]
    p2, noop_wall = olivepipe("apply", wf)
    return {
        "per_node": per_node,
        "olivepipe_apply_all_wall_s": round(apply_wall, 3),
        "olive_run_sum_wall_s": round(sum(v["olive_run_wall_s"] for v in per_node.values()), 3),
        "olive_cached": {"per_node_wall_s": cached, "sum_wall_s": round(sum(cached.values()), 3),
                         "olivepipe_noop_apply_wall_s": round(noop_wall, 3)},
    }


def bench_incremental(tmp: Path) -> dict:
    wf = example_copy(tmp, "incr")
    olivepipe("apply", wf)
    out = {}
    wf.write_text(wf.read_text().replace("max_new_tokens: 16", "max_new_tokens: 8"))
    p, _ = olivepipe("apply", "--json", wf)
    out["olivepipe_leaf_param"] = [s["name"] for s in _result(p.stdout)["steps"] if s["status"] == "ran"]
    data = wf.parent / "data" / "travel.jsonl"
    data.write_text(data.read_text().replace("Chicago", "Chicago, IL"))
    p, _ = olivepipe("apply", "--json", wf)
    out["olivepipe_data_edit"] = [s["name"] for s in _result(p.stdout)["steps"] if s["status"] == "ran"]
    # Olive's own cache, one chained workflow (LoRA -> ModelBuilder -> ExtractAdapters)
    from olivepipe.preview import compile_preview

    cfg = compile_preview(open_workspace(wf), ["finetune"])["finetune"]
    cfg["passes"].update({"onnx": {"type": "ModelBuilder", "precision": "int4"}, "adapters": {"type": "ExtractAdapters"}})
    cfg["cache_dir"] = str(tmp / "chain-cache")
    ran = []
    for step in ("first", "leaf_param", "data_edit"):
        c = json.loads(json.dumps(cfg))
        if step == "leaf_param":
            cfg["passes"]["adapters"]["dynamic_lora_r"] = False
            c = json.loads(json.dumps(cfg))
        if step == "data_edit":
            data.write_text(data.read_text().replace("Paris", "Paris, France"))
        c["output_dir"] = str(tmp / f"chain-{step}")
        proc, wall = olive_run(c, tmp / f"chain-{step}.json")
        ran.append((step, [m[0] for m in PASS_RE.findall(proc.stdout + proc.stderr)], round(wall, 2)))
    out["olive_cache"] = {s: {"passes_run": r, "wall_s": w} for s, r, w in ran}
    return out


def bench_concurrency(tmp: Path) -> dict:
    d = example_copy(tmp, "conc")
    text = d.read_text().split("\nnodes:\n")[0] + """
nodes:
  a: {pass: lora, input: phi3-tiny, data: travel, params: {r: 4, torch_dtype: float32, max_steps: 30}}
  b: {pass: lora, input: phi3-tiny, data: travel, params: {r: 8, torch_dtype: float32, max_steps: 30}}
"""
    d.write_text(text)
    olivepipe("apply", "--target", "phi3-tiny", d)
    res = {}
    for j in (1, 2):
        p, wall = olivepipe("apply", "--json", "--force", "a", "--force", "b", "-j", str(j), d)
        steps = {s["name"]: s["seconds"] for s in _result(p.stdout)["steps"]}
        res[f"jobs_{j}"] = {"wall_s": round(wall, 2), "branch_s": {k: round(v, 2) for k, v in steps.items() if k in "ab"}}
    res["cpus"] = os.cpu_count()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=3.0, help="total size of the multi-GB artifacts")
    ap.add_argument("--skip-olive", action="store_true", help="only the olivepipe-side sections (no Olive runs)")
    ap.add_argument("--only", choices=["noop", "olive", "incremental", "concurrency"], help="run one section")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="olivepipe-bench-"))
    out = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}}
    want = lambda s: args.only in (None, s) and (s == "noop" or not args.skip_olive)  # noqa: E731
    try:
        if want("noop"):
            out["noop"], big_wf = bench_noop(tmp, args.gb)
            out["hashing"] = bench_hashing(big_wf)
            out["materialize"] = bench_materialize(big_wf)
        if want("olive"):
            out["olive"] = bench_olive(tmp)
        if want("incremental"):
            out["incremental"] = bench_incremental(tmp)
        if want("concurrency"):
            out["concurrency"] = bench_concurrency(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
