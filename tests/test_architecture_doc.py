"""docs/architecture.md's worked "add a kind", "add an executor", "a remote executor" and "add a store" run as
written."""
from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def _documented(*classes: str):
    """The doc's echo kind registered, and the namespace its blocks (the kind, then ``classes``) ran in."""
    space: dict = {}
    for marker in ("class Echo(NodeKind)", *classes):
        src = next(b for b in _blocks() if marker in b)
        exec(compile(src, f"architecture.md ({marker})", "exec"), space)  # noqa: S102 - the doc's own code
    kinds.register(space["KIND"], __name__)
    try:
        yield space
    finally:
        kinds.unregister("echo")


def test_the_documented_kind_and_executor_run_a_workflow(tmp_path):
    with _documented("class InProcess") as space:
        ws = open_workspace(setup(tmp_path), executor=space["InProcess"]())
        res = apply(ws, make_plan(ws))
        assert res.ok and res.ran == ["e", "f"], {n: o.error for n, o in res.outcomes.items()}
        assert [s.action for s in make_plan(open_workspace(setup(tmp_path), executor=space["InProcess"](),
                                                           read_only=True)).steps] == ["cached", "cached"]


def test_the_documented_store_is_a_shared_cache_tier(tmp_path):
    """docs/architecture.md's FolderStore behind TieredStore: one workspace applies and publishes
    into the folder; a second one with an empty cache of its own plans both steps cached and
    pulls them instead of running them."""
    from olivepipe.stores.local import LocalStore
    from olivepipe.stores.tiered import TieredStore

    share = tmp_path / "share"
    share.mkdir()
    with _documented("class InProcess", "class FolderStore") as space:
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


def test_the_documented_remote_executor_uploads_inputs_and_brings_results_back(tmp_path):
    with _documented("class Elsewhere(RemoteExecutor)") as space:
        ex = space["Elsewhere"](tmp_path / "elsewhere")
        ws = open_workspace(setup(tmp_path / "w"), executor=ex)
        res = apply(ws, make_plan(ws))
        assert res.ok and res.ran == ["e", "f"], {n: o.error for n, o in res.outcomes.items()}
        for n in ("e", "f"):  # published where the job ran, brought into the workspace's store
            key = res.outcomes[n].key
            assert ex.store.get(key).digest == ws.store.get(key).digest
        uploaded = [ex.store.get(k).manifest["kind"] for k in ex.store.keys()]
        assert uploaded.count("olivepipe-input") >= 1  # the data file went to the job's store first
        assert [s.action for s in make_plan(open_workspace(setup(tmp_path / "w"), executor=ex,
                                                           read_only=True)).steps] == ["cached", "cached"]
