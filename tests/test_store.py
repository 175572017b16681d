"""Store: atomic publish, health checks, verify, gc, stat cache."""
import os

from olivepipe.core.hashing import StatCache, file_digest
from olivepipe.stores.local import Store, materialize
from trees import make_tree


def test_publish_moves_files_and_records_digests(tmp_path):
    store = Store(tmp_path / "store")
    store.ensure()
    out = make_tree(store.staging("n") / "out", {"model.onnx": b"abc", "sub/a.json": b"{}"})
    e = store.publish("k" * 64, out, {"kind": "olive"})
    assert not out.exists()  # moved, not copied
    assert e.manifest["files"]["model.onnx"]["digest"] == file_digest(e.tree / "model.onnx")
    assert store.get("k" * 64).digest == e.digest
    assert os.stat(e.tree / "model.onnx").st_nlink == 1  # onnx refuses hard-linked external data
    assert list(store.tmp.iterdir()) == [out.parent]  # only the caller's staging folder is left


def test_same_content_same_digest_different_key(tmp_path):
    store = Store(tmp_path / "s")
    store.ensure()
    a = store.publish("a" * 64, make_tree(tmp_path / "a", {"x": b"1"}), {})
    b = store.publish("b" * 64, make_tree(tmp_path / "b", {"x": b"1"}), {})
    assert a.digest == b.digest and a.key != b.key


def test_changed_file_is_never_served(tmp_path):
    store = Store(tmp_path / "s")
    store.ensure()
    e = store.publish("a" * 64, make_tree(tmp_path / "a", {"x": b"hello"}), {})
    os.chmod(e.tree / "x", 0o644)
    (e.tree / "x").write_bytes(b"hellO")  # same size, new mtime
    assert store.get("a" * 64) is None  # detected, dropped, counts as a miss
    assert not store.entry_dir("a" * 64).exists()


def test_deleted_file_is_never_served(tmp_path):
    store = Store(tmp_path / "s")
    store.ensure()
    e = store.publish("a" * 64, make_tree(tmp_path / "a", {"x": b"hello", "y": b"z"}), {})
    os.unlink(e.tree / "y")
    assert store.get("a" * 64) is None


def test_verify_finds_flipped_byte_with_mtime_restored(tmp_path):
    store = Store(tmp_path / "s")
    store.ensure()
    e = store.publish("a" * 64, make_tree(tmp_path / "a", {"x": b"hello"}), {})
    st = os.stat(e.tree / "x")
    os.chmod(e.tree / "x", 0o644)
    (e.tree / "x").write_bytes(b"jello")
    os.utime(e.tree / "x", ns=(st.st_atime_ns, st.st_mtime_ns))  # a sneaky corruption
    entry = store.get("a" * 64)
    assert entry is not None  # the cheap check cannot see it...
    assert store.verify(entry) == ["x: content does not match its digest"]  # ...verify does


def test_unfinished_entry_is_invisible(tmp_path):
    store = Store(tmp_path / "s")
    store.ensure()
    half = store.entry_dir("c" * 64)
    (half / "tree").mkdir(parents=True)  # a crash before the manifest was written
    assert store.get("c" * 64) is None and not half.exists()


def test_gc_keeps_referenced(tmp_path):
    store = Store(tmp_path / "s")
    store.ensure()
    store.publish("a" * 64, make_tree(tmp_path / "a", {"x": b"1"}), {})
    store.publish("b" * 64, make_tree(tmp_path / "b", {"x": b"2"}), {})
    res = store.gc({"a" * 64})
    assert res["entries_removed"] == ["b" * 64]
    assert store.keys() == ["a" * 64]


def test_materialize_is_a_link(tmp_path):
    store = Store(tmp_path / "s")
    store.ensure()
    e = store.publish("a" * 64, make_tree(tmp_path / "a", {"x": b"1"}), {})
    dest = tmp_path / "outputs" / "node"
    materialize(e, dest)
    materialize(e, dest)  # idempotent
    assert dest.is_symlink() and (dest / "x").read_bytes() == b"1"


def test_stat_cache_rehashes_only_changed_files(tmp_path, monkeypatch):
    import olivepipe.core.hashing as h

    f = tmp_path / "data.jsonl"
    f.write_text("a\n")
    calls = []
    real = h.file_digest
    monkeypatch.setattr(h, "file_digest", lambda p: calls.append(p) or real(p))
    sc = StatCache(tmp_path / "state.db")
    d1 = sc.digest(f)
    assert StatCache(tmp_path / "state.db").digest(f) == d1  # a new process reads the db
    assert len(calls) == 1
    f.write_text("b\n")
    assert sc.digest(f) != d1 and len(calls) == 2
