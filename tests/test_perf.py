"""Performance seams that must not change behaviour: the lock held in memory during apply
(byte-identical to a full dump, never written when nothing changed) and the scheduler's
per-step bookkeeping. Speed itself is measured by bench/run.py, never asserted here."""
from __future__ import annotations

import os
import random
import string

import pytest

from conftest import write
from fakes import FakeExecutor
from olivepipe.core import lock as lockfile
from olivepipe.flow.scheduler import apply
from olivepipe.flow.plan import make_plan
from olivepipe.flow.workspace import open_workspace


def _value(r: random.Random, depth=0):
    t = r.random()
    if depth < 3 and t < 0.3:
        return {"".join(r.choices("abz_", k=r.randint(1, 6))): _value(r, depth + 1) for _ in range(r.randint(0, 4))}
    if depth < 3 and t < 0.45:
        return [_value(r, depth + 1) for _ in range(r.randint(0, 3))]
    if t < 0.6:
        return r.randint(-5, 10**12)
    if t < 0.7:
        return None
    return "".join(r.choices(string.printable + "é漢 ", k=r.randint(0, 150)))  # long ones fold at width 100


def test_lock_writer_writes_exactly_the_full_dump(tmp_path):
    """Per-node fragments joined == yaml.dump of the whole lock, across workflows sharing the
    file, removals, pruning and a second writer changing the file underneath."""
    r = random.Random(7)
    for trial in range(12):
        path = tmp_path / f"t{trial}" / "olivepipe.lock"
        path.parent.mkdir()
        writers = {}
        for step in range(15):
            wf = r.choice(["wf", "other", "yes"])  # "yes" needs quoting in YAML
            w = writers.setdefault(wf, lockfile.Writer(path, wf))
            entry = {"key": "k" * 64, "record": {"params": _value(r), "inputs": [_value(r)]},
                     "output": {"digest": "d" * 64, "files": r.randint(0, 3)}, "duration_s": r.random(),
                     "note": _value(r)}
            w.set({r.choice(["a", "b", "on", f"n{step}"]): entry}, remove=("a",) if r.random() < 0.2 else (),
                  keep_only={"b", "on"} if r.random() < 0.1 else None)
            assert path.read_text() == lockfile.dumps(lockfile.read(path)), (trial, step)


DAG = """\
olivepipe: 1
name: fake
models:
  base: {path: base}
nodes:
  a: {kind: sleep, input: base, note: a}
  b: {kind: sleep, input: a}
  c: {kind: sleep, input: [a, b]}
"""


def test_a_noop_apply_leaves_the_lock_untouched_and_a_run_writes_it_once_per_change(tmp_path, sleep_kind):
    write(tmp_path / "base" / "config.json", "{}")
    wf = write(tmp_path / "workflow.yaml", DAG)

    def run(**kw):
        ws = open_workspace(wf, executor=FakeExecutor())
        return apply(ws, make_plan(ws, **kw))

    assert run().ran == ["a", "b", "c"]
    lock = tmp_path / "olivepipe.lock"
    before = os.stat(lock)
    text = lock.read_text()
    res = run()
    assert res.ok and not res.ran
    after = os.stat(lock)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rewritten
    assert lock.read_text() == text
    # a node removed from the workflow: the next full apply drops it (the one write)
    write(tmp_path / "workflow.yaml", DAG.replace("  c: {kind: sleep, input: [a, b]}\n", ""))
    assert run().ok
    nodes = lockfile.nodes(lock, "fake")
    assert "c" not in nodes and {"a", "b"} <= set(nodes)
    assert lock.read_text() == lockfile.dumps(lockfile.read(lock))


def test_scheduler_settles_a_failed_inputs_dependents_and_runs_the_rest_in_plan_order(tmp_path, sleep_kind):
    write(tmp_path / "base" / "config.json", "{}")
    text = DAG.replace("note: a}", "note: a, fail: true}") + "  d: {kind: sleep, input: base}\n  e: {kind: sleep, input: d}\n"
    wf = write(tmp_path / "workflow.yaml", text)
    ws = open_workspace(wf, executor=FakeExecutor())
    res = apply(ws, make_plan(ws))
    status = {n: o.status for n, o in res.outcomes.items()}
    assert status == {"a": "failed", "b": "skipped", "c": "skipped", "d": "ran", "e": "ran"}
    assert res.ran == ["d", "e"]


def test_pipelined_and_parallel_hashing_give_plain_sha256(tmp_path, monkeypatch):
    import hashlib

    from olivepipe.core import hashing

    monkeypatch.setattr(hashing, "PIPELINE_MIN", 1)  # every file through the reader thread
    monkeypatch.setattr(hashing, "CHUNK", 1000)  # many chunks, a partial last one
    r = random.Random(3)
    files = []
    for size in (0, 1, 999, 1000, 1001, 12_345):
        p = tmp_path / f"f{size}"
        p.write_bytes(r.randbytes(size))
        files.append(p)
    want = [hashlib.sha256(p.read_bytes()).hexdigest() for p in files]
    assert [hashing.file_digest(p) for p in files] == want
    assert hashing.digest_many(hashing.file_digest, files) == want
    stats = hashing.StatCache(None)
    assert stats.tree(tmp_path) == {p.name: d for p, d in zip(files, want)}
    with pytest.raises(IsADirectoryError):
        hashing.file_digest(tmp_path)


def test_cache_verify_reads_a_file_shared_by_entries_once(tmp_path, monkeypatch):
    from olivepipe.core import hashing
    from olivepipe.stores import local

    store = local.LocalStore(tmp_path / "store")
    store.ensure()
    blob = random.Random(5).randbytes(local.LINK_MIN + 1)
    for name in ("a", "b"):
        src = tmp_path / name
        src.mkdir()
        (src / "shard.bin").write_bytes(blob)  # same bytes: stored once, hard-linked into both entries
        (src / f"{name}.txt").write_text(name)
        store.publish(hashing.digest_obj(name), src, {"kind": "olive"})
    reads = []
    real = local.file_digest
    monkeypatch.setattr(local, "file_digest", lambda p: reads.append(p.name) or real(p))
    assert store.verify_all([store.load(k) for k in store.keys()]) == [[], []]
    assert sorted(reads) == ["a.txt", "b.txt", "shard.bin"]
    (store.entry_dir(hashing.digest_obj("b")) / "tree" / "b.txt").chmod(0o644)
    (store.entry_dir(hashing.digest_obj("b")) / "tree" / "b.txt").write_text("B")  # same size, new bytes
    by_key = dict(zip(store.keys(), store.verify_all([store.load(k) for k in store.keys()])))
    assert by_key == {hashing.digest_obj("a"): [], hashing.digest_obj("b"): ["b.txt: content does not match its digest"]}


def test_touched_files_of_an_entry_are_rehashed_together_and_judged_one_by_one(tmp_path):
    from olivepipe.core import hashing
    from olivepipe.stores import local

    store = local.LocalStore(tmp_path / "store")
    store.ensure()
    src = tmp_path / "src"
    src.mkdir()
    r = random.Random(7)
    for name in ("a.bin", "b.bin", "c.bin", "d.txt"):
        (src / name).write_bytes(r.randbytes(5000))
    e = store.publish(hashing.digest_obj("x"), src, {"kind": "olive"})
    for name in ("a.bin", "b.bin", "c.bin"):  # as `cp -r` leaves them: new mtimes; b's bytes changed too
        p = e.tree / name
        os.chmod(p, 0o644)
        data = p.read_bytes()
        p.write_bytes(data[:-1] + bytes([data[-1] ^ 1]) if name == "b.bin" else data)
        os.utime(p, ns=(0, os.stat(p).st_mtime_ns + 10**9))
    problems, verified = store._health(store.load(e.key), rehash=True)
    assert problems == ["b.bin: content changed since publish"]
    assert sorted(verified) == ["a.bin", "c.bin"]
