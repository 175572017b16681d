"""The inputs a node reads are the inputs that were hashed (issue: a cache you can trust, case 1).

Real worker processes (the local executor) run the test-only `sleep` kind, which reads its data
file and waits for the test to tamper with inputs mid-run."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from conftest import write
from olivepipe.core import lock as lockfile
from olivepipe.flow.scheduler import apply
from olivepipe.flow.plan import make_plan
from olivepipe.flow.workspace import open_workspace

WF = """\
olivepipe: 1
name: trust
models:
  base: {path: base}
datasets:
  rows: {files: rows.jsonl}
nodes:
  train: {kind: sleep, input: base, data: rows, wait_for: GO}
"""


def setup(tmp_path: Path) -> Path:
    write(tmp_path / "base" / "config.json", '{"a": 1}')
    write(tmp_path / "rows.jsonl", '{"text": "original"}\n')
    return write(tmp_path / "workflow.yaml", WF.replace("GO", str(tmp_path / "go")))


def apply_while(tmp_path, wf, mischief):
    """apply in a thread; once the node is running, do ``mischief`` and release the node."""
    ws = open_workspace(wf)
    plan = make_plan(ws)
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("res", apply(ws, plan)))
    t.start()
    log = ws.log_path("train")
    deadline = time.monotonic() + 120
    while not (log.exists() and _worker_started(ws)) and time.monotonic() < deadline:
        time.sleep(0.05)
    mischief()
    (tmp_path / "go").write_text("go")
    t.join()
    return ws, box["res"]


def _worker_started(ws) -> bool:
    return any(p.name.startswith("worker-") for p in ws.logs.glob("worker-*.log"))


def test_a_data_file_edited_during_the_run_is_not_what_the_node_read(tmp_path, sleep_kind):
    import hashlib

    wf = setup(tmp_path)
    ws, res = apply_while(tmp_path, wf, lambda: write(tmp_path / "rows.jsonl", '{"text": "poisoned"}\n'))
    assert res.ok, res.outcomes
    entry = ws.store.get(res.outcomes["train"].key)
    result = json.loads((ws.store.fetch(entry) / "result.json").read_text())
    assert result["data"] == ['{"text": "original"}\n']  # the snapshot, whose digest is in the key
    locked = lockfile.nodes(wf.parent / "olivepipe.lock", "trust")["train"]["record"]["data"]["files"]
    assert locked == {"rows.jsonl": hashlib.sha256(b'{"text": "original"}\n').hexdigest()}
    # the poisoned content re-runs; restoring the original serves this result, which is right
    assert [s.action for s in make_plan(open_workspace(wf, read_only=True)).steps] == ["run"]
    write(tmp_path / "rows.jsonl", '{"text": "original"}\n')
    assert [s.action for s in make_plan(open_workspace(wf, read_only=True)).steps] == ["cached"]


def test_a_data_file_changed_between_hashing_and_reading_fails_the_node(tmp_path, sleep_kind, monkeypatch):
    wf = setup(tmp_path)
    (tmp_path / "go").write_text("go")
    import shutil

    from olivepipe.run import runtime  # the node runtime snapshots data files, for every executor

    real = shutil.copyfile

    def edit_then_copy(src, dst, **kw):  # the file changes in the window before the snapshot
        Path(src).write_text('{"text": "edited"}\n')
        return real(src, dst, **kw)

    monkeypatch.setattr(runtime.shutil, "copyfile", edit_then_copy)
    ws = open_workspace(wf)
    res = apply(ws, make_plan(ws))
    o = res.outcomes["train"]
    assert o.status == "failed" and "rows.jsonl changed after it was hashed" in o.error
    assert list(ws.store.keys()) == [] and lockfile.nodes(wf.parent / "olivepipe.lock", "trust") == {}


def test_a_model_folder_changed_during_the_run_fails_the_node(tmp_path, sleep_kind):
    wf = setup(tmp_path)

    def touch():
        p = tmp_path / "base" / "config.json"
        p.write_text('{"a": 2}')

    ws, res = apply_while(tmp_path, wf, touch)
    o = res.outcomes["train"]
    assert o.status == "failed" and "model folder base changed while the node ran" in o.error
    assert list(ws.store.keys()) == []


def test_a_link_out_of_the_workspace_in_a_model_folder_is_refused(tmp_path, sleep_kind):
    wf = setup(tmp_path / "ws")
    secret = write(tmp_path / "outside.txt", "secret")
    os.symlink(secret, tmp_path / "ws" / "base" / "weights.bin")
    (tmp_path / "ws" / "go").write_text("go")
    ws = open_workspace(wf)
    res = apply(ws, make_plan(ws))
    assert res.outcomes["train"].status == "failed"
    assert "outside the workspace" in res.outcomes["train"].error


def test_a_relative_cache_dir_still_publishes_the_real_result(tmp_path, sleep_kind, monkeypatch):
    wf = setup(tmp_path / "ws")
    (tmp_path / "ws" / "go").write_text("go")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OLIVEPIPE_CACHE_DIR", "rel-cache")
    ws = open_workspace(wf)
    res = apply(ws, make_plan(ws))
    assert res.ok
    entry = ws.store.get(res.outcomes["train"].key)
    tree = ws.store.fetch(entry)
    assert tree.is_relative_to(tmp_path / "rel-cache")
    assert json.loads((tree / "result.json").read_text())["node"] == "train"
