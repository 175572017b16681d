"""The shared scheduling loop, driven in-process by a fake executor with a virtual clock:
parallel branches, -j N, GPU slots, failure policies, forced runs, and the node-kind seam."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import REPO, tree_snapshot, write
from fakes import FakeExecutor
from olivepipe.core import lock as lockfile
from olivepipe.flow.scheduler import apply
from olivepipe.core.job import Job, StoredResult
from olivepipe.flow.plan import make_plan
from olivepipe.flow.workspace import open_workspace

DAG = """\
olivepipe: 1
name: fake
models:
  base: {path: base}
nodes:
  a: {kind: sleep, input: base, note: a, seconds: 10}
  b: {kind: sleep, input: base, note: b, seconds: 10}
  c: {kind: sleep, input: [a, b], seconds: 1}
"""


def workflow(tmp_path, text=DAG) -> Path:
    write(tmp_path / "base" / "config.json", "{}")
    return write(tmp_path / "workflow.yaml", text)


def run(wf, executor=None, **kw):
    ex = executor or FakeExecutor()
    ws = open_workspace(wf, executor=ex)
    plan = make_plan(ws, **{k: kw.pop(k) for k in ("targets", "force", "force_all") if k in kw})
    return ex, apply(ws, plan, **kw)


def test_parallel_branches_overlap_with_two_slots(tmp_path, sleep_kind):
    ex, res = run(workflow(tmp_path), jobs=2)
    assert res.ok and res.ran == ["a", "b", "c"]
    assert ex.max_running == 2 and ex.clock == 11  # a and b together, then c


def test_one_slot_runs_one_at_a_time(tmp_path, sleep_kind):
    ex, res = run(workflow(tmp_path), jobs=1)
    assert res.ok and ex.max_running == 1 and ex.clock == 21


def test_gpu_slots_bound_gpu_nodes_only(tmp_path, sleep_kind):
    text = DAG.replace("seconds: 10}", "seconds: 10, device: gpu}") + "  d: {kind: sleep, input: base, note: d, seconds: 10}\n"
    ex, res = run(workflow(tmp_path, text), jobs=3, gpu_slots=1)
    assert res.ok
    assert ex.max_gpu == 1 and ex.max_running == 2  # one GPU node beside the CPU node d
    ex2, res2 = run(workflow(tmp_path / "two", text), jobs=3, gpu_slots=2)
    assert res2.ok and ex2.max_gpu == 2 and ex2.max_running == 3


def test_a_failure_skips_dependents_and_lets_other_branches_finish(tmp_path, sleep_kind):
    wf = workflow(tmp_path, DAG.replace("a: {kind: sleep, input: base, note: a, seconds: 10}",
                                        "a: {kind: sleep, input: base, note: a, seconds: 1, fail: true}"))
    ex, res = run(wf, jobs=1)
    st = {n: o.status for n, o in res.outcomes.items()}
    assert st == {"a": "failed", "b": "ran", "c": "skipped"}
    assert "told to fail" in res.outcomes["a"].error and "input a" in res.outcomes["c"].error
    assert set(lockfile.nodes(wf.parent / "olivepipe.lock", "fake")) == {"b"}
    # resume: only what did not finish runs again (b is cached)
    ex2, res2 = run(wf, jobs=1)
    assert ex2.started == ["a"] and res2.outcomes["b"].status == "cached"


def test_stop_policy_starts_nothing_after_a_failure(tmp_path, sleep_kind):
    wf = workflow(tmp_path, DAG.replace("a: {kind: sleep, input: base, note: a, seconds: 10}",
                                        "a: {kind: sleep, input: base, note: a, seconds: 1, fail: true}"))
    ex, res = run(wf, jobs=1, on_failure="stop")
    assert ex.started == ["a"]
    assert {n: o.status for n, o in res.outcomes.items()} == {"a": "failed", "b": "skipped", "c": "skipped"}


def test_second_apply_is_cached_and_starts_nothing(tmp_path, sleep_kind):
    wf = workflow(tmp_path)
    run(wf, jobs=2)
    ex, res = run(wf, jobs=2)
    assert ex.started == [] and ex.opened is None
    assert {o.status for o in res.outcomes.values()} == {"cached"}


def test_forced_node_reruns_and_the_old_result_is_served_until_the_new_one_exists(tmp_path, sleep_kind):
    wf = workflow(tmp_path)
    _, first = run(wf)
    ex, res = run(wf, force=("a",))
    assert ex.started == ["a"]  # c's key is unchanged because a's output is the same
    assert res.outcomes["a"].status == "ran" and res.outcomes["c"].status == "cached"
    assert res.outcomes["a"].key == first.outcomes["a"].key


def test_a_failed_forced_run_keeps_the_good_result(tmp_path, sleep_kind, monkeypatch):
    wf = workflow(tmp_path)
    _, first = run(wf)
    import fakekinds

    def boom(self, spec, io):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(fakekinds.Sleep, "run", boom)
    _, res = run(wf, force=("a",))
    assert res.outcomes["a"].status == "failed"
    ws = open_workspace(wf, executor=FakeExecutor())
    assert ws.store.peek(first.outcomes["a"].key) is not None  # the old result is still there
    assert lockfile.nodes(wf.parent / "olivepipe.lock", "fake")["a"]["key"] == first.outcomes["a"].key


def test_environment_identity_of_the_executor_is_in_the_key(tmp_path, sleep_kind):
    wf = workflow(tmp_path)
    _, one = run(wf, FakeExecutor(environment={"fake-runtime": "1.0"}))
    ex, two = run(wf, FakeExecutor(environment={"fake-runtime": "2.0"}))
    assert ex.started == ["a", "b", "c"]
    assert one.outcomes["a"].key != two.outcomes["a"].key


def test_a_gpu_node_is_blocked_where_there_is_no_gpu(tmp_path, sleep_kind):
    wf = workflow(tmp_path, DAG.replace("a: {kind: sleep, input: base, note: a, seconds: 10}",
                                        "a: {kind: sleep, input: base, note: a, seconds: 10, cuda: true}"))
    ex = FakeExecutor(cuda=False)
    ws = open_workspace(wf, executor=ex)
    plan = make_plan(ws)
    assert plan.by_name()["a"].action == "blocked" and "CUDA" in plan.by_name()["a"].reasons[0]
    assert plan.by_name()["c"].action == "blocked"
    res = apply(ws, plan)
    assert {n: o.status for n, o in res.outcomes.items()} == {"a": "blocked", "b": "ran", "c": "skipped"}


def test_plan_steps_carry_explicit_actions(tmp_path, sleep_kind):
    wf = workflow(tmp_path)
    run(wf, targets=("a",))
    ws = open_workspace(wf, executor=FakeExecutor())
    actions = {s.name: s.action for s in make_plan(ws, force=("b",)).steps}
    assert actions == {"a": "cached", "b": "forced", "c": "run"}
    assert {s.name: s.action for s in make_plan(ws, targets=("a",)).steps} == {"a": "cached", "b": "skip", "c": "skip"}


def test_unknown_target_is_a_library_error(tmp_path, sleep_kind):
    from olivepipe.flow.plan import UnknownTarget

    ws = open_workspace(workflow(tmp_path), executor=FakeExecutor())
    with pytest.raises(UnknownTarget) as e:
        make_plan(ws, targets=("aa",))
    assert "did you mean 'a'" in e.value.hint


def test_the_kind_owns_its_checks_with_positions(tmp_path, sleep_kind):
    from olivepipe.core.errors import SpecError
    from olivepipe.spec.workflow import load_workflow

    wf = workflow(tmp_path, DAG.replace("seconds: 1}", "seconds: 99999}"))
    with pytest.raises(SpecError) as e:
        load_workflow(wf)
    (p,) = e.value.problems
    assert (p.line, p.message) == (8, "too long for a test")


def test_node_kinds_have_no_branches_outside_their_modules():
    """Adding a kind touches its module and the registry: nothing else names kinds."""
    pattern = re.compile(r"""kind\s*[!=]=\s*["'](olive|generate|register|tiny-model)["']""")
    offenders = []
    for path in sorted((REPO / "olivepipe").rglob("*.py")):
        rel = path.relative_to(REPO / "olivepipe").as_posix()
        if rel.startswith("kinds/"):
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{rel}:{i}: {line.strip()}")
    assert offenders == []


def test_jobs_are_plain_path_free_data(tmp_path, sleep_kind):
    wf = workflow(tmp_path)
    ex, _ = run(wf)
    ws = open_workspace(wf, executor=ex)
    entries = {n: ws.store.peek(s.key) for n, s in make_plan(ws).by_name().items()}
    job = ws.job("c", entries)
    text = json.dumps(job.to_json())
    assert str(tmp_path) not in text  # no local path: placeholders resolved where the job runs
    assert set(job.refs) == {"$IN0", "$IN1"} and all(isinstance(r, StoredResult) for r in job.refs.values())
    assert Job.from_json(json.loads(text)) == job  # what a remote job reads back is the job




def test_plan_writes_nothing_and_starts_no_process_or_connection(tmp_path, sleep_kind, monkeypatch):
    import socket
    import subprocess

    wf = workflow(tmp_path)
    run(wf)
    write(tmp_path / "base" / "config.json", '{"changed": 1}')  # so the plan has reasons to give
    import gc

    gc.collect()  # the apply's own stat-cache connection checkpoints its WAL when it is collected
    before = tree_snapshot(tmp_path)

    def refuse(*a, **k):
        raise AssertionError("plan started a process or opened a connection")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    ws = open_workspace(wf, read_only=True)  # the real local executor's preflight
    plan = make_plan(ws)
    assert [s.action for s in plan.steps] == ["run", "run", "run"]
    assert "input base changed" in plan.by_name()["a"].reasons[0]
    assert tree_snapshot(tmp_path) == before


def test_gpu_nodes_spread_over_gpus_and_jobs_default_from_them(tmp_path, sleep_kind):
    from olivepipe.run.gpus import Gpu

    text = DAG.replace("seconds: 10}", "seconds: 10, device: gpu}")
    ex, res = run(workflow(tmp_path, text), FakeExecutor(gpus=[Gpu("0", 1000), Gpu("1", 1000)]), jobs=None)
    assert res.ok and ex.max_gpu == 2 and ex.clock == 11
    assert {ex.pins["a"], ex.pins["b"]} == {"0", "1"} and ex.pins["c"] == ""  # c is a CPU node


def test_gpu_nodes_wait_for_a_free_gpu(tmp_path, sleep_kind):
    from olivepipe.run.gpus import Gpu

    text = DAG.replace("seconds: 10}", "seconds: 10, device: gpu}")
    ex, res = run(workflow(tmp_path, text), FakeExecutor(gpus=[Gpu("0", 1000)]), jobs=4)
    assert res.ok and ex.max_gpu == 1 and ex.clock == 21


def test_each_executor_names_its_own_placements():
    """Plan's `where` comes from the executor that serves the placement; a placement nobody
    serves here is named generically (and its steps are blocked by preflight)."""
    from olivepipe.kinds.base import Needs
    from olivepipe.run.executors.local import LocalExecutor
    from olivepipe.run.executors.raycluster import RayExecutor
    from olivepipe.run.executors.router import Router

    class Cluster(FakeExecutor):
        def where(self, placement=None):
            return f"cluster:{placement['cluster']['queue']}@eu"

    router = Router(LocalExecutor(), {"cluster": Cluster, "ray": lambda: RayExecutor(env={"RAY_ADDRESS": "10.0.0.9:6379"})})
    assert router.where(None) == "local"
    assert router.where({"cluster": {"queue": "gpu"}}) == "cluster:gpu@eu"
    assert router.where({"ray": {}}) == "ray:10.0.0.9:6379"  # RAY_ADDRESS when the workflow names none
    assert router.where({"ray": {"address": "head:6379"}}) == "ray:head:6379"
    assert router.where({"azureml": {"compute": "gpu-cluster"}}) == "azureml:gpu-cluster"  # no factory here
    assert not router.preflight(Needs(), "cpu", {"azureml": {"compute": "gpu-cluster"}}).ok


def test_the_router_sleeps_until_an_executor_says_a_job_finished():
    """With jobs on two executors, the router never blocks inside one executor's wait (a job
    finishing on the other would go unheard): it looks at each without waiting and sleeps until
    an executor's wake says a job finished."""
    import threading

    from olivepipe.run.executors.base import Finished, JobResult
    from olivepipe.run.executors.router import Router

    class Manual(FakeExecutor):
        """Jobs finish when the test says so, from another thread."""

        def __init__(self):
            super().__init__()
            self.done, self.waits = Finished(), []

        def open(self, *, slots, offline, log_dir, wake=None):
            self.done.wake = wake

        def start(self, job, ctx):
            pass

        def wait(self, timeout=None):
            self.waits.append(timeout)
            return self.done.take(timeout)

    here, there = Manual(), Manual()
    router = Router(here, {"cluster": lambda: there})
    router.open(slots=2, offline=True, log_dir=None)
    router.start(Job(step="a", kind="sleep", module="m", device="cpu", spec={}, refs={}), None)
    router.start(Job(step="b", kind="sleep", module="m", device="cpu", spec={}, refs={},
                     placement={"cluster": {}}), None)
    finish = threading.Timer(0.3, lambda: there.done.put(JobResult("b", True, "", 1.0)))
    finish.start()
    try:
        got = router.wait()
    finally:
        finish.cancel()
    assert [r.step for r in got] == ["b"]
    assert set(here.waits) == set(there.waits) == {0}, (here.waits, there.waits)  # looked, never blocked
    assert router.active == {"a": here}
    here.done.put(JobResult("a", True, "", 1.0))  # the last one left: the router blocks on its executor
    assert [r.step for r in router.wait()] == ["a"] and here.waits[-1] is None
