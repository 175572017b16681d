"""Spec loading: valid files load, every kind of bad input gets a located message."""
import re

import pytest

from conftest import EXAMPLE, MINIMAL, cli, write
from olivepipe.core.errors import SpecError
from olivepipe.spec.workflow import load_workflow, parse_workflow


def problems(text, tmp_path, files=("travel.jsonl",)):
    for f in files:
        write(tmp_path / f, '{"prompt": "a", "response": "b"}\n')
    wf = write(tmp_path / "workflow.yaml", text)
    with pytest.raises(SpecError) as e:
        load_workflow(wf)
    return e.value.problems


def test_example_loads():
    wf = load_workflow(EXAMPLE / "workflow.yaml")
    assert list(wf.nodes) == ["finetune", "onnx", "adapters", "chat", "fp32", "base",
                              "eval-int4-lora", "eval-fp32-lora", "eval-int4-base", "best"]
    ft = wf.nodes["finetune"]
    assert ft.pass_type == "LoRA"
    # flat training args are nested where Olive expects them
    assert ft.params["training_args"] == {"max_steps": 4, "per_device_train_batch_size": 2}
    assert wf.nodes["chat"].kind == "generate"


def test_defaults_are_dropped_so_writing_them_changes_nothing(tmp_path):
    a = parse_workflow(MINIMAL, "a.yaml", base=tmp_path, check_files=False)
    b = parse_workflow(MINIMAL.replace("r: 4,", "r: 4, lora_dropout: 0.05,"), "b.yaml", base=tmp_path, check_files=False)
    assert a.nodes["finetune"].params == b.nodes["finetune"].params


def test_unknown_pass_with_suggestion_and_position(tmp_path):
    (p,) = problems(MINIMAL.replace("pass: model-builder", "pass: model-buildr"), tmp_path)
    assert "unknown pass 'model-buildr'" in p.message
    assert "model-builder" in p.hint
    assert (p.line, p.col) == (9, 16)


def test_unknown_and_ill_typed_params(tmp_path):
    ps = problems(MINIMAL.replace("r: 4,", "rr: 4, alpha: fast,"), tmp_path)
    msgs = " | ".join(p.message for p in ps)
    assert "unknown parameter 'rr' for LoRA" in msgs
    assert "LoRA.alpha: expected a number" in msgs
    assert any(p.hint == "did you mean 'r'?" for p in ps)
    assert all(p.line == 8 for p in ps)


def test_enum_param_choices(tmp_path):
    (p,) = problems(MINIMAL.replace("precision: int4", "precision: int3"), tmp_path)
    assert "'int3' is not one of" in p.message and "int4" in p.message


def test_unknown_reference_and_dataset(tmp_path):
    ps = problems(MINIMAL.replace("input: finetune", "input: finetun").replace("data: travel", "data: travl"), tmp_path)
    msgs = {p.message: p.hint for p in ps}
    assert msgs["node 'onnx' reads unknown input 'finetun'"] == "did you mean 'finetune'?"
    assert msgs["unknown dataset 'travl'"] == "did you mean 'travel'?"


def test_cycle_prints_its_path(tmp_path):
    text = MINIMAL.replace("input: base, data", "input: adapters, data")
    (p,) = problems(text, tmp_path)
    assert p.message == "cycle: finetune -> onnx -> adapters -> finetune"


def test_all_problems_reported_at_once(tmp_path):
    text = MINIMAL.replace("name: mini", "name: mini\nbogus: 1").replace("pass: lora", "pass: lorra") \
        .replace("precision: int4", "precision: 9")
    ps = problems(text, tmp_path)
    assert len(ps) >= 3


@pytest.mark.parametrize("text,expect", [
    ("", "file is empty"),
    ("olivepipe: 1\nname: x\nnodes:\n\ta: 1\n", "YAML syntax error"),
    ("olivepipe: 1\nolivepipe: 1\nname: x\nnodes: {a: {pass: lora, input: m}}\n", "duplicate key 'olivepipe'"),
    ("olivepipe: 2\nname: x\nnodes: {a: {pass: rtn, input: m}}\nmodels: {m: {tiny: {}}}\n", "unsupported format version 2"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("olivepipe: 1\nname: x\nmodels: {m: {path: ../../etc}}\nnodes: {a: {pass: rtn, input: m}}\n", "escapes the workspace"),
    ("olivepipe: 1\nname: x\nmodels: {m: {tiny: {}}}\nnodes: {a: {pass: rtn, input: m, matrix: {bits: [4, 8]}, params: {bits: 4}}}\n",
     "set in both matrix and params"),
    ("olivepipe: 1\nname: 9x\nnodes: {a: {pass: rtn, input: m}}\n", "invalid name"),
])
def test_bad_inputs(tmp_path, text, expect):
    ps = problems(text, tmp_path)
    assert any(expect in p.message for p in ps), [p.message for p in ps]
    assert all(p.line >= 1 for p in ps if "empty" not in p.message)


def test_tab_hint(tmp_path):
    (p,) = problems("olivepipe: 1\nname: x\nnodes:\n\ta: 1\n", tmp_path)
    assert "tab" in p.hint and p.line == 4


def test_non_utf8(tmp_path):
    (tmp_path / "workflow.yaml").write_bytes(b"olivepipe: 1\nname: \xff\n")
    with pytest.raises(SpecError) as e:
        load_workflow(tmp_path / "workflow.yaml")
    assert "not valid UTF-8" in e.value.problems[0].message and e.value.problems[0].line == 2


def test_missing_data_file(tmp_path):
    ps = problems(MINIMAL, tmp_path, files=())
    assert any("data file 'travel.jsonl' does not exist" in p.message for p in ps)


def test_matrix_expands_with_stable_names_and_fans_out_downstream(tmp_path):
    text = MINIMAL.replace("params: {precision: int4}", "matrix: {precision: [int4, fp32]}")
    wf = parse_workflow(text, "w.yaml", base=tmp_path, check_files=False)
    assert list(wf.nodes) == ["finetune", "onnx-int4", "onnx-fp32", "adapters-int4", "adapters-fp32"]
    assert wf.nodes["onnx-fp32"].params == {"precision": "fp32"}
    assert wf.nodes["adapters-fp32"].inputs == ("onnx-fp32",)


def test_explicit_variant_reference_does_not_fan_out(tmp_path):
    text = MINIMAL.replace("params: {precision: int4}", "matrix: {precision: [int4, fp32]}") \
        .replace("input: onnx", "input: onnx-int4")
    wf = parse_workflow(text, "w.yaml", base=tmp_path, check_files=False)
    assert wf.nodes["adapters"].inputs == ("onnx-int4",)


def test_fan_in_inputs(tmp_path):
    text = MINIMAL + "  chat: {kind: generate, input: [adapters, onnx], prompts: [hi]}\n"
    wf = parse_workflow(text, "w.yaml", base=tmp_path, check_files=False)
    assert wf.nodes["chat"].inputs == ("adapters", "onnx")


def test_kind_specific_fields_are_checked(tmp_path):
    ps = problems(MINIMAL + "  chat: {kind: generate, input: adapters, params: {x: 1}}\n", tmp_path)
    msgs = [p.message for p in ps]
    assert "'params' does not apply to a node of kind 'generate'" in msgs
    assert "a generate node needs `prompts`" in msgs


def test_cli_validate_exit_codes_and_writes_nothing(tmp_path):
    bad = write(tmp_path / "w" / "workflow.yaml", MINIMAL.replace("pass: lora", "pass: lorra"))
    r = cli("validate", bad)
    assert r.returncode == 2
    assert "workflow.yaml:8:" in r.stderr and "unknown pass 'lorra'" in r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in bad.parent.iterdir()) == ["workflow.yaml"]
    r = cli("plan", bad)
    assert r.returncode == 2 and sorted(p.name for p in bad.parent.iterdir()) == ["workflow.yaml"]
    ok = cli("validate", EXAMPLE / "workflow.yaml")
    assert ok.returncode == 0, ok.stderr


def test_cli_validate_json(tmp_path):
    bad = write(tmp_path / "workflow.yaml", MINIMAL.replace("pass: lora", "pass: lorra"))
    write(tmp_path / "travel.jsonl", '{"prompt": "a", "response": "b"}\n')
    r = cli("validate", "--json", bad)
    import json

    data = json.loads(r.stdout)
    assert data["ok"] is False and data["files"][0]["problems"][0]["line"] == 8


def test_validation_memo_is_exact_and_rechecks_files(mini, monkeypatch):
    import olivepipe.spec.workflow as spec

    first = load_workflow(mini, remember=True)
    calls = []
    real = spec._schema_problems
    monkeypatch.setattr(spec, "_schema_problems", lambda *a: calls.append(1) or real(*a))
    again = load_workflow(mini, remember=True)
    assert calls == [] and again.nodes == first.nodes and again.positions == first.positions
    assert again.datasets["travel"].files == first.datasets["travel"].files
    mini.write_text(mini.read_text().replace("r: 4", "r: 8"))  # any byte change: validated again
    assert load_workflow(mini, remember=True).nodes["finetune"].params["r"] == 8 and calls == [1]
    (mini.parent / "travel.jsonl").unlink()  # a memo never hides a missing data file
    with pytest.raises(SpecError, match="1 problem"):
        load_workflow(mini, remember=True)
    assert not list((mini.parent / ".olivepipe" / "validated").glob("*.pickle"))


def test_olive_pass_takes_one_input(tmp_path):
    ps = problems(MINIMAL.replace("input: onnx}", "input: [onnx, finetune]}"), tmp_path)
    assert any("an Olive pass reads one model" in p.message for p in ps)


# -- cycles: one located cycle per tangle, never every simple cycle -------------------------------

def _watchdog(seconds):
    """A hang guard (fails instead of stalling CI), not a speed assertion."""
    import signal

    def expired(*_):
        raise AssertionError(f"still running after {seconds} s: hung")

    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)


@pytest.fixture
def watchdog():
    import signal

    yield _watchdog
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)


def _cycle_problems(ps):
    return [p for p in ps if p.message.startswith("cycle: ")]


def _assert_real_cycle(message, reads):
    names = message.removeprefix("cycle: ").split(" -> ")
    assert names[0] == names[-1] and len(set(names[:-1])) == len(names) - 1, message
    for a, b in zip(names, names[1:]):  # "a -> b": b reads a
        assert a in reads[b], (message, a, b)


def test_mutually_reading_nodes_report_one_real_cycle(tmp_path, watchdog):
    # 12 nodes that all read each other hold ~10^8 simple cycles: listing them hung validation
    names = [f"n{i}" for i in range(12)]
    reads = {a: [b for b in names if b != a] for a in names}
    text = "olivepipe: 1\nname: tangle\nmodels:\n  m: {tiny: {arch: phi3}}\nnodes:\n" + "".join(
        f"  {a}: {{kind: generate, prompts: [hi], input: [{', '.join(reads[a])}]}}\n" for a in names) + \
        "  after: {pass: rtn, input: n3, params: {not_a_param: 1}}\n"  # downstream of the tangle: its own checks run
    watchdog(120)
    with pytest.raises(SpecError) as e:
        parse_workflow(text, "w.yaml", base=tmp_path, check_files=False)
    ps = e.value.problems
    (p,) = _cycle_problems(ps)
    _assert_real_cycle(p.message, reads)
    assert p.message.startswith("cycle: n0 -> ")  # starts at the first node in the file
    second = p.message.split(" -> ")[1]  # located at the input item where that node reads n0
    assert (p.line, p.path) == (6 + names.index(second), f"nodes.{second}.input.0")
    # members add nothing; a dependent reports only its own problem (one bad reference hides nothing)
    assert [q.message for q in ps if q is not p] == ["unknown parameter 'not_a_param' for Rtn"], [q.message for q in ps]


def test_each_tangle_reports_its_own_cycle(tmp_path):
    text = MINIMAL + "  x: {pass: rtn, input: y}\n  y: {pass: rtn, input: x}\n"
    text = text.replace("input: base, data", "input: adapters, data")
    ps = _cycle_problems(problems(text, tmp_path))
    assert sorted(p.message for p in ps) == ["cycle: finetune -> onnx -> adapters -> finetune", "cycle: x -> y -> x"]


# -- the workflow file itself: located, never a traceback, never a hang --------------------------

def _file_problem(path) -> str:
    with pytest.raises(SpecError) as e:
        load_workflow(path)
    (p,) = e.value.problems
    assert p.file == str(path)
    return p.message + " | " + p.hint


def test_odd_workflow_paths_are_spec_errors(tmp_path, watchdog):
    import os

    watchdog(60)  # a FIFO or /dev/zero used to block or read forever
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "loop.yaml").symlink_to("loop.yaml")
    (tmp_path / "dir.yaml").mkdir()
    assert "is a FIFO (named pipe), not a regular file" in _file_problem(tmp_path / "fifo.yaml")
    assert "is a character device, not a regular file" in _file_problem("/dev/zero")
    assert "symlink loop" in _file_problem(tmp_path / "loop.yaml")
    assert "is a directory" in _file_problem(tmp_path / "dir.yaml")
    assert "NUL character" in _file_problem(str(tmp_path / "a\0b.yaml"))
    assert "no such file" in _file_problem(tmp_path / "missing.yaml")
    assert "the path is too long" in _file_problem(tmp_path / ("x" * 300))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.yaml", "fifo.yaml", "loop.yaml"]  # nothing written


def test_odd_data_and_model_paths_are_located(tmp_path, watchdog):
    import os

    watchdog(60)
    ws = tmp_path / "ws"
    ws.mkdir()
    os.mkfifo(ws / "fifo.jsonl")
    (ws / "loop.jsonl").symlink_to("loop.jsonl")
    (ws / "dir.jsonl").mkdir()
    text = MINIMAL.replace("travel: {files: travel.jsonl,", 'travel: {files: [fifo.jsonl, loop.jsonl, dir.jsonl, "n\\0.jsonl", '
                           + "x" * 300 + ".jsonl],") \
        .replace("base: {tiny: {arch: phi3}}", "base: {path: fifo.jsonl}")
    msgs = {(p.path, p.message) for p in problems(text, ws, files=())}
    assert ("datasets.travel.files.0", "data file 'fifo.jsonl' is a FIFO (named pipe), not a regular file") in msgs
    assert ("datasets.travel.files.1", "data file 'loop.jsonl' is a symlink loop") in msgs
    assert ("datasets.travel.files.2", "data file 'dir.jsonl' is a directory, not a regular file") in msgs
    assert ("datasets.travel.files.3", "data file 'n\\x00.jsonl' contains a NUL character") in msgs
    assert any(path == "datasets.travel.files.4" and "File name too long" in m for path, m in msgs)
    assert ("models.base.path", "model path 'fifo.jsonl' is a FIFO (named pipe), not a folder or a file") in msgs


def test_cli_validate_goes_on_after_a_file_it_cannot_read(tmp_path, mini):
    import os

    os.mkfifo(tmp_path / "fifo.yaml")
    r = cli("validate", tmp_path / "fifo.yaml", "/dev/zero", mini, timeout=60)  # the timeout is the hang guard
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    for bad in (tmp_path / "fifo.yaml", "/dev/zero"):
        assert re.search(rf"^{re.escape(str(bad))}: .*not a regular file", r.stderr, re.M), r.stderr
    assert f"{mini}: ok (3 nodes + 1 tiny model: 4 steps)" in r.stdout


def test_names_with_a_trailing_newline_are_invalid(tmp_path):
    # jsonschema applies `pattern` with re.search, where `$` also matches before a final newline
    ps = problems(MINIMAL.replace("name: mini", 'name: "mini\\n"').replace("  onnx:", '  "onnx\\n":'), tmp_path)
    assert {p.message for p in ps} >= {"invalid name 'mini\\n' in name", "invalid name 'onnx\\n' in nodes"}


def test_matrix_value_making_a_long_variant_name_is_located_at_the_value(tmp_path):
    long = "int4-" + "x" * 300
    ps = problems(MINIMAL.replace("params: {precision: int4}", f"matrix: {{precision: [int4, {long}]}}"), tmp_path)
    (p,) = [p for p in ps if p.message.startswith("matrix variant name")]
    assert p.path == "nodes.onnx.matrix.precision.1" and "is 310 characters; names have at most 64" in p.message
    assert (p.line, p.col) == (9, 75)


def test_variant_references_resolve_to_the_longest_base(tmp_path):
    text = MINIMAL.replace("  adapters: {pass: extract-adapters, input: onnx}\n",
                           "  onnx-b: {pass: model-builder, input: finetune, matrix: {precision: [int4, fp32]}}\n"
                           "  adapters: {pass: extract-adapters, input: onnx-b-fp32}\n")
    wf = parse_workflow(text, "w.yaml", base=tmp_path, check_files=False)
    assert wf.nodes["adapters"].inputs == ("onnx-b-fp32",)
    (p,) = problems(text.replace("input: onnx-b-fp32", "input: onnx-b-fp16"), tmp_path)
    assert p.message == "no matrix variant named 'onnx-b-fp16'" and "onnx-b-int4, onnx-b-fp32" in p.hint


# -- read-only workspace: validation reads, the memo just does not happen ------------------------

def test_read_only_workspace_validates_and_writes_nothing(tmp_path):
    import os
    import subprocess

    ws = tmp_path / "ro"
    ws.mkdir()
    mounted = False
    if os.geteuid() == 0:  # root ignores modes: a tmpfs remounted read-only, where allowed
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(ws)], capture_output=True).returncode:
            pytest.skip("running as root and cannot mount a tmpfs")
        mounted = True
    try:
        write(ws / "workflow.yaml", MINIMAL)
        write(ws / "travel.jsonl", '{"prompt": "a", "response": "b"}\n')
        if mounted:
            assert subprocess.run(["mount", "-o", "remount,ro", str(ws)], capture_output=True).returncode == 0
        else:
            ws.chmod(0o555)
        r = cli("validate", ws / "workflow.yaml", timeout=120)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert sorted(p.name for p in ws.iterdir()) == ["travel.jsonl", "workflow.yaml"]
    finally:
        if mounted:
            subprocess.run(["umount", str(ws)], capture_output=True)
        else:
            ws.chmod(0o755)


def test_unwritable_memo_folder_is_skipped_silently(mini, monkeypatch):
    import errno
    import os

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    real_open = os.open
    monkeypatch.setattr(os, "mkdir", read_only)
    monkeypatch.setattr(os, "open", lambda p, flags, *a: read_only() if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
                        else real_open(p, flags, *a))
    assert list(load_workflow(mini).nodes) == ["finetune", "onnx", "adapters"]
    assert not (mini.parent / ".olivepipe").exists()


# -- the validation memo: exactly as strict as validation -----------------------------------------

def _memo_files(wf_path):
    d = wf_path.parent / ".olivepipe" / "validated"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_memo_rechecks_data_files_like_validation(mini, tmp_path, watchdog):
    import os

    load_workflow(mini, remember=True)
    assert len(_memo_files(mini)) == 1
    data = mini.parent / "travel.jsonl"
    outside = write(tmp_path / "secret.jsonl", data.read_text())
    (mini.parent / ".git").mkdir()  # the workspace root is the workflow's folder either way; make it explicit

    data.unlink()
    data.symlink_to(outside)  # a file replaced by a link out of the workspace
    with pytest.raises(SpecError) as e:
        load_workflow(mini, remember=True)
    assert "path 'travel.jsonl' escapes the workspace" in e.value.problems[0].message

    data.unlink()
    os.mkfifo(data)  # used to make plan block reading it
    watchdog(60)
    with pytest.raises(SpecError) as e:
        load_workflow(mini, remember=True)
    assert e.value.problems[0].message == "data file 'travel.jsonl' is a FIFO (named pipe), not a regular file"
    assert (e.value.problems[0].line, e.value.problems[0].path) == (6, "datasets.travel.files")

    data.unlink()
    data.mkdir()  # used to be exit 3 at plan time
    r = cli("plan", mini, timeout=120)
    assert r.returncode == 2 and "data file 'travel.jsonl' is a directory, not a regular file" in r.stderr, r.stderr


def test_memo_rechecks_model_paths(tmp_path):
    ws = tmp_path / "ws"
    (ws / "model").mkdir(parents=True)
    write(ws / "travel.jsonl", '{"prompt": "a", "response": "b"}\n')
    wf = write(ws / "workflow.yaml", MINIMAL.replace("base: {tiny: {arch: phi3}}", "base: {path: model}"))
    load_workflow(wf)
    (ws / "model").rmdir()
    (ws / "model").symlink_to(tmp_path)
    with pytest.raises(SpecError, match="1 problem") as e:
        load_workflow(wf)
    assert "path 'model' escapes the workspace" in e.value.problems[0].message


def test_memo_never_writes_through_a_symlinked_state_folder(tmp_path):
    ws = tmp_path / "ws"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (ws / ".olivepipe").parent.mkdir(parents=True)
    (ws / ".olivepipe").symlink_to(elsewhere)  # as a repository could commit it
    write(ws / "travel.jsonl", '{"prompt": "a", "response": "b"}\n')
    wf = write(ws / "workflow.yaml", MINIMAL)
    for _ in range(2):
        r = cli("validate", wf, timeout=120)
        assert r.returncode == 0, r.stderr
    assert list(elsewhere.iterdir()) == []


def test_memo_folder_holds_one_entry_per_workflow_and_mode(mini):
    import hashlib

    legacy = mini.parent / ".olivepipe" / "validated" / f"{hashlib.sha256(b'old').hexdigest()}.json"
    write(legacy, "{}")  # what the first memo format left, one per version
    for r in range(2, 8):
        mini.write_text(MINIMAL.replace("r: 4", f"r: {r}"))
        assert load_workflow(mini, remember=True).nodes["finetune"].params["r"] == r
    load_workflow(mini, check_files=False, remember=True)
    files = _memo_files(mini)
    assert len(files) == 2 and not legacy.exists(), files


def test_crafted_memo_is_not_trusted(mini):
    import json

    load_workflow(mini, remember=True)
    (memo,) = (mini.parent / ".olivepipe" / "validated").iterdir()
    data = json.loads(memo.read_text())
    wf = data["workflow"]
    wf["nodes"]["../../evil"] = wf["nodes"].pop("adapters")  # a name that would leave outputs/
    wf["order"] = [n if n != "adapters" else "../../evil" for n in wf["order"]]
    memo.write_text(json.dumps(data))
    assert list(load_workflow(mini, remember=True).nodes) == ["finetune", "onnx", "adapters"]


def test_cached_load_imports_neither_networkx_nor_jsonschema_and_no_cycle(mini):
    import sys as _sys
    import subprocess

    load_workflow(mini, remember=True)
    code = ("import sys; import olivepipe.spec.memo; assert 'olivepipe.spec.workflow' not in sys.modules, 'import cycle'; "
            "from olivepipe.spec.workflow import load_workflow; from olivepipe.spec.graph import build_graph; "
            f"g = build_graph(load_workflow({str(mini)!r})); assert g.order == ['finetune', 'onnx', 'adapters']; "
            "print(sorted(m for m in ('networkx', 'jsonschema') if m in sys.modules))")
    r = subprocess.run([_sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_a_memo_is_trusted_only_in_the_folder_that_wrote_it(mini):
    """The memo names its folder's (device, inode): one committed or copied from elsewhere, with
    a key anyone can compute from the file's bytes, is validated again, never read as is."""
    import json

    load_workflow(mini, remember=True)
    (memo,) = (mini.parent / ".olivepipe" / "validated").iterdir()
    data = json.loads(memo.read_text())
    data["workflow"]["description"] = "read from the memo"
    memo.write_text(json.dumps(data))
    assert load_workflow(mini).description == "read from the memo"  # the memo is what a hit returns
    data["folder"] = [data["folder"][0], data["folder"][1] + 1]  # as written in another folder
    memo.write_text(json.dumps(data))
    assert load_workflow(mini).description != "read from the memo"
