"""Review tooling: semantic diff (files, git revisions, lock files), textconv, fmt, plan JSON/markdown, graph output.

No Olive runs: workflows are parsed with check_files=False, lock files are written by hand
or through olivepipe.core.lock.update, plan results are placeholders published into the store.
"""
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import EXAMPLE, MINIMAL, REPO, cli, write
from olivepipe.core import lock as lockfile
from olivepipe.flow import review
from olivepipe.core.errors import LockError, OlivepipeError, SpecError
from olivepipe.spec.fmt import format_text

ROWS = '{"prompt": "a", "response": "b"}\n'


def two(tmp_path, old: str, new: str, name="workflow.yaml"):
    a = write(tmp_path / "a" / name, old)
    b = write(tmp_path / "b" / name, new)
    for d in ("a", "b"):
        write(tmp_path / d / "travel.jsonl", ROWS * 4)
    return a, b


def statuses(result):
    return {i["name"]: i["status"] for i in result["impact"]["nodes"]}


# -- semantic diff of two files ------------------------------------------------------

def test_diff_added_removed_renamed_changed_and_impact(tmp_path):
    new = (MINIMAL.replace("r: 4,", "r: 8,")
           .replace("  onnx: {pass: model-builder, input: finetune", "  build: {pass: model-builder, input: finetune")
           .replace("  adapters: {pass: extract-adapters, input: onnx}\n",
                    '  chat: {kind: generate, input: build, prompts: ["hi"]}\n'))
    a, b = two(tmp_path, MINIMAL, new)
    r = review.diff(str(a), str(b))
    assert r["type"] == "workflow" and r["same"] is False
    n = r["nodes"]
    assert n["added"] == ["chat"] and n["removed"] == ["adapters"]
    assert n["renamed"] == [{"old": "onnx", "new": "build"}]
    assert n["changed"] == [{"name": "finetune", "old_name": "finetune",
                             "changes": [{"path": "params.r", "op": "changed", "old": 4, "new": 8}]}]
    assert r["edges"] == {"added": [["build", "chat"]], "removed": [["build", "adapters"]]}
    imp = {i["name"]: i for i in r["impact"]["nodes"]}
    assert imp["finetune"]["status"] == "changed" and imp["finetune"]["reasons"] == ["params.r: 4 -> 8"]
    # a renamed node still re-runs when what it reads changed, and says so
    assert imp["build"] == {"name": "build", "old_name": "onnx", "status": "upstream", "reasons": ["input finetune changed"]}
    assert imp["chat"]["status"] == "new"
    assert r["impact"]["rerun"] == ["finetune", "build", "chat"] and r["impact"]["unchanged"] == []


def test_layout_defaults_anchors_and_comments_are_not_differences(tmp_path):
    same = """\
# reordered, commented, a default written out, an anchor, defaults: spelled out
name: mini
olivepipe: 1
defaults: {device: cpu}
datasets:
  travel:
    max_seq_len: 64
    text_template: "<|user|>\\n{prompt}<|end|>\\n<|assistant|>\\n{response}<|end|>"
    files: ./travel.jsonl
models:
  base: {tiny: {arch: phi3, layers: 2}}   # layers 2 is the tiny default
nodes:
  finetune:
    params: &ft {max_steps: 2, torch_dtype: float32, r: 4, lora_dropout: 0.05}
    data: travel
    input: base
    pass: lora
  onnx: {input: finetune, pass: model-builder, params: {precision: int4}, description: builds it}
  adapters: {pass: extract-adapters, input: onnx}
"""
    a, b = two(tmp_path, MINIMAL, same)
    r = review.diff(str(a), str(b))
    # only the description differs, and descriptions never reach a cache key
    assert r["nodes"]["changed"] == [{"name": "onnx", "old_name": "onnx", "changes": [
        {"path": "description", "op": "added", "old": None, "new": "builds it"}]}]
    assert r["impact"]["rerun"] == []
    p = cli("diff", a, b)
    assert p.returncode == 1 and "description added: builds it" in p.stdout
    b.write_text(same.replace(", description: builds it", ""))
    p = cli("diff", a, b)
    assert p.returncode == 0, p.stderr
    assert "no differences" in p.stdout


def test_data_file_and_model_changes_propagate_downstream(tmp_path):
    a, b = two(tmp_path, MINIMAL, MINIMAL)
    (b.parent / "travel.jsonl").write_text(ROWS * 5)
    r = review.diff(str(a), str(b))
    assert r["datasets"]["changed"][0]["changes"][0]["path"] == "files.travel.jsonl"
    imp = {i["name"]: i for i in r["impact"]["nodes"]}
    assert imp["finetune"]["status"] == "changed"
    assert imp["finetune"]["reasons"][0].startswith("dataset travel: data file travel.jsonl: content changed")
    assert [imp[n]["status"] for n in ("onnx", "adapters")] == ["upstream", "upstream"]
    assert imp["adapters"]["reasons"] == ["input onnx changed"]

    (b.parent / "travel.jsonl").write_text(ROWS * 4)
    b.write_text(MINIMAL.replace("tiny: {arch: phi3}", "tiny: {arch: phi3, layers: 3}"))
    r = review.diff(str(a), str(b))
    assert r["models"]["changed"][0]["changes"] == [{"path": "tiny.layers", "op": "changed", "old": 2, "new": 3}]
    assert statuses(r) == {"finetune": "upstream", "onnx": "upstream", "adapters": "upstream"}
    assert r["impact"]["nodes"][0]["reasons"] == ["model base: tiny.layers: 2 -> 3"]


def test_matrix_expansion_renames_and_adds_variants(tmp_path):
    new = MINIMAL.replace("params: {precision: int4}", "matrix: {precision: [int4, fp32]}")
    a, b = two(tmp_path, MINIMAL, new)
    r = review.diff(str(a), str(b))
    assert r["nodes"]["renamed"] == [{"old": "onnx", "new": "onnx-int4"}, {"old": "adapters", "new": "adapters-int4"}]
    assert r["nodes"]["added"] == ["onnx-fp32", "adapters-fp32"]
    # the int4 branch is the old branch under new names: same keys, nothing re-runs there
    assert r["impact"]["rerun"] == ["onnx-fp32", "adapters-fp32"]
    assert set(r["impact"]["unchanged"]) == {"finetune", "onnx-int4", "adapters-int4"}


def test_diff_json_and_text_through_the_cli(tmp_path):
    a, b = two(tmp_path, MINIMAL, MINIMAL.replace("precision: int4", "precision: fp32"))
    p = cli("diff", "--json", a, b)
    assert p.returncode == 1, p.stderr
    r = json.loads(p.stdout)
    assert set(r) == {"format", "type", "a", "b", "same", "workflow", "models", "datasets", "nodes", "edges", "impact"}
    assert r["format"] == 1 and r["a"] == str(a)
    for sec in ("models", "datasets", "nodes"):
        assert set(r[sec]) == {"added", "removed", "renamed", "changed"}
    assert set(r["impact"]) == {"rerun", "unchanged", "nodes"}
    assert set(r["impact"]["nodes"][0]) == {"name", "old_name", "status", "reasons"}
    p = cli("diff", a, b)
    assert "params.precision: int4 -> fp32" in p.stdout
    assert re.search(r"impact: 2 of 3 nodes get a new cache key", p.stdout)


def test_diff_errors_are_located_and_exit_2(tmp_path):
    a, _ = two(tmp_path, MINIMAL, MINIMAL)
    bad = write(tmp_path / "bad.yaml", MINIMAL.replace("pass: model-builder", "pass: model-buildr"))
    p = cli("diff", a, bad)
    assert p.returncode == 2 and f"{bad}:9:16: unknown pass 'model-buildr'" in p.stderr
    p = cli("diff", a, tmp_path / "missing.yaml")
    assert p.returncode == 2 and "missing.yaml: no such file" in p.stderr
    lock = write(tmp_path / "olivepipe.lock", "format: 1\nworkflows: {}\n")
    p = cli("diff", a, lock)
    assert p.returncode == 2 and "cannot compare a workflow file" in p.stderr
    p = cli("diff", a, "HEAD:workflow.yaml", cwd=tmp_path)  # tmp_path is no git repository
    assert p.returncode == 2 and "HEAD:workflow.yaml: git: not a git repository" in p.stderr
    for p in (cli("diff", a), cli("diff", "--textconv", a, a)):
        assert p.returncode == 2
    assert "Traceback" not in p.stderr


def test_review_keys_are_the_core_records(mini):
    """diff's static keys are keys.key_of over Workspace.record (the node kinds' records), with
    only package versions left out and upstream keys in the input-digest slots."""
    from olivepipe.core.keys import key_of
    from olivepipe.spec.workflow import load_workflow
    from olivepipe.flow.workspace import open_workspace

    d = review.describe(load_workflow(mini), review.read_side(str(mini)))
    ws = open_workspace(mini, read_only=True)
    for name in ws.graph.topo:
        if name in ws.workflow.nodes or ws.workflow.models[name].source == "tiny":
            rec, _ = ws.record(name, d.keys)
            rec["packages"] = {}
            assert key_of(rec) == d.keys[name], name
    # what the record leaves out never reaches a key: descriptions and rehearse are shown, not keyed
    assert d.keyed[("nodes", "onnx")] == {"kind", "pass", "input", "device", "provider", "params"}


KINDS = """\
olivepipe: 1
name: kinds
models:
  base: {tiny: {arch: phi3}}
nodes:
  onnx: {pass: model-builder, input: base, params: {precision: int4}, description: one}
  chat: {kind: generate, input: onnx, prompts: ["hi"]}
  reg: {kind: register, input: onnx, name: m, version: 1, description: first}
"""


def test_what_re_runs_follows_the_node_kinds(tmp_path):
    """A register node's description is what it registers (its kind puts it in the record): it
    re-runs; an Olive node's description is a comment for people: it does not."""
    new = (KINDS.replace("description: one", "description: two").replace("description: first", "description: second")
           .replace('"hi"', '"hello"'))
    a, b = two(tmp_path, KINDS, new)
    r = review.diff(str(a), str(b))
    assert statuses(r) == {"onnx": "unchanged", "chat": "changed", "reg": "changed"}
    imp = {i["name"]: i for i in r["impact"]["nodes"]}
    assert imp["reg"]["reasons"] == ["description: first -> second"]
    assert imp["chat"]["reasons"] == ['prompts: ["hi"] -> ["hello"]']



# -- git revisions ----------------------------------------------------------------------

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path):
    """A git repository with two commits of pipe/wf.yaml: r 4 -> 8, and one more data row."""
    r = tmp_path / "repo"
    write(r / "pipe" / "wf.yaml", MINIMAL)
    write(r / "pipe" / "travel.jsonl", ROWS * 4)
    git(r, "init", "-q")
    git(r, "add", "-A")
    git(r, "commit", "-qm", "v1")
    (r / "pipe" / "wf.yaml").write_text(MINIMAL.replace("r: 4,", "r: 8,"))
    (r / "pipe" / "travel.jsonl").write_text(ROWS * 5)
    git(r, "commit", "-qam", "v2")
    return r


@needs_git
def test_diff_between_git_revisions(repo):
    p = cli("diff", "HEAD~1:pipe/wf.yaml", "HEAD:pipe/wf.yaml", cwd=repo, env=GIT_ENV)
    assert p.returncode == 1, p.stderr
    assert "params.r: 4 -> 8" in p.stdout
    assert "data file travel.jsonl: content changed" in p.stdout  # read from each revision, not the work tree
    # ./ paths are relative to the current folder, as in git
    p = cli("diff", "--json", "HEAD~1:./wf.yaml", "wf.yaml", cwd=repo / "pipe", env=GIT_ENV)
    r = json.loads(p.stdout)
    assert r["impact"]["rerun"] == ["finetune", "onnx", "adapters"]
    assert cli("diff", "HEAD:pipe/wf.yaml", "pipe/wf.yaml", cwd=repo, env=GIT_ENV).returncode == 0
    # the digest of a data file at a revision is the one the lock records (sha256 of its bytes)
    side = review.read_side("HEAD~1:pipe/wf.yaml", cwd=repo)
    assert side.data_digest("travel.jsonl") == hashlib.sha256((ROWS * 4).encode()).hexdigest()


@needs_git
def test_bad_revisions_exit_2_with_a_message(repo):
    for spec, msg in (("HEAD~5:pipe/wf.yaml", "HEAD~5:pipe/wf.yaml: git:"),
                      ("HEAD:pipe/nope.yaml", "HEAD:pipe/nope.yaml: git:"),
                      ("HEAD:pipe", "is a directory in that revision")):
        p = cli("diff", spec, "pipe/wf.yaml", cwd=repo, env=GIT_ENV)
        assert p.returncode == 2, (spec, p.stdout, p.stderr)
        assert msg in p.stderr and "Traceback" not in p.stderr


@needs_git
def test_git_diff_driver_as_documented(repo):
    """The .gitattributes + textconv lines from docs/review.md: git diff shows meaning, not layout."""
    write(repo / ".gitattributes", "*.olivepipe.yaml diff=olivepipe\nwf.yaml diff=olivepipe\n"
                                   "olivepipe.lock diff=olivepipe-lock\n")
    olivepipe = f"{shlex.quote(sys.executable)} -m olivepipe.cli"  # the docs say `olivepipe`; same program
    git(repo, "config", "diff.olivepipe.textconv", f"{olivepipe} diff --textconv")
    git(repo, "config", "diff.olivepipe-lock.textconv", f"{olivepipe} diff --textconv")
    # reorder keys and add a comment on top of the r change: only the r line differs after textconv
    wf = repo / "pipe" / "wf.yaml"
    wf.write_text("# a comment\n" + wf.read_text().replace(
        "finetune: {pass: lora, input: base", "finetune: {input: base, pass: lora"))
    out = git(repo, "diff", "HEAD~1", "--", "pipe/wf.yaml")
    changed = [ln for ln in out.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert changed == ["-      r: 4", "+      r: 8"], out


# -- lock files ----------------------------------------------------------------------

def _entry(key, out, record):
    return {"key": key * 64, "kind": record.get("kind", "olive"), "duration_s": 1.0,
            "output": {"digest": out * 64, "files": 1, "bytes": 10}, "record": record}


def _rec(**kw):
    base = {"format": 1, "kind": "olive", "device": "cpu", "provider": "CPUExecutionProvider",
            "packages": {"olive-ai": "0.13.0", "torch": "2.13.0"}}
    return {**base, **kw}


def test_lock_diff_names_what_changed_and_why(tmp_path):
    old = {
        "finetune": _entry("1", "a", _rec(pass_="x", params={"r": 4}, inputs=[{"digest": "0" * 64}],
                                          data={"files": {"travel.jsonl": "d" * 64}})),
        "onnx": _entry("2", "b", _rec(params={"precision": "int4"}, inputs=[{"digest": "a" * 64}])),
        "chat": _entry("3", "c", _rec(kind="generate", inputs=[{"digest": "b" * 64}])),
        "gone": _entry("4", "f", _rec()),
    }
    new = {
        "finetune": _entry("5", "e", _rec(pass_="x", params={"r": 8}, inputs=[{"digest": "0" * 64}],
                                          data={"files": {"travel.jsonl": "9" * 64}})),
        "onnx": _entry("6", "7", _rec(params={"precision": "int4"}, inputs=[{"digest": "e" * 64}])),
        "chat": _entry("3", "c", {**_rec(kind="generate", inputs=[{"digest": "b" * 64}])}),
        "fresh": _entry("8", "8", _rec()),
    }
    new["chat"]["duration_s"] = 99.0  # durations are not results
    new["onnx"]["record"]["packages"] = {"olive-ai": "0.13.1", "torch": "2.13.0"}
    la, lb = tmp_path / "a" / "olivepipe.lock", tmp_path / "b" / "olivepipe.lock"
    lockfile.update(la, "mini", old)
    lockfile.update(lb, "mini", new)
    r = review.diff(str(la), str(lb))
    assert r["type"] == "lock" and not r["same"]
    w = r["workflows"]["mini"]
    assert w["status"] == "changed" and w["added"] == ["fresh"] and w["removed"] == ["gone"]
    assert w["unchanged"] == ["chat"]
    ch = {c["name"]: c for c in w["changed"]}
    assert [c["name"] for c in w["changed"]] == ["finetune", "onnx"]  # dependency order
    assert ch["finetune"]["reasons"] == [
        {"category": "data", "text": f"data file travel.jsonl: {'d' * 12}… -> {'9' * 12}…"},
        {"category": "params", "text": "params.r: 4 -> 8"}]
    assert ch["onnx"]["reasons"] == [
        {"category": "inputs", "text": f"input finetune rebuilt ({'a' * 12}… -> {'e' * 12}…)"},
        {"category": "packages", "text": "packages.olive-ai: 0.13.0 -> 0.13.1"}]
    assert ch["onnx"]["old_key"] == "2" * 64 and ch["onnx"]["new_output"] == "7" * 64
    p = cli("diff", la, lb)
    assert p.returncode == 1
    assert "params: params.r: 4 -> 8" in p.stdout and "inputs: input finetune rebuilt" in p.stdout
    assert cli("diff", la, la).returncode == 0


def test_lock_diff_same_key_other_output_and_workflow_sections(tmp_path):
    la, lb = tmp_path / "a" / "olivepipe.lock", tmp_path / "b" / "olivepipe.lock"
    lockfile.update(la, "mini", {"n": _entry("1", "a", _rec())})
    lockfile.update(lb, "mini", {"n": _entry("1", "b", _rec())})
    lockfile.update(lb, "other", {"m": _entry("2", "c", _rec())})
    r = review.diff(str(la), str(lb))
    assert r["workflows"]["other"]["status"] == "added"
    (c,) = r["workflows"]["mini"]["changed"]
    assert c["reasons"][0]["category"] == "output" and "same key, different output" in c["reasons"][0]["text"]
    write(tmp_path / "broken.lock", "format: 1\nworkflows: [\n")
    p = cli("diff", la, tmp_path / "broken.lock")
    assert p.returncode == 2 and "broken.lock:3:1: lock file is not valid YAML" in p.stderr


@pytest.mark.parametrize("text, where, what", [
    ("format: 1\nworkflows: [1]\n", ":2:12:", "`workflows` must be a mapping"),
    ("format: 1\nworkflows:\n  mini:\n    nodes: 3\n", ":4:12:", "`workflows.mini.nodes` must be a mapping"),
    ("format: 1\nworkflows:\n  mini:\n    nodes:\n      base: [1]\n", ":5:13:", "`workflows.mini.nodes.base` must be a mapping"),
    ("format: 1\nworkflows:\n  mini:\n    nodes:\n      base: {key: [x]}\n", ":5:19:", "`workflows.mini.nodes.base.key` must be a string"),
    ("format: 1\nworkflows:\n  mini:\n    nodes:\n      base: {duration_s: soon}\n", ":5:26:", "must be a number"),
    ("- 1\n", "", "lock file must be a mapping"),
])
def test_lock_of_the_wrong_shape_is_a_located_error(mini, text, where, what):
    lock = write(mini.parent / "olivepipe.lock", text)
    with pytest.raises(OlivepipeError) as e:
        lockfile.read(lock)
    assert e.value.message.startswith(f"{lock}{where}") and what in e.value.message
    assert "restore it from git" in e.value.hint
    assert review.textconv(lock).endswith(text) and what in review.textconv(lock).splitlines()[0]
    if "workflows" not in text or "base" in text:
        return  # the commands below read every lock through lock.loads: two shapes show it
    for cmd in (("plan", mini), ("status", mini), ("plan", "--json", mini)):
        p = cli(*cmd)
        assert p.returncode == 1 and f"error: {lock}{where}" in p.stderr and "Traceback" not in p.stderr, (cmd, p.stderr)
    good = write(mini.parent / "good" / "olivepipe.lock", "format: 1\nworkflows: {}\n")
    p = cli("diff", good, lock)
    assert p.returncode == 2 and what in p.stderr and "Traceback" not in p.stderr


def test_lock_that_is_no_regular_file_fails_at_once(tmp_path):
    fifo = tmp_path / "olivepipe.lock"
    os.mkfifo(fifo)
    with pytest.raises(OlivepipeError) as e:  # would block forever reading a FIFO
        lockfile.read(fifo)
    assert "not a regular file" in e.value.message
    (tmp_path / "x").mkdir()
    with pytest.raises(OlivepipeError):
        lockfile.read(tmp_path / "x")
    with pytest.raises(review.ReviewError, match="not a regular file"):
        review.diff(str(fifo), str(fifo))


def test_lock_update_is_confined(tmp_path):
    from olivepipe.core.safefs import UnsafePath

    outside = tmp_path / "outside"
    outside.mkdir()
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / ".olivepipe").symlink_to(outside)  # a committed symlink: the guard must not land outside
    with pytest.raises(UnsafePath):
        lockfile.update(ws / "olivepipe.lock", "wf", {"a": {"key": "1" * 64}})
    assert list(outside.iterdir()) == [] and not (ws / "olivepipe.lock").exists()

    (ws / ".olivepipe").unlink()
    (ws / ".olivepipe").mkdir()
    (ws / ".olivepipe" / "olivepipe.lock.flock").symlink_to(outside / "planted")
    with pytest.raises(UnsafePath):
        lockfile.update(ws / "olivepipe.lock", "wf", {"a": {"key": "1" * 64}})
    assert not (outside / "planted").exists()

    (ws / ".olivepipe" / "olivepipe.lock.flock").unlink()
    victim = write(outside / "victim", "format: 1\nworkflows: {}\n")
    (ws / "olivepipe.lock").symlink_to(victim)  # neither read nor written through (issue 19)
    with pytest.raises(LockError, match="the lock file is a symlink"):
        lockfile.update(ws / "olivepipe.lock", "wf", {"a": {"key": "1" * 64}})
    assert victim.read_text() == "format: 1\nworkflows: {}\n" and (ws / "olivepipe.lock").is_symlink()
    assert sorted(x.name for x in ws.iterdir()) == [".olivepipe", "olivepipe.lock"]  # no temp file left

    # a rehearsal lock lives in the state folder itself: that folder is checked too
    sub = tmp_path / "ws2"
    sub.mkdir()
    (sub / ".olivepipe").symlink_to(outside)
    with pytest.raises(UnsafePath):
        lockfile.update(sub / ".olivepipe" / "rehearsal.lock", "wf@rehearsal", {})
    assert sorted(x.name for x in outside.iterdir()) == ["victim"]


# -- textconv ------------------------------------------------------------------------------

def test_textconv_is_normalized_and_stable(tmp_path):
    a = write(tmp_path / "a.yaml", MINIMAL)
    b = write(tmp_path / "b.yaml", "# comment\n" + MINIMAL.replace(
        "finetune: {pass: lora, input: base, data: travel, params: {r: 4,",
        "finetune: {data: travel, input: base, pass: lora, params: {lora_dropout: 0.05, r: 4,"))
    ta, tb = review.textconv(a), review.textconv(b)
    assert ta == tb == review.textconv(a)
    assert "#" not in "".join(ln for ln in ta.splitlines()[1:])  # only the header line is a comment
    doc = yaml.safe_load(ta)
    assert list(doc) == ["name", "models", "datasets", "nodes"]
    assert list(doc["nodes"]) == ["finetune", "onnx", "adapters"]
    assert doc["nodes"]["finetune"]["params"] == {"r": 4, "torch_dtype": "float32", "training_args": {"max_steps": 2}}
    assert "    input: [base]\n" in ta
    c = write(tmp_path / "c.yaml", MINIMAL.replace("r: 4,", "r: 16,"))
    delta = [x for x in zip(ta.splitlines(), review.textconv(c).splitlines()) if x[0] != x[1]]
    assert delta == [("      r: 4", "      r: 16")]
    p = cli("diff", "--textconv", a)
    assert p.returncode == 0 and p.stdout == ta


def test_textconv_of_invalid_files_and_locks(tmp_path):
    bad = write(tmp_path / "bad.yaml", MINIMAL.replace("pass: lora", "pass: lorra"))
    out = review.textconv(bad)
    assert out.startswith("# olivepipe: invalid workflow") and out.endswith(bad.read_text())
    lock = tmp_path / "olivepipe.lock"
    lockfile.update(lock, "mini", {"onnx": _entry("2", "b", _rec(inputs=[{"digest": "a" * 64}])),
                                   "finetune": _entry("1", "a", _rec(params={"r": 4}))})
    t1 = review.textconv(lock)
    data = lockfile.read(lock)
    data["workflows"]["mini"]["nodes"]["onnx"]["duration_s"] = 42.0
    lock.write_text(lockfile.dumps(data))
    assert review.textconv(lock) == t1  # durations are noise in review
    assert f"record.inputs.0.digest: {'a' * 12}…  (finetune)" in t1
    assert "record.params.r: 4" in t1 and "duration_s" not in t1 and "42" not in t1


def test_textconv_ignores_where_nodes_sit_in_the_file(tmp_path):
    """Nodes print in dependency order with ties by name: moving a block in the file is layout."""
    text = MINIMAL + "  side: {pass: model-builder, input: finetune, params: {precision: fp32}}\n"
    moved = text.replace("  side: {pass: model-builder, input: finetune, params: {precision: fp32}}\n", "").replace(
        "  onnx: {", "  side: {pass: model-builder, input: finetune, params: {precision: fp32}}\n  onnx: {")
    a, b = write(tmp_path / "a.yaml", text), write(tmp_path / "b.yaml", moved)
    assert a.read_text() != b.read_text()
    assert review.textconv(a) == review.textconv(b)
    assert list(yaml.safe_load(review.textconv(a))["nodes"]) == ["finetune", "onnx", "adapters", "side"]


# -- fmt ---------------------------------------------------------------------------------

MESSY = """\
# header: what this pipeline is
nodes:
    # trains the adapter
    finetune:
        params:   {r: 4, max_steps: 2}   # small on purpose
        data: travel
        pass: lora
        input: base
    onnx: {input: finetune, params: {precision: int4}, pass: model-builder}

    chat:
        prompts:
        - "hello"   # first prompt
        kind: generate
        input: onnx
        # max_new_tokens: 8
name: mini
olivepipe: 1

models:
    base: &base {tiny: {arch: phi3}}
datasets:
    travel:
        files: travel.jsonl
        text_field: text
"""

FORMATTED = """\
# header: what this pipeline is
olivepipe: 1
name: mini

models:
  base: &base {tiny: {arch: phi3}}
datasets:
  travel:
    files: travel.jsonl
    text_field: text
nodes:
  # trains the adapter
  finetune:
    pass: lora
    input: base
    data: travel
    params: {r: 4, max_steps: 2}         # small on purpose
  onnx: {pass: model-builder, input: finetune, params: {precision: int4}}

  chat:
    kind: generate
    input: onnx
    prompts:
      - "hello"     # first prompt
    # max_new_tokens: 8
"""


def test_fmt_canonical_layout_keeps_comments(tmp_path):
    out = format_text(MESSY, "w.yaml", base=tmp_path)
    assert out == FORMATTED
    assert format_text(out, "w.yaml", base=tmp_path) == out  # idempotent
    assert yaml.safe_load(out) == yaml.safe_load(MESSY)
    for comment in re.findall(r"#.*", MESSY):
        assert comment in out


def test_fmt_on_the_repository_workflows():
    f = EXAMPLE / "workflow.yaml"
    assert format_text(f.read_text(), str(f), base=f.parent) == f.read_text()  # canonical already: untouched
    f = REPO / "workflows" / "phi35-travel.yaml"
    if f.exists():  # device: written after params: fmt moves only those lines, comments stay put
        text = f.read_text()
        out = format_text(text, str(f), base=f.parent)
        assert yaml.safe_load(out) == yaml.safe_load(text) and format_text(out, str(f), base=f.parent) == out
        assert re.findall(r"#.*", out) == re.findall(r"#.*", text)
        assert sorted(out.splitlines()) == sorted(text.splitlines())


def test_fmt_edge_cases_are_safe_and_idempotent(tmp_path):
    text = """\
olivepipe: 1
name: edge
nodes:
  a: {pass: lora, input: base, data: travel, params: &p {r: 4}}
  b:
    params: *p
    <<: {device: cpu}
    data: travel
    input: base
    pass: lora
    description: |
      # not a comment: part of the text
      second line
models:
  base: {tiny: {arch: phi3}}
datasets:
  travel: {files: travel.jsonl, text_field: text}
"""
    out = format_text(text, "e.yaml", base=tmp_path)
    assert yaml.safe_load(out) == yaml.safe_load(text)
    assert format_text(out, "e.yaml", base=tmp_path) == out
    assert "      # not a comment: part of the text" in out.splitlines()  # block scalar text is never re-indented
    b = yaml.compose(out).value[-1][1].value[1][1]  # nodes.b
    assert [k.value for k, _ in b.value] == ["<<", "pass", "input", "data", "params", "description"]


def test_fmt_check_exit_codes_and_atomic_write(tmp_path):
    f = write(tmp_path / "workflow.yaml", MESSY)
    f.chmod(0o640)
    p = cli("fmt", "--check", f)
    assert p.returncode == 1 and f"would reformat {f}" in p.stdout
    assert f.read_text() == MESSY  # --check writes nothing
    p = cli("fmt", "--diff", f)
    assert p.returncode == 1 and "+    pass: lora" in p.stdout and f.read_text() == MESSY
    p = cli("fmt", f)
    assert p.returncode == 0 and f.read_text() == FORMATTED
    assert oct(f.stat().st_mode & 0o777) == oct(0o640)
    assert [x.name for x in tmp_path.iterdir()] == ["workflow.yaml"]  # no temp file left behind
    p = cli("fmt", "--check", f)
    assert p.returncode == 0 and "0 files would be reformatted, 1 already formatted" in p.stderr


def test_fmt_refuses_invalid_files(tmp_path):
    bad_text = MESSY.replace("pass: lora", "pass: lorra")
    bad = write(tmp_path / "bad.yaml", bad_text)
    good = write(tmp_path / "workflow.yaml", MESSY)
    p = cli("fmt", bad, good)
    assert p.returncode == 2
    assert f"{bad}:7:15: unknown pass 'lorra'" in p.stderr and "Traceback" not in p.stderr
    assert bad.read_text() == bad_text and good.read_text() == FORMATTED  # the valid one is still formatted
    with pytest.raises(SpecError):
        format_text("olivepipe: 1\nname: x\nnodes: {}\n", "x.yaml", base=tmp_path)
    assert cli("fmt", "--check", tmp_path / "missing.yaml").returncode == 2


def test_fmt_reports_every_file_and_never_hangs(tmp_path):
    good = write(tmp_path / "workflow.yaml", MESSY)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    (tmp_path / "dir.yaml").mkdir()
    p = cli("fmt", "--check", tmp_path / "dir.yaml", fifo, good, timeout=60)
    assert p.returncode == 2, p.stderr
    assert "dir.yaml: is a directory" in p.stderr and "fifo.yaml: cannot read: not a regular file" in p.stderr
    assert f"would reformat {good}" in p.stdout and "1 file would be reformatted, 0 already formatted, 2 invalid" in p.stderr


# -- plan: JSON shape and markdown ------------------------------------------------------

PLAN_KEYS = {"format": int, "workflow": str, "rehearse": bool, "substitutions": dict, "variant": type(None),
             "summary": dict,
             "estimate_s": (float, int, type(None)), "steps": list}
STEP_KEYS = {"name": str, "kind": str, "label": str, "status": str, "action": str, "where": str, "reasons": list,
             "key": (str, type(None)),
             "inputs": list, "device": str, "needs": list, "missing": list,
             "estimate_s": (float, int, type(None)), "estimate_note": str, "warnings": list, "notes": list}


def test_plan_json_shape_is_pinned(mini):
    """The documented `olivepipe plan --format json` shape (docs/review.md); change both together."""
    from olivepipe.flow.plan import make_plan
    from olivepipe.flow.workspace import open_workspace

    p = cli("plan", "--format", "json", mini)
    assert p.returncode == 0, p.stderr
    for doc in (json.loads(p.stdout), make_plan(open_workspace(mini)).to_json()):
        assert set(doc) == set(PLAN_KEYS), "update docs/review.md (JSON plan) and this test together"
        for k, t in PLAN_KEYS.items():
            assert isinstance(doc[k], t), k
        assert doc["format"] == 1
        assert set(doc["summary"]) == {"cached", "run", "blocked", "skip"}
        assert all(isinstance(v, int) for v in doc["summary"].values())
        assert [s["name"] for s in doc["steps"]] == ["base", "finetune", "onnx", "adapters"]
        for s in doc["steps"]:
            assert set(s) == set(STEP_KEYS), "update docs/review.md (JSON plan) and this test together"
            for k, t in STEP_KEYS.items():
                assert isinstance(s[k], t), (s["name"], k)
            assert s["status"] in {"cached", "run", "blocked", "skip"}
            assert s["action"] in {"cached", "run", "forced", "blocked", "skip"}
            assert all(isinstance(x, str) for x in s["reasons"] + s["inputs"] + s["warnings"])


def test_plan_markdown_is_pr_ready(mini):
    from test_graph_plan import _fake_results

    from olivepipe.flow.plan import make_plan
    from olivepipe.report.text import plan_markdown
    from olivepipe.flow.workspace import open_workspace

    _fake_results(open_workspace(mini))  # every step cached, 1.5 s each in the lock
    mini.write_text(mini.read_text().replace("precision: int4", "precision: fp32"))
    ws = open_workspace(mini)
    plan = make_plan(ws)
    md = plan_markdown(plan, ws.graph.mermaid({s.name: s.status for s in plan.steps}))
    assert md.startswith("### olivepipe plan: `mini`")
    assert "**2 to run, 2 cached, 0 blocked**" in md
    assert "Estimated time from earlier runs: 3.0s" in md
    mermaid = md.split("```mermaid\n")[1].split("```")[0]
    ids = dict(re.findall(r'(n\d+)\[\(?"(\w+)<br/>', mermaid))
    marks = dict(re.findall(r"class (n\d+) (\w+)", mermaid))
    assert {ids[i]: m for i, m in marks.items()} == {"base": "cached", "finetune": "cached", "onnx": "run",
                                                     "adapters": "run"}
    assert "| `onnx` | model-builder | cpu | will run | 1.5s | params.precision: int4 -> fp32 |" in md
    assert "| `adapters` | extract-adapters | cpu | will run | 1.5s | input onnx will be rebuilt first |" in md
    p = cli("plan", "--format", "markdown", mini)
    assert p.returncode == 0 and p.stdout == md


# -- graph output --------------------------------------------------------------------------

def test_graph_png_svg_without_graphviz(mini, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from olivepipe.cli import main
    from olivepipe.spec.graph import build_graph
    from olivepipe.report.render import render_graph
    from olivepipe.spec.workflow import load_workflow

    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(OlivepipeError) as e:
        render_graph(build_graph(load_workflow(mini)), "svg")
    assert e.value.message == "svg output needs Graphviz, which is not installed"
    assert "apt-get install graphviz" in e.value.hint and "--format dot|mermaid" in e.value.hint
    out = tmp_path / "g.png"
    res = CliRunner().invoke(main, ["graph", str(mini), "--format", "png", "-o", str(out)])
    assert res.exit_code == 1 and "png output needs Graphviz" in res.output and not out.exists()
    assert "Traceback" not in res.output


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz (dot) is not installed")
def test_graph_svg_and_png_with_graphviz(mini, tmp_path):
    svg, png = tmp_path / "g.svg", tmp_path / "g.png"
    assert cli("graph", mini, "--format", "svg", "-o", svg).returncode == 0
    text = svg.read_text()
    assert "<svg" in text and all(f">{n}</text>" in text for n in ("finetune", "onnx", "adapters"))
    assert cli("graph", mini, "--format", "png", "-o", png).returncode == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- pre-commit hooks -------------------------------------------------------------------------

def test_pre_commit_hooks_manifest():
    hooks = {h["id"]: h for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"olivepipe-validate", "olivepipe-fmt"}
    assert hooks["olivepipe-validate"]["entry"] == "olivepipe validate"
    assert hooks["olivepipe-fmt"]["entry"] == "olivepipe fmt --check"
    for h in hooks.values():
        files = re.compile(h["files"])
        for f in ("workflow.yaml", "examples/travel-tiny/workflow.yaml", "pipes/gpu.olivepipe.yml",
                  "workflows/phi35-travel.yaml", "ml/workflows/lab.yml"):
            assert files.search(f), (h["id"], f)
        for f in (".github/workflows/ci.yml", "myworkflow.yaml", "olivepipe.lock", "a.olivepipe.yaml.bak"):
            assert not files.search(f), (h["id"], f)
