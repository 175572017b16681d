"""Crash safety and security without running Olive: crash points, worker death,
disk full, unwritable caches, corruption, gc, safe loading, path escapes, no shell, network audit.

The slow counterparts (real applies, real kills) are in test_crash_safety_e2e.py.
"""
import ast
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from conftest import MINIMAL, REPO, cli, write, apply_result
from olivepipe.core import lock as lockfile
from olivepipe.core.errors import OlivepipeError, SpecError, StoreError
from olivepipe.spec.workflow import load_workflow, parse_workflow
from olivepipe.stores.local import Store
from trees import make_tree


def published(store: Store, key: str, files: dict):
    store.ensure()
    return store.publish(key, make_tree(store.staging("t") / "out", files), {"kind": "olive"})


def assert_store_consistent(root: Path):
    """No entry looks complete without being complete: each has a manifest and verifies."""
    store = Store(root)
    entries = root / "entries"
    for d in sorted(entries.glob("*/*")) if entries.exists() else []:
        assert (d / "manifest.json").is_file(), f"{d} has no manifest"
        e = store.get(d.name, check=False)
        assert e is not None and store.verify(e) == [], (d, e and store.verify(e))


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def python(code: str, *args, env=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


# -- crash points: a process dies at the worst moment ------------------------------------------

PUBLISH_CRASH = """
    import os, sys
    from pathlib import Path
    import olivepipe.stores.local as st
    store = st.Store(Path(sys.argv[1])); store.ensure()
    out = store.staging("n") / "out"; out.mkdir()
    (out / "model.onnx").write_bytes(b"x" * 100000); (out / "b.json").write_text("{}")
    where = sys.argv[2]
    if where == "manifest":  # dies halfway through writing the manifest
        def half(path, text):
            with open(path, "w") as f:
                f.write(text[: len(text) // 2]); f.flush()
            os._exit(137)
        st._write_durable = half
    else:  # dies right before the publishing rename
        real, calls = os.rename, []
        def rename(a, b):
            calls.append(a)
            if len(calls) == 2:
                os._exit(137)
            real(a, b)
        st.os.rename = rename
    store.publish("k" * 64, out, {"kind": "olive"})
"""


@pytest.mark.parametrize("where", ["manifest", "rename"])
def test_publish_killed_midway_leaves_no_entry(tmp_path, where):
    r = python(PUBLISH_CRASH, tmp_path / "s", where)
    assert r.returncode == 137, r.stderr
    store = Store(tmp_path / "s")
    assert store.keys() == [] and store.get("k" * 64) is None
    assert_store_consistent(tmp_path / "s")
    assert list(store.tmp.iterdir())  # the debris is in tmp/, where nothing is ever served from
    assert store.gc(set())["staging_removed"] >= 1 and list(store.tmp.iterdir()) == []  # its creator is dead


def test_lock_write_killed_midway_keeps_the_old_lock(tmp_path):
    lock = tmp_path / "olivepipe.lock"
    lockfile.update(lock, "wf", {"a": {"key": "1" * 64}})
    before = lock.read_text()
    for how in ("half-written temp file", "before the rename"):
        code = """
            import os, sys
            from pathlib import Path
            import olivepipe.core.lock as lk
            import olivepipe.core.safefs as fs  # lock.update writes through safefs.write_atomic
            if sys.argv[2] == "before the rename":
                fs.os.replace = lambda a, b: os._exit(137)
            else:
                fs.os.fsync = lambda fd: os._exit(137)  # the text is written but never made it to disk whole
            lk.update(Path(sys.argv[1]), "wf", {"b": {"key": "2" * 64}})
        """
        r = python(code, lock, how)
        assert r.returncode == 137, r.stderr
        assert lock.read_text() == before, how
        assert lockfile.nodes(lock, "wf") == {"a": {"key": "1" * 64}}


# -- workers ---------------------------------------------------------------------------------

ORCHESTRATOR = """
    import sys, threading, time
    from pathlib import Path
    from olivepipe.run.pool import Worker
    from olivepipe.olive.runtime import worker_env
    d = Path(sys.argv[1])
    w = Worker(worker_env(), d / "logs", 0)
    job = {"kind": "sleep", "module": "fakekinds", "spec": {"options": {"seconds": 120}, "inputs": [], "node": "n"},
           "out": str(d / "out"), "scratch": str(d), "log": str(d / "job.log")}
    threading.Thread(target=w.run, args=(job,), daemon=True).start()  # like an executor thread
    while w.pid is None:
        time.sleep(0.05)
    print(w.pid, flush=True)
    time.sleep(600)
"""


def test_worker_dies_with_a_killed_orchestrator(tmp_path):
    """olivepipe SIGKILLed mid-node: its worker (own session, so no shared signals) must not
    keep running the node for nobody. Here the job would sleep 120 s."""
    orch = subprocess.Popen([sys.executable, "-c", textwrap.dedent(ORCHESTRATOR), str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        worker = int(orch.stdout.readline())
        time.sleep(0.5)
        assert not gone(worker)
        orch.kill()
        orch.wait()
        deadline = time.monotonic() + 10
        while not gone(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gone(worker), "orphaned worker still running"
    finally:
        orch.kill()
        if not gone(worker):
            os.kill(worker, signal.SIGKILL)


def sleep_job(seconds, out, log) -> dict:
    """A resolved worker job of the test-only `sleep` kind (tests/fakekinds.py)."""
    return {"kind": "sleep", "module": "fakekinds", "spec": {"options": {"seconds": seconds}, "inputs": [], "node": "n"},
            "out": str(out), "scratch": str(out.parent), "log": str(log)}


def test_killed_worker_fails_the_node_not_the_orchestrator(tmp_path):
    from olivepipe.olive.runtime import worker_env
    from olivepipe.run.pool import Worker, WorkerCrashed

    w = Worker(worker_env(), tmp_path / "logs", 0)
    box = {}

    def go():
        try:
            w.run(sleep_job(60, tmp_path / "o", tmp_path / "j.log"))
        except WorkerCrashed as e:
            box["error"] = str(e)

    t = threading.Thread(target=go)
    t.start()
    while w.pid is None:
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(w.pid, signal.SIGKILL)
    t.join(10)
    assert box["error"] == "worker process killed by signal 9 (SIGKILL)"
    # the same Worker object starts a fresh process for the next job
    res = w.run(sleep_job(0, tmp_path / "o2", tmp_path / "j2.log"))
    assert res["ok"]
    w.stop()


# -- disk full, unwritable cache ----------------------------------------------------------------

def enospc(*a, **k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_at_publish_is_a_clear_error_and_no_entry(tmp_path, monkeypatch):
    import olivepipe.stores.local as st

    store = Store(tmp_path / "s")
    store.ensure()
    out = make_tree(store.staging("n") / "out", {"model.onnx": b"abc"})
    monkeypatch.setattr(st, "_write_durable", enospc)
    with pytest.raises(StoreError) as e:
        store.publish("a" * 64, out, {})
    assert "No space left on device" in e.value.message and "disk space" in e.value.hint
    assert store.keys() == [] and [p.name for p in store.tmp.iterdir()] == [out.parent.name]


SLEEP_JOBS = """
    import errno, os, sys
    import olivepipe.stores.local as st
    import olivepipe.flow.workspace as wsmod
    # every step is a quick sleep job (no Olive); the second publish hits a full disk
    from olivepipe.core.job import Job
    wsmod.Workspace.job = lambda self, name, results, **kw: Job(
        step=name, kind="sleep", module="fakekinds", device="cpu",
        spec={"options": {"seconds": 0}, "inputs": [], "node": name}, **kw)
    real, calls = st._write_durable, []
    def write(path, text):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, text)
    st._write_durable = write
    from olivepipe.cli import main
    sys.argv = ["olivepipe", *sys.argv[1:]]
    main()
"""


def test_disk_full_during_apply_fails_the_node_cleanly(mini):
    r = python(SLEEP_JOBS, "apply", "--json", mini, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    steps = {s["name"]: s for s in apply_result(r.stdout)["steps"]}
    assert steps["base"]["status"] == "ran"
    assert steps["finetune"]["status"] == "failed" and "No space left on device" in steps["finetune"]["error"]
    assert steps["onnx"]["status"] == "skipped"
    cache = mini.parent / ".olivepipe" / "cache"
    assert_store_consistent(cache)
    assert Store(cache).keys() == [steps["base"]["key"]]
    assert set(lockfile.nodes(mini.parent / "olivepipe.lock", "mini")) == {"base"}
    assert list((cache / "tmp").iterdir()) == []  # staging cleaned up


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder this process cannot write: chmod for normal users; root ignores modes, so a
    read-only tmpfs where mounting is allowed, else skip."""
    d = tmp_path / "ro-cache"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(d)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("running as root and cannot mount a read-only tmpfs")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], capture_output=True)


def test_unwritable_cache_dir_is_a_clear_error(mini, readonly_dir):
    r = cli("apply", "--cache-dir", readonly_dir, mini, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert "cannot create cache store" in r.stderr or "is not writable" in r.stderr, r.stderr
    assert list(readonly_dir.iterdir()) == []
    assert not (mini.parent / "olivepipe.lock").exists()


# -- corruption and housekeeping ------------------------------------------------------------------

def test_cache_verify_reports_corruption_and_corrupt_entries_are_never_served(tmp_path):
    store = Store(tmp_path / "s")
    keys = {n: n[0] * 64 for n in ("flipped", "deleted", "extra", "sneaky", "good")}
    entries = {n: published(store, k, {"model.onnx": b"0123456789", "cfg/a.json": b"{}"}) for n, k in keys.items()}

    flipped = entries["flipped"].tree / "model.onnx"
    flipped.chmod(0o644)
    flipped.write_bytes(b"0123456788")  # same size, new mtime
    (entries["deleted"].tree / "cfg" / "a.json").unlink()
    (entries["extra"].tree / "cfg").chmod(0o755)
    (entries["extra"].tree / "cfg" / "smuggled.py").write_text("import os")
    sneaky = entries["sneaky"].tree / "model.onnx"
    st = sneaky.stat()
    sneaky.chmod(0o644)
    sneaky.write_bytes(b"0123456780")
    os.utime(sneaky, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: only a re-hash sees it

    r = cli("cache", "verify", "--cache-dir", store.root)
    assert r.returncode == 1, r.stdout + r.stderr
    bad = {line.split()[1].rstrip(":") for line in r.stdout.splitlines() if line.startswith("CORRUPT")}
    assert bad == {keys[n][:16] for n in ("flipped", "deleted", "extra", "sneaky")}, r.stdout
    assert "model.onnx: content does not match its digest" in r.stdout
    assert "cfg/smuggled.py: not in the manifest" in r.stdout
    assert "cfg/a.json: missing" in r.stdout
    # verify without --repair changes nothing
    assert sorted(store.keys()) == sorted(keys.values())

    # what a plan or apply asks the store: the stat health check refuses changed or missing files
    assert store.get(keys["flipped"]) is None and store.get(keys["deleted"]) is None
    assert store.get(keys["good"]) is not None

    r = cli("cache", "verify", "--repair", "--cache-dir", store.root)
    assert r.returncode == 0 and "removed" in r.stdout
    assert store.keys() == [keys["good"]]
    assert cli("cache", "verify", "--cache-dir", store.root).returncode == 0


def test_mangled_manifest_is_a_miss_not_a_crash(tmp_path):
    store = Store(tmp_path / "s")
    e = published(store, "a" * 64, {"x": b"1"})
    m = e.path / "manifest.json"
    m.chmod(0o644)
    m.write_text(json.dumps({"key": "a" * 64, "files": {"x": "oops"}, "digest": 5}))
    assert store.get("a" * 64) is None and store.keys() == []


def gc_workspace(tmp_path):
    ws = tmp_path / "ws"
    wf = write(ws / "workflow.yaml", MINIMAL)
    write(ws / "travel.jsonl", '{"prompt": "a", "response": "b"}\n')
    store = Store(ws / ".olivepipe" / "cache")
    keys = {n: n * 64 for n in "abcde"}
    for k in keys.values():
        published(store, k, {"f": k.encode()})
    lockfile.update(ws / "olivepipe.lock", "mini", {"finetune": {"key": keys["a"]}, "onnx": {"key": keys["b"]}})
    # another workflow's lock further down the same workspace protects its results too
    lockfile.update(ws / "sub" / "olivepipe.lock", "other", {"x": {"key": keys["c"]}})
    return wf, store, keys


def test_gc_never_deletes_what_a_lock_references_unless_forced(tmp_path):
    wf, store, k = gc_workspace(tmp_path)
    os.makedirs(store.tmp / "999999999-dead-staging")  # staging of a process that no longer exists
    live = store.staging("mine")  # ours: alive, so kept

    r = cli("cache", "gc", "--dry-run", wf)
    assert r.returncode == 0 and "would remove 2 entries" in r.stdout
    assert len(store.keys()) == 5

    r = cli("cache", "gc", wf)
    assert r.returncode == 0, r.stderr
    assert store.keys() == sorted([k["a"], k["b"], k["c"]])
    assert_store_consistent(store.root)
    assert not (store.tmp / "999999999-dead-staging").exists() and live.exists()

    r = cli("cache", "ls", "--json", wf)
    assert {e["key"] for e in json.loads(r.stdout)["entries"]} == {k["a"], k["b"], k["c"]}

    r = cli("cache", "gc", "--force", wf)
    assert r.returncode == 0 and store.keys() == []


def test_gc_with_an_unreadable_lock_deletes_nothing(tmp_path):
    wf, store, k = gc_workspace(tmp_path)
    (wf.parent / "sub" / "olivepipe.lock").write_text("workflows: [unclosed\n")
    r = cli("cache", "gc", wf)
    assert r.returncode == 1 and "nothing was deleted" in r.stderr and "Traceback" not in r.stderr
    assert len(store.keys()) == 5
    assert cli("cache", "gc", "--force", wf).returncode == 0 and store.keys() == []


# -- security ----------------------------------------------------------------------------------

def test_python_tags_never_construct_anything(tmp_path):
    marker = tmp_path / "PWNED"
    for text in (f"olivepipe: !!python/object/apply:os.system ['touch {marker}']\n",
                 f"x: !!python/object/new:subprocess.Popen [[touch, '{marker}']]\n",
                 "x: !!python/name:os.system\n"):
        with pytest.raises(SpecError) as e:
            parse_workflow(text, "f.yaml", base=tmp_path, check_files=False)
        assert "is not allowed" in e.value.problems[0].message
        (tmp_path / "olivepipe.lock").write_text(text)
        with pytest.raises(OlivepipeError):  # the lock file is loaded just as safely
            lockfile.read(tmp_path / "olivepipe.lock")
    assert not marker.exists()


def test_symlinks_cannot_smuggle_paths_out_of_the_workspace(tmp_path):
    ws = tmp_path / "ws"
    (ws / ".git").mkdir(parents=True)  # the workspace root
    outside = write(tmp_path / "secret.jsonl", '{"prompt": "a", "response": "b"}\n')
    (ws / "data").mkdir()
    (ws / "data" / "train.jsonl").symlink_to(outside)
    (ws / "model").symlink_to(tmp_path)
    wf = write(ws / "workflow.yaml", MINIMAL.replace("travel.jsonl", "data/train.jsonl")
               .replace("base: {tiny: {arch: phi3}}", "base: {path: model}"))
    with pytest.raises(SpecError) as e:
        load_workflow(wf)
    msgs = [p.message for p in e.value.problems]
    assert "path 'data/train.jsonl' escapes the workspace" in " ".join(msgs)
    assert "path 'model' escapes the workspace" in " ".join(msgs)


def test_matrix_values_never_make_path_names(tmp_path):
    text = MINIMAL.replace("params: {precision: int4}", 'matrix: {precision: ["../../../etc", "/abs", "a/b"]}')
    try:
        wf = parse_workflow(text, "w.yaml", base=tmp_path, check_files=False)
        names = list(wf.nodes)
    except SpecError as e:  # the values are also bad precisions; names are checked before that matters
        names = [p.message for p in e.problems]
        assert all("/" not in n.split("'")[1] for n in names if n.startswith("matrix variant name"))
        return
    assert all("/" not in n and ".." not in n for n in names)


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_no_shell_no_eval_no_unsafe_loading_in_the_source():
    """No command line is ever built from user strings: every process is an argv list, never a
    shell; nothing is eval'ed, unpickled or loaded with an unsafe YAML loader."""
    bad = []
    for path in sorted((REPO / "olivepipe").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        src = path.read_text()
        where = lambda n: f"{path.relative_to(REPO)}:{n.lineno}"  # noqa: E731
        for call, func in _calls(tree):
            if any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                   for k in call.keywords):
                bad.append(f"{where(call)} shell= in {func}")
            if func in ("os.system", "os.popen", "eval", "exec", "compile", "pickle.load", "pickle.loads",
                        "marshal.loads", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "__import__") \
                    or func.startswith(("os.exec", "os.spawn", "commands.")):
                if func == "__import__" and all(isinstance(a, ast.Constant) for a in call.args):
                    continue  # a fixed module name
                bad.append(f"{where(call)} {func}")
            if func.startswith("subprocess.") and call.args and not isinstance(call.args[0], (ast.List, ast.Tuple)):
                bad.append(f"{where(call)} {func} with a non-list command")
            if func == "yaml.load":
                loader = next((ast.unparse(k.value) for k in call.keywords if k.arg == "Loader"), "")
                if "Safe" not in loader and not (loader == "_Loader" and "SafeLoader" in src):
                    bad.append(f"{where(call)} yaml.load with Loader={loader or '?'}")
            if func.endswith("YAML") and any(k.arg == "typ" and ast.unparse(k.value).strip("'\"") not in ("rt", "safe", "base")
                                             for k in call.keywords):
                bad.append(f"{where(call)} ruamel YAML typ")
        for bad_word in ("FullLoader", "UnsafeLoader", "yaml.Loader", "yaml.CLoader"):
            if bad_word in src:
                bad.append(f"{path.relative_to(REPO)}: {bad_word}")
    assert bad == []


def test_trust_remote_code_and_user_script_are_never_implied_and_shown_loudly(tmp_path):
    wf = write(tmp_path / "workflow.yaml", """\
olivepipe: 1
name: trc
models:
  remote: {hf: microsoft/Phi-3.5-mini-instruct, revision: abc123, trust_remote_code: true}
  plain: {hf: microsoft/Phi-3.5-mini-instruct, revision: abc123}
nodes:
  capture: {pass: OptimumConversion, input: remote, params: {user_script: my_script.py}}
  quant: {pass: rtn, input: plain}
""")
    text = cli("plan", wf)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    warn = [ln for ln in lines if "TRUST_REMOTE_CODE" in ln]
    assert warn and "remote" in warn[0] and lines.index(warn[0]) < [i for i, ln in enumerate(lines) if "quant" in ln][0]
    assert any("USER_SCRIPT: runs my_script.py" in ln for ln in lines)
    md = cli("plan", "--format", "markdown", wf).stdout
    assert "TRUST_REMOTE_CODE" in md and "USER_SCRIPT" in md
    steps = {s["name"]: s for s in json.loads(cli("plan", "--json", wf).stdout)["steps"]}
    assert any("TRUST_REMOTE_CODE" in w for w in steps["capture"]["warnings"])
    assert not any("TRUST_REMOTE_CODE" in w or "USER_SCRIPT" in w for w in steps["quant"]["warnings"])
    # never implied: the model without the flag is compiled with it off
    compiled = json.loads(cli("compile", wf, "--node", "quant").stdout)
    assert compiled["input_model"]["load_kwargs"]["trust_remote_code"] is False
    compiled = json.loads(cli("compile", wf, "--node", "capture").stdout)
    assert compiled["input_model"]["load_kwargs"]["trust_remote_code"] is True


def test_network_audit_records_connects_in_any_olivepipe_process(tmp_path):
    """The audit used by the e2e silence test really sees connections (a positive control)."""
    audit = tmp_path / "audit.jsonl"
    code = """
        import socket
        import olivepipe.run.worker  # what a worker process imports first
        try:
            socket.create_connection(("127.0.0.1", 9), timeout=1)
        except OSError:
            pass
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect("/nonexistent.sock")
        except OSError:
            pass
    """
    python(code, env={"OLIVEPIPE_NETWORK_AUDIT": str(audit)})
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [e["event"] for e in events] == ["audit.start", "socket.getaddrinfo", "socket.connect"]
    assert events[2]["target"] == ["127.0.0.1", "9"] and events[2]["stack"]
