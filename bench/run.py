"""olivepipe benchmarks, side by side with Olive's own `olive run`. Prints one JSON document.

    python bench/run.py [--gb 3] [--skip-olive] [--only SECTION ...] [--example committed|worktree]
    python bench/run.py --quick --json FILE    # the issue-25 figures in minutes (bench/quick.py); Olive runs
                                               # only for the peers' `olive run` (--skip-olive: not even that)

--skip-olive leaves out olive, incremental and concurrency, and runs noop_example on the
lab-shaped fake pipeline (the example's nodes are Olive passes). BLAKE3 is measured only where
the `blake3` package is installed (`.venv/bin/pip install blake3`; not a dependency).

Sections (see docs/performance.md for recorded results; `targets` at the top sums up issue 15):
  noop            fully cached apply of a lab-shaped 6-node pipeline, tiny vs multi-GB artifacts,
                  interleaved with a bare `python -c pass`
  noop_example    (target 1) no-op `apply` and `plan` of examples/travel-tiny as fresh processes vs a
                  bare interpreter, interleaved; import-time breakdown; Olive's cached runs beside it
  hashing         (target 2) cold sha256 vs plain read vs BLAKE3, the file evicted from the page cache; a touched but
                  unchanged file; a copied store; warm (stat-cached) hashing
  materialize     cache-hit materialization of the multi-GB result; store disk use
  store           (target 3) LoRA-like base + finetune entries: disk use vs distinct bytes;
                  materialization at several sizes
  scale           (target 4) validate + plan of 100 / 1,000 / 10,000 expanded nodes
  olive           (target 5) olivepipe step vs `olive run --config` of the same JSON, Olive's own pass
                  time, and `olive run` with Olive's cache warm
  gpu_lab         (target 6) null here: measured on the GPU machine by bench/gpu_lab.sh
  incremental     passes run after a leaf param change / a data edit, olivepipe vs Olive's cache
  concurrency     two independent branches with -j 1 vs -j 2
No timed asserts anywhere: this prints numbers. Each timing is taken next to its baseline in
the same loop, repeated, with the load average it ran under.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from olivepipe.core.keys import key_of  # noqa: E402
from olivepipe.olive.runtime import worker_env  # noqa: E402
from olivepipe.stores.local import materialize  # noqa: E402
from olivepipe.flow.workspace import open_workspace  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
import targets  # noqa: E402
from peers import PASS_RE  # noqa: E402

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




def read_rate(path: Path) -> float:
    t0 = time.perf_counter()
    buf = bytearray(1 << 20)  # same access pattern as hashlib.file_digest
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass
    return path.stat().st_size / (time.perf_counter() - t0) / 1e9


# the 5-stage chain the peers run too (bench/peers.py): the lab shape without its register leaf
CHAIN5 = "".join(ln for ln in LAB_SHAPE.splitlines(True) if not ln.lstrip().startswith("register:"))


def fake_pipeline(root: Path, big: dict[str, int], text: str = LAB_SHAPE) -> Path:
    """Lab-shaped workflow whose results are published to the store directly (sizes in bytes)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "travel.jsonl").write_text('{"prompt": "a", "response": "b"}\n' * 8)
    wf = root / "workflow.yaml"
    wf.write_text(text)
    ws = open_workspace(wf)
    ws.store.ensure()
    digests, timings = {}, {}
    for name in ws.steps():
        rec, _ = ws.record(name, digests)
        out = ws.store.staging(name) / "out"
        size = big.get(name, 4096)
        write_big(out / "payload.bin", max(size, 1 << 20)) if size >= 1 << 20 else (
            out.mkdir(parents=True), (out / "payload.bin").write_bytes(os.urandom(size)))
        dropped = targets.evict(out / "payload.bin") if size >= 1 << 20 else False
        t0 = time.perf_counter()
        e = ws.store.publish(key_of(rec), out, {"model": {"type": "hfmodel", "config": {"model_path": "$OUT"}},
                                                "kind": ws.step(name).kind.name})
        timings[name] = {"bytes": e.size, "publish_s": round(time.perf_counter() - t0, 3), "cold": dropped}
        shutil.rmtree(out.parent, ignore_errors=True)
        digests[name] = e.digest
        from olivepipe.core import lock as lockfile

        lockfile.update(ws.lock_path, ws.lock_name, {name: {"key": e.key, "kind": rec["kind"], "record": rec}})
    ws.stats.close()  # an open writer keeps its rows in SQLite's WAL, unseen by read-only readers
    return wf, timings


def bench_noop(tmp: Path, gb: float) -> dict:
    res = {}
    small_wf, _ = fake_pipeline(tmp / "noop-small", {})
    big_sizes = {"finetune": int(gb * 2 / 3 * (1 << 30)), "onnx": int(gb / 3 * (1 << 30))}
    big_wf, publish = fake_pipeline(tmp / "noop-big", big_sizes)
    for wf in (small_wf, big_wf):
        olivepipe("apply", wf)  # materialize links, warm the validation memo
    r = targets.interleaved({"bare_python": [PY, "-c", "pass"],
                             "tiny_artifacts": [*targets.OLIVEPIPE, "apply", str(small_wf)],
                             "multi_gb_artifacts": [*targets.OLIVEPIPE, "apply", str(big_wf)]}, 7)
    bare = statistics.median(r["walls"]["bare_python"])
    res["bare_python_wall_s_median"] = round(bare, 4)
    for label in ("tiny_artifacts", "multi_gb_artifacts"):
        runs = r["walls"][label]
        res[label] = {"apply_wall_s_median": round(statistics.median(runs), 4),
                      "ratio_to_bare": round(statistics.median(runs) / bare, 2), "runs": [round(t, 4) for t in runs]}
    res["load_1min_per_round"] = r["load_1min_per_round"]
    res["multi_gb_artifacts"]["artifact_bytes"] = sum(big_sizes.values())
    res["publish"] = publish
    return res, big_wf


def bench_hashing(big_wf: Path, tmp: Path) -> dict:
    from olivepipe.core.hashing import StatCache

    out = targets.bench_cold_hashing(big_wf, tmp)
    ws = open_workspace(big_wf)
    f = ws.store.get(ws.lock_nodes()["finetune"]["key"]).tree / "payload.bin"
    sc = StatCache(Path(tempfile.mkdtemp()) / "state.db")
    sc.digest(f)
    warm = []
    for _ in range(21):
        t0 = time.perf_counter()
        sc.digest(f)
        warm.append(time.perf_counter() - t0)
    out["warm_stat_cached_s"] = round(statistics.median(warm), 6)
    return out


def bench_materialize(big_wf: Path) -> dict:
    ws = open_workspace(big_wf)
    entry = ws.store.get(ws.lock_nodes()["finetune"]["key"])
    dest = big_wf.parent / "elsewhere" / "finetune"
    t0 = time.perf_counter()
    materialize(entry, dest)
    t = time.perf_counter() - t0
    ws.stats.close()
    du = int(subprocess.run(["du", "-sb", str(ws.store.root)], capture_output=True, text=True).stdout.split()[0])
    artifacts = sum(ws.store.get(k).size for k in ws.store.keys())
    return {"entry_bytes": entry.size, "materialize_ms": round(t * 1000, 3),
            "store_du_bytes": du, "sum_of_artifact_bytes": artifacts}


EXAMPLE = {"source": "committed", "rev": "HEAD"}  # set by --example; rev pinned when the run starts


def example_copy(tmp: Path, name: str) -> Path:
    """examples/travel-tiny in a fresh folder: as committed at HEAD (`git archive`; the default:
    the shared work tree can hold someone's half-made edit of it), or as in the work tree."""
    d = tmp / name
    if EXAMPLE["source"] == "committed":
        import io
        import tarfile

        p = subprocess.run(["git", "-C", str(REPO), "archive", EXAMPLE["rev"], "examples/travel-tiny"],
                           capture_output=True, check=False)
        if p.returncode == 0:
            unpack = tmp / f".{name}-archive"
            with tarfile.open(fileobj=io.BytesIO(p.stdout)) as tar:
                tar.extractall(unpack, filter="data")
            shutil.move(unpack / "examples" / "travel-tiny", d)
            shutil.rmtree(unpack)
            return d / "workflow.yaml"
        EXAMPLE["source"] = f"worktree (git archive failed: {p.stderr.decode()[-200:]})"
    shutil.copytree(REPO / "examples" / "travel-tiny", d, ignore=shutil.ignore_patterns(".olivepipe", "outputs", "olivepipe.lock"))
    return d / "workflow.yaml"


def example_info() -> dict:
    import hashlib

    if EXAMPLE["source"] == "committed":
        rev = EXAMPLE["rev"]
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:examples/travel-tiny/workflow.yaml"],
                              capture_output=True).stdout
        where = f"git {rev[:12]} (HEAD when the run started)"
    else:
        text = (REPO / "examples" / "travel-tiny" / "workflow.yaml").read_bytes()
        where = EXAMPLE["source"]
    return {"source": where, "workflow_sha256": hashlib.sha256(text).hexdigest()}


def olive_run(config: dict, cfg_path: Path) -> tuple[subprocess.CompletedProcess, float]:
    cfg_path.write_text(json.dumps(config))
    return sh([PY, "-m", "olive", "run", "--config", str(cfg_path)], env=worker_env(), timeout=1800)




def olive_cached_node(tmp: Path) -> dict:
    """`olive run --config` of the example's LoRA node (on the tiny model, which olivepipe builds
    without Olive), run once so that Olive's own cache holds it: the command that runs it again."""
    from olivepipe.report.preview import compile_preview

    wf = example_copy(tmp, "olive-peer")
    p, _ = olivepipe("apply", "--target", "phi3-tiny", wf)
    assert p.returncode == 0, p.stdout + p.stderr
    cfg = compile_preview(open_workspace(wf), ["finetune"])["finetune"]
    cfg.update(cache_dir=str(tmp / "olive-peer-cache"), output_dir=str(tmp / "olive-peer-out"))
    path = tmp / "olive-peer.json"
    first, wall = olive_run(cfg, path)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    olive = Path(PY).parent / "olive"
    return {"cmd": [str(olive) if olive.exists() else PY, *([] if olive.exists() else ["-m", "olive"]), "run",
                    "--config", str(path)],
            "env": worker_env(), "node": "examples/travel-tiny finetune (LoRA, 4 steps, tiny Phi-3)",
            "first_run_s": round(wall, 3), "first_run_passes": len(PASS_RE.findall(first.stdout + first.stderr))}


def bench_olive(tmp: Path) -> dict:
    wf = example_copy(tmp, "olive-side")
    p, apply_wall = olivepipe("apply", "--json", "--force-all", wf)
    steps = {s["name"]: s for s in _result(p.stdout)["steps"]}
    from olivepipe.report.preview import compile_preview

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
    from olivepipe.report.preview import compile_preview

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


SECTIONS = ["noop", "noop_example", "hashing", "materialize", "store", "scale", "olive", "gpu_lab",
            "incremental", "concurrency"]
NEEDS_OLIVE = {"olive", "incremental", "concurrency"}
QUICK_SECTIONS = ["noop", "peers", "per_node", "scale", "hashing", "verify"]


def summary(out: dict) -> list[dict]:
    """One row per issue-15 target: the goal, the number measured, met or not."""
    out = {k: v for k, v in out.items() if not (isinstance(v, dict) and "error" in v)}
    rows = []
    ne = out.get("noop_example")
    if ne:
        rows.append({"target": 1, "goal": "no-op apply and plan of the example <= 3x bare `python -c pass`",
                     "measured": {"apply_x_bare": ne["ratio_apply_to_bare"], "plan_x_bare": ne["ratio_plan_to_bare"],
                                  "bare_s": ne["median_wall_s"]["bare_python"], "apply_s": ne["median_wall_s"]["apply"],
                                  "plan_s": ne["median_wall_s"]["plan"]},
                     "met": ne["met"], "section": "noop_example"})
    h = out.get("hashing")
    if h:
        rows.append({"target": "2a", "goal": "cold sha256 at the disk's read rate",
                     "measured": {"sha256_gb_s": h["cold_gb_s_median"]["sha256_file_digest"],
                                  "read_gb_s": h["cold_gb_s_median"]["plain_read"],
                                  "blake3_gb_s": h["cold_gb_s_median"].get("blake3_1_thread"),
                                  "sha256_hot_gb_s": h["hot_gb_s_median"]["sha256_file_digest"]},
                     "met": h["met"], "section": "hashing"})
        t = h["touched_unchanged"]
        rows.append({"target": "2b", "goal": "touched-but-unchanged file re-hashed once, then never",
                     "measured": {"result_file_reads": t["result_file_reads"], "data_file_reads": t["data_file_reads"]},
                     "met": t["met_by_apply"], "section": "hashing.touched_unchanged"})
        c = h["copied_store"]
        rows.append({"target": "2c", "goal": "a copied store keeps its entries",
                     "measured": {k: {x: c[k][x] for x in ("entries_kept", "entries_in_source", "get_1_s", "get_2_s")}
                                  for k in ("shutil_copytree", "cp_r_new_mtimes")},
                     "met": all(c[k]["entries_kept"] == c[k]["entries_in_source"] for k in ("shutil_copytree", "cp_r_new_mtimes")),
                     "section": "hashing.copied_store"})
    st = out.get("store")
    if st:
        rows.append({"target": 3, "goal": "store disk use equals distinct bytes; materialize in ms",
                     "measured": {"distinct": st["distinct_bytes"], "disk_usage": st["store_disk_usage"],
                                  "blocks": st["store_blocks_bytes"], "sum_of_entries": st["sum_of_entry_bytes"],
                                  "materialize_total_ms": {k: v["total_ms"] for k, v in st["materialize"]["by_entry_bytes"].items()}},
                     "met": st["met"], "section": "store"})
    sc = out.get("scale")
    if sc:
        big = str(sc["sizes"][-1])
        rows.append({"target": 4, "goal": sc["target"],
                     "measured": {s: sc[s][big]["validate_plus_plan_s"] for s in ("chain", "wide", "matrix", "fanout")},
                     "met": sc["met"], "section": "scale"})
    ol = out.get("olive")
    if ol:
        pn = ol["per_node"]
        later = [v["olivepipe_overhead_s"] for k, v in pn.items() if k != "finetune"]
        rows.append({"target": 5, "goal": "per-node overhead within 0.3 s of Olive's own logged pass time",
                     "measured": {k: v["olivepipe_overhead_s"] for k, v in pn.items()},
                     "met": all(x is not None and x <= 0.3 for x in [*later, pn["finetune"]["olivepipe_overhead_s"]]),
                     "met_after_first_olive_node": all(x is not None and x <= 0.3 for x in later),
                     "section": "olive.per_node"})
    if "gpu_lab" in out:
        rows.append({"target": 6, "goal": "full-size lab branches on one GPU", "measured": None, "met": None,
                     "reason": out["gpu_lab"]["reason"], "section": "gpu_lab"})
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=3.0, help="total size of the multi-GB artifacts")
    ap.add_argument("--skip-olive", action="store_true", help="only the olivepipe-side sections (no Olive runs)")
    ap.add_argument("--only", choices=sorted({*SECTIONS, *QUICK_SECTIONS}), action="append",
                    help="run this section (repeatable; with --quick: one of %s)" % ", ".join(QUICK_SECTIONS))
    ap.add_argument("--example", choices=["committed", "worktree"], default="committed",
                    help="examples/travel-tiny as committed at HEAD (default) or as in the work tree")
    ap.add_argument("--scale-sizes", default="100,1000,10000", help="expanded node counts of the scale section")
    ap.add_argument("--quick", action="store_true", help="the issue-25 figures only (bench/quick.py); --gb defaults to 1")
    ap.add_argument("--json", dest="json_path", help="also write the JSON document to this file")
    ap.add_argument("--pairs", type=int, default=15, help="--quick: alternating pairs per whole-process ratio")
    ap.add_argument("--markdown", metavar="JSON", help="print docs/performance.md's tables from a --quick run's JSON")
    args = ap.parse_args()
    if args.markdown:
        import quick

        print(quick.markdown(json.loads(Path(args.markdown).read_text())))
        return
    if args.quick:
        import quick

        quick.main(args.json_path, fake_pipeline, gb=args.gb if "--gb" in sys.argv else 1.0, pairs=args.pairs,
                   chain=lambda root: fake_pipeline(root, {}, CHAIN5),
                   olive_node=None if args.skip_olive else olive_cached_node, only=args.only)
        return
    EXAMPLE["source"] = args.example
    if args.example == "committed":  # one example for the whole run, whatever lands meanwhile
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
        EXAMPLE["rev"] = rev.stdout.strip() or "HEAD"
    tmp = Path(tempfile.mkdtemp(prefix="olivepipe-bench-"))
    out = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                       **targets.machine()},
           "command": " ".join(["bench/run.py", *sys.argv[1:]])}
    want = lambda s: (not args.only or s in args.only) and not (args.skip_olive and s in NEEDS_OLIVE)  # noqa: E731
    big = {}

    def big_wf() -> Path:
        if "wf" not in big:
            sizes = {"finetune": int(args.gb * 2 / 3 * (1 << 30)), "onnx": int(args.gb / 3 * (1 << 30))}
            big["wf"], _ = fake_pipeline(tmp / "noop-big", sizes)
        return big["wf"]

    def timed(name, fn):
        t0 = time.perf_counter()
        print(f"[bench] {name} ... (load {targets.load()})", file=sys.stderr, flush=True)
        try:
            out[name] = fn()
        except Exception as e:  # one broken section must not lose the others' numbers
            import traceback

            traceback.print_exc()
            out[name] = {"error": f"{type(e).__name__}: {e}"[:2000]}
        print(f"[bench] {name} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    try:
        if want("noop"):
            def _noop():
                res, big["wf"] = bench_noop(tmp, args.gb)
                return res
            timed("noop", _noop)
        if want("materialize"):
            timed("materialize", lambda: bench_materialize(big_wf()))
        if want("hashing"):
            timed("hashing", lambda: bench_hashing(big_wf(), tmp))
        if big:
            shutil.rmtree(big["wf"].parent, ignore_errors=True)
        if want("store"):
            timed("store", lambda: targets.bench_store_dedup(tmp, args.gb))
        if want("scale"):
            timed("scale", lambda: targets.bench_scale(tmp, [int(x) for x in args.scale_sizes.split(",")]))
        if want("noop_example"):
            timed("noop_example", lambda: targets.bench_noop_example(
                tmp, skip_olive=args.skip_olive, example_copy=example_copy, fake_pipeline=fake_pipeline))
        if want("olive"):
            timed("olive", lambda: bench_olive(tmp))
        if want("gpu_lab"):
            out["gpu_lab"] = targets.gpu_lab()
        if want("incremental"):
            timed("incremental", lambda: bench_incremental(tmp))
        if want("concurrency"):
            timed("concurrency", lambda: bench_concurrency(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if "noop_example" in out:
        oc = out.get("olive", {}).get("olive_cached")
        out["noop_example"]["olive_equivalent"] = oc or "not run (--skip-olive or --only without olive)"
    out["machine"]["load_at_end"] = targets.load()
    out["example"] = example_info()
    if EXAMPLE["source"] == "committed":
        wf = subprocess.run(["git", "-C", str(REPO), "show", f"{EXAMPLE['rev']}:examples/travel-tiny/workflow.yaml"],
                            capture_output=True, text=True).stdout
        out["example"]["nodes"] = [ln.split(":")[0].strip() for ln in wf.split("\nnodes:\n", 1)[-1].splitlines()
                                   if ln.startswith("  ") and not ln.startswith("   ") and ":" in ln
                                   and not ln.lstrip().startswith("#")]
    out = {"targets": summary(out), **out}
    print(json.dumps(out, indent=2))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
