"""docs/architecture.md's worked "add a kind" and "add an executor" run as written."""
from __future__ import annotations

import re

from conftest import REPO
from olivepipe import kinds
from olivepipe.flow.scheduler import apply
from olivepipe.flow.plan import make_plan
from olivepipe.flow.workspace import open_workspace
from test_kind_view import setup


def _blocks() -> list[str]:
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_documented_kind_and_executor_run_a_workflow(tmp_path):
    kind_src = next(b for b in _blocks() if "class Echo(NodeKind)" in b)
    executor_src = next(b for b in _blocks() if "class InProcess" in b)
    space: dict = {}
    exec(compile(kind_src, "architecture.md (kind)", "exec"), space)  # noqa: S102 - the doc's own code
    exec(compile(executor_src, "architecture.md (executor)", "exec"), space)  # noqa: S102
    kinds.register(space["KIND"], __name__)
    try:
        ws = open_workspace(setup(tmp_path), executor=space["InProcess"]())
        res = apply(ws, make_plan(ws))
        assert res.ok and res.ran == ["e", "f"], {n: o.error for n, o in res.outcomes.items()}
        assert [s.action for s in make_plan(open_workspace(setup(tmp_path), executor=space["InProcess"](),
                                                           read_only=True)).steps] == ["cached", "cached"]
    finally:
        kinds.unregister("echo")
