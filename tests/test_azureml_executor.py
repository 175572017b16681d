"""Nodes as Azure ML command jobs (olivepipe/run/executors/azureml.py, olivepipe/azure/jobs.py,
olivepipe/run/runtime.py), all offline: no Azure workspace is reachable from here.

The command job is built and validated with azure-ai-ml's own checks. A fake MLClient follows
the SDK's interface (``jobs.create_or_update`` / ``get`` / ``begin_cancel`` / ``download``, and
the run details and request pipeline ``jobs.stream`` reads logs through) and "runs" a job the
way Azure ML would: it copies the job's code snapshot and runs its command, ``python -m
olivepipe.run.runtime``, for real in a subprocess, against a LocalStore standing in for the
remote store. Waits are on events and job states, never on a fixed sleep.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from azurite import ACCOUNT
from conftest import write
from olivepipe.azure import jobs as amljobs
from olivepipe.azure.errors import RegistrationError
from olivepipe.run.executors.azureml import AzureMLExecutor
from olivepipe.run.executors.base import RunContext
from olivepipe.run.executors.local import LocalExecutor
from olivepipe.run.executors.router import Router
from olivepipe.core.hashing import file_digest, tree_digest
from olivepipe.core.keys import key_of
from olivepipe.kinds.base import Needs
from olivepipe.core.versions import version
from olivepipe.run.runtime import input_key
from olivepipe.stores.local import LocalStore

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning")

WORKSPACE_ENV = {"AZURE_SUBSCRIPTION_ID": "00000000-1111-2222-3333-444444444444",
                 "AZURE_RESOURCE_GROUP": "rg-olive", "AZUREML_WORKSPACE_NAME": "ws-olive"}
PLACED = {"azureml": {"compute": "cpu-cluster"}}
SECRET = "credential-SECRET-0123456789"


# -- a fake Azure ML workspace behind the SDK's interface ------------------------------------------

class FakeCredential:
    def __repr__(self):  # what would leak if anything printed the credential
        return f"FakeCredential({SECRET})"

    def get_token(self, *scopes, **kw):
        raise AssertionError("the executor probed a credential it was given")


class _Response:
    def __init__(self, path: Path):
        self.path = path
        self.status_code = 200 if path.exists() else 404

    def text(self):
        return self.path.read_text(errors="replace")


class _Pipeline:
    """The request pipeline the SDK downloads log files with (``download_text_from_url``)."""

    def get(self, url, **kw):
        assert url.startswith("file://")
        return _Response(Path(url[len("file://"):]))


class _Poller:
    def __init__(self):
        self.waited = False

    def result(self, timeout=None):
        self.waited = True

    def done(self):
        return True


class FakeRun:
    def __init__(self, name: Path, job, root: Path):
        self.name, self.job, self.dir = name, job, root / name
        self.proc = None
        self.gets = 0
        self.canceled = False
        self.log = self.dir / "user_logs" / "std_log.txt"

    @property
    def code(self) -> Path:
        return self.dir / "code"

    def status(self, complete_without_running: bool) -> str:
        if self.canceled:
            return "Canceled"
        if self.proc is None:
            return "Completed" if complete_without_running and self.gets > 1 else "Queued"
        rc = self.proc.poll()
        return "Running" if rc is None else ("Completed" if rc == 0 else "Failed")


class FakeJobs:
    """``MLClient.jobs`` with azure-ai-ml 1.35.2's signatures. A job is queued on submit and its
    command starts on the first status read after that (so status goes Queued, Running, ...)."""

    def __init__(self, root: Path, *, fail_gets: int = 0, complete_without_running: bool = False):
        self.root = root
        self.runs: dict[str, FakeRun] = {}
        self.submitted: list = []
        self.cancelled: list[str] = []
        self.fail_gets = fail_gets
        self.complete_without_running = complete_without_running
        self.submitted_event = threading.Event()
        self.on_launch = None  # called once a job's command has started
        self._runs_operations = SimpleNamespace(get_run_details=self._details)
        self._requests_pipeline = _Pipeline()
        self._mutex = threading.Lock()

    def create_or_update(self, job, *, description=None, compute=None, tags=None, experiment_name=None,
                         skip_validation=False, **kwargs):
        from azure.ai.ml.entities import Command, Environment

        assert isinstance(job, Command)
        if not skip_validation:  # what the real one does before sending anything
            job._validate(raise_error=True)
        assert isinstance(job.environment, (Environment, str))
        name = job.name or f"quirky_{uuid.uuid4().hex[:8]}"
        run = FakeRun(name, job, self.root)
        shutil.copytree(job.code, run.code)  # the code snapshot upload
        run.log.parent.mkdir(parents=True)
        with self._mutex:
            self.runs[name] = run
            self.submitted.append(job)
        self.submitted_event.set()
        return SimpleNamespace(name=name, status="Starting", studio_url=f"https://ml.azure.com/runs/{name}")

    def get(self, name: str):
        from azure.core.exceptions import ResourceNotFoundError, ServiceRequestError

        run = self.runs.get(name)
        if run is None:
            raise ResourceNotFoundError(f"job {name} not found")
        run.gets += 1
        if run.gets > 1 and self.fail_gets:
            self.fail_gets -= 1
            raise ServiceRequestError("Connection reset by peer")
        status = run.status(self.complete_without_running)
        if run.gets > 1 and run.proc is None and not run.canceled and not self.complete_without_running:
            self._launch(run)
        return SimpleNamespace(name=name, status=status, studio_url=f"https://ml.azure.com/runs/{name}")

    def _launch(self, run: FakeRun) -> None:
        argv = shlex.split(run.job.command)
        assert argv[0] == "python"
        env = {**os.environ, **run.job.environment_variables}
        with open(run.log, "ab") as log:
            run.proc = subprocess.Popen([sys.executable, *argv[1:]], cwd=run.code, stdout=log, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True)
        if self.on_launch:
            self.on_launch(run)

    def begin_cancel(self, name: str, **kwargs):
        run = self.runs[name]
        run.canceled = True
        self.cancelled.append(name)
        if run.proc is not None and run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait()
        return _Poller()

    def download(self, name: str, *, download_path=".", output_name=None, all=False):
        run = self.runs[name]
        if run.status(self.complete_without_running) not in ("Completed", "Failed", "Canceled"):
            raise RuntimeError(f"This job is in state {run.status(False)}. Download is allowed only in terminal states")
        art = Path(download_path) / "artifacts"
        if (run.code / "outputs").is_dir():
            shutil.copytree(run.code / "outputs", art / "outputs")
        shutil.copytree(run.log.parent, art / "user_logs")

    def _details(self, name: str):
        run = self.runs[name]
        files = {"user_logs/std_log.txt": run.log.as_uri()} if run.log.exists() else {}
        return SimpleNamespace(status=run.status(self.complete_without_running), log_files=files)

    def stop_all(self):
        for run in self.runs.values():
            if run.proc is not None and run.proc.poll() is None:
                os.killpg(run.proc.pid, signal.SIGKILL)
                run.proc.wait()


class FakeAzureML:
    """One fake workspace; ``client`` is an ``MLClient``-shaped factory for the executor."""

    def __init__(self, root: Path, **kw):
        self.jobs = FakeJobs(root, **kw)
        self.clients: list[dict] = []

    def client(self, credential=None, subscription_id=None, resource_group_name=None, workspace_name=None, **kwargs):
        self.clients.append({"credential": credential, "subscription_id": subscription_id,
                             "resource_group_name": resource_group_name, "workspace_name": workspace_name, **kwargs})
        return SimpleNamespace(jobs=self.jobs)


@pytest.fixture
def aml(tmp_path):
    fake = FakeAzureML(tmp_path / "azureml")
    yield fake
    fake.jobs.stop_all()


def executor(aml, store_url, **kw) -> AzureMLExecutor:
    kw = {"client_factory": aml.client, "credential": FakeCredential(), "store_url": str(store_url),
          "poll_s": 0.05, "env": dict(WORKSPACE_ENV), **kw}
    return AzureMLExecutor(**kw)


# -- a workflow whose remote node reads an upstream result, a local model folder and a data file ---

WORKFLOW = """\
olivepipe: 1
name: remote
models:
  base: {path: base}
datasets:
  rows: {files: rows.jsonl}
nodes:
  a: {kind: sleep, input: base, note: a}
  b: {kind: sleep, input: [a, base], data: rows, note: b, executor: {azureml: {compute: cpu-cluster}}}
  c: {kind: sleep, input: b, note: c}
"""


def workflow(tmp_path, text=WORKFLOW) -> Path:
    root = tmp_path / "ws"
    write(root / "base" / "config.json", '{"model": "base"}')
    write(root / "base" / "weights" / "w.bin", "weights")
    write(root / "rows.jsonl", '{"prompt": "a", "response": "b"}\n')
    return write(root / "workflow.yaml", text)


def open_ws(wf, factory, **kw):
    from olivepipe.flow.workspace import open_workspace

    return open_workspace(wf, executor=Router(LocalExecutor(), {"azureml": factory}), **kw)




def remote_step(tmp_path, aml, remote_root, *, shared=False, node="b", text=WORKFLOW, make=None, **exkw):
    """The remote node's real job (Workspace.job), its upstream `a` already in the cache, and a
    context for it. ``shared``: the job's store is the workspace's own cache. ``make(store_url,
    **exkw)``: the executor (default: one on the fake ``aml``)."""
    wf = workflow(tmp_path, text)
    cache = tmp_path / "cache"
    url = cache if shared else remote_root
    ex = make(url, **exkw) if make else executor(aml, url, **exkw)
    ws = open_ws(wf, lambda: ex, cache_dir=cache)
    rec_a, _ = ws.record("a", {})  # `a` ran here: its result is in the workspace's cache only
    out = write(tmp_path / "a-out" / "result.json", '{"node": "a"}').parent
    entries = {"a": ws.store.publish(key_of(rec_a), out, {"model": {"type": "hfmodel", "config": {"model_path": "$OUT"}},
                                                          "kind": "sleep", "record": rec_a})}
    record, complete = ws.record(node, {k: e.digest for k, e in entries.items()})
    assert complete
    job = ws.job(node, entries, key=key_of(record), record=record)
    log = write(tmp_path / "logs" / f"{node}.log", "")
    ex.open(slots=2, offline=True, log_dir=log.parent)
    return ex, ws, job, RunContext(store=ws.store, root=ws.workflow.root, log=log, stats=ws.stats, workflow="remote")


def code_of(aml, i=-1) -> Path:
    return Path(aml.jobs.runs[aml.jobs.submitted[i].name].code)


# -- the command job and its environment -------------------------------------------------------------

def test_the_command_job_validates_with_azure_ai_ml_and_says_what_runs_where(tmp_path):
    from azure.ai.ml.entities import CommandJob, Environment

    spec = amljobs.environment_spec("gpu", ("peft",))
    env = amljobs.build_environment(spec)
    key = "ab" * 32
    job = amljobs.build_command_job(code_dir=tmp_path, store_url="azblob://acct/results/olive", compute="gpu-cluster",
                                    environment=env, step="finetune", key=key, name="olivepipe-abab-1", workflow="travel tiny",
                                    kind="olive", instance_type="Standard_NC24ads_A100_v4", timeout_s=90.2,
                                    environment_variables={"HF_HUB_OFFLINE": "1"})
    assert job._validate().passed
    rest = job._to_job()._to_rest_object().properties
    assert rest.command == ("python -m olivepipe.run.runtime job.json --store azblob://acct/results/olive "
                            "--out outputs/result.json")
    assert rest.compute_id == "gpu-cluster" and rest.display_name == "finetune"
    assert rest.experiment_name == "olivepipe-travel-tiny"
    assert rest.tags == {"olivepipe.key": key, "olivepipe.step": "finetune", "olivepipe.workflow": "travel tiny",
                         "olivepipe.kind": "olive"}
    assert rest.environment_variables == {"HF_HUB_OFFLINE": "1"}
    assert rest.limits.timeout.total_seconds() == 91 and rest.resources.instance_type == "Standard_NC24ads_A100_v4"
    assert isinstance(job.environment, Environment) and job.environment.image == amljobs.DEFAULT_CUDA_IMAGE
    pip = job.environment.conda_file["dependencies"][-1]["pip"]
    assert f"olive-ai=={version('olive-ai')}" in pip and f"peft=={version('peft')}" in pip
    assert f"torch=={version('torch').split('+')[0]}" in pip and not any("whl/cpu" in p for p in pip)
    assert CommandJob._load(data=job._to_job()._to_dict()).command == job.command

    # a named environment goes as the SDK's azureml:name:version reference
    named = amljobs.build_command_job(code_dir=tmp_path, store_url="azblob://acct/results", compute="c",
                                      environment=amljobs.named_environment("olive-stack:3"), step="s", key=key, name="n")
    assert named._to_job()._to_rest_object().properties.environment_id == "azureml:olive-stack:3"
    # the SDK's own validation is what refuses a job without an environment
    with pytest.raises(RegistrationError, match="environment") as e:
        amljobs.build_command_job(code_dir=tmp_path, store_url="x", compute="c", environment=None, step="s", key=key,
                                  name="n")
    assert e.value.kind == "validation"
    with pytest.raises(RegistrationError, match="compute"):
        amljobs.build_command_job(code_dir=tmp_path, store_url="x", compute="", environment=env, step="s", key=key,
                                  name="n")


def test_environment_identity_follows_every_pin_and_never_matches_a_local_one():
    pkgs = ("olive-ai", "peft", "transformers")
    ex = AzureMLExecutor(env={})
    ident = ex.environment(pkgs, PLACED)
    assert ident[amljobs.IDENTITY_FIELD] and ident["transformers"] == version("transformers")
    assert ident != LocalExecutor().environment(pkgs)  # the same packages here: still another key
    assert ex.environment(pkgs, PLACED) == ident  # stable

    def bumped(name):
        return "5.99.0" if name == "transformers" else version(name)

    changed = AzureMLExecutor(env={}, version=bumped).environment(pkgs, PLACED)
    assert changed[amljobs.IDENTITY_FIELD] != ident[amljobs.IDENTITY_FIELD] and changed["transformers"] == "5.99.0"

    def bumped_numpy(name):  # a pin of the stack that is not one of the node's packages
        return "0.0.1" if name == "numpy" else version(name)

    stack_changed = AzureMLExecutor(env={}, version=bumped_numpy).environment(pkgs, PLACED)
    assert stack_changed[amljobs.IDENTITY_FIELD] != ident[amljobs.IDENTITY_FIELD]
    assert AzureMLExecutor(env={}, cuda_image="example.io/cuda:12").environment(pkgs, PLACED) != ident
    assert ex.environment(pkgs, {"azureml": {"compute": "other"}}) == ident  # the compute is not the environment
    assert ex.environment(pkgs, {"azureml": {"compute": "c", "environment": "olive-stack:3"}}) == \
        {amljobs.IDENTITY_FIELD: "azureml:olive-stack:3"}

    cpu, cuda = amljobs.environment_spec("cpu"), amljobs.environment_spec("gpu")
    torch = version("torch").split("+")[0]
    assert f"torch=={torch}+cpu" in cpu.requirements() and f"--extra-index-url {amljobs.TORCH_CPU_INDEX}" in cpu.requirements()
    assert f"torch=={torch}" in cuda.requirements() and cpu.digest() != cuda.digest()
    assert cpu.conda()["dependencies"][0] == f"python={sys.version_info.major}.{sys.version_info.minor}"


def test_the_generated_environment_pins_all_of_olivepipes_requirements():
    from importlib import metadata

    from packaging.requirements import Requirement

    wanted = set()
    for text in metadata.requires("olivepipe") or ():
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": "azure"}):
            wanted.add(req.name.lower())
    assert wanted, "olivepipe's metadata lists no requirements"
    assert wanted <= {n.lower() for n in amljobs.STACK}
    spec = amljobs.environment_spec("cpu")
    assert not spec.missing and {n for n, _ in spec.pins} == set(amljobs.STACK)


def test_preflight_is_offline_and_says_what_is_missing(tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("preflight opened a connection")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.chdir(tmp_path)  # no .azureml/config.json up from here
    needs = Needs(packages=("peft",))
    ok = AzureMLExecutor(env=dict(WORKSPACE_ENV), store_url="azblob://acct/results").preflight(needs, "cpu", PLACED)
    assert ok.ok and ok.needs[0] == "Azure ML compute cpu-cluster", ok.missing

    none = AzureMLExecutor(env={}).preflight(needs, "gpu", {"azureml": {"compute": ""}})
    text = " | ".join(none.missing)
    assert not none.ok
    assert "an Azure ML compute" in text and "missing subscription_id, resource_group, workspace_name" in text
    assert "OLIVEPIPE_REMOTE_CACHE" in text
    assert any("CUDA GPU" in n for n in none.needs)

    # the remote cache named the usual way is the store jobs publish into
    cfg = AzureMLExecutor(env={**WORKSPACE_ENV, "OLIVEPIPE_REMOTE_CACHE": "azblob://acct/results/x"})
    assert cfg.preflight(needs, "cpu", PLACED).ok and cfg._store_url()[0] == "azblob://acct/results/x"

    # a real client cannot hand a job a folder of this machine
    local = AzureMLExecutor(env=dict(WORKSPACE_ENV), store_url=str(tmp_path / "cache")).preflight(needs, "cpu", PLACED)
    assert not local.ok and "is a folder on this machine" in local.missing[0]

    floating = AzureMLExecutor(env=dict(WORKSPACE_ENV), store_url="azblob://acct/results").preflight(
        needs, "cpu", {"azureml": {"compute": "c", "environment": "olive-stack@latest"}})
    assert not floating.ok and "not a pinned Azure ML environment" in floating.missing[0]

    absent = AzureMLExecutor(env=dict(WORKSPACE_ENV), store_url="azblob://acct/results").preflight(
        Needs(packages=("no-such-package-olivepipe",)), "cpu", PLACED)
    assert not absent.ok and "no-such-package-olivepipe (not installed here" in absent.missing[0]
    # a named environment brings its own packages: nothing to pin from here
    assert AzureMLExecutor(env=dict(WORKSPACE_ENV), store_url="azblob://acct/results").preflight(
        Needs(packages=("no-such-package-olivepipe",)), "cpu", {"azureml": {"compute": "c", "environment": "e:1"}}).ok


def test_plan_through_the_default_wiring_says_where_and_why_offline_without_the_sdk(tmp_path):
    """`open_workspace` without an executor: the router's azureml factory (workspace.py) makes this
    executor; plan runs in a fresh process with connections refused and must not import azure-ai-ml."""
    wf = workflow(tmp_path)
    script = f"""
import json, socket, sys
def refuse(*a, **k):
    raise AssertionError("plan opened a connection")
socket.socket.connect = refuse
socket.create_connection = refuse
import fakekinds
from olivepipe import kinds
from olivepipe.flow.plan import make_plan
from olivepipe.flow.workspace import open_workspace
kinds.register(fakekinds.KIND, "fakekinds")
plan = make_plan(open_workspace({str(wf)!r}, read_only=True))
print(json.dumps({{"steps": {{s.name: [s.where, s.action, list(s.reasons)] for s in plan.steps}},
                  "sdk": "azure.ai.ml" in sys.modules}}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "OLIVEPIPE_REMOTE", "OLIVEPIPE_BLOB"))}
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert not got["sdk"]
    where, action, reasons = got["steps"]["b"]
    assert (where, action) == ("azureml:cpu-cluster", "blocked")
    assert "an Azure ML workspace" in reasons[0] and "OLIVEPIPE_REMOTE_CACHE" in reasons[0]
    assert got["steps"]["a"][:2] == ["local", "run"]


def test_store_urls_open_the_store_they_name(tmp_path, monkeypatch):
    from olivepipe.core.errors import StoreError
    from olivepipe.run.runtime import open_store_url

    def refuse(*a, **k):
        raise AssertionError("opening a store opened a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    for name in ("OLIVEPIPE_BLOB_SAS", "AZURE_STORAGE_CONNECTION_STRING", "OLIVEPIPE_BLOB_ACCOUNT_URL"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(open_store_url(f"file://{tmp_path}/a"), LocalStore)
    assert open_store_url(str(tmp_path / "b")).root == tmp_path / "b"
    blob = open_store_url("azblob://acct/results/olive")
    assert type(blob).__name__ == "BlobStore" and "azblob://acct/results/olive" in repr(blob)
    with pytest.raises(StoreError, match="unknown store URL"):
        open_store_url("s3://bucket/x")


# -- the node runtime -----------------------------------------------------------------------------

def _runtime_job(store: LocalStore, tmp_path, **kw) -> dict:
    rows = write(tmp_path / "in" / "rows.jsonl", '{"prompt": "a"}\n{"prompt": "b"}\n')
    d = file_digest(rows)
    k = input_key("file", d, "rows.jsonl")
    staging = store.staging("input")
    shutil.copy(rows, staging / "rows.jsonl")
    store.publish(k, staging, {"kind": "olivepipe-input", "model": None})
    record = {"test": str(tmp_path), "n": kw.pop("n", 0)}
    job = {"format": 1, "step": "r", "kind": "sleep", "module": "fakekinds", "device": "cpu",
           "spec": {"options": {"note": "r"}, "inputs": [], "node": "r", "data": ["$DATA0", "$CALIB/data.jsonl"]},
           "refs": {"$DATA0": {"entry": k, "input": "file", "path": "rows.jsonl", "digest": d, "from": "rows.jsonl"},
                    "$CALIB": {"text_dataset": {"name": "rows", "text_template": "<{prompt}>"}, "files": ["$DATA0"]}},
           "key": key_of(record), "record": record, "replace": False, "offline": True}
    job.update(kw)
    return job


def run_runtime(tmp_path, job: dict, store_root: Path, tag: str = "r") -> tuple[subprocess.CompletedProcess, dict]:
    jf = write(tmp_path / tag / "job.json", json.dumps(job))
    out = tmp_path / tag / "outputs" / "result.json"
    p = subprocess.run([sys.executable, "-m", "olivepipe.run.runtime", str(jf), "--store", f"file://{store_root}",
                        "--out", str(out)], capture_output=True, text=True, cwd=tmp_path)
    return p, json.loads(out.read_text())


def test_runtime_resolves_inputs_from_the_store_publishes_and_then_only_links(tmp_path, sleep_kind):
    store = LocalStore(tmp_path / "store")
    job = _runtime_job(store, tmp_path)
    p, res = run_runtime(tmp_path, job, store.root)
    assert p.returncode == 0 and res["ok"], p.stdout + p.stderr
    entry = store.get(job["key"])
    assert res["key"] == entry.key and res["digest"] == entry.digest and not res["linked"]
    assert entry.manifest["record"] == job["record"] and entry.manifest["kind"] == "sleep"
    assert entry.model == {"type": "hfmodel", "config": {"model_path": "$OUT"}}
    out = json.loads((store.fetch(entry) / "result.json").read_text())
    assert out["data"] == ['{"prompt": "a"}\n{"prompt": "b"}\n', '{"text": "<a>"}\n{"text": "<b>"}\n']
    assert "olivepipe.runtime: r (key" in p.stdout  # the log Azure ML streams

    again, res2 = run_runtime(tmp_path, job, store.root, "r2")
    assert again.returncode == 0 and res2["ok"] and res2["linked"] and res2["digest"] == entry.digest
    assert store.get(job["key"]).manifest["id"] == entry.manifest["id"]  # nothing published again

    forced, res3 = run_runtime(tmp_path, {**job, "replace": True}, store.root, "r3")
    assert forced.returncode == 0 and res3["ok"] and not res3["linked"]
    assert store.get(job["key"]).manifest["id"] != entry.manifest["id"]  # --force: a new entry took its place


def test_runtime_fails_a_job_whose_input_is_not_the_one_in_its_key(tmp_path, sleep_kind):
    store = LocalStore(tmp_path / "store")
    job = _runtime_job(store, tmp_path, n=1)
    job["refs"]["$DATA0"]["digest"] = "0" * 64
    p, res = run_runtime(tmp_path, job, store.root)
    assert p.returncode == 1 and not res["ok"] and "rows.jsonl in the store is not the one in the key" in res["error"]
    assert store.get(job["key"]) is None

    local = {**_runtime_job(store, tmp_path, n=2), "refs": {"$DATA0": {"file": "rows.jsonl", "digest": "0" * 64}}}
    p, res = run_runtime(tmp_path, local, store.root, "r2")
    assert not res["ok"] and "on the submitting machine" in res["error"]

    p, res = run_runtime(tmp_path, {**job, "key": "nope"}, store.root, "r3")
    assert not res["ok"] and "no valid key" in res["error"]


# -- the executor with a fake Azure ML -------------------------------------------------------------

@pytest.mark.parametrize("shared", [False, True], ids=["separate-store", "shared-store"])
def test_a_remote_job_from_upload_to_result(tmp_path, sleep_kind, aml, shared):
    remote_root = tmp_path / "remote"
    ex, ws, job, ctx = remote_step(tmp_path, aml, remote_root, shared=shared)
    ex.start(job, ctx)
    [res] = ex.wait()
    assert res.ok, res.error
    key = job.key
    remote = LocalStore(ws.store.root if shared else remote_root)
    entry = remote.get(key)
    result = json.loads((remote.fetch(entry) / "result.json").read_text())
    assert result["node"] == "b" and result["data"] == ['{"prompt": "a", "response": "b"}\n']

    # inputs went to the job's store first, by content; the job file names only store entries
    root = ws.workflow.root
    assert remote.get(input_key("file", file_digest(root / "rows.jsonl"), "rows.jsonl")) is not None
    tree = remote.get(input_key("tree", tree_digest(ws.stats.tree(root / "base"))))
    assert sorted(tree.files) == ["config.json", "weights/w.bin"]
    assert remote.get(job.refs["$IN0"].key) is not None  # the upstream result, copied over if need be
    sent = json.loads((code_of(aml) / "job.json").read_text())
    assert all("entry" in r or "text_dataset" in r for r in sent["refs"].values())
    assert str(tmp_path) not in json.dumps(sent)  # no local path reaches Azure ML
    assert sent["key"] == key and sent["record"] == job.record and sent["step"] == "b"
    assert (code_of(aml) / "olivepipe" / "run" / "runtime.py").is_file()  # the runtime travels with the job

    # what was submitted: where, in which environment, under which names
    cmd = aml.jobs.submitted[-1]
    assert cmd.compute == "cpu-cluster" and cmd.display_name == "b" and cmd.experiment_name == "olivepipe-remote"
    assert cmd.tags["olivepipe.key"] == key and cmd.tags["olivepipe.workflow"] == "remote"
    assert cmd.command.startswith("python -m olivepipe.run.runtime job.json --store ")
    assert f"olive-ai=={version('olive-ai')}" in cmd.environment.conda_file["dependencies"][-1]["pip"]
    assert "HF_HUB_OFFLINE" in cmd.environment_variables and "AZURE_SUBSCRIPTION_ID" not in cmd.environment_variables
    client = aml.clients[0]
    # apply's client retries with back-off (azure-core's policy); plan never builds one
    assert client["workspace_name"] == "ws-olive" and client["retry_total"] > 0 and client["retry_backoff_factor"] > 0

    # status and the job's own log streamed into the node's log; the credential never
    log = Path(ctx.log).read_text()
    assert "olivepipe: submitted Azure ML job olivepipe-" in log and "https://ml.azure.com/runs/" in log
    assert ": queued (Queued)" in log and ": Completed after" in log
    assert log.index(": queued (Queued)") < log.index(": running (Running)") < log.index(": Completed")
    assert "time in each phase: queued " in log
    assert "olivepipe.runtime: b (key" in log and "olivepipe.runtime: b: ok" in log
    assert "uploaded data file rows.jsonl" in log and SECRET not in log

    # the result, as the scheduler gets it
    assert res.model == {"type": "hfmodel", "config": {"model_path": "$OUT"}}
    assert res.extra["azureml_job"] == cmd.name
    # in the workspace's cache either way: the same store, or copied in from the job's store
    mine = ws.store.get(key)
    assert mine is not None and mine.digest == entry.digest and mine.manifest["record"] == job.record
    assert json.loads((ws.store.fetch(mine) / "result.json").read_text()) == result
    ex.close()


def test_a_remote_job_with_the_shared_blob_cache_as_its_store(tmp_path, sleep_kind, aml, monkeypatch, azurite):  # noqa: F811 (the fixture)
    """The same job with the store a real job gets, an Azure Blob container (Azurite here): the
    executor uploads into it, the runtime (a subprocess) reads and publishes through it, and the
    result reaches the workspace through its tiered cache."""
    server = azurite  # skips, saying what to install, where Azurite is not installed
    container = server.new_container()
    for k, v in {**server.env(container), "OLIVEPIPE_BLOB_ACCOUNT_URL": server.endpoint}.items():
        monkeypatch.setenv(k, v)  # as a user sets them; the job's process inherits them from the fake
    url = f"azblob://{ACCOUNT}/{container}"
    ex, ws, job, ctx = remote_step(tmp_path, aml, url)
    ex.start(job, ctx)
    [res] = ex.wait()
    assert res.ok, res.error + Path(ctx.log).read_text()
    from olivepipe.run.runtime import open_store_url

    blob = open_store_url(url)
    entry = blob.get(job.key)
    assert entry is not None and entry.manifest["record"] == job.record
    assert blob.get(input_key("file", file_digest(ws.workflow.root / "rows.jsonl"), "rows.jsonl")) is not None
    assert blob.get(job.refs["$IN0"].key) is not None  # `a`: pushed there by the tiered cache
    # with the shared cache configured the workspace's store is local in front of that container:
    # the job's result is pulled into the local cache, and the scheduler only looks it up
    assert type(ws.store).__name__ == "TieredStore"
    local = ws.store.local.get(job.key)
    assert local is not None and local.digest == entry.digest
    got = json.loads((ws.store.fetch(local) / "result.json").read_text())
    assert got["node"] == "b" and got["data"] == ['{"prompt": "a", "response": "b"}\n']
    assert "AccountKey" not in Path(ctx.log).read_text()


def test_a_failed_remote_job_fails_its_node_with_the_jobs_error(tmp_path, sleep_kind, aml):
    text = WORKFLOW.replace("note: b,", "note: b, fail: true,")
    ex, ws, job, ctx = remote_step(tmp_path, aml, tmp_path / "remote", text=text)
    ex.start(job, ctx)
    [res] = ex.wait()
    assert not res.ok and res.error.startswith("RuntimeError: b was told to fail (Azure ML job ")
    assert "last lines of the job's log:\n" in res.error and "  | olivepipe.runtime: b: failed: RuntimeError" in res.error
    log = Path(ctx.log).read_text()
    assert ": Failed" in log and "RuntimeError: b was told to fail" in log  # the traceback, streamed
    assert LocalStore(tmp_path / "remote").get(job.key) is None


def test_close_kill_cancels_running_remote_jobs(tmp_path, sleep_kind, aml):
    hold = tmp_path / "never-created"
    text = WORKFLOW.replace("note: b,", f"note: b, wait_for: {hold},")
    ex, ws, job, ctx = remote_step(tmp_path, aml, tmp_path / "remote", text=text)
    ex.start(job, ctx)
    assert aml.jobs.submitted_event.wait(300)
    run = next(iter(aml.jobs.runs.values()))
    deadline = time.monotonic() + 300  # a hang guard only: the job runs until it is cancelled
    while not (run.proc is not None and run.log.exists() and "olivepipe.runtime: b" in run.log.read_text()):
        assert run.proc is None or run.proc.poll() is None, run.log.read_text()
        assert time.monotonic() < deadline, "the remote job never started"
        time.sleep(0.05)
    assert ex.wait(0) == []  # still running
    ex.close(kill=True)
    assert aml.jobs.cancelled == [run.name] and run.proc.poll() is not None
    [res] = ex.wait()
    assert not res.ok and "was asked to cancel" in res.error
    assert f"asked Azure ML to cancel job {run.name}" in Path(ctx.log).read_text()
    ex.close(kill=True)
    assert aml.jobs.cancelled == [run.name]  # once


def test_a_status_read_that_fails_is_retried_and_a_missing_result_fails_the_node(tmp_path, sleep_kind):
    flaky = FakeAzureML(tmp_path / "flaky", fail_gets=2)
    try:
        ex, ws, job, ctx = remote_step(tmp_path / "one", flaky, tmp_path / "one" / "remote")
        ex.start(job, ctx)
        [res] = ex.wait()
        assert res.ok, res.error
        assert "(will retry): Connection reset by peer" in Path(ctx.log).read_text()
    finally:
        flaky.jobs.stop_all()

    lost = FakeAzureML(tmp_path / "lost", complete_without_running=True)
    ex, ws, job, ctx = remote_step(tmp_path / "two", lost, tmp_path / "two" / "remote")
    ex.start(job, ctx)
    [res] = ex.wait()
    assert not res.ok and "completed but result" in res.error and "is not in the store" in res.error


def test_a_data_file_changed_after_planning_is_neither_uploaded_nor_run(tmp_path, sleep_kind, aml):
    ex, ws, job, ctx = remote_step(tmp_path, aml, tmp_path / "remote")
    write(ws.workflow.root / "rows.jsonl", '{"prompt": "changed"}\n')
    ex.start(job, ctx)
    [res] = ex.wait()
    assert not res.ok and "rows.jsonl changed after it was hashed" in res.error
    assert aml.jobs.submitted == []


# -- apply end to end: one node here, one on "Azure ML" --------------------------------------------

def test_apply_runs_placed_nodes_remotely_and_plans_offline(tmp_path, sleep_kind, aml, monkeypatch):
    from olivepipe.flow.scheduler import apply
    from olivepipe.flow.plan import make_plan

    # b is a GPU node on its compute: it must take none of this (GPU-less) machine's GPUs
    text = WORKFLOW.replace("note: b,", "note: b, device: gpu,")
    wf = workflow(tmp_path, text)
    monkeypatch.setattr(LocalExecutor, "gpus", lambda self: [])
    remote_root = tmp_path / "remote"
    made = []

    def factory(**kw):
        made.append(executor(aml, remote_root, **kw))
        return made[-1]

    def refuse(*a, **k):
        raise AssertionError("plan opened a connection")

    with monkeypatch.context() as m:
        m.setattr(socket, "create_connection", refuse)
        m.setattr(socket.socket, "connect", refuse)
        plan = make_plan(open_ws(wf, factory, read_only=True))
    steps = plan.by_name()
    assert {n: (s.where, s.action) for n, s in steps.items()} == {
        "a": ("local", "run"), "b": ("azureml:cpu-cluster", "run"), "c": ("local", "run")}
    assert plan.to_json()["steps"][1]["where"] == "azureml:cpu-cluster"

    ws = open_ws(wf, factory)
    result = apply(ws, make_plan(ws))
    assert result.ok, {n: o.error for n, o in result.outcomes.items()}
    assert result.ran == ["a", "b", "c"] and len(aml.jobs.submitted) == 1
    out = ws.workflow.file.parent / "outputs" / "remote"
    b = json.loads((out / "b" / "result.json").read_text())
    assert b["node"] == "b" and b["data"] == ['{"prompt": "a", "response": "b"}\n']
    c = json.loads((out / "c" / "result.json").read_text())
    assert c["node"] == "c"  # read b's result here, after it came back from the job's store
    env = aml.jobs.submitted[0].environment
    assert env.image == amljobs.DEFAULT_CUDA_IMAGE  # the GPU node's environment
    assert ws.store.get(result.outcomes["b"].key) is not None

    again = make_plan(open_ws(wf, factory, read_only=True))
    assert [s.action for s in again.steps] == ["cached", "cached", "cached"]

    def bumped(name):
        return "5.99.0" if name == "transformers" else version(name)

    # a pin of the remote stack changed (the sleep kind names no packages of its own, so the plan
    # names the environment): the remote node runs again, the local one does not
    changed = make_plan(open_ws(wf, lambda: factory(version=bumped), read_only=True)).by_name()
    assert changed["a"].action == "cached" and changed["b"].action == "run"
    assert changed["b"].reasons[0].startswith(f"packages.{amljobs.IDENTITY_FIELD}: "), changed["b"].reasons


def test_apply_with_the_workspace_cache_as_the_jobs_store_links_the_remote_result(tmp_path, sleep_kind, aml):
    from olivepipe.flow.scheduler import apply
    from olivepipe.flow.plan import make_plan

    wf = workflow(tmp_path)
    cache = tmp_path / "cache"
    ws = open_ws(wf, lambda: executor(aml, cache), cache_dir=cache)
    result = apply(ws, make_plan(ws))
    assert result.ok, {n: o.error for n, o in result.outcomes.items()}
    entry = ws.store.get(result.outcomes["b"].key)
    # published once, by the job (the runtime's metadata), not again by the scheduler
    assert entry.manifest["kind"] == "sleep" and entry.manifest["record"]["packages"][amljobs.IDENTITY_FIELD]
    assert (wf.parent / "outputs" / "remote" / "b" / "result.json").is_file()


def test_ctrl_c_during_apply_cancels_the_remote_job(tmp_path, sleep_kind, aml):
    from olivepipe.core.errors import Interrupted
    from olivepipe.flow.scheduler import apply
    from olivepipe.flow.plan import make_plan

    go, never = tmp_path / "GO", tmp_path / "never-created"
    text = WORKFLOW.replace("note: a}", f"note: a, wait_for: {go}}}").replace(
        "input: [a, base], data: rows, note: b,", f"input: base, note: b, wait_for: {never},")
    wf = workflow(tmp_path, text)
    aml.jobs.on_launch = lambda run: go.write_text("")  # a finishes once b runs remotely

    def ctrl_c(event):
        if event.kind == "done" and event.step == "a":
            raise KeyboardInterrupt

    ws = open_ws(wf, lambda: executor(aml, tmp_path / "remote"))
    with pytest.raises(Interrupted) as e:
        apply(ws, make_plan(ws), jobs=3, on_event=ctrl_c)
    assert e.value.running == ["b"] and e.value.result.outcomes["b"].status == "interrupted"
    [run] = aml.jobs.runs.values()
    assert aml.jobs.cancelled == [run.name] and run.proc.poll() is not None  # the remote work stopped
    remote = LocalStore(tmp_path / "remote")
    assert {remote.get(k).manifest["kind"] for k in remote.keys()} == {"olivepipe-input"}  # b published nothing
    assert f"asked Azure ML to cancel job {run.name}" in ws.log_path("b").read_text()


# A meta-path hook that makes this interpreter look like one without the `[azure]` extra: every
# `azure` package (azure-ai-ml, azure-core, azure-identity, azure-storage-blob) fails to import.
WITHOUT_AZURE = """
import sys
class _NoAzure:
    def find_spec(self, name, path=None, target=None):
        if name == "azure" or name.startswith("azure."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
for _m in [m for m in sys.modules if m == "azure" or m.startswith("azure.")]:
    del sys.modules[_m]
sys.meta_path.insert(0, _NoAzure())
"""


def test_plan_without_the_azure_extra_blocks_the_remote_node_and_names_the_extra(tmp_path):
    """`olivepipe plan` where azure-ai-ml (and the whole `azure` namespace) is not installed:
    the placed node is blocked with the install command, exit 1, and no traceback."""
    from conftest import copy_example

    wf = copy_example(tmp_path / "travel")
    text = wf.read_text().replace("    data: travel\n", "    data: travel\n    executor: {azureml: {compute: gpu-cluster}}\n", 1)
    wf.write_text(text)
    script = WITHOUT_AZURE + "from olivepipe.fastpath import main\nsys.exit(main())\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "OLIVEPIPE_REMOTE", "OLIVEPIPE_BLOB"))}
    env.update(WORKSPACE_ENV, CI="1")
    # plain `plan` exits 0 whatever it finds (the pinned exit-code table); the Terraform-style answer is 1
    for args, rc in ((["plan", str(wf)], 0), (["plan", "--detailed-exitcode", str(wf)], 1),
                     (["plan", "--detailed-exitcode", "--format", "json", str(wf)], 1),
                     (["status", str(wf)], 1)):
        p = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=tmp_path,
                           env=env, timeout=600)
        out = p.stdout + p.stderr
        assert "Traceback" not in out and "crash" not in out.lower(), out
        assert "install olivepipe[azure]" in out or 'pip install "olivepipe[azure]"' in out, out
        assert p.returncode == rc, (args, p.returncode, out)
        if args[0] == "plan" and "json" not in args:
            assert "finetune  lora @ cpu on azureml:gpu-cluster  blocked" in out, out
    assert not (tmp_path / "travel" / "olivepipe.lock").exists() and not (tmp_path / "travel" / ".olivepipe").exists()


def test_in_job_credential_follows_azure_mls_own_order():
    """Inside a job: on-behalf-of (with AZUREML_OBO_ENABLED and a user identity on the job), the
    managed identity Azure ML names in DEFAULT_IDENTITY_CLIENT_ID, then the default chain with
    managed identity allowed. Built offline: no credential here asks for a token."""
    from olivepipe.azure.credentials import job_credential

    both = job_credential({"AZUREML_OBO_ENABLED": "true", "DEFAULT_IDENTITY_CLIENT_ID": "0000-client"})
    assert [type(c).__name__ for c in both.credentials] == [
        "AzureMLOnBehalfOfCredential", "ManagedIdentityCredential", "DefaultAzureCredential"]
    [chain] = job_credential({}).credentials
    assert "ManagedIdentityCredential" in [type(c).__name__ for c in chain.credentials]


def test_serverless_identity_and_datastore_options_reach_the_rest_body_and_plan(tmp_path, monkeypatch):
    key = "cd" * 32
    env = amljobs.named_environment("olive-stack:3")
    job = amljobs.build_command_job(code_dir=tmp_path, store_url="azblob://acct/results/team", compute="serverless",
                                    instance_type="Standard_NC24ads_A100_v4", environment=env, step="s", key=key,
                                    name="n", identity="user", datastore="cachestore", datastore_prefix="team")
    rest = job._to_job()._to_rest_object().properties
    assert rest.compute_id is None and rest.resources.instance_type == "Standard_NC24ads_A100_v4"
    assert rest.identity.identity_type == "UserIdentity"
    assert rest.command == ("python -m olivepipe.run.runtime job.json --store ${{inputs.cache}} --out outputs/result.json "
                            "--publish-to ${{outputs.publish}}")
    assert rest.inputs["cache"].uri == rest.outputs["publish"].uri == "azureml://datastores/cachestore/paths/team/"
    with pytest.raises(RegistrationError, match="serverless compute without an instance_type"):
        amljobs.build_command_job(code_dir=tmp_path, store_url="x", compute="serverless", environment=env, step="s",
                                  key=key, name="n")
    assert amljobs.DEFAULT_CUDA_IMAGE.startswith("mcr.microsoft.com/azureml/") and "cuda12" in amljobs.DEFAULT_CUDA_IMAGE

    monkeypatch.chdir(tmp_path)
    needs = Needs()
    ex = AzureMLExecutor(env=dict(WORKSPACE_ENV), store_url="azblob://acct/results")
    assert ex.preflight(needs, "gpu", {"azureml": {"compute": "serverless", "instance_type": "Standard_NC24ads_A100_v4",
                                                   "datastore": "cachestore", "queue_timeout": "30m"}}).ok
    bare = ex.preflight(needs, "gpu", {"azureml": {"compute": "serverless"}})
    assert not bare.ok and "an instance_type for serverless compute" in bare.missing[0]
    folder = AzureMLExecutor(env=dict(WORKSPACE_ENV), store_url=str(tmp_path), jobs_run_here=True).preflight(
        needs, "cpu", {"azureml": {"compute": "c", "datastore": "cachestore"}})
    assert not folder.ok and "on Azure Blob storage for `datastore: cachestore`" in folder.missing[0]
