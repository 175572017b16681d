"""Crash safety with real Olive, real processes and real signals.

Two applied setups are shared by the tests of this file, to keep full applies few on a
2-core CI (about 2 minutes for the whole file):

* ``crash``: one copy of the example; apply A has its worker SIGKILLed during `finetune`
  while a second apply of the same workflow is refused; apply C is SIGKILLed itself during
  `finetune`; apply D resumes.
* ``twins``: two copies applied at once over one shared cache, with fake secrets in the
  environment and the network audit on; then corrupted and re-applied.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import EXAMPLE, cli, apply_result
from olivepipe.core import lock as lockfile
from olivepipe.stores.local import Store
from test_crash_safety import assert_store_consistent, gone

pytestmark = pytest.mark.e2e
WF = "travel-tiny"
NODES = ["phi3-tiny", "finetune", "onnx", "adapters", "chat"]
SECRETS = {  # fake, but shaped like the real ones
    "AZURE_CLIENT_SECRET": "olvp-fake-client-secret-7Q~xk3c9",
    "AZURE_CLIENT_ID": "0d5a8a5e-5ce7-4c1b-9f3e-olvpfake0001",
    "AZURE_TENANT_ID": "7f0f6d4e-1c3b-4d5e-8f9a-olvpfake0002",
    "AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountKey=olvpFakeAccountKey==",
    "HF_TOKEN": "hf_olvpFakeTokenDoNotLeak0123456789",
    "HUGGING_FACE_HUB_TOKEN": "hf_olvpFakeTokenDoNotLeak9876543210",
    "OPENAI_API_KEY": "sk-olvp-fake-openai-key-0000",
    "WANDB_API_KEY": "olvp-fake-wandb-key-1111",
    "AWS_SECRET_ACCESS_KEY": "olvp/fake/aws/secret/2222",
}


def copy_example(dest: Path) -> Path:
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".olivepipe", "outputs", "olivepipe.lock"))
    wf = dest / "workflow.yaml"
    # crash safety concerns the five-step pipeline: the example's evaluate branch (and the select
    # node choosing the chat model from it) is left out; chat reads the int4 model directly
    five = wf.read_text().split("\n  # What int4 and the adapter cost")[0] + "\n"
    wf.write_text(five.replace("    input: best ", "    input: adapters "))
    return wf


def start(wf: Path, *args, env=None, base=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "olivepipe.cli", "apply", "--json", *map(str, args), str(wf)],
                            cwd=wf.parent, env={**(os.environ if base is None else base), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout=600) -> tuple[int, dict, str]:
    out, err = proc.communicate(timeout=timeout)
    try:
        data = apply_result(out)
    except (ValueError, IndexError):
        data = {}
    return proc.returncode, data, err


def statuses(data: dict) -> dict:
    return {s["name"]: s["status"] for s in data.get("steps", [])}


def workers(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for k in kids:
        try:
            if "olivepipe.run.worker" in " ".join(k.cmdline()):
                out.append(k)
        except psutil.Error:
            pass
    return out


def wait_running(proc: subprocess.Popen, wf: Path, node: str, settle: float = 1.0) -> list[psutil.Process]:
    """Block until Olive runs `node`'s pass in a live worker (its log says so), then a little more."""
    log = wf.parent / ".olivepipe" / "logs" / WF / f"{node}.log"
    deadline = time.monotonic() + 300
    while not (log.exists() and f"Running pass {node}" in log.read_text(errors="replace") and workers(proc)):
        assert proc.poll() is None, f"apply ended before {node} started: {proc.communicate()}"
        assert time.monotonic() < deadline, f"{node} never started"
        time.sleep(0.1)
    time.sleep(settle)
    assert proc.poll() is None, f"apply ended before it could be interrupted: {proc.communicate()}"
    return workers(proc)


def lock_nodes(wf: Path) -> dict:
    return lockfile.nodes(wf.parent / "olivepipe.lock", WF)  # parses, or raises


# -- crash safety and one-apply-per-workflow ------------------------------------------------------

@pytest.fixture(scope="module")
def crash(tmp_path_factory):
    wf = copy_example(tmp_path_factory.mktemp("crash") / "travel")
    # long enough (several seconds of training) that a kill one second in lands inside the node
    wf.write_text(wf.read_text().replace("max_steps: 4,", "max_steps: 400,"))
    state = {"wf": wf, "cache": wf.parent / ".olivepipe" / "cache"}
    # A: SIGKILL the worker while `finetune` runs; meanwhile a second apply is refused
    a = start(wf)
    victims = wait_running(a, wf, "finetune")
    t0 = time.monotonic()
    state["second"] = cli("apply", wf, timeout=120)
    state["second_s"] = time.monotonic() - t0
    assert len(victims) == 1
    victims[0].kill()
    state["A"] = finish(a)
    state["after_A"] = {"lock": lock_nodes(wf), "keys": Store(state["cache"]).keys()}
    assert_store_consistent(state["cache"])
    # C: SIGKILL olivepipe itself while `finetune` runs
    c = start(wf)
    state["C_workers"] = [w.pid for w in wait_running(c, wf, "finetune")]
    c.kill()
    c.wait()
    deadline = time.monotonic() + 10
    while not all(gone(p) for p in state["C_workers"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    state["orphans"] = [p for p in state["C_workers"] if not gone(p)]
    for p in state["orphans"]:
        os.kill(p, signal.SIGKILL)
    state["after_C"] = {"lock": lock_nodes(wf), "keys": Store(state["cache"]).keys(),
                        "tmp": sorted(p.name for p in (state["cache"] / "tmp").iterdir())}
    assert_store_consistent(state["cache"])
    # D: resume. The kills above needed a long node; the resume does not: back to 4 steps (the
    # tiny model is a separate step, still cached; finetune and everything after it runs)
    wf.write_text(wf.read_text().replace("max_steps: 400,", "max_steps: 4,"))
    state["D"] = finish(start(wf))
    return state


def test_second_apply_of_the_same_workflow_is_refused_at_once(crash):
    r = crash["second"]
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"another `olivepipe apply` of '{WF}' is running" in r.stderr and "Traceback" not in r.stderr
    assert crash["second_s"] < 30  # refused, not queued behind the running apply


def test_killed_worker_fails_its_node_only(crash):
    code, data, err = crash["A"]
    assert code == 1 and "Traceback" not in err
    st = statuses(data)
    assert st == {"phi3-tiny": "ran", "finetune": "failed", "onnx": "skipped", "adapters": "skipped", "chat": "skipped"}
    ft = next(s for s in data["steps"] if s["name"] == "finetune")
    assert "killed by signal 9" in ft["error"]
    # what finished before the kill is recorded and stored, nothing else
    assert set(crash["after_A"]["lock"]) == {"phi3-tiny"}
    assert crash["after_A"]["keys"] == [crash["after_A"]["lock"]["phi3-tiny"]["key"]]


def test_killed_orchestrator_leaves_no_orphan_worker_and_no_half_state(crash):
    assert crash["C_workers"] and crash["orphans"] == []
    assert set(crash["after_C"]["lock"]) == {"phi3-tiny"}  # the lock parses and holds only finished work
    assert crash["after_C"]["keys"] == crash["after_A"]["keys"]
    # the interrupted node's staging is left in tmp/, which is never served; gc takes it
    assert any("finetune" in n for n in crash["after_C"]["tmp"])


def test_next_apply_resumes_from_the_last_finished_node(crash):
    code, data, err = crash["D"]
    assert code == 0, err[-3000:]
    assert statuses(data) == {"phi3-tiny": "cached", "finetune": "ran", "onnx": "ran", "adapters": "ran", "chat": "ran"}
    assert set(lock_nodes(crash["wf"])) == set(NODES)
    assert_store_consistent(crash["cache"])
    r = cli("cache", "gc", crash["wf"])
    assert r.returncode == 0 and "removed 0 entries" in r.stdout
    assert list((crash["cache"] / "tmp").iterdir()) == []  # the dead apply's staging is gone
    assert len(Store(crash["cache"]).keys()) == len(NODES)


# -- shared cache in parallel, secrets, network silence, corruption ----------------------------------

@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    root = tmp_path_factory.mktemp("twins")
    cache, audit = root / "shared-cache", root / "network-audit.jsonl"
    env = {**SECRETS, "OLIVEPIPE_CACHE_DIR": str(cache), "OLIVEPIPE_NETWORK_AUDIT": str(audit)}
    # what keeps an apply silent must come from olivepipe, not from this machine's settings
    base = {k: v for k, v in os.environ.items() if k not in
            ("CI", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "OLIVE_DISABLE_TELEMETRY",
             "HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK")}
    wfs = [copy_example(root / name) for name in ("alpha", "beta")]
    procs = [start(wf, env=env, base=base) for wf in wfs]  # at the same time, over one cache
    results = [finish(p) for p in procs]
    return {"root": root, "cache": cache, "audit": audit, "wfs": wfs, "results": results, "env": env}


def test_two_workspaces_sharing_a_cache_in_parallel_both_succeed(twins):
    for code, data, err in twins["results"]:
        assert code == 0, err[-3000:]
        assert set(statuses(data).values()) <= {"ran", "cached"} and len(data["steps"]) == len(NODES)
    assert_store_consistent(twins["cache"])
    r = cli("cache", "verify", "--cache-dir", twins["cache"])
    assert r.returncode == 0, r.stdout
    # one entry per key, both lock files point at entries that exist
    keys = Store(twins["cache"]).keys()
    for wf in twins["wfs"]:
        assert {rec["key"] for rec in lock_nodes(wf).values()} <= set(keys)
        assert (wf.parent / "outputs" / WF / "chat" / "report.json").is_file()


def test_secrets_in_the_environment_reach_no_file(twins):
    needles = [v.encode() for v in twins["env"].values() if v in SECRETS.values()]
    leaks = []
    for top in [*(wf.parent for wf in twins["wfs"]), twins["cache"]]:
        for p in top.rglob("*"):
            if p.is_file() and not p.is_symlink():
                data = p.read_bytes()
                leaks += [f"{p}: {n[:12]!r}..." for n in needles if n in data]
    assert leaks == []


def test_apply_makes_no_network_connection(twins):
    """Orchestrators and workers of both applies ran with the audit hook (netaudit.py)."""
    events = [json.loads(line) for line in twins["audit"].read_text().splitlines()]
    started = [e for e in events if e["event"] == "audit.start"]
    # proof the audit was on: both orchestrators and at least one worker of each
    assert sum("olivepipe.cli" in e["argv"] for e in started) == 2
    assert sum("olivepipe.run.worker" in e["argv"] for e in started) >= 2
    traffic = [e for e in events if e["event"] != "audit.start"]
    assert traffic == [], json.dumps(traffic[:5], indent=1)


def test_corrupt_entries_are_reported_never_served_and_rebuilt(twins):
    wf = twins["wfs"][0]
    store = Store(twins["cache"])
    locked = lock_nodes(wf)
    chat, adapters = (store.get(locked[n]["key"]) for n in ("chat", "adapters"))
    report = chat.tree / "report.json"
    report.chmod(0o644)
    data = bytearray(report.read_bytes())
    data[10] ^= 0x01  # flip one bit
    report.write_bytes(bytes(data))
    victim = sorted(p for p in adapters.tree.rglob("*") if p.is_file())[0]
    victim.unlink()

    r = cli("cache", "verify", wf, env={"OLIVEPIPE_CACHE_DIR": str(twins["cache"])})
    assert r.returncode == 1
    assert f"CORRUPT {chat.key[:16]}" in r.stdout and f"CORRUPT {adapters.key[:16]}" in r.stdout

    env = {"OLIVEPIPE_CACHE_DIR": str(twins["cache"])}
    r = cli("plan", "--json", wf, env=env)
    plan = {s["name"]: s for s in json.loads(r.stdout)["steps"]}
    assert plan["adapters"]["status"] == "run" and plan["chat"]["status"] == "run"
    assert "missing from the cache" in plan["adapters"]["reasons"][0]
    assert plan["onnx"]["status"] == "cached"

    r = cli("apply", "--json", wf, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    st = statuses(apply_result(r.stdout))
    assert st["adapters"] == "ran" and st["onnx"] == "cached" and st["phi3-tiny"] == "cached"
    assert st["chat"] == "ran"  # its entry was dropped as corrupt: rebuilt, never served
    assert cli("cache", "verify", wf, env=env).returncode == 0
    assert json.loads((wf.parent / "outputs" / WF / "chat" / "report.json").read_text())["runs"]


# -- a real full disk ---------------------------------------------------------------------------

def test_real_disk_full_fails_the_node_cleanly(tmp_path):
    """A 1.2 MB tmpfs as the cache: the tiny model (~0.85 MB) fits, the fine-tune does not."""
    wf = copy_example(tmp_path / "travel")
    cache = tmp_path / "small-cache"
    cache.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(cache)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        code, data, err = finish(start(wf, "--cache-dir", cache))
        assert code == 1 and "Traceback" not in err
        st = statuses(data)
        assert st["phi3-tiny"] == "ran" and st["finetune"] == "failed" and st["chat"] == "skipped"
        ft = next(s for s in data["steps"] if s["name"] == "finetune")
        assert "No space left on device" in ft["error"]
        assert_store_consistent(cache)
        assert Store(cache).keys() == [lock_nodes(wf)["phi3-tiny"]["key"]]
        assert list((cache / "tmp").iterdir()) == []  # the failed node's staging was removed
    finally:
        subprocess.run(["umount", str(cache)], capture_output=True)
