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


def test_the_documented_store_is_a_shared_cache_tier(tmp_path):
    """docs/architecture.md's FolderStore behind TieredStore: one workspace applies and publishes
    into the folder; a second one with an empty cache of its own plans both steps cached and
    pulls them instead of running them."""
    from olivepipe.stores.local import LocalStore
    from olivepipe.stores.tiered import TieredStore

    kind_src = next(b for b in _blocks() if "class Echo(NodeKind)" in b)
    executor_src = next(b for b in _blocks() if "class InProcess" in b)
    store_src = next(b for b in _blocks() if "class FolderStore" in b)
    space: dict = {}
    for what, src in (("kind", kind_src), ("executor", executor_src), ("store", store_src)):
        exec(compile(src, f"architecture.md ({what})", "exec"), space)  # noqa: S102 - the doc's own code
    kinds.register(space["KIND"], __name__)
    share = tmp_path / "share"
    share.mkdir()
    try:
        def tiered(name):
            return TieredStore(LocalStore(tmp_path / name), space["FolderStore"](share))

        ws = open_workspace(setup(tmp_path / "a"), executor=space["InProcess"](), store=tiered("cache-a"))
        assert apply(ws, make_plan(ws)).ran == ["e", "f"]
        assert len(space["FolderStore"](share).keys()) == 2

        store_b = tiered("cache-b")
        ws_b = open_workspace(setup(tmp_path / "b"), executor=space["InProcess"](), store=store_b)
        plan_b = make_plan(ws_b)
        assert [s.action for s in plan_b.steps] == ["cached", "cached"]
        res = apply(ws_b, plan_b)
        assert res.ok and res.ran == [] and sorted(store_b.pulled) == sorted(s.key for s in plan_b.steps)
    finally:
        kinds.unregister("echo")
