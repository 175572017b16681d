"""The no-op fast path (olivepipe/fastpath.py): the same answer as the full path, and a fall
through on every change it cannot see past. Results are published to the store directly (no
Olive run), then the real CLI runs as fresh processes."""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from conftest import cli, tree_snapshot, write
from olivepipe.core import lock as lockfile
from olivepipe.core.keys import key_of
from olivepipe.stores.local import _rmtree
from olivepipe.flow.workspace import open_workspace

WORKFLOW = """\
olivepipe: 1
name: fast
models:
  base: {path: base}
datasets:
  travel: {files: travel.jsonl, text_template: "{prompt} {response}", max_seq_len: 64}
nodes:
  quantize: {pass: rtn, input: base}
  finetune: {pass: lora, input: base, data: travel, params: {max_steps: 2}}
"""
TRACE = {"OLIVEPIPE_FASTPATH": "trace"}
COMMANDS = [["apply"], ["apply", "-q"], ["apply", "--json"], ["status"], ["status", "--json"], ["plan"],
            ["plan", "--detailed-exitcode"]]


def _publish_all(wf: Path) -> None:
    """Every step's result in the store and the lock, as after an apply (a stand-in payload)."""
    ws = open_workspace(wf)
    ws.store.ensure()
    digests = {}
    for name in ws.steps():
        rec, _ = ws.record(name, digests)
        out = ws.store.staging(name) / "out"
        out.mkdir(parents=True)
        (out / "model.bin").write_bytes(name.encode() * 100)
        e = ws.store.publish(key_of(rec), out, {"model": {"type": "hfmodel", "config": {"model_path": "$OUT"}},
                                               "kind": ws.step(name).kind.name})
        digests[name] = e.digest
        lockfile.update(ws.lock_path, ws.lock_name, {name: {  # complete, as apply writes it: a no-op leaves it
            "key": e.key, "kind": rec["kind"], "record": rec, "duration_s": e.manifest.get("duration_s"),
            "output": {"digest": e.digest, "files": len(e.files), "bytes": e.size}}})
    ws.stats.close()


def _age(root: Path) -> None:
    """Set every file's mtime 10 s back: the stamp refuses files changed within the last second
    (same-tick edits), and the test must not sleep."""
    past = time.time() - 10
    for p in [*root.glob("*"), *(root / "base").glob("*")]:
        if not p.is_symlink():  # listed folders too (a model folder's own mtime is in the stamp)
            os.utime(p, (past, past))


@pytest.fixture
def stamped(tmp_path):
    root = tmp_path / "ws"
    (root / ".git").mkdir(parents=True)
    write(root / "base" / "config.json", '{"model_type": "phi3"}')
    write(root / "travel.jsonl", '{"prompt": "a", "response": "b"}\n' * 4)
    wf = write(root / "workflow.yaml", WORKFLOW)
    _publish_all(wf)
    restamp(wf)
    return wf


def restamp(wf: Path) -> None:
    """Full no-op applies until one writes the stamp: the first after a change may still
    complete the lock (a write: its stat moved while it ran, so it writes no stamp)."""
    for _ in range(2):
        _age(wf.parent)
        p = cli("apply", wf, env=TRACE)
        assert p.returncode == 0 and "fast path: no" in p.stderr, p.stdout + p.stderr
        if "stamp not written" not in p.stderr:
            break
    assert "fast path: yes" in cli("status", wf, env=TRACE).stderr, p.stderr


def _same(out: str) -> str:
    """The one figure that differs between two runs: how long apply took."""
    return re.sub(r'"seconds": [0-9.]+(?=, "steps")', '"seconds": S', re.sub(r"\([0-9.]+s\)", "(Ss)", out))


def test_every_form_answers_exactly_as_the_full_path(stamped):
    stamp_dir = stamped.parent / ".olivepipe" / "fast"
    assert [p.name for p in stamp_dir.iterdir()] == ["workflow.yaml.json"]  # inside .olivepipe only
    for attempt in range(2):
        before = tree_snapshot(stamped.parent)
        fast = {tuple(args): cli(*args, stamped, env=TRACE) for args in COMMANDS}
        if attempt == 0 and any("packages, olivepipe" in p.stderr for p in fast.values()):
            restamp(stamped)  # a shared interpreter gained a package meanwhile (its folder moved): once more
            continue
        break
    for args, p in fast.items():
        assert p.stderr == "olivepipe fast path: yes\n", (args, p.stderr)
    assert tree_snapshot(stamped.parent) == before  # the fast path writes nothing, apply's included
    for args in COMMANDS:
        full = cli(*args, stamped, env={"OLIVEPIPE_FASTPATH": "off"})
        p = fast[tuple(args)]
        assert (p.returncode, _same(p.stdout)) == (full.returncode, _same(full.stdout)), args
        assert full.returncode == 0 and full.stdout.strip()


def _falls_through(wf: Path, *args) -> str:
    p = cli(*args, wf, env=TRACE)
    assert "fast path: no" in p.stderr, (args, p.stderr)
    return p


@pytest.mark.parametrize("change", ["workflow", "lock", "data", "model file", "package version"])
def test_each_input_kind_changed_falls_through(stamped, change, tmp_path):
    root = stamped.parent
    if change == "workflow":
        stamped.write_text(WORKFLOW.replace("max_steps: 2", "max_steps: 3"))
        p = _falls_through(stamped, "plan", "--detailed-exitcode")
        assert p.returncode == 2 and "finetune" in p.stdout  # the full path sees the change
    elif change == "lock":
        lock = root / "olivepipe.lock"
        lock.write_text(lock.read_text() + "# an edit\n")
        assert _falls_through(stamped, "status").returncode == 0
    elif change == "data":
        with open(root / "travel.jsonl", "a") as f:
            f.write('{"prompt": "c", "response": "d"}\n')
        assert _falls_through(stamped, "status").returncode == 2
    elif change == "model file":
        write(root / "base" / "config.json", '{"model_type": "phi3", "x": 1}')
        p = _falls_through(stamped, "status")
        assert p.returncode == 2 and "stale" in p.stdout
    else:  # a package installed next to the others (a folder on sys.path gains a dist-info)
        site = tmp_path / "site"
        site.mkdir()
        env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
        _age(root)
        assert cli("apply", stamped, env={**TRACE, **env}).returncode == 0  # stamp with that path
        assert "yes" in cli("status", stamped, env={**TRACE, **env}).stderr
        (site / "somepkg-1.0.dist-info").mkdir()
        p = cli("status", stamped, env={**TRACE, **env})
        assert "fast path: no (interpreter, packages" in p.stderr and p.returncode == 0
    if change in ("lock", "package version"):  # nothing to run: apply falls through and answers no-op
        p = _falls_through(stamped, "apply", "--json") if change == "lock" else None
        assert p is None or p.returncode == 0 and json.loads(p.stdout.splitlines()[-1])["ok"]


def test_flags_it_does_not_know_fall_through_before_any_stamp_is_read():
    from olivepipe import fastpath

    for args in (["apply", "--target", "quantize", "w.yaml"], ["apply", "-v", "w.yaml"], ["apply", "--rehearse", "w.yaml"],
                 ["plan", "--format", "json", "w.yaml"], ["status", "--cache-dir", "c", "w.yaml"], ["apply", "w.yaml", "x"],
                 ["apply", "--force=quantize", "w.yaml"], ["apply", "-j", "2", "w.yaml"], ["validate", "w.yaml"], []):
        why, stamp, _ = fastpath._check(args)
        assert why and stamp is None, args


def test_a_remote_cache_a_linked_state_folder_or_a_lost_output_falls_through(stamped, tmp_path):
    p = cli("status", stamped, env={**TRACE, "OLIVEPIPE_REMOTE_CACHE": "azblob://acct/container"})
    assert "fast path: no (interpreter, packages, olivepipe or OLIVEPIPE_* changed)" in p.stderr
    config = write(stamped.parent / ".olivepipe" / "config.yaml", "cache: {push: false}\n")
    assert "fast path: no (changed:" in cli("status", stamped, env=TRACE).stderr
    config.unlink()
    link = stamped.parent / "outputs" / "fast" / "finetune"
    os.unlink(link)
    p = _falls_through(stamped, "apply")
    assert p.returncode == 0 and link.is_symlink()  # the full path put it back
    ws = open_workspace(stamped, read_only=True)
    _rmtree(ws.store.entry_dir(lockfile.nodes(stamped.parent / "olivepipe.lock", "fast")["quantize"]["key"]))
    assert _falls_through(stamped, "status").returncode == 2
    state = stamped.parent / ".olivepipe"
    state.rename(tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", state)
    assert "fast path: no (no stamp)" in cli("status", stamped, env=TRACE).stderr
