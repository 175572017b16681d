"""Node kinds through the seam: the register kind's description reaches the model entity."""
from __future__ import annotations

import json

from conftest import write
from fakes import FakeExecutor
from olivepipe.flow.scheduler import apply
from olivepipe.flow.plan import make_plan
from olivepipe.flow.workspace import open_workspace

WF = """\
olivepipe: 1
name: reg
models:
  base: {path: base, arch: phi3}
nodes:
  publish:
    kind: register
    input: base
    name: ft-for-travel
    version: 3
    description: Phi-3.5 LoRA for travel questions
    workspace: {subscription_id: 00000000-0000-0000-0000-000000000000, resource_group: rg, workspace_name: ws}
"""


def test_register_description_reaches_the_model_entity(tmp_path):
    write(tmp_path / "base" / "config.json", "{}")
    wf = write(tmp_path / "workflow.yaml", WF)
    ws = open_workspace(wf, executor=FakeExecutor(), rehearse=True)  # rehearsal: nothing is sent to Azure
    res = apply(ws, make_plan(ws))
    assert res.ok, res.outcomes
    job = ws.job("publish", {"base": ws.store.get(res.outcomes["base"].key)})
    assert job.spec["options"]["description"] == "Phi-3.5 LoRA for travel questions"
    tree = ws.store.fetch(ws.store.get(res.outcomes["publish"].key))
    record = json.loads((tree / "registration.json").read_text())
    assert record["call"]["entity"]["description"] == "Phi-3.5 LoRA for travel questions"
    assert record["call"]["entity"]["name"] == "ft-for-travel"


def test_a_description_is_part_of_what_register_produces(tmp_path):
    write(tmp_path / "base" / "config.json", "{}")
    wf = write(tmp_path / "workflow.yaml", WF)
    one = make_plan(open_workspace(wf, executor=FakeExecutor(), read_only=True)).by_name()["publish"].key
    wf.write_text(WF.replace("travel questions", "travel answers"))
    two = make_plan(open_workspace(wf, executor=FakeExecutor(), read_only=True)).by_name()["publish"].key
    assert one != two


def test_every_builtin_kind_keeps_the_protocols_signatures():
    """A kind that drifts from kinds/base.py breaks only at run time, deep in a scheduler call."""
    import inspect

    from olivepipe import kinds
    from olivepipe.kinds.base import NodeKind

    for name in kinds.BUILTIN:
        kind = kinds.get(name)
        assert isinstance(kind, NodeKind), name
        for method in ("check", "check_matrix", "options", "finish", "label", "record", "needs", "package_names",
                       "warnings", "preflight", "rehearse", "job", "run", "output_format"):
            want = inspect.signature(getattr(NodeKind, method)).parameters.values()
            got = list(inspect.signature(getattr(type(kind), method)).parameters.values())
            # callers pass positionals by position and keyword-only ones by name: those must line up
            pos = [p for p in want if p.kind == p.POSITIONAL_OR_KEYWORD]
            assert len([p for p in got if p.kind == p.POSITIONAL_OR_KEYWORD]) >= len(pos), (name, method, got)
            for p in (p for p in want if p.kind == p.KEYWORD_ONLY):
                assert p.name in {g.name for g in got}, (name, method, p.name)
