"""The Ray executor on a real Ray cluster: a head and two worker nodes on loopback (tests/raycluster.py),
one CPU each, token authentication on, started once for this module and stopped by PID.

- the tiny travel pipeline's shape with real Olive passes (LoRA, ModelBuilder int4 twice, adapter
  extraction, generate): every node a Ray task, two of them on different Ray nodes at once, the
  network audit silent off loopback, a second apply all cached, results byte for byte a local
  apply's (same keys, same digests, same files);
- with the `sleep` test kind (no Olive): a failing node skips its dependents while an independent one
  runs; Ctrl-C kills the running tasks' worker processes and publishes nothing;
- with the shared cache on Azurite's Blob store: tasks read their inputs from it and publish there,
  and a fresh workspace then plans everything cached;
- plan and preflight without a network call: where each node runs, and what is missing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import EXAMPLE, cli, write

try:
    import ray  # noqa: F401
except ImportError:  # CI installs the extra: there a missing ray must fail, not skip
    if os.environ.get("OLIVEPIPE_REQUIRE_RAY", "").strip() not in ("", "0"):
        raise
    pytest.skip("the ray extra is not installed (pip install -e '.[ray]')", allow_module_level=True)

import raycluster  # noqa: E402

from olivepipe.core import lock as lockfile  # noqa: E402
from olivepipe.run.executors.base import Check  # noqa: E402,F401
from olivepipe.run.executors.raycluster import RayExecutor, is_loopback, resources, version_mismatch  # noqa: E402
from olivepipe.kinds.base import Needs  # noqa: E402

RAN_ON = re.compile(r"^olivepipe: ran on Ray node (\w+) \(([^)]*)\), pid (\d+), GPUs (.*), from ([\d.]+) to ([\d.]+)$",
                    re.M)

REAL = """\
olivepipe: 1
name: travel-ray
models:
  phi3-tiny: {tiny: {arch: phi3, layers: 2, hidden: 64, heads: 4, seed: 0}}
datasets:
  travel:
    files: data/travel.jsonl
    limit: 28
    text_template: "<|user|>\\n{prompt}<|end|>\\n<|assistant|>\\n{response}<|end|>"
    max_seq_len: 64
%(defaults)s
nodes:
  finetune: {pass: lora, input: phi3-tiny, data: travel,
             params: {r: 4, alpha: 8, torch_dtype: float32, max_steps: 2, per_device_train_batch_size: 2}}
  base: {pass: model-builder, input: phi3-tiny, params: {precision: int4}}
  onnx: {pass: model-builder, input: finetune, params: {precision: int4}}
  adapters: {pass: extract-adapters, input: onnx}
  chat: {kind: generate, input: adapters, prompts: ["what is the best thing to see in chicago"], max_new_tokens: 8}
"""
ON_RAY = "defaults:\n  executor: {ray: {}}  # the cluster's address comes from RAY_ADDRESS"
REAL_NODES = ("finetune", "base", "onnx", "adapters", "chat")

SLEEPY = """\
olivepipe: 1
name: sleepy
models:
  base: {path: base}
datasets:
  notes: {files: data/notes.jsonl, text_field: text}
%(defaults)s
nodes:
%(nodes)s
"""

NOTES = '{"text": "one"}\n{"text": "two"}\n'

DRIVER = """
    import json, sys
    import fakekinds
    from olivepipe import kinds
    kinds.register(fakekinds.KIND, "fakekinds")
    from olivepipe.flow.scheduler import Interrupted, apply
    from olivepipe.flow.plan import make_plan
    from olivepipe.flow.workspace import open_workspace
    ws = open_workspace(sys.argv[1], read_only=sys.argv[2] == "plan")
    if sys.argv[2] == "plan":
        print(json.dumps({"plan": {s.name: s.status for s in make_plan(ws).steps}}), flush=True)
        sys.exit(0)
    try:
        res = apply(ws, make_plan(ws), jobs=int(sys.argv[2]))
    except Interrupted as e:
        print(json.dumps({"interrupted": e.running, "outcomes": {n: o.status for n, o in e.result.outcomes.items()}}),
              flush=True)
        sys.exit(e.exit_code)
    print(json.dumps({"outcomes": {n: o.status for n, o in res.outcomes.items()},
                      "errors": {n: o.error for n, o in res.outcomes.items()}}), flush=True)
    sys.exit(0 if res.ok else 1)
"""


@pytest.fixture(scope="module")
def cluster(azurite):  # noqa: F811
    # the cluster's own credentials for the shared cache (as a real cluster's identity would be);
    # olivepipe never sends this machine's secrets to the tasks
    c = raycluster.start(2, extra_env={"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string})
    try:
        yield c
    finally:
        c.stop()


def _env(cluster, **more) -> dict:
    return {**cluster.env, "RAY_ADDRESS": cluster.address, **more}


def _ran_on(log: Path) -> dict:
    m = RAN_ON.search(log.read_text(errors="replace"))
    assert m, f"{log.name} does not say where it ran:\n{log.read_text(errors='replace')[-2000:]}"
    return {"node": m[1], "ip": m[2], "pid": int(m[3]), "gpus": m[4], "start": float(m[5]), "end": float(m[6])}


def _lock(wf: Path, name: str) -> dict:
    return lockfile.nodes(wf.parent / "olivepipe.lock", name)


def _sleepy(root: Path, nodes: str, *, ray: bool) -> Path:
    write(root / "base" / "config.json", "{}")
    write(root / "data" / "notes.jsonl", NOTES)
    return write(root / "workflow.yaml", SLEEPY % {"defaults": ON_RAY if ray else "", "nodes": textwrap.indent(
        textwrap.dedent(nodes).strip(), "  ")})


def _drive(wf: Path, env: dict, jobs: int | str = 2, **kw) -> subprocess.Popen:
    """apply with ``jobs`` at once (or "plan") in a process of its own, with the sleep kind registered."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(DRIVER), str(wf), str(jobs)], cwd=wf.parent,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, dict, str]:
    out, err = proc.communicate(timeout=timeout)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    return proc.returncode, (json.loads(lines[-1]) if lines else {}), err


# -- real Olive passes on the cluster ---------------------------------------------------------------
@pytest.fixture(scope="module")
def real(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-real")
    wf = write(root / "ray" / "workflow.yaml", REAL % {"defaults": ON_RAY})
    shutil.copytree(EXAMPLE / "data", wf.parent / "data")
    audit = root / "network-audit.jsonl"
    # a cache outside the workspace, so that the local apply below can use the very same path:
    # a LoRA adapter's config names the path its base model was read from (here, the cache)
    cache = root / "cache"
    env = _env(cluster, OLIVEPIPE_NETWORK_AUDIT=str(audit), OLIVEPIPE_CACHE_DIR=str(cache))
    first = cli("apply", wf, "-j", "2", env=env, timeout=1500)
    second = cli("apply", wf, "-j", "2", "--json", env=env, timeout=600)
    return {"wf": wf, "first": first, "second": second, "audit": audit, "env": env, "cache": cache}


@pytest.mark.e2e
def test_every_node_runs_as_a_ray_task_two_on_different_nodes_at_once(real):
    assert real["first"].returncode == 0, real["first"].stdout[-3000:] + real["first"].stderr[-3000:]
    logs = real["wf"].parent / ".olivepipe" / "logs" / "travel-ray"
    where = {n: _ran_on(logs / f"{n}.log") for n in REAL_NODES}
    assert "submitted to the Ray cluster" in (logs / "finetune.log").read_text()
    assert "ran on Ray node" not in (logs / "phi3-tiny.log").read_text()  # a model, built here
    # finetune and base need only the tiny model: with -j 2 and one CPU per Ray node, Ray runs them
    # at once on two different nodes (the recorded node ids and wall-clock intervals show it)
    a, b = where["finetune"], where["base"]
    assert a["node"] != b["node"], where
    assert max(a["start"], b["start"]) < min(a["end"], b["end"]), where
    assert len({w["node"] for w in where.values()}) >= 2
    assert all(w["ip"] == "127.0.0.1" and w["gpus"] == "none" for w in where.values()), where


@pytest.mark.e2e
def test_second_apply_is_all_cached(real):
    r = real["second"]
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert {s["name"]: s["status"] for s in result["steps"]} == {n: "cached" for n in ("phi3-tiny",) + REAL_NODES}


@pytest.mark.e2e
def test_the_network_audit_sees_nothing_off_loopback(real):
    events = [json.loads(line) for line in real["audit"].read_text().splitlines()]
    started = [e for e in events if e["event"] == "audit.start"]
    assert any("apply" in e["argv"] for e in started)  # the orchestrator
    assert len({e["pid"] for e in started}) >= 3  # and the Ray workers that ran nodes
    off = [e for e in events if e["event"] != "audit.start" and not _loopback_event(e)]
    assert not off, off[:5]


@pytest.mark.e2e
def test_results_are_byte_identical_to_a_local_apply(real, tmp_path):
    """Last of the real-Olive tests: it moves the Ray apply's cache aside, so that a local apply of
    the same workflow writes its results at the very same path."""
    cache, moved = real["cache"], real["cache"].with_name("cache-ray")
    os.rename(cache, moved)
    local = write(tmp_path / "local" / "workflow.yaml", REAL % {"defaults": ""})
    shutil.copytree(EXAMPLE / "data", local.parent / "data")
    # Ray sets OMP_NUM_THREADS to a task's CPUs (1 here); float sums in another thread count differ in
    # their last bits, so the local workers get the same
    r = cli("apply", local, env={"OLIVEPIPE_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    on_ray, here = _lock(real["wf"], "travel-ray"), _lock(local, "travel-ray")
    for n in REAL_NODES:  # the same key (the same versions), the same content
        assert on_ray[n]["key"] == here[n]["key"], n
        key = here[n]["key"]
        _same_tree(moved / "entries" / key[:2] / key / "tree", cache / "entries" / key[:2] / key / "tree")
        if n != "chat":  # its report holds its own timings
            assert on_ray[n]["output"] == here[n]["output"], n


TIMINGS = ("seconds", "tokens_per_s", "model_load_s")  # a generate node's report measures itself


def _same_tree(a: Path, b: Path) -> None:
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert fa == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    differ = [rel for rel in fa if (a / rel).read_bytes() != (b / rel).read_bytes()]
    if (a / "report.json").exists() and set(differ) <= {Path("report.json"), Path("report.md")}:
        assert _untimed(json.loads((a / "report.json").read_text())) == _untimed(
            json.loads((b / "report.json").read_text()))  # the same answers, token for token
        return
    assert differ == []


def _untimed(doc):
    if isinstance(doc, dict):
        return {k: _untimed(v) for k, v in doc.items() if k not in TIMINGS}
    return [_untimed(v) for v in doc] if isinstance(doc, list) else doc


def _loopback_event(e: dict) -> bool:
    target = e.get("target")
    host = target[0] if isinstance(target, list) and target else str(target)
    return host in ("127.0.0.1", "::1", "localhost", "::ffff:127.0.0.1") or host.startswith("127.")


# -- failure policy and Ctrl-C (the sleep test kind) ---------------------------------------------------
def test_a_failing_node_skips_its_dependents_and_the_rest_runs(cluster, tmp_path):
    wf = _sleepy(tmp_path, """
        bad: {kind: sleep, input: base, fail: true}
        after-bad: {kind: sleep, input: bad}
        good: {kind: sleep, input: base, data: notes, note: good}
    """, ray=True)
    code, out, err = _finish(_drive(wf, _env(cluster)))
    assert code == 1, err[-3000:]
    assert out.get("outcomes") == {"bad": "failed", "after-bad": "skipped", "good": "ran"}, (out, err[-3000:])
    assert "bad was told to fail" in out["errors"]["bad"]
    logs = wf.parent / ".olivepipe" / "logs" / "sleepy"
    _ran_on(logs / "bad.log"), _ran_on(logs / "good.log")
    assert "RuntimeError: bad was told to fail" in (logs / "bad.log").read_text()  # the task's log came back
    result = json.loads((wf.parent / "outputs" / "sleepy" / "good" / "result.json").read_text())
    assert result["data"] == [NOTES]  # the data file reached the task through the store
    assert set(_lock(wf, "sleepy")) == {"good"}


def test_ctrl_c_kills_the_running_ray_tasks_and_publishes_nothing(cluster, tmp_path):
    marks = [tmp_path / "m1", tmp_path / "m2"]
    wf = _sleepy(tmp_path, f"""
        slow1: {{kind: sleep, input: base, seconds: 900, mark: {marks[0]}}}
        slow2: {{kind: sleep, input: base, seconds: 900, mark: {marks[1]}}}
    """, ray=True)
    proc = _drive(wf, _env(cluster))
    deadline = time.monotonic() + 300
    while not all(m.exists() and m.read_text() for m in marks):  # both tasks are running on the cluster
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the tasks did not start"
        time.sleep(0.2)
    pids = [int(m.read_text()) for m in marks]
    assert all(_alive(p) for p in pids)
    proc.send_signal(signal.SIGINT)
    code, out, err = _finish(proc, timeout=120)
    assert code == 130, err[-3000:]
    assert sorted(out["interrupted"]) == ["slow1", "slow2"]
    deadline = time.monotonic() + 120
    while any(_alive(p) for p in pids):  # Ray killed the workers that ran them
        assert time.monotonic() < deadline, [p for p in pids if _alive(p)]
        time.sleep(0.2)
    assert not _lock(wf, "sleepy")
    assert not (wf.parent / "outputs" / "sleepy" / "slow1").exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


# -- the shared cache on Azurite -------------------------------------------------------------------------
def test_shared_cache_on_blob_a_fresh_workspace_plans_everything_cached(cluster, azurite, container,  # noqa: F811
                                                                         tmp_path):
    nodes = """
        first: {kind: sleep, input: base, data: notes, note: first}
        left: {kind: sleep, input: first, note: left}
        right: {kind: sleep, input: first, note: right}
    """
    blob = azurite.env(container)
    wf = _sleepy(tmp_path / "a", nodes, ray=True)
    code, out, err = _finish(_drive(wf, _env(cluster, **blob)))
    assert code == 0, err[-3000:]
    assert set(out["outcomes"].values()) == {"ran"}
    for n in ("first", "left", "right"):
        _ran_on(wf.parent / ".olivepipe" / "logs" / "sleepy" / f"{n}.log")
    # the tasks published into the container (the driver did not: the job store is the shared cache)
    names = {b.name for b in azurite.service().get_container_client(container).list_blobs()}
    locked = _lock(wf, "sleepy")
    assert all(f"entries/{locked[n]['key']}.json" in names for n in ("first", "left", "right"))

    fresh = _sleepy(tmp_path / "fresh", nodes, ray=True)  # another clone: no cache, no lock
    code, out, err = _finish(_drive(fresh, _env(cluster, **blob), "plan"))
    assert code == 0, err[-3000:]
    assert set(out["plan"].values()) == {"cached"}, out
    code, out, err = _finish(_drive(fresh, _env(cluster, **blob)))  # and its apply pulls, runs nothing
    assert code == 0 and set(out["outcomes"].values()) == {"cached"}, (out, err[-3000:])

    # a node on Ray and the same node here share a key (the same versions make the same result); the
    # sleep kind writes the paths it read, so its bytes (and its dependents' keys) differ by place: the
    # real-Olive test compares bytes
    local = _sleepy(tmp_path / "local", nodes, ray=False)
    code, _, err = _finish(_drive(local, {}))
    assert code == 0, err[-3000:]
    assert _lock(local, "sleepy")["first"]["key"] == locked["first"]["key"]  # its inputs are files, not results


# -- plan and preflight: no network, what is missing -------------------------------------------------------
def test_plan_shows_where_and_makes_no_connection(tmp_path):
    wf = write(tmp_path / "workflow.yaml", REAL % {"defaults": ON_RAY})
    shutil.copytree(EXAMPLE / "data", wf.parent / "data")
    audit = tmp_path / "audit.jsonl"
    r = cli("plan", wf, env={"RAY_ADDRESS": "10.1.2.3:6379", "OLIVEPIPE_NETWORK_AUDIT": str(audit)}, timeout=300)
    assert "finetune  lora @ cpu on ray:10.1.2.3:6379" in r.stdout, r.stdout + r.stderr
    assert "a shared store the Ray cluster's machines can reach" in r.stdout, r.stdout
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [e for e in events if e["event"] != "audit.start"] == []


def test_preflight_says_what_is_missing():
    none = Needs()
    ex = RayExecutor(env={})
    chk = ex.preflight(none, "cpu", {"ray": {}})
    assert not chk.ok and any("a Ray cluster address" in m for m in chk.missing)
    ok = RayExecutor(env={"RAY_ADDRESS": "127.0.0.1:6379"}).preflight(none, "cpu", {"ray": {}})
    assert ok.ok, ok.missing
    far = RayExecutor(env={}).preflight(none, "cpu", {"ray": {"address": "ray-head.example:6379"}})
    assert any("shared store" in m for m in far.missing)
    shared = RayExecutor(env={"OLIVEPIPE_REMOTE_CACHE": "azblob://acct/cache"})
    assert shared.preflight(none, "cpu", {"ray": {"address": "ray-head.example:6379"}}).ok
    client = RayExecutor(env={}).preflight(none, "cpu", {"ray": {"address": "ray://head:10001"}})
    assert any("GCS address" in m for m in client.missing)
    pkg = RayExecutor(env={"RAY_ADDRESS": "127.0.0.1:1"}, version=lambda p: None).preflight(
        Needs(packages=("autoawq",)), "cpu", {"ray": {}})
    assert any("package autoawq" in m for m in pkg.missing)


def test_resources_from_device_and_placement():
    assert resources({"ray": {}}, "cpu", False) == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert resources({"ray": {}}, "gpu", False) == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert resources({"ray": {"num_gpus": 0.5, "num_cpus": 4, "memory_gb": 2}}, "gpu", False) == {
        "num_cpus": 4.0, "num_gpus": 0.5, "memory": 2 * 2**30}
    assert is_loopback("127.0.0.1:6379") and is_loopback("localhost:1") and is_loopback("[::1]:6379")
    assert not is_loopback("10.0.0.5:6379") and not is_loopback("auto")


def test_a_task_refuses_versions_that_differ_from_its_key():
    record = {"packages": {"torch": "2.13.0", "transformers": "5.23.0"}}
    assert version_mismatch(record, {"torch": "2.13.0", "transformers": "5.23.0"}.get) == []
    assert version_mismatch(record, {"torch": "2.13.0"}.get) == ["transformers not installed (the key says 5.23.0)"]
