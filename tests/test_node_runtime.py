"""One node runtime (olivepipe/run/runtime.py: run_node) for every executor: the same job run by
the local worker pool and as a (scripted) Azure ML job gives the same result."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import write
from olivepipe.run.executors.base import RunContext
from olivepipe.run.executors.local import LocalExecutor
from olivepipe.core.keys import key_of
from olivepipe.stores.local import LocalStore
from olivepipe.flow.workspace import open_workspace
from test_azureml_executor import FakeAzureML, executor
from test_kind_view import WORKFLOW

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning")



def test_local_worker_and_azure_ml_job_run_the_same_runtime_to_the_same_result(tmp_path, echo_kind, monkeypatch):
    root = tmp_path / "ws"
    write(root / "base" / "config.json", '{"model": "base"}')
    write(root / "base" / "weights" / "w.bin", "weights")
    write(root / "rows.jsonl", '{"prompt": "a", "response": "b"}\n')
    wf = write(root / "workflow.yaml", WORKFLOW)
    ws = open_workspace(wf, cache_dir=tmp_path / "cache")
    aml = FakeAzureML(tmp_path / "azureml")
    remote_root = tmp_path / "remote"
    ex = executor(aml, remote_root)
    record, _ = ws.record("e", {})
    # one job for both: its record names the Azure ML environment, which that executor checks
    record = {**record, "packages": ex.environment([], {"azureml": {"compute": "cpu-cluster"}})}
    job = replace(ws.job("e", {}, key=key_of(record), record=record), placement={"azureml": {"compute": "cpu-cluster"}})

    from olivepipe.run.executors import local as local_module
    from olivepipe.run.runtime import run_node

    calls = []

    def spy(job, store, **kw):
        calls.append(job.step)
        return run_node(job, store, **kw)

    monkeypatch.setattr(local_module, "run_node", spy)
    here = LocalExecutor()
    here.open(slots=1, offline=True, log_dir=tmp_path / "logs")
    try:
        here.start(job, RunContext(store=ws.store, root=ws.workflow.root, log=write(tmp_path / "l.log", ""),
                                   stats=ws.stats))
        [local_res] = here.wait()
    finally:
        here.close()
    assert local_res.ok, local_res.error
    assert calls == ["e"]  # through the node runtime, the kind's work in a worker process

    try:
        ex.open(slots=1, offline=True, log_dir=tmp_path / "logs")
        other = LocalStore(tmp_path / "other-cache")  # the scheduler's store: not the job's
        log = write(tmp_path / "r.log", "")
        ex.start(job, RunContext(store=other, root=ws.workflow.root, log=log, stats=ws.stats, workflow="same"))
        [remote_res] = ex.wait()
    finally:
        aml.jobs.stop_all()
    assert remote_res.ok, remote_res.error + log.read_text()
    assert "olivepipe.runtime: e: ok" in log.read_text()  # the job ran runtime.run_node there

    mine, theirs = ws.store.get(job.key), LocalStore(remote_root).get(job.key)
    assert mine.digest == theirs.digest and {f: v["digest"] for f, v in mine.files.items()} == \
        {f: v["digest"] for f, v in theirs.files.items()}
    for field in ("model", "kind", "record"):
        assert mine.manifest[field] == theirs.manifest[field]
    echoed = json.loads((Path(ws.store.fetch(mine)) / "echo.json").read_text())
    assert echoed == {"note": "hello", "files": ["config.json", "weights/w.bin"],
                      "data": ['{"prompt": "a", "response": "b"}\n']}
    assert local_res.model == remote_res.model is None
