"""Every read and write stays inside the workspace (issue 19): `metrics --plot` and
`show --export` never write through a link out of it, and a linked lock file, config file or
Azure ML config is refused, not read."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import cli, write
from olivepipe.core.errors import UnsafePath

WF = """\
olivepipe: 1
name: edges
models:
  base: {path: base}
nodes:
  a: {kind: sleep, input: base, note: a}
"""


@pytest.fixture
def ws(tmp_path) -> Path:
    write(tmp_path / "ws" / "base" / "config.json", "{}")
    write(tmp_path / "outside" / "precious.txt", "keep me")
    return write(tmp_path / "ws" / "workflow.yaml", WF)


def test_metrics_plot_never_writes_through_a_committed_link(ws, tmp_path):
    from olivepipe.cli.metrics import _draw

    precious = tmp_path / "outside" / "precious.txt"
    pts = [{"x": 1.0, "y": 2.0, "label": "a", "stale": False}]
    os.symlink(precious, ws.parent / "plot.png")
    with pytest.raises(UnsafePath, match="symlink"):
        _draw(pts, "x", "y", ws.parent / "plot.png", "t", ws.parent)
    os.symlink(tmp_path / "outside", ws.parent / "reports")
    with pytest.raises(UnsafePath, match="symlink"):
        _draw(pts, "x", "y", ws.parent / "reports" / "plot.png", "t", ws.parent)
    assert precious.read_text() == "keep me" and sorted(p.name for p in (tmp_path / "outside").iterdir()) == [
        "precious.txt"]
    _draw(pts, "x", "y", ws.parent / "plots" / "ok.png", "t", ws.parent)  # a plain new file is fine
    assert (ws.parent / "plots" / "ok.png").read_bytes().startswith(b"\x89PNG")


def test_show_export_never_writes_through_a_linked_folder(ws, tmp_path, sleep_kind):
    from fakes import FakeExecutor

    from olivepipe.flow.scheduler import apply
    from olivepipe.flow.plan import make_plan
    from olivepipe.report.show import export
    from olivepipe.flow.workspace import open_workspace

    w = open_workspace(ws, executor=FakeExecutor())
    assert apply(w, make_plan(w)).ok
    os.symlink(tmp_path / "outside", ws.parent / "models")
    with pytest.raises(UnsafePath, match="symlink"):
        export(w, make_plan(w), "a", ws.parent / "models" / "a-copy")
    assert sorted(p.name for p in (tmp_path / "outside").iterdir()) == ["precious.txt"]
    assert (export(w, make_plan(w), "a", ws.parent / "exported" / "a") / "result.json").is_file()


def test_a_linked_lock_file_is_not_read(ws, tmp_path):
    write(tmp_path / "outside" / "olivepipe.lock", "format: 1\nworkflows: {}\n")
    os.symlink(tmp_path / "outside" / "olivepipe.lock", ws.parent / "olivepipe.lock")
    from olivepipe.core import lock as lockfile
    from olivepipe.core.errors import LockError

    with pytest.raises(LockError, match="the lock file is a symlink"):
        lockfile.read(ws.parent / "olivepipe.lock")


REGISTER = """\
olivepipe: 1
name: reg
models:
  base: {path: base}
nodes:
  reg: {kind: register, input: base, name: m, version: 1, workspace: {config: CONFIG}}
"""


@pytest.mark.parametrize("config", ["../outside/config.json", "/etc/hostname"])
def test_a_register_config_outside_the_workspace_is_refused_at_validate(ws, config):
    wf = write(ws.parent / "reg.yaml", REGISTER.replace("CONFIG", config))
    r = cli("validate", wf)
    assert r.returncode == 2 and f"reg.yaml:6:" in r.stderr and "outside the workspace" in r.stderr, r.stderr


def test_a_linked_register_config_is_not_read(ws, tmp_path):
    write(tmp_path / "outside" / "config.json", '{"subscription_id": "s", "resource_group": "g", '
                                                '"workspace_name": "w"}')
    (ws.parent / ".azureml").mkdir()
    os.symlink(tmp_path / "outside" / "config.json", ws.parent / ".azureml" / "config.json")
    from olivepipe.flow.plan import make_plan
    from olivepipe.flow.workspace import open_workspace

    wf = write(ws.parent / "reg.yaml", REGISTER.replace("CONFIG", ".azureml/config.json"))
    step = make_plan(open_workspace(wf)).by_name()["reg"]
    assert step.status == "blocked" and "symlink" in " ".join(step.reasons), step


def test_apply_on_a_read_only_workspace_is_a_clean_error(ws, monkeypatch, sleep_kind):
    import errno

    from fakes import FakeExecutor

    from olivepipe.core import mutex
    from olivepipe.core.errors import OlivepipeError
    from olivepipe.flow.scheduler import apply
    from olivepipe.flow.plan import make_plan
    from olivepipe.flow.workspace import open_workspace

    w = open_workspace(ws, executor=FakeExecutor())
    plan = make_plan(w)

    def erofs(path, *a, **k):  # what a read-only mount answers (root ignores chmod, so it is simulated)
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(mutex, "open_nofollow", erofs)
    with pytest.raises(OlivepipeError, match="cannot write to the workspace .*Read-only file system"):
        apply(w, plan)
