"""Kinds see two declared views (kinds/base.py: CheckContext at validation, StepView when keyed,
planned and turned into a job) and never the Workspace."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO, write
from olivepipe import kinds
from olivepipe.flow.scheduler import apply
from olivepipe.kinds.base import CheckContext, NodeKind, StepView
from olivepipe.flow.plan import make_plan
from olivepipe.flow.workspace import open_workspace

WORKFLOW = """\
olivepipe: 1
name: view
models:
  base: {path: base}
datasets:
  rows: {files: rows.jsonl}
nodes:
  e: {kind: echo, input: base, data: rows, note: hello}
  f: {kind: echo, input: e, note: again}
"""


def setup(tmp_path) -> Path:
    write(tmp_path / "base" / "config.json", "{}")
    write(tmp_path / "rows.jsonl", '{"prompt": "a"}\n')
    return write(tmp_path / "workflow.yaml", WORKFLOW)


def test_no_kind_module_imports_or_receives_the_workspace():
    offenders = []
    for path in sorted((REPO / "olivepipe" / "kinds").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            # olivepipe's Workspace; azure.workspace (an Azure ML workspace's name) is another thing
            if isinstance(node, ast.ImportFrom) and node.module in ("flow.workspace", "olivepipe.flow.workspace"):
                offenders.append(f"{path.name}:{node.lineno}: imports {node.module}")
            if isinstance(node, ast.Import) and any(a.name == "olivepipe.flow.workspace" for a in node.names):
                offenders.append(f"{path.name}:{node.lineno}: imports olivepipe.flow.workspace")
            if isinstance(node, ast.Name) and node.id == "Workspace":
                offenders.append(f"{path.name}:{node.lineno}: names Workspace")
            if isinstance(node, ast.arg) and node.arg == "ws":
                offenders.append(f"{path.name}:{node.lineno}: takes `ws`")
    assert offenders == []


def test_a_kind_sees_only_the_declared_view_from_plan_to_job(tmp_path, echo_kind, monkeypatch):
    seen = []
    for method in ("record", "needs", "package_names", "warnings", "preflight", "job"):
        real = getattr(type(echo_kind), method)

        def spy(self, step, *a, _real=real, _m=method, **kw):
            seen.append((_m, type(step)))
            return _real(self, step, *a, **kw)

        monkeypatch.setattr(type(echo_kind), method, spy)
    ws = open_workspace(setup(tmp_path))
    res = apply(ws, make_plan(ws))
    assert res.ok, {n: o.error for n, o in res.outcomes.items()}
    assert {m for m, _ in seen} == {"record", "needs", "package_names", "warnings", "preflight", "job"}
    assert {t for _, t in seen} == {StepView}
    view = ws.step("f").view
    assert view.upstream == (ws.workflow.nodes["e"],) and view.lineage == (ws.workflow.nodes["e"],)
    assert view.source is ws.workflow.models["base"] and view.dataset is None


class Snooping(NodeKind):
    """A kind that reaches past its view for the workflow."""

    name = "snoop"
    fields = {"how": {"type": "string"}}
    option_fields = ("how",)

    def check(self, ctx, base, raw, where):
        if raw.get("how") == "check":
            ctx.base  # the builder's folder: not in CheckContext
        return {}

    def record(self, step):
        if step.node.options.get("how") == "record":
            return {"nodes": list(step.workflow.nodes)}
        return super().record(step)


@pytest.mark.parametrize("how", ["check", "record"])
def test_a_kind_that_reaches_for_anything_else_fails(tmp_path, how):
    kinds.register(Snooping(), __name__)
    try:
        write(tmp_path / "base" / "config.json", "{}")
        wf = write(tmp_path / "workflow.yaml", f"olivepipe: 1\nname: s\nmodels:\n  base: {{path: base}}\n"
                                               f"nodes:\n  s: {{kind: snoop, input: base, how: {how}}}\n")
        with pytest.raises(AttributeError):
            make_plan(open_workspace(wf, read_only=True))
    finally:
        kinds.unregister("snoop")


def test_the_views_take_no_new_attributes():
    view = StepView(node=None)
    with pytest.raises((AttributeError, TypeError)):
        view.workspace = object()
    assert not hasattr(view, "__dict__")
    ctx = CheckContext(problem=print, catalog=None, datasets={}, models={}, built={}, arch_of=len, raw_nodes={},
                       ref_base=len)
    assert not hasattr(ctx, "__dict__")
