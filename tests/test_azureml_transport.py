"""The Azure ML executor against the REAL azure-ai-ml 1.35.2 SDK, offline: the MLClient is built
with an azure-core transport (tests/amlservice.py) that answers like the Azure ML REST API, so
the submit (code upload to blob storage, the environment version, the job PUT), status reads,
run-history logs, cancel (a long-running operation), azure-core's retries with Retry-After and
the SDK's error mapping are azure-ai-ml's own code. The job's command (the node runtime) runs
for real in a subprocess. No socket is opened.

Waits are on job states and events; azure-core's retry sleeps go to the transport, which
records them instead of sleeping.
"""
from __future__ import annotations

import functools
import json
import os
import socket
import time
from pathlib import Path

import pytest

from amlservice import FakeCredential, Service
from olivepipe.run.executors.azureml import AzureMLExecutor
from test_azureml_executor import WORKFLOW, WORKSPACE_ENV, open_ws, remote_step, workflow

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning")

ENV = {"AZURE_SUBSCRIPTION_ID": "00000000-1111-2222-3333-444444444444", "AZURE_RESOURCE_GROUP": "rg-olive",
       "AZUREML_WORKSPACE_NAME": "ws-olive"}
assert ENV == WORKSPACE_ENV


@pytest.fixture
def svc(tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a test of the Azure ML executor opened a connection")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    service = Service(tmp_path / "azureml")
    service.storage_through_me(monkeypatch)
    yield service
    service.stop_all()


def real_executor(svc: Service, store_url, **kw) -> AzureMLExecutor:
    """The executor with azure-ai-ml's own MLClient (no client_factory), talking to ``svc``."""
    return AzureMLExecutor(credential=FakeCredential(), store_url=str(store_url), poll_s=0.05, env=dict(ENV),
                           client_kwargs={"transport": svc.transport}, jobs_run_here=True, **kw)


def remote_job(tmp_path, svc, *, text=WORKFLOW, store_url=None, **exkw):
    """Node b's real job with its upstream a in the cache, and a context, as the scheduler makes them."""
    return remote_step(tmp_path, None, store_url or tmp_path / "remote", text=text,
                       make=functools.partial(real_executor, svc), **exkw)


def test_apply_through_the_real_sdk_submits_follows_and_writes_the_lock(tmp_path, sleep_kind, svc):
    from olivepipe.flow.scheduler import apply
    from olivepipe.flow.plan import make_plan

    wf = workflow(tmp_path)
    ws = open_ws(wf, lambda: real_executor(svc, tmp_path / "remote"), cache_dir=tmp_path / "cache")
    result = apply(ws, make_plan(ws))
    assert result.ok, {n: o.error for n, o in result.outcomes.items()}
    assert result.ran == ["a", "b", "c"]
    [job] = svc.jobs.values()
    props = job.props
    # what azure-ai-ml sent: the command job, its code snapshot (uploaded to blob storage by the
    # SDK) and the anonymous environment, all by ARM id
    assert props["jobType"] == "Command" and props["computeId"].endswith("/computes/cpu-cluster")
    assert props["command"].startswith("python -m olivepipe.run.runtime job.json --store ")
    assert props["displayName"] == "b" and props["tags"]["olivepipe.key"] == result.outcomes["b"].key
    assert "/environments/CliV2AnonymousEnvironment/versions/" in props["environmentId"]
    assert (job.code / "olivepipe" / "run" / "runtime.py").is_file() and (job.code / "job.json").is_file()
    assert svc.calls("GET", r"/computes/cpu-cluster$")  # read-only checks before the submit
    assert "quota for standardDSv2Family: 0 of 100 cores in use; one STANDARD_DS3_V2 node needs 4" in \
        ws.log_path("b").read_text()
    assert len(svc.calls("PUT", r"/jobs/[^/]+$")) == 1 and svc.sleeps == []

    locked = ws.lock_nodes()  # the lock written after b finished, naming the job's result
    assert result.outcomes["b"].key in json.dumps(locked["b"]), locked.get("b")
    b = json.loads((wf.parent / "outputs" / "remote" / "b" / "result.json").read_text())
    assert b["node"] == "b" and b["data"] == ['{"prompt": "a", "response": "b"}\n']
    log = ws.log_path("b").read_text()
    for phase in ("starting (NotStarted)", "preparing image (Preparing)", "queued (Queued)", "running (Running)"):
        assert f": {phase}" in log, log
    assert "olivepipe.runtime: b: ok" in log and "time in each phase: starting" in log
    assert FakeCredential.TOKEN not in log and "sig=" not in log

    again = make_plan(open_ws(wf, lambda: real_executor(svc, tmp_path / "remote"), cache_dir=tmp_path / "cache",
                              read_only=True))
    assert [s.action for s in again.steps] == ["cached", "cached", "cached"]


def test_a_failed_job_fails_the_node_with_the_runtime_error_and_the_log_tail(tmp_path, sleep_kind, svc):
    ex, ws, job, ctx = remote_job(tmp_path, svc, text=WORKFLOW.replace("note: b,", "note: b, fail: true,"))
    ex.start(job, ctx)
    [res] = ex.wait()
    assert not res.ok
    first, _, tail = res.error.partition("\n")
    assert first.startswith("RuntimeError: b was told to fail (Azure ML job olivepipe-") and first.endswith("Failed)")
    assert tail.startswith("last lines of the job's log:") and "  | Traceback" in tail
    assert "  | olivepipe.runtime: b: failed: RuntimeError: b was told to fail" in tail


def test_throttled_submit_is_retried_after_retry_after_with_the_same_job_name(tmp_path, sleep_kind, svc):
    svc.fail_next("PUT", r"/jobs/[^/]+$", 429, {"Retry-After": "17"})
    svc.fail_next("GET", r"/jobs/[^/]+$", 503, {"Retry-After": "3"})
    ex, ws, job, ctx = remote_job(tmp_path, svc)
    ex.start(job, ctx)
    [res] = ex.wait()
    assert res.ok, res.error
    puts = svc.calls("PUT", r"/jobs/[^/]+$")
    assert len(puts) == 2 and puts[0] == puts[1]  # the same name: a retried PUT creates nothing twice
    assert len(svc.jobs) == 1
    assert 17.0 in svc.sleeps and 3.0 in svc.sleeps  # azure-core honoured Retry-After (recorded, not slept)


def test_a_lost_submit_answer_follows_the_job_it_created(tmp_path, sleep_kind, svc):
    # every answer to the PUT is lost (503 past azure-core's retries), but the first one created the job
    svc.fail_next("PUT", r"/jobs/[^/]+$", 503, {"Retry-After": "0"}, times=50)
    real_put = svc._create_job

    def create_then_fail(name, body):
        real_put(name, body)
        return 503, {"Retry-After": "0"}, b'{"error": {"code": "ServiceUnavailable", "message": "lost"}}'

    svc.faults.clear()
    svc._create_job = create_then_fail
    ex, ws, job, ctx = remote_job(tmp_path, svc)
    ex.start(job, ctx)
    [res] = ex.wait()
    assert res.ok, res.error
    assert len(svc.jobs) == 1 and "the submit's answer was lost but job olivepipe-" in Path(ctx.log).read_text()


def test_ctrl_c_cancels_the_job_through_the_sdk(tmp_path, sleep_kind, svc):
    hold = tmp_path / "never-created"
    ex, ws, job, ctx = remote_job(tmp_path, svc, text=WORKFLOW.replace("note: b,", f"note: b, wait_for: {hold},"))
    started = []
    svc.on_launch = started.append
    ex.start(job, ctx)
    deadline = time.monotonic() + 300  # a hang guard only
    while not (started and started[0].log.exists() and "olivepipe.runtime: b" in started[0].log.read_text()):
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    ex.close(kill=True)
    [run] = svc.jobs.values()
    assert svc.calls("POST", rf"/jobs/{run.name}/cancel$") and run.canceled and run.proc.poll() is not None
    [res] = ex.wait()
    assert not res.ok and "was asked to cancel" in res.error
    assert f"asked Azure ML to cancel job {run.name}" in Path(ctx.log).read_text()


@pytest.mark.parametrize("status, option, phase, why", [
    ("Queued", "queue_timeout", "queued", "quota"),  # no node ever frees up
    ("Preparing", "prepare_timeout", "preparing image", "image is still building"),  # an image build that hangs
])
def test_a_job_past_its_phase_bound_is_canceled_and_fails_with_the_reason(tmp_path, sleep_kind, svc, status, option,
                                                                           phase, why):
    svc.hold_in = status
    svc.hold.set()
    text = WORKFLOW.replace("executor: {azureml: {compute: cpu-cluster}}",
                            f"executor: {{azureml: {{compute: cpu-cluster, {option}: 0.3}}}}")
    ex, ws, job, ctx = remote_job(tmp_path, svc, text=text)
    ex.start(job, ctx)
    [res] = ex.wait()
    [run] = svc.jobs.values()
    assert not res.ok and f"was {phase} for" in res.error and f"over {option}" in res.error, res.error
    assert why in res.error and run.canceled and run.proc is None  # it never ran
    assert svc.calls("POST", rf"/jobs/{run.name}/cancel$")


def test_a_vm_family_without_quota_fails_before_submitting(tmp_path, sleep_kind, svc):
    svc.quota["standardNCADSA100v4Family"] = (0, 0)  # the subscription has no A100 cores in this region
    text = WORKFLOW.replace("compute: cpu-cluster", "compute: gpu-cluster")
    ex, ws, job, ctx = remote_job(tmp_path, svc, text=text)
    ex.start(job, ctx)
    [res] = ex.wait()
    assert not res.ok and "quota for standardNCADSA100v4Family is 0 cores" in res.error and not svc.jobs, res.error
    assert svc.calls("GET", r"/locations/eastus/usages$") and svc.calls("GET", r"/locations/eastus/vmSizes$")


def test_missing_compute_and_a_refused_code_upload_say_what_to_do(tmp_path, sleep_kind, svc):
    text = WORKFLOW.replace("compute: cpu-cluster", "compute: no-such-cluster")
    ex, ws, job, ctx = remote_job(tmp_path / "one", svc, text=text)
    ex.start(job, ctx)
    [res] = ex.wait()
    assert not res.ok and "compute 'no-such-cluster' does not exist" in res.error and not svc.jobs

    svc.fail_next("PUT", r"^/[0-9a-f]{32}/", 403, {"x-ms-error-code": "AuthorizationPermissionMismatch"}, times=10)
    ex, ws, job, ctx = remote_job(tmp_path / "two", svc)
    ex.start(job, ctx)
    [res] = ex.wait()
    assert not res.ok and "Storage Blob Data Contributor" in res.error and not svc.jobs, res.error


def test_results_bound_as_datastore_outputs_need_no_token_in_the_job(tmp_path, sleep_kind, svc):
    """`datastore:` over the cache's container: the job mounts the cache read-only and writes new
    blobs into an upload-mode output on the same datastore path; Azure ML moves the bytes."""
    from olivepipe.stores.blob import BlobStore
    from olivepipe.stores.folders import FolderContainer

    svc.datastores["cachestore"] = ("cacheacct", "olivepipe-cache")
    container = svc.folder_of("cachestore")
    container.mkdir(parents=True)

    def open_container(url):
        assert url == "azblob://cacheacct/olivepipe-cache/team"
        return BlobStore(FolderContainer(container, container), prefix="team", label=url)

    text = WORKFLOW.replace("executor: {azureml: {compute: cpu-cluster}}",
                            "executor: {azureml: {compute: cpu-cluster, datastore: cachestore}}")
    ex, ws, job, ctx = remote_job(tmp_path, svc, text=text, store_url="azblob://cacheacct/olivepipe-cache/team",
                                  open_store=open_container)
    ex.start(job, ctx)
    [res] = ex.wait()
    assert res.ok, res.error + Path(ctx.log).read_text()
    [run] = svc.jobs.values()
    props = run.props
    assert props["inputs"]["cache"] == {"uri": "azureml://datastores/cachestore/paths/team/", "mode": "ReadOnlyMount",
                                        "jobInputType": "uri_folder"}
    assert props["outputs"]["publish"]["mode"] == "Upload"
    assert "--store ${{inputs.cache}}" in props["command"] and "--publish-to ${{outputs.publish}}" in props["command"]
    assert not any(k.startswith(("AZURE", "OLIVEPIPE_BLOB")) for k in props.get("environmentVariables") or {})
    # the entry came into the container through the output upload, and reads back healthy
    assert (container / "team" / "entries" / f"{job.key}.json").is_file()
    got = open_container("azblob://cacheacct/olivepipe-cache/team").get(job.key)
    assert got is not None and got.manifest["record"] == job.record
    assert "through datastore cachestore (no token in the job)" in Path(ctx.log).read_text()
    mine = ws.store.get(job.key)  # copied into the workspace's cache by the executor
    assert json.loads((ws.store.fetch(mine) / "result.json").read_text())["node"] == "b"

    # a datastore over another container is refused before anything is submitted
    svc.datastores["elsewhere"] = ("otheracct", "other")
    text2 = text.replace("datastore: cachestore", "datastore: elsewhere").replace("note: b,", "note: b2,")
    ex2, _, job2, ctx2 = remote_job(tmp_path / "two", svc, text=text2,
                                    store_url="azblob://cacheacct/olivepipe-cache/team", open_store=open_container)
    ex2.start(job2, ctx2)
    [res2] = ex2.wait()
    assert not res2.ok and "is otheracct/other, not the shared cache's cacheacct/olivepipe-cache" in res2.error
    assert len(svc.jobs) == 1
    assert os.environ.get("AZURE_STORAGE_CONNECTION_STRING") is None


def test_a_remote_node_reads_a_remote_inputs_result_from_the_store_not_through_this_machine(tmp_path, sleep_kind, svc):
    """b and c both on Azure ML: c's job names b's result by key and reads it from the job store;
    nothing of b is uploaded for c (the one copy that comes here is the scheduler's own, once)."""
    from olivepipe.flow.scheduler import apply
    from olivepipe.flow.plan import make_plan
    from olivepipe.stores.local import LocalStore

    text = WORKFLOW.replace("c: {kind: sleep, input: b, note: c}",
                            "c: {kind: sleep, input: b, note: c, executor: {azureml: {compute: cpu-cluster}}}")
    wf = workflow(tmp_path, text)
    ws = open_ws(wf, lambda: real_executor(svc, tmp_path / "remote"), cache_dir=tmp_path / "cache")
    result = apply(ws, make_plan(ws))
    assert result.ok, {n: o.error for n, o in result.outcomes.items()}
    c_job = next(j for j in svc.jobs.values() if j.props["displayName"] == "c")
    sent = json.loads((c_job.code / "job.json").read_text())
    b_key = result.outcomes["b"].key
    assert b_key in json.dumps(sent["refs"])  # by key, from the store
    c_log = ws.log_path("c").read_text()
    assert "copied input result" not in c_log and "uploaded" not in c_log, c_log
    assert LocalStore(tmp_path / "remote").get(b_key) is not None
    c = json.loads((wf.parent / "outputs" / "remote" / "c" / "result.json").read_text())
    assert c["node"] == "c"
