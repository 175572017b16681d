"""A store you can trust: each test reproduces a way the old store lost or corrupted a
result, or lied about one, and shows the local store (olivepipe/stores/local.py) no longer does.
"""
import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from olivepipe.stores import gc as gcmod
from olivepipe.core import lock as lockfile
from olivepipe.core.errors import StoreError
from olivepipe.core.hashing import StatCache, file_digest
from olivepipe.core.mutex import Busy, FileMutex
from olivepipe.core.safefs import UnsafePath
from olivepipe.stores import local
from olivepipe.stores.local import LINK_MIN, LocalStore, StoreBusy
from trees import make_tree

K1, K2, K3 = "1" * 64, "2" * 64, "3" * 64
IS_ROOT = os.geteuid() == 0
REPO = Path(__file__).resolve().parents[1]


def publish(store, key, files, **kw):
    return store.publish(key, make_tree(store.staging("t") / "out", files), {"kind": "olive"}, **kw)


def snapshot(root: Path) -> dict:
    """Everything observable about a folder: every path's type, mode, size, mtime, content."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [""] + dirnames + filenames:
            p = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(p)
            data = None
            if stat.S_ISREG(st.st_mode):
                data = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(p)
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size,
                                             st.st_mtime_ns, st.st_nlink, data)
    return out


def onnx_model(folder: Path, n: int = 100_000) -> Path:
    """A real ONNX model with its weights as external data (model.onnx + model.onnx.data)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(n, dtype=np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [w])
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(helper.make_model(graph), str(folder / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    return folder / "model.onnx"


def count_hashes(monkeypatch) -> list:
    calls = []
    real = local.file_digest
    monkeypatch.setattr(local, "file_digest", lambda p: calls.append(Path(p).name) or real(p))
    return calls


def python(code: str, *args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, **kw)


@pytest.fixture
def world_dir():
    """A folder other users can reach (tmp_path is private to root), for tests run as nobody."""
    d = Path(tempfile.mkdtemp(prefix="olivepipe-trust-"))
    d.chmod(0o755)
    yield d
    local._rmtree(d)


# -- 1. absolute, safely created root ---------------------------------------------------------------

def test_relative_root_is_resolved_at_construction(tmp_path, monkeypatch):
    (tmp_path / "ws").mkdir()
    (tmp_path / "worker").mkdir()
    monkeypatch.chdir(tmp_path / "ws")
    store = LocalStore("cache")
    assert store.root == tmp_path / "ws" / "cache"
    monkeypatch.chdir(tmp_path / "worker")  # workers run elsewhere: the old store wrote to ./cache here
    staging = store.staging("n")
    assert staging.is_absolute() and staging.is_relative_to(tmp_path / "ws" / "cache")
    e = store.publish(K1, make_tree(staging / "out", {"model.bin": b"weights"}), {})
    assert (store.fetch(e) / "model.bin").read_bytes() == b"weights"
    assert not (tmp_path / "worker" / "cache").exists()


@pytest.mark.parametrize("part", ["entries", "tmp", "objects", "locks"])
def test_store_folders_are_created_confined(tmp_path, part):
    root, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / part).symlink_to(elsewhere)  # e.g. a cache copied with a planted link
    store = LocalStore(root)
    with pytest.raises(UnsafePath):
        publish(store, K1, {"x": b"1"})
    assert list(elsewhere.iterdir()) == []


def test_entries_in_the_old_layout_are_still_served(tmp_path):
    """What the previous store wrote: writable folders, mtimes in the manifest, no id, no stamps."""
    store = LocalStore(tmp_path / "s")
    d = store.entries / K1[:2] / K1
    tree = make_tree(d / "tree", {"model.onnx": b"abc", "sub/a.json": b"{}"})
    files = {}
    for rel in ("model.onnx", "sub/a.json"):
        (tree / rel).chmod(0o444)
        st = os.stat(tree / rel)
        files[rel] = {"digest": file_digest(tree / rel), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    from olivepipe.core.hashing import tree_digest

    manifest = {"format": 1, "key": K1, "digest": tree_digest({k: v["digest"] for k, v in files.items()}),
                "files": files, "created": 1.0, "kind": "olive", "model": {"type": "onnxmodel"}}
    (d / "manifest.json").write_text(json.dumps(manifest))
    e = store.get(K1)
    assert e is not None and e.model == {"type": "onnxmodel"} and store.verify(e) == [] and e.size == 5
    assert store.peek(K1) is not None and (store.fetch(e) / "sub/a.json").read_bytes() == b"{}"
    os.utime(tree / "model.onnx", ns=(3, 3))  # and it survives a copy too
    assert store.get(K1) is not None and store.get(K1) is not None
    new = publish(store, K1, {"model.onnx": b"new"}, replace=True)
    assert store.get(K1).digest == new.digest


# -- 2. file-level dedup, without breaking ONNX ----------------------------------------------------

def test_identical_files_are_stored_once(tmp_path):
    store = LocalStore(tmp_path / "s")
    base = os.urandom(4 << 20)  # the base weights a LoRA result carries a full copy of
    a = publish(store, K1, {"base/model.safetensors": base, "adapter.bin": b"a" * 10})
    b = publish(store, K2, {"merged/model.safetensors": base, "adapter.bin": b"b" * 10})
    fa, fb = store.fetch(a) / "base/model.safetensors", store.fetch(b) / "merged/model.safetensors"
    assert os.stat(fa).st_ino == os.stat(fb).st_ino  # one inode, two entries
    inodes = {}
    for dirpath, _, filenames in os.walk(store.root):
        for fn in filenames:
            st = os.lstat(os.path.join(dirpath, fn))
            inodes[st.st_ino] = st.st_blocks * 512
    assert sum(inodes.values()) < len(base) + 1024 * 1024  # disk use: the distinct bytes (+ small files)
    assert store.disk_usage() == len(base) + 20
    assert fa.read_bytes() == base and store.verify(a) == [] and store.verify(b) == []

    # dropping one entry keeps the other's bytes; gc drops the object once nothing links it
    store.remove(K1)
    assert fb.read_bytes() == base and store.get(K2) is not None
    res = store.gc({K2})
    assert res["objects_removed"] == 0
    res = store.gc(set())
    assert res["bytes_freed"] == len(base) + 10 and res["objects_removed"] == 1
    assert list(store.objects.glob("*/*")) == []


def test_onnx_external_data_is_never_hard_linked_and_still_loads(tmp_path):
    import onnx

    store = LocalStore(tmp_path / "s")
    entries = []
    for key in (K1, K2):
        out = store.staging("onnx") / "out"
        onnx_model(out / "model")
        (out / "model" / "tokenizer.json").write_bytes(b"t" * LINK_MIN * 2)  # large, but next to a .onnx
        (out / "hf" / "weights.bin").parent.mkdir(parents=True)
        (out / "hf" / "weights.bin").write_bytes(b"w" * LINK_MIN * 2)  # no .onnx near it: shared
        entries.append(store.publish(key, out, {}))
    trees = [store.fetch(e) for e in entries]
    assert os.path.getsize(trees[0] / "model" / "model.onnx.data") >= LINK_MIN
    for t in trees:
        for f in ("model.onnx", "model.onnx.data", "tokenizer.json"):
            assert os.stat(t / "model" / f).st_nlink == 1, f
        m = onnx.load(str(t / "model" / "model.onnx"))  # checks links of external data
        assert m.graph.initializer[0].name == "w"
    assert os.stat(trees[0] / "hf/weights.bin").st_ino == os.stat(trees[1] / "hf/weights.bin").st_ino

    # the control: onnx does refuse a hard-linked weights file, so the rule above is needed
    os.link(trees[0] / "model" / "model.onnx.data", tmp_path / "second-link")
    with pytest.raises(Exception, match="hard ?link"):
        onnx.load(str(trees[0] / "model" / "model.onnx"))


def test_a_changed_object_is_never_linked_into_a_new_entry(tmp_path):
    store = LocalStore(tmp_path / "s")
    big = b"x" * (LINK_MIN * 2)
    a = publish(store, K1, {"w.bin": big})
    f = store.fetch(a) / "w.bin"
    os.chmod(f, 0o644)
    with open(f, "r+b") as fh:  # changed in place through one entry (root ignores the 0444)
        fh.write(b"y")
    b = publish(store, K2, {"w.bin": big})
    assert (store.fetch(b) / "w.bin").read_bytes() == big and store.verify(b) == []
    assert store.get(K1) is None and store.get(K2) is not None


# -- 3. health without mtimes ------------------------------------------------------------------------

def test_copied_store_still_serves_its_entries(tmp_path, monkeypatch):
    store = LocalStore(tmp_path / "s")
    files = {"model.onnx": b"graph" * 100, "cfg/a.json": b"{}", "big.bin": os.urandom(LINK_MIN * 3)}
    e = publish(store, K1, files)
    manifest_before = (store.entry_dir(K1) / "manifest.json").read_bytes()
    shutil.copytree(store.root, tmp_path / "copy", copy_function=shutil.copy)  # new mtimes, like cp -r
    copy = LocalStore(tmp_path / "copy")
    assert os.stat(copy.entry_dir(K1) / "tree/model.onnx").st_mtime_ns != e.manifest["files"]["model.onnx"]["mtime_ns"]

    hashed = count_hashes(monkeypatch)
    got = copy.get(K1)  # the old store called every file "changed since publish" and deleted the entry
    assert got is not None and got.digest == e.digest and K1 not in copy.quarantined
    assert sorted(hashed) == ["a.json", "big.bin", "model.onnx"]  # verified by content, once
    for rel, data in files.items():
        assert (copy.fetch(got) / rel).read_bytes() == data
    hashed.clear()
    assert copy.get(K1) is not None and hashed == []  # re-stamped: the next hit is stat-only again
    assert (copy.entry_dir(K1) / "manifest.json").read_bytes() == manifest_before  # the manifest is immutable


def test_touched_file_is_verified_not_dropped_and_a_changed_size_is_broken(tmp_path, monkeypatch):
    store = LocalStore(tmp_path / "s")
    e = publish(store, K1, {"a": b"hello", "b": b"world"})
    os.utime(store.fetch(e) / "a", ns=(1, 1))
    hashed = count_hashes(monkeypatch)
    assert store.get(K1) is not None and hashed == ["a"]
    f = store.fetch(e) / "b"
    f.chmod(0o644)
    f.write_bytes(b"world!")
    hashed.clear()
    assert store.get(K1) is None and hashed == []  # a size change needs no reading
    assert store.quarantined[K1] == ["b: 6 bytes, published with 5"]


# -- 4. nothing read-only writes or deletes --------------------------------------------------------

def broken_store(tmp_path):
    store = LocalStore(tmp_path / "s")
    keys = {n: c * 64 for n, c in zip(("good", "touched", "missing", "extra", "mangled", "changed"), "abcdef")}
    es = {n: publish(store, k, {"m.bin": b"0123456789", "cfg/a.json": b"{}"}) for n, k in keys.items()}
    os.utime(store.fetch(es["touched"]) / "m.bin", ns=(5, 5))
    (store.fetch(es["missing"]) / "cfg/a.json").unlink()
    (store.fetch(es["extra"]) / "cfg/smuggled.py").write_text("import os")
    m = store.entry_dir(keys["mangled"]) / "manifest.json"
    m.chmod(0o644)
    m.write_text('{"key": 5}')
    f = store.fetch(es["changed"]) / "m.bin"
    f.chmod(0o644)
    f.write_bytes(b"0123456788")
    (store.entry_dir("9" * 64) / "tree").mkdir(parents=True)  # unfinished: no manifest
    keys["unfinished"] = "9" * 64
    keys["absent"] = "8" * 64
    return store, keys


def test_peek_never_writes_deletes_or_restamps(tmp_path):
    store, keys = broken_store(tmp_path)
    before = snapshot(store.root)
    seen = {n: store.peek(k) is not None for n, k in keys.items()}
    for _ in range(2):
        for k in keys.values():
            store.peek(k)
            store.load(k)
            store.health(store.load(k)) if store.load(k) else None
    assert snapshot(store.root) == before  # byte-, mode- and mtime-identical, folders included
    # what plan learns is what apply's get will find: a touched file is re-read, not re-stamped
    assert seen == {"good": True, "touched": True, "missing": False, "extra": False, "mangled": False,
                    "changed": False, "unfinished": False, "absent": False}
    assert store.peek(keys["changed"], rehash=False) is not None  # stat alone cannot see it


def test_get_quarantines_and_says_why(tmp_path):
    store, keys = broken_store(tmp_path)
    assert store.get(keys["good"]) is not None and store.get(keys["touched"]) is not None
    for n in ("missing", "extra", "mangled", "changed", "unfinished"):
        assert store.get(keys[n]) is None, n
        assert not store.entry_dir(keys[n]).exists()
    assert store.quarantined[keys["missing"]] == ["cfg/a.json: missing"]
    assert store.quarantined[keys["extra"]] == ["cfg/smuggled.py: not in the manifest"]
    assert store.quarantined[keys["changed"]] == ["m.bin: content changed since publish"]
    assert "manifest" in store.quarantined[keys["mangled"]][0]
    aside = {p.name.split("-")[1]: p for p in store.tmp.glob("quarantine-*")}
    q = aside[keys["extra"][:16]]
    assert (q / "entry" / "tree" / "cfg" / "smuggled.py").exists()  # moved aside, not deleted
    assert "smuggled.py" in (q / "problems.txt").read_text()
    assert sorted(store.keys()) == sorted([keys["good"], keys["touched"]])
    assert store.gc(set(store.keys()))["staging_removed"] == 5 and not list(store.tmp.glob("quarantine-*"))


# -- 5. entries are read-only to the world ---------------------------------------------------------

def test_entries_are_read_only(world_dir):
    store = LocalStore(world_dir / "s")
    e = publish(store, K1, {"model.onnx": b"abc", "sub/config.json": b"{}"})
    tree = store.fetch(e)
    for dirpath, dirnames, filenames in os.walk(store.entry_dir(K1)):
        assert stat.S_IMODE(os.stat(dirpath).st_mode) == 0o555, dirpath
        for fn in filenames:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, fn)).st_mode) == 0o444, fn
    outputs = world_dir / "outputs" / "wf"
    outputs.mkdir(parents=True)
    (outputs / "node").symlink_to(tree)  # what `olive run` of a compiled config would write through
    if IS_ROOT:  # root ignores mode bits: try as nobody (reading works, so the path is reachable)
        as_nobody = {"user": 65534, "group": 65534, "capture_output": True}
        assert subprocess.run(["cat", str(outputs / "node" / "model.onnx")], **as_nobody).returncode == 0
        assert subprocess.run(["touch", str(outputs / "node" / "new.onnx")], **as_nobody).returncode != 0
        r = subprocess.run(["sh", "-c", f"echo x > {outputs / 'node' / 'model.onnx'}"], **as_nobody)
        assert r.returncode != 0 and b"Permission denied" in r.stderr
    else:
        with pytest.raises(PermissionError):
            (outputs / "node" / "new.onnx").write_text("x")
        with pytest.raises(PermissionError):
            (outputs / "node" / "model.onnx").write_text("x")
    assert store.get(K1) is not None and sorted(os.listdir(tree)) == ["model.onnx", "sub"]


def test_writes_that_get_through_are_caught(tmp_path):
    """As root the mode bits stop nothing: the health check finds what was written."""
    store = LocalStore(tmp_path / "s")
    a = publish(store, K1, {"model.onnx": b"abc", "sub/config.json": b"{}"})
    b = publish(store, K2, {"model.onnx": b"abd", "sub/config.json": b"{}"})
    out = tmp_path / "outputs" / "node"
    out.parent.mkdir()
    out.symlink_to(store.fetch(a))
    try:
        (out / "sub" / "model_1.onnx").write_bytes(b"olive wrote here")
    except PermissionError:
        pytest.skip("not root: the mode bits already stopped the write (test_entries_are_read_only)")
    with open(store.fetch(b) / "model.onnx", "w") as f:  # rewritten in place, same size
        f.write("abe")
    assert store.get(K1) is None and store.quarantined[K1] == ["sub/model_1.onnx: not in the manifest"]
    assert store.get(K2) is None and store.quarantined[K2] == ["model.onnx: content changed since publish"]


REMOVE_AS_USER = """
    import os, sys
    from pathlib import Path
    from olivepipe.stores.local import LocalStore
    if os.geteuid() == 0:  # as root every folder is writable anyway: go on as nobody (python lives under /root)
        os.setgid(65534); os.setuid(65534)
    store = LocalStore(Path(sys.argv[1]))
    def staged(files):
        out = store.staging("t") / "out"
        for rel, data in files.items():
            (out / rel).parent.mkdir(parents=True, exist_ok=True); (out / rel).write_bytes(data)
        return out
    store.publish("1" * 64, staged({"sub/w.bin": b"w" * 100000, "a.json": b"{}"}), {})
    try:
        os.unlink(store.entry_dir("1" * 64) / "tree" / "a.json")
    except PermissionError:
        pass  # entry folders are read-only to their owner too (the reason remove needs care)
    else:
        sys.exit("entry folder was writable")
    store.publish("1" * 64, staged({"sub/w.bin": b"v" * 100000}), {}, replace=True)
    store.publish("2" * 64, staged({"w.bin": b"v" * 100000}), {})
    store.remove("1" * 64); store.remove("2" * 64)
    for d in list(store.tmp.glob("t-*")):
        store.discard(d)
    store.gc(set())
    left = [str(p) for p in Path(sys.argv[1]).rglob("*") if p.is_file() and p.name != "lease"]
    print("left:", left)
    assert store.keys() == [] and left == [], left
"""


def test_remove_copes_with_read_only_folders(world_dir):
    if IS_ROOT:
        os.chown(world_dir, 65534, 65534)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(REMOVE_AS_USER), str(world_dir / "s")],
                       capture_output=True, text=True, timeout=120, cwd=world_dir)
    assert r.returncode == 0, r.stdout + r.stderr


# -- 6. --force never loses the good result --------------------------------------------------------

@pytest.mark.parametrize("exchange", ["renameat2", "two renames"])
def test_replace_swaps_in_the_complete_new_entry(tmp_path, monkeypatch, exchange):
    store = LocalStore(tmp_path / "s")
    used = []
    real = local._exchange
    if exchange == "two renames":  # a kernel or filesystem without RENAME_EXCHANGE
        monkeypatch.setattr(local, "_exchange", lambda a, b: used.append(False) or False)
    else:
        monkeypatch.setattr(local, "_exchange", lambda a, b: used.append(real(a, b)) or used[-1])
    old = publish(store, K1, {"model.onnx": b"old", "old-only.txt": b"1"})
    os.utime(store.fetch(old) / "model.onnx", ns=(7, 7))
    assert store.get(K1) is not None  # leaves a stamps file for the old entry
    new = publish(store, K1, {"model.onnx": b"new"}, replace=True)
    assert used == [exchange == "renameat2"]
    got = store.get(K1)
    assert got.digest == new.digest != old.digest and K1 not in store.quarantined
    assert sorted(os.listdir(store.fetch(got))) == ["model.onnx"]
    assert store.keys() == [K1] and stat.S_IMODE(os.stat(store.entry_dir(K1)).st_mode) == 0o555
    assert [p.name for p in store.tmp.iterdir()] == [p.name for p in store.tmp.glob("t-*")]  # no old copy left


def test_readers_never_see_a_missing_or_broken_entry_during_replace(tmp_path):
    import threading

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    if not local._exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("no RENAME_EXCHANGE here: a replace is two renames, with a moment of no entry")
    store = LocalStore(tmp_path / "s")
    publish(store, K1, {"model.onnx": b"v0", "cfg.json": b"{}"})
    stop, seen = threading.Event(), []

    def read():
        reader = LocalStore(store.root)
        while not stop.is_set():
            e = reader.get(K1)
            seen.append(None if e is None else (e.manifest["files"]["model.onnx"]["digest"], dict(reader.quarantined)))

    t = threading.Thread(target=read)
    t.start()
    try:
        for i in range(30):
            publish(store, K1, {"model.onnx": f"v{i + 1:02d}".encode(), "cfg.json": b"{}"}, replace=True)
            time.sleep(0.002)
    finally:
        stop.set()
        t.join()
    assert seen and None not in seen and all(q == {} for _, q in seen)
    assert store.get(K1) is not None and store.keys() == [K1]


@pytest.mark.parametrize("failure", ["read error", "interrupt", "incomplete onnx"])
def test_a_failed_replace_keeps_the_old_entry(tmp_path, monkeypatch, failure):
    store = LocalStore(tmp_path / "s")
    old = publish(store, K1, {"model.onnx": b"old", "w.bin": b"w" * LINK_MIN})
    out = make_tree(store.staging("t") / "out", {"model.onnx": b"new", "bad.bin": b"x" * 10})
    if failure == "incomplete onnx":
        onnx_model(out)
        (out / "model.onnx.data").unlink()
        expected = StoreError
    else:
        real = local.file_digest
        err = OSError(errno.EIO, os.strerror(errno.EIO)) if failure == "read error" else KeyboardInterrupt()
        expected = StoreError if failure == "read error" else KeyboardInterrupt

        def digest(p):
            if Path(p).name == "bad.bin":
                raise err
            return real(p)

        monkeypatch.setattr(local, "file_digest", digest)
    with pytest.raises(expected):
        store.publish(K1, out, {}, replace=True)
    monkeypatch.undo()
    got = store.get(K1)
    assert got is not None and got.digest == old.digest and store.verify(got) == []
    assert (store.fetch(got) / "model.onnx").read_bytes() == b"old"
    assert not list(store.tmp.glob("entry-*")) and not list(store.tmp.glob("trash-*"))
    assert not list(store.locks.glob("entry-*"))


# -- 7. gc: roots, a lease, held staging -----------------------------------------------------------

def test_gc_keeps_what_registered_lock_files_reference(tmp_path):
    store = LocalStore(tmp_path / "shared-cache")
    for k in (K1, K2, K3):
        publish(store, k, {"f": k.encode()})
    repo_a = tmp_path / "repo-a" / "olivepipe.lock"
    repo_a.parent.mkdir()
    lockfile.update(repo_a, "wf", {"n": {"key": K1}})
    store.register_root(repo_a)
    store.register_root(repo_a)  # idempotent
    elsewhere = tmp_path / "repo-b"
    lockfile.update(elsewhere / "olivepipe.lock", "wf", {"n": {"key": K2}})
    # gc run for repo-b: before, it only knew repo-b's lock and deleted repo-a's result
    res = gcmod.collect(store, elsewhere)
    assert res["entries_removed"] == [K3] and res["kept"] == 2
    assert store.keys() == [K1, K2] and store.roots() == [repo_a]
    repo_a.unlink()  # that repository is gone: its results may go, and so does its registration
    assert gcmod.collect(store, elsewhere)["entries_removed"] == [K1] and store.roots() == []
    assert gcmod.collect(store, elsewhere, force=True)["entries_removed"] == [K2]


def test_gc_with_an_unreadable_registered_lock_deletes_nothing(tmp_path):
    store = LocalStore(tmp_path / "s")
    publish(store, K1, {"f": b"1"})
    bad = tmp_path / "repo" / "olivepipe.lock"
    bad.parent.mkdir()
    bad.write_text("workflows: [unclosed\n")
    store.register_root(bad)
    with pytest.raises(Exception, match="nothing was deleted"):
        gcmod.collect(store, tmp_path / "elsewhere")
    assert store.keys() == [K1]


HOLD = """
    import sys, time
    from pathlib import Path
    from olivepipe.stores.local import LocalStore
    store = LocalStore(Path(sys.argv[1]))
    if sys.argv[2] == "lease":
        with store.lease():
            print("held", flush=True); sys.stdin.readline()
    else:
        d = store.staging("node")
        (d / "out").mkdir(); (d / "out" / "partial.bin").write_bytes(b"x")
        print(d, flush=True)
        if sys.argv[2] == "die":
            import os; os._exit(9)
        sys.stdin.readline()
"""


def test_gc_refuses_while_an_apply_holds_the_lease(tmp_path):
    store = LocalStore(tmp_path / "s")
    publish(store, K1, {"f": b"1"})
    with store.lease():  # an apply between publishing K1 and writing it into its lock
        with pytest.raises(StoreBusy) as e:
            gcmod.collect(store, tmp_path)
        assert "apply" in e.value.message and "nothing was deleted" in e.value.message
    assert store.keys() == [K1]
    p = python(HOLD, store.root, "lease")  # the same from another process
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusy):
            LocalStore(store.root).gc(set())
        assert store.keys() == [K1]
    finally:
        p.communicate("\n", timeout=30)
    assert gcmod.collect(store, tmp_path)["entries_removed"] == [K1]  # released with its process


def test_gc_spares_staging_held_by_a_live_process(tmp_path):
    store = LocalStore(tmp_path / "s")
    store.ensure()
    p = python(HOLD, store.root, "hold")
    try:
        live = Path(p.stdout.readline().strip())
        assert live.is_dir() and live.parent == store.tmp
        assert store.gc(set())["staging_removed"] == 0 and (live / "out" / "partial.bin").exists()
    finally:
        p.communicate("\n", timeout=30)
    assert p.returncode == 0
    # its process is gone (the lock went with it): now it is debris
    assert store.gc(set())["staging_removed"] == 1 and not live.exists()
    assert list(store.locks.iterdir()) == []


def test_gc_collects_staging_of_a_killed_process(tmp_path):
    store = LocalStore(tmp_path / "s")
    p = python(HOLD, store.root, "die")
    dead = Path(p.stdout.readline().strip())
    p.wait(timeout=30)
    assert dead.is_dir() and p.returncode == 9
    assert store.gc(set())["staging_removed"] == 1 and list(store.tmp.iterdir()) == []


# -- 8. published outputs are complete -------------------------------------------------------------

def test_onnx_with_missing_external_data_is_not_published(tmp_path):
    store = LocalStore(tmp_path / "s")
    out = store.staging("onnx") / "out"
    onnx_model(out / "model")
    (out / "model" / "model.onnx.data").unlink()  # the pass wrote its weights somewhere else
    with pytest.raises(StoreError) as e:
        store.publish(K1, out, {})
    assert "model/model.onnx" in e.value.message and "model.onnx.data" in e.value.message
    assert "nothing was published" in e.value.message and e.value.hint
    assert store.keys() == [] and not list(store.tmp.glob("entry-*"))

    out = store.staging("onnx") / "out"
    onnx_model(out)
    with open(out / "model.onnx.data", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(StoreError, match="shorter"):
        store.publish(K1, out, {})

    out = make_tree(store.staging("onnx") / "out", {"model.onnx": b"not a model onnx can read"})
    assert store.publish(K1, out, {}) is not None  # nothing to check: published as it is


def test_complete_onnx_is_published_and_loads(tmp_path):
    import onnx

    store = LocalStore(tmp_path / "s")
    out = store.staging("onnx") / "out"
    onnx_model(out / "sub")
    e = store.publish(K1, out, {})
    assert onnx.load(str(store.fetch(e) / "sub" / "model.onnx")).graph.initializer[0].name == "w"


# -- 9. the calibration folder is a store entry ----------------------------------------------------

def test_calibration_dataset_is_a_store_entry(tmp_path, monkeypatch):
    from olivepipe.core.datasets import materialize_text_dataset, text_dataset_key
    from olivepipe.spec.workflow import DatasetSpec

    data = tmp_path / "travel.jsonl"
    data.write_text('{"prompt": "a", "response": "b"}\r\n{"prompt": "c", "response": "d"}\r\n')
    ds = DatasetSpec(name="travel", files=(data,), text_template="<u>{prompt}<a>{response}")
    record = {"files": {"travel.jsonl": file_digest(data)}, "text_template": ds.text_template}
    store = LocalStore(tmp_path / "s")
    folder = materialize_text_dataset(store, ds, record)
    rows = [json.loads(line) for line in (folder / "data.jsonl").read_text().splitlines()]
    assert rows == [{"text": "<u>a<a>b"}, {"text": "<u>c<a>d"}]
    entry = store.get(text_dataset_key(record))
    assert entry.manifest["kind"] == "dataset-text" and folder == store.fetch(entry)
    assert folder.is_relative_to(store.entries) and not (store.root / "datasets").exists()
    assert stat.S_IMODE(os.stat(folder / "data.jsonl").st_mode) == 0o444
    staged = []
    monkeypatch.setattr(store, "staging", lambda label: staged.append(label))
    assert materialize_text_dataset(store, ds, record) == folder and staged == []  # unchanged: reused
    monkeypatch.undo()
    other = materialize_text_dataset(store, ds, {**record, "limit": 1})
    assert other != folder and len((other / "data.jsonl").read_text().splitlines()) == 2
    assert list(store.tmp.iterdir()) == []


# -- 10. stat cache and mutex never write through links --------------------------------------------

def test_stat_cache_never_writes_through_a_symlinked_state_folder(tmp_path, monkeypatch):
    ws, target = tmp_path / "ws", tmp_path / "target"
    ws.mkdir()
    target.mkdir()
    (ws / ".olivepipe").symlink_to(target)  # committed to the repository
    f = ws / "data.jsonl"
    f.write_text("a\n")
    sc = StatCache(ws / ".olivepipe" / "state.db")
    assert sc.digest(f) == file_digest(f)  # still works, in memory
    assert list(target.iterdir()) == []

    (ws / ".olivepipe").unlink()
    (ws / ".olivepipe").mkdir()
    (ws / ".olivepipe" / "state.db").symlink_to(target / "victim.db")
    sc = StatCache(ws / ".olivepipe" / "state.db")
    assert sc.digest(f) == file_digest(f)
    assert list(target.iterdir()) == [] and (ws / ".olivepipe" / "state.db").is_symlink()


def test_read_only_stat_cache_reads_but_never_writes(tmp_path, monkeypatch):
    import olivepipe.core.hashing as h

    f = tmp_path / "data.jsonl"
    f.write_text("a\n")
    assert StatCache(tmp_path / "ws" / ".olivepipe" / "state.db", read_only=True).digest(f)
    assert not (tmp_path / "ws").exists()  # no folder, no database
    db = tmp_path / "ws" / ".olivepipe" / "state.db"
    w = StatCache(db)
    w.digest(f)
    w.close()
    before = snapshot(db.parent)
    calls = []
    real = h.file_digest
    monkeypatch.setattr(h, "file_digest", lambda p: calls.append(p) or real(p))
    ro = StatCache(db, read_only=True)
    assert ro.digest(f) == real(f) and calls == []  # what the database knows is used
    g = tmp_path / "other.txt"
    g.write_text("b\n")
    ro.digest(g)
    ro.close()
    assert snapshot(db.parent) == before


def test_touched_unchanged_file_is_hashed_once_then_remembered(tmp_path, monkeypatch):
    import olivepipe.core.hashing as h

    f = tmp_path / "data.jsonl"
    f.write_text("a\n")
    calls = []
    real = h.file_digest
    monkeypatch.setattr(h, "file_digest", lambda p: calls.append(p) or real(p))
    db = tmp_path / ".olivepipe" / "state.db"
    d = StatCache(db).digest(f)
    os.utime(f, ns=(10**18, 10**18))  # touched (git checkout, editor save), same content
    assert StatCache(db).digest(f) == d and len(calls) == 2
    assert StatCache(db).digest(f) == d and len(calls) == 2  # remembered, in a new process too


def test_mutex_never_writes_through_links(tmp_path):
    ws, target = tmp_path / "ws", tmp_path / "target"
    ws.mkdir()
    target.mkdir()
    (ws / ".olivepipe").symlink_to(target)
    with pytest.raises(UnsafePath):
        FileMutex(ws / ".olivepipe" / "apply-x.lock").acquire(timeout=0)
    assert list(target.iterdir()) == []
    (ws / ".olivepipe").unlink()
    (ws / ".olivepipe").mkdir()
    (ws / ".olivepipe" / "apply-x.lock").symlink_to(target / "victim")
    with pytest.raises(UnsafePath):
        FileMutex(ws / ".olivepipe" / "apply-x.lock").acquire(timeout=0)
    assert list(target.iterdir()) == []
    (ws / ".olivepipe" / "apply-x.lock").unlink()
    with FileMutex(ws / ".olivepipe" / "apply-x.lock") as m:
        assert m.holder() == str(os.getpid())


def test_a_held_mutex_says_who_holds_it(tmp_path):
    import subprocess
    import sys

    path = tmp_path / ".olivepipe" / "apply-x.lock"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from olivepipe.core.mutex import FileMutex; "
                               f"m = FileMutex({str(path)!r}).acquire(); print('held', flush=True); time.sleep(120)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        guard = FileMutex(path, busy=("another apply of 'x' is running", "wait for it"))
        for check in (guard.check_free, lambda: guard.acquire(timeout=0)):
            with pytest.raises(Busy) as e:
                check()
            assert e.value.message == f"another apply of 'x' is running (pid {holder.pid})" and e.value.hint == "wait for it"
    finally:
        holder.kill()
        holder.wait()
    FileMutex(path).check_free()  # the kernel dropped the lock with the process
