"""`cache gc --remote` (issue 19): keeps what the lock file references now and in the named git
revisions (like `dvc gc -c --rev`), nothing younger than the grace period, and no object while a
push is running. Against Azurite."""
from __future__ import annotations

import subprocess

from conftest import write
from fakes import FakeExecutor
from test_blob_store import blob_names, make_tree, olivepipe as cli, workspace

K3, K4 = "3" * 64, "4" * 64


def test_grace_period_and_running_pushes_are_respected(azurite, container, tmp_path):
    remote = azurite.blob_store(container)
    remote.publish(K3, make_tree(tmp_path / "c", {"own": b"three", "shared": b"s"}), {})
    remote.publish(K4, make_tree(tmp_path / "d", {"shared": b"s"}), {})
    assert remote.gc(set(), grace_s=3600)["entries_removed"] == []  # all just written: a push may be writing them
    with remote._in_progress(K4):  # a push is running: manifests may go, objects may not
        res = remote.gc({K4}, grace_s=0)
    assert res["entries_removed"] == [K3] and res["objects_removed"] == 0 and res["publishing"] == 1
    assert remote.get(K4) is not None
    res = remote.gc({K4}, grace_s=0)  # the push finished: K3's own object goes, the shared one stays
    assert res["objects_removed"] == 1 and remote.get(K4) is not None
    assert not [n for n in blob_names(azurite, container) if n.startswith("inprogress/")]


def test_gc_remote_keeps_what_the_named_revisions_lock_files_reference(azurite, container, tmp_path, sleep_kind):
    from olivepipe.core import lock as lockfile
    from olivepipe.flow.scheduler import apply
    from olivepipe.flow.plan import make_plan
    from olivepipe.stores.local import LocalStore
    from olivepipe.stores.tiered import TieredStore
    from olivepipe.flow.workspace import open_workspace

    ws = tmp_path / "repo"
    wf = workspace(ws)

    def build():
        w = open_workspace(wf, executor=FakeExecutor(),
                           store=TieredStore(LocalStore(ws / ".olivepipe" / "cache"), azurite.blob_store(container)))
        assert apply(w, make_plan(w)).ok
        return {r["key"] for r in lockfile.nodes(ws / "olivepipe.lock", "shared").values()}

    def git(*args):
        subprocess.run(["git", *args], cwd=ws, check=True, capture_output=True)

    v1 = build()
    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "add", "workflow.yaml", "olivepipe.lock", "base")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "v1")
    wf.write_text(wf.read_text().replace("note: b", "note: b2"))
    v2 = build()  # the working tree's lock: a changed b
    assert v1 != v2 and len(v1 & v2) == 1
    azurite.blob_store(container).publish(K3, make_tree(tmp_path / "c", {"x": b"orphan"}), {})

    env = azurite.env(container)
    dry = cli("cache", "gc", wf, "--remote", "--rev", "HEAD", "--grace", "0", "--dry-run", env=env)
    assert dry.returncode == 0 and "would remove 1 entries" in dry.stdout, dry.stdout + dry.stderr
    r = cli("cache", "gc", wf, "--remote", "--rev", "HEAD", "--grace", "0", env=env)
    assert r.returncode == 0, r.stderr
    remote = azurite.blob_store(container)
    assert set(remote.keys()) == v1 | v2  # both revisions' results stay; the orphan went
    r = cli("cache", "gc", wf, "--remote", "--grace", "0", env=env)  # only the working tree now
    assert r.returncode == 0 and set(azurite.blob_store(container).keys()) == v2
    bad = cli("cache", "gc", wf, "--remote", "--rev", "no-such-rev", "--grace", "0", env=env)
    assert bad.returncode == 1 and "no such revision" in bad.stderr and set(azurite.blob_store(container).keys()) == v2
