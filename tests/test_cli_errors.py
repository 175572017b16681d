"""The CLI's one error wrapper, its crash logs, multi-file validate, and the package layout.

No Olive runs: bugs are planted by replacing a library function in a subprocess.
"""
import ast
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import tomllib

import click
import pytest
from click.testing import CliRunner

from conftest import MINIMAL, REPO, cli, write
from olivepipe.cli import app, main

# a command that reaches the library at once; the planted function raises what argv[1] names
PLANTED = """
    import sys
    import olivepipe.spec.workflow as spec
    from olivepipe.core.errors import OlivepipeError

    what = sys.argv[1]

    def planted(*a, **k):
        if what == "bug":
            raise RuntimeError("planted bug")
        if what == "interrupt":
            raise KeyboardInterrupt
        raise OlivepipeError("planted user error", "do the other thing")

    spec.load_workflow = planted
    from olivepipe.cli import main
    sys.argv = ["olivepipe", *sys.argv[2:]]
    main()
"""


def planted(what, *args, tmpdir, cwd=None):
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(PLANTED), what, *map(str, args)], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def crash_log(stderr: str) -> str:
    m = re.search(r"details: (\S+)", stderr)
    assert m, stderr
    return m.group(1)


@pytest.fixture
def wf(tmp_path):
    return write(tmp_path / "w" / "workflow.yaml", MINIMAL)


@pytest.fixture
def tmpdir_(tmp_path):
    d = tmp_path / "tmp"
    d.mkdir()
    return d


# -- the one wrapper ----------------------------------------------------------------------

def test_internal_error_exits_3_with_a_log_that_has_versions(wf, tmpdir_):
    p = planted("bug", "graph", wf, tmpdir=tmpdir_)
    assert p.returncode == 3, p.stderr
    assert "internal error (a bug in olivepipe): RuntimeError('planted bug')" in p.stderr
    assert "Traceback" not in p.stderr  # the stack goes to the log, not to the user
    log = crash_log(p.stderr)
    assert os.path.dirname(log) == str(tmpdir_) and os.path.basename(log).startswith("olivepipe-crash-")
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600  # a traceback can hold paths and values: private
    text = open(log).read()
    assert re.search(r"^olivepipe \S+, olive-ai \S+, python 3\.\d+", text), text[:200]
    assert "RuntimeError: planted bug" in text and "'graph'" in text


def test_planted_symlink_at_the_old_fixed_path_is_not_followed(wf, tmpdir_, tmp_path):
    victim = tmp_path / "victim"
    (tmpdir_ / "olivepipe-crash.log").symlink_to(victim)
    p = planted("bug", "graph", wf, tmpdir=tmpdir_)
    assert p.returncode == 3
    assert not victim.exists()
    assert os.readlink(tmpdir_ / "olivepipe-crash.log") == str(victim)
    assert crash_log(p.stderr) != str(tmpdir_ / "olivepipe-crash.log")


def test_crash_log_goes_under_the_workspace_state_folder(wf, tmpdir_):
    (wf.parent / ".olivepipe").mkdir()
    p = planted("bug", "graph", wf, tmpdir=tmpdir_)
    assert p.returncode == 3
    log = crash_log(p.stderr)
    assert os.path.dirname(log) == str(wf.parent / ".olivepipe" / "logs")
    assert re.fullmatch(r"crash-\d{8}-\d{6}-\d+\.log", os.path.basename(log))
    assert "olive-ai" in open(log).read() and list(tmpdir_.iterdir()) == []


def test_symlinked_state_folder_is_not_written_through(wf, tmpdir_, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (wf.parent / ".olivepipe").symlink_to(outside)
    p = planted("bug", "graph", wf, tmpdir=tmpdir_)
    assert p.returncode == 3
    assert list(outside.iterdir()) == []  # fell back to a private temp file
    assert os.path.dirname(crash_log(p.stderr)) == str(tmpdir_)


def test_user_errors_and_interrupts(wf, tmpdir_):
    p = planted("user", "graph", wf, tmpdir=tmpdir_)
    assert p.returncode == 1
    assert p.stderr == "error: planted user error\n    hint: do the other thing\n"
    p = planted("interrupt", "graph", wf, tmpdir=tmpdir_)
    assert p.returncode == 130 and "interrupted" in p.stderr and "Traceback" not in p.stderr
    # terraform's contract under --detailed-exitcode: any error is 1, an interrupt stays 130
    assert planted("user", "plan", "--detailed-exitcode", wf, tmpdir=tmpdir_).returncode == 1
    assert planted("bug", "plan", "--detailed-exitcode", wf, tmpdir=tmpdir_).returncode == 1
    assert planted("interrupt", "plan", "--detailed-exitcode", wf, tmpdir=tmpdir_).returncode == 130
    assert list(tmpdir_.iterdir()) != []  # the bug still left its log


def test_spec_errors_are_located_and_exit_2(tmp_path):
    bad = write(tmp_path / "workflow.yaml", MINIMAL.replace("pass: model-builder", "pass: model-buildr"))
    p = cli("graph", bad)
    assert p.returncode == 2 and f"{bad}:9:16: unknown pass 'model-buildr'" in p.stderr
    assert f"{bad}:6:19: data file 'travel.jsonl' does not exist" in p.stderr  # every problem, at once
    assert p.stderr.rstrip().endswith("2 problems found.")


def test_every_command_runs_under_the_one_wrapper():
    def walk(group, path=()):
        for name, cmd in group.commands.items():
            yield path + (name,), cmd
            if isinstance(cmd, click.Group):
                yield from walk(cmd, path + (name,))

    seen = dict(walk(main))
    assert {"validate", "plan", "apply", "status", "graph", "compile", "cache", "diff", "fmt"} <= {p[0] for p in seen}
    for path, cmd in seen.items():
        assert isinstance(cmd, app.Group if isinstance(cmd, click.Group) else app.Command), path


# -- multi-file validate --------------------------------------------------------------------

@pytest.fixture
def mixed(tmp_path):
    good = write(tmp_path / "good.yaml", MINIMAL)
    write(tmp_path / "travel.jsonl", '{"prompt": "a", "response": "b"}\n')
    bad = write(tmp_path / "bad.yaml", MINIMAL.replace("pass: lora", "pass: lorra").replace("name: mini", "name: bad"))
    (tmp_path / "dir.yaml").mkdir()
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # a plain read would block forever
    return good, bad, tmp_path / "dir.yaml", fifo


def test_validate_reports_every_file_and_never_hangs(mixed):
    good, bad, folder, fifo = mixed
    p = cli("validate", folder, fifo, "/dev/zero", bad, good, "missing.yaml", timeout=60)
    assert p.returncode == 2, p.stderr
    assert f"{good}: ok (3 nodes + 1 tiny model: 4 steps)" in p.stdout  # as plan counts them
    assert f"{folder}: is a directory, not a workflow file" in p.stderr
    assert f"{fifo}: is not a regular file (a FIFO, device or socket)" in p.stderr
    assert "/dev/zero: is not a regular file" in p.stderr
    assert f"{bad}:8:20: unknown pass 'lorra'" in p.stderr
    assert "missing.yaml: no such file" in p.stderr
    assert "Traceback" not in p.stderr


def test_validate_json_with_a_nul_byte_in_a_name(mixed):
    good, bad, folder, fifo = mixed
    # argv cannot carry a NUL byte; a program calling main() can
    res = CliRunner().invoke(main, ["validate", "--json", "a\0b.yaml", str(folder), str(fifo), str(good)])
    assert res.exit_code == 2, res.output
    out = json.loads(res.output)
    assert out["ok"] is False
    by_file = {f["file"]: f for f in out["files"]}
    assert list(by_file) == ["a\\0b.yaml", str(folder), str(fifo), str(good)]
    assert by_file["a\\0b.yaml"]["problems"][0]["message"] == "file name contains a NUL byte"
    assert by_file[str(good)]["ok"] is True and by_file[str(good)]["nodes"] == ["finetune", "onnx", "adapters"]
    assert [f["ok"] for f in out["files"]] == [False, False, False, True]


# -- layout: a package without import cycles ------------------------------------------------

def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = "." * node.level + (node.module or "")
            yield mod, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []


def test_cli_package_has_no_import_cycles():
    pkg = REPO / "olivepipe" / "cli"
    commands = {p.stem for p in pkg.glob("*.py")} - {"__init__", "__main__", "app"}
    assert commands >= {"run", "cache", "review"}
    for mod, names in _imports(pkg / "app.py"):  # the app knows no command module
        assert not (mod == "." and set(names) & commands) and mod.lstrip(".") not in commands, (mod, names)
    for c in commands:
        for mod, names in _imports(pkg / f"{c}.py"):
            siblings = {mod[1:]} if mod.startswith(".") and not mod.startswith("..") else set()
            if mod == ".":
                siblings = set(names)
            assert siblings <= {"app"}, (c, mod, names)  # a command module imports the app, no other command
    for f in (REPO / "olivepipe").rglob("*.py"):  # the library never imports the CLI
        if pkg in f.parents or f == REPO / "olivepipe" / "fastpath.py":  # the console script's front door
            continue
        for mod, names in _imports(f):
            ours = mod.startswith(".") or mod.split(".")[0] == "olivepipe"  # Olive's own olive.cli is fine
            assert not ours or ("cli" not in mod.split(".") and not (mod.strip(".") == "" and "cli" in names)), (f, mod)
    assert not (REPO / "olivepipe" / "cli.py").exists() and not (REPO / "olivepipe" / "cli_review.py").exists()


def test_entry_points():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"olivepipe": "olivepipe.fastpath:main"}
    p = subprocess.run([sys.executable, "-m", "olivepipe.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("olivepipe 0.1.0 (olive-ai ")
    p = subprocess.run([sys.executable, "-c", "from olivepipe.cli import main; main()", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and all(c in p.stdout for c in ("validate", "diff", "fmt", "cache"))


def test_the_hot_path_imports_no_renderer_and_no_validator(tmp_path):
    """The hot path stays light: status (the same plan a no-op apply makes) must not import rich, jsonschema, networkx,
    matplotlib or importlib.metadata (each costs 10-100 ms of a command people run all day)."""
    from conftest import MINIMAL, write

    wf = write(tmp_path / "workflow.yaml", MINIMAL.replace("finetune: {pass: lora", "finetune: {pass: rtn").replace(
        ", data: travel, params: {r: 4, max_steps: 2, torch_dtype: float32}", ""))
    write(tmp_path / "travel.jsonl", '{"prompt": "a", "response": "b"}\n')
    # the validation memo as apply records it, then a fresh process on the hot path
    subprocess.run([sys.executable, "-c", f"from olivepipe.spec.workflow import load_workflow; "
                    f"load_workflow({str(wf)!r}, remember=True)"], check=True, timeout=300)
    code = ("import sys\nsys.argv = ['olivepipe', 'status', %r]\nimport olivepipe.cli as c\n"
            "try:\n    c.main()\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('rich', 'jsonschema', 'networkx', 'matplotlib', 'importlib.metadata')"
            " if m in sys.modules)\nprint('HEAVY', heavy)") % str(wf)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr


def test_every_command_refuses_a_nul_byte_in_the_workflow_path():
    """argv cannot carry a NUL byte, a program calling main() can: a usage error naming it,
    never an exception from the first call that opens the path."""
    from olivepipe.cli.app import WorkflowPath

    def commands(group, path=()):
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                yield from commands(cmd, (*path, name))
            elif any(isinstance(p.type, WorkflowPath) for p in cmd.params):
                yield (*path, name), cmd

    found = dict(commands(main))
    assert {("apply",), ("plan",), ("status",), ("graph",)} <= set(found)
    for path, cmd in found.items():
        args = [("a\0b.yaml" if isinstance(p.type, WorkflowPath) else "x") for p in cmd.params
                if isinstance(p, click.Argument)]
        res = CliRunner().invoke(main, [*path, *args])
        assert res.exit_code == 2, (path, res.output, res.exception)
        assert "a\\0b.yaml: the file name contains a NUL byte" in res.output, (path, res.output)
        assert isinstance(res.exception, SystemExit), (path, res.exception)
