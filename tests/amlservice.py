"""A fake Azure ML workspace behind HTTP: an azure-core transport that answers the requests the
real azure-ai-ml 1.35.2 SDK sends, with bodies shaped like the Azure ML REST specification's
examples (Azure/azure-rest-api-specs, specification/machinelearningservices: Job/CommandJob,
Workspace/CodeVersion, EnvironmentVersion, Datastore, Compute), and the blob requests of the
code upload (azure-storage-blob, given the same transport).

So a test builds a real ``MLClient(..., transport=service.transport)`` and everything between
olivepipe and the wire (request building, serialization, the code upload, long-running
operations, azure-core's retry policy and its Retry-After handling, error mapping) is the
SDK's own code. Nothing here opens a socket.

The service "runs" a submitted job the way Azure ML does: it rebuilds the job's code snapshot
from the blobs the SDK uploaded, resolves ``${{inputs.x}}``/``${{outputs.x}}`` (datastore
paths map to folders), runs the command in a subprocess once the job leaves its queue, serves
its output as the job's ``user_logs/std_log.txt`` through run history, and after the command
ends "uploads" upload-mode outputs to their datastore paths.
"""
from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, unquote, urlsplit

import requests
from azure.core.pipeline.transport import RequestsTransport

SUB, RG, WS = "00000000-1111-2222-3333-444444444444", "rg-olive", "ws-olive"
REGION = "eastus"
ACCOUNT, CONTAINER = "wsstorage", "azureml-blobstore-0123"
ARM = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}"
API_HOST = f"{REGION}.api.azureml.ms"
SYSTEM_DATA = {"createdAt": "2026-12-07T12:34:56.999Z", "createdBy": "olivepipe-test", "createdByType": "User",
               "lastModifiedAt": "2026-12-07T12:34:56.999Z", "lastModifiedBy": "olivepipe-test",
               "lastModifiedByType": "User"}
TERMINAL = ("Completed", "Failed", "Canceled")


class FakeCredential:
    """A token credential (azure-core's protocol); the token is a fixed string the service checks."""

    TOKEN = "fake-aad-token-SECRET-42"

    def get_token(self, *scopes, **kw):
        from azure.core.credentials import AccessToken

        return AccessToken(self.TOKEN, int(time.time()) + 3600)

    def __repr__(self):
        return "FakeCredential(***)"


@dataclass
class Job:
    name: str
    body: dict  # the PUT body, as the SDK sent it
    statuses: list  # what each status read returns next; the last one repeats until the command ends
    code: Path | None = None
    proc: subprocess.Popen | None = None
    log: Path | None = None
    canceled: bool = False
    finished: bool = False
    outputs: dict = field(default_factory=dict)  # name -> (local folder, datastore folder)
    status: str = "NotStarted"

    @property
    def props(self) -> dict:
        return self.body["properties"]


class Service:
    """The workspace. ``script``: per status read, the status a job shows before its command
    runs (default: Preparing, Queued); ``faults``: (method, path regex) -> list of (status,
    headers) answered before the real answer, one per matching request."""

    def __init__(self, root: Path, *, queue: tuple = ("NotStarted", "Preparing", "Queued"),
                 datastores: dict | None = None, compute: dict | None = None):
        self.root = Path(root)
        self.blobs = self.root / "blobs"  # the workspace storage account's containers
        self.queue = list(queue)
        self.jobs: dict[str, Job] = {}
        self.assets: dict[str, dict] = {}  # ARM path of a code/environment version -> its properties
        self.requests: list[tuple[str, str]] = []  # (method, url) in order
        self.sleeps: list[float] = []  # what azure-core's retry policy slept (not slept here)
        self.faults: list[tuple[str, re.Pattern, int, dict]] = []
        self.hold = threading.Event()  # set: a job stays in status `hold_in` (for phase timeouts)
        self.hold_in = "Queued"
        self.on_launch: Callable | None = None
        self.datastores = {"workspaceblobstore": (ACCOUNT, CONTAINER), **(datastores or {})}
        self.computes = compute if compute is not None else {
            "cpu-cluster": {"vmSize": "STANDARD_DS3_V2", "maxNodeCount": 4},
            "gpu-cluster": {"vmSize": "STANDARD_NC24ADS_A100_V4", "maxNodeCount": 2}}
        # VM sizes (family, vCPUs, GPUs) and per-family core quota (in use, limit), as the
        # VirtualMachineSizes and Usages list examples of the REST specification
        self.vm_sizes = {"STANDARD_DS3_V2": ("standardDSv2Family", 4, 0),
                         "STANDARD_NC24ADS_A100_V4": ("standardNCADSA100v4Family", 24, 1)}
        self.quota = {"standardDSv2Family": (0, 100), "standardNCADSA100v4Family": (0, 48)}
        self._mutex = threading.Lock()
        self.transport = _Transport(self)

    # -- scripting -------------------------------------------------------------------------
    def fail_next(self, method: str, path_re: str, status: int, headers: dict | None = None, times: int = 1):
        for _ in range(times):
            self.faults.append((method, re.compile(path_re), status, dict(headers or {})))

    def calls(self, method: str, path_re: str) -> list[str]:
        rx = re.compile(path_re)
        return [u for m, u in self.requests if m == method and rx.search(urlsplit(u).path)]

    def folder_of(self, datastore: str, path: str = "") -> Path:
        account, container = self.datastores[datastore]
        return self.blobs / account / container / path.strip("/")

    def storage_through_me(self, monkeypatch) -> None:
        """azure-ai-ml builds its code-upload storage clients without the MLClient's options: give
        those two constructors this transport too (the only patch; the clients are the real ones)."""
        from azure.ai.ml._artifacts import _blob_storage_helper as helper
        from azure.storage.blob import BlobServiceClient, ContainerClient

        transport = self.transport

        class _Container(ContainerClient):
            @classmethod
            def from_container_url(cls, container_url, credential=None, **kw):
                return ContainerClient.from_container_url(container_url, credential, transport=transport, **kw)

        def _service(*a, **kw):
            return BlobServiceClient(*a, transport=transport, **kw)

        monkeypatch.setattr(helper, "ContainerClient", _Container)
        monkeypatch.setattr(helper, "BlobServiceClient", _service)

    def stop_all(self):
        for job in self.jobs.values():
            if job.proc is not None and job.proc.poll() is None:
                os.killpg(job.proc.pid, signal.SIGKILL)
                job.proc.wait()

    # -- HTTP ------------------------------------------------------------------------------------
    def handle(self, method: str, url: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        with self._mutex:
            self.requests.append((method, url))
            u = urlsplit(url)
            for i, (m, rx, status, hdrs) in enumerate(self.faults):
                if m == method and rx.search(u.path):
                    del self.faults[i]
                    code = hdrs.get("x-ms-error-code") or {429: "TooManyRequests", 403: "AuthorizationFailed"}.get(
                        status, "ServiceUnavailable")
                    if (u.hostname or "").endswith(".blob.core.windows.net"):  # storage speaks XML
                        return status, {"Content-Type": "application/xml", "x-ms-error-code": code, **hdrs}, (
                            f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>This '
                            f'request is not authorized to perform this operation using this permission.'
                            f'</Message></Error>').encode()
                    return status, {"Content-Type": "application/json", **hdrs}, json.dumps(
                        {"error": {"code": code, "message": f"the service answered {status} (scripted)"}}).encode()
        host = u.hostname or ""
        if host == "management.azure.com":
            if headers.get("Authorization") != f"Bearer {FakeCredential.TOKEN}":
                return _json(401, {"error": {"code": "AuthenticationFailed", "message": "no token"}})
            return self._arm(method, u.path, parse_qs(u.query), body)
        if host == API_HOST:
            return self._dataplane(method, u.path, body)
        if host.endswith(".blob.core.windows.net"):
            return self._blob(method, host.split(".")[0], u, headers, body)
        return _json(404, {"error": {"code": "NotFound", "message": f"no such host {host}"}})

    def _arm(self, method, path, query, body):
        m = re.fullmatch(rf"/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/locations/([^/]+)/"
                         r"(vmSizes|usages)", path)
        if m and method == "GET":
            return _json(200, {"value": self._sizes() if m[2] == "vmSizes" else self._usages(m[1])})
        if not path.startswith(ARM):
            return _not_found(path)
        rest = path[len(ARM):]
        if rest == "" and method == "GET":
            return _json(200, self._workspace())
        m = re.fullmatch(r"/codes/([^/]+)/versions", rest)
        if m and method == "GET":  # the SDK looks a code snapshot up by its hash first
            return _json(200, {"value": []})
        m = re.fullmatch(r"/codes/([^/]+)/versions/([^/]+)/startPendingUpload", rest)
        if m and method == "POST":  # where to upload a code snapshot: a SAS to a fresh folder
            blob = f"https://{ACCOUNT}.blob.core.windows.net/{uuid.uuid4().hex}"  # a temporary container
            return _json(200, {"blobReferenceForConsumption": {
                "blobUri": blob, "storageAccountArmId": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/"
                                                       f"Microsoft.Storage/storageAccounts/{ACCOUNT}",
                "credential": {"credentialType": "SAS", "sasUri": f"{blob}?sv=2026-01-01&sig=CODE-SAS-SECRET"}},
                "pendingUploadId": uuid.uuid4().hex, "pendingUploadType": "TemporaryBlobReference"})
        m = re.fullmatch(r"/(codes|environments)/([^/]+)/versions/([^/]+)", rest)
        if m and method == "PUT":
            kind, name, version = m.groups()
            props = json.loads(body)["properties"]
            self.assets[path] = props
            return _json(201, {"id": path, "name": version, "type": f"Microsoft.MachineLearningServices/workspaces/"
                               f"{kind}/versions", "properties": {**props, "provisioningState": "Succeeded"},
                               "systemData": SYSTEM_DATA})
        if rest == "/datastores" and method == "GET":
            return _json(200, {"value": [self._datastore("workspaceblobstore", default=True)]})
        m = re.fullmatch(r"/datastores/([^/]+)", rest)
        if m and method == "GET":
            return self._datastore_or_404(m[1])
        m = re.fullmatch(r"/datastores/([^/]+)/listSecrets", rest)
        if m and method == "POST":
            return _json(200, {"secretsType": "Sas", "sasToken": "sv=2026-01-01&sig=FAKE-SAS-SECRET"})
        m = re.fullmatch(r"/computes/([^/]+)", rest)
        if m and method == "GET":
            return self._compute(m[1])
        m = re.fullmatch(r"/jobs/([^/]+)", rest)
        if m and method == "PUT":
            return self._create_job(m[1], json.loads(body))
        if m and method == "GET":
            job = self.jobs.get(m[1])
            return _json(200, self._job_body(job, advance=True)) if job else _not_found(path)
        m = re.fullmatch(r"/jobs/([^/]+)/cancel", rest)
        if m and method == "POST":
            job = self.jobs.get(m[1])
            if job is None:
                return _not_found(path)
            self._cancel(job)
            return 202, {"Location": f"https://management.azure.com{ARM}/operationResults/cancel-{job.name}"
                                     "?api-version=2024-04-01", "Retry-After": "0"}, b""
        m = re.fullmatch(r"/operationResults/([^/]+)", rest)
        if m and method == "GET":
            return 200, {}, b""
        return _not_found(path)

    def _workspace(self):
        return {"id": ARM, "name": WS, "type": "Microsoft.MachineLearningServices/workspaces", "location": REGION,
                "properties": {"friendlyName": WS, "storageAccount": f"/subscriptions/{SUB}/resourceGroups/{RG}/"
                               f"providers/Microsoft.Storage/storageAccounts/{ACCOUNT}",
                               "discoveryUrl": f"https://{API_HOST}/discovery", "provisioningState": "Succeeded"},
                "systemData": SYSTEM_DATA}

    def _sizes(self):
        return [{"name": n, "family": fam, "vCPUs": cores, "gpus": gpus, "memoryGB": 220.0,
                 "supportedComputeTypes": ["AmlCompute"]} for n, (fam, cores, gpus) in self.vm_sizes.items()]

    def _usages(self, location):
        return [{"id": f"/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/locations/{location}/"
                       f"usages/{fam}", "amlWorkspaceLocation": location,
                 "type": "Microsoft.MachineLearningServices/totalCores", "unit": "Count", "currentValue": used,
                 "limit": limit, "name": {"value": fam, "localizedValue": f"{fam} Cluster Dedicated vCPUs"}}
                for fam, (used, limit) in self.quota.items()]

    def _datastore(self, name, default=False):
        account, container = self.datastores[name]
        return {"id": f"{ARM}/datastores/{name}", "name": name,
                "type": "Microsoft.MachineLearningServices/workspaces/datastores",
                "properties": {"datastoreType": "AzureBlob", "accountName": account, "containerName": container,
                               "endpoint": "core.windows.net", "protocol": "https", "isDefault": default,
                               "credentials": {"credentialsType": "None"}},
                "systemData": SYSTEM_DATA}

    def _datastore_or_404(self, name):
        if name not in self.datastores:
            return _not_found(f"datastore {name}")
        return _json(200, self._datastore(name, default=name == "workspaceblobstore"))

    def _compute(self, name):
        if name not in self.computes:
            return _not_found(f"compute {name}")
        c = self.computes[name]
        return _json(200, {"id": f"{ARM}/computes/{name}", "name": name, "location": REGION,
                           "type": "Microsoft.MachineLearningServices/workspaces/computes",
                           "properties": {"computeType": "AmlCompute", "provisioningState": "Succeeded",
                                          "properties": {"vmSize": c["vmSize"], "vmPriority": "Dedicated",
                                                         "scaleSettings": {"maxNodeCount": c["maxNodeCount"],
                                                                           "minNodeCount": 0,
                                                                           "nodeIdleTimeBeforeScaleDown": "PT120S"},
                                                         "allocationState": "Steady", "currentNodeCount": 0,
                                                         "targetNodeCount": 0}},
                           "systemData": SYSTEM_DATA})

    # -- jobs -------------------------------------------------------------------------------------
    def _create_job(self, name, body):
        with self._mutex:
            if name in self.jobs:  # a PUT of the same name is an update: same job (idempotent submit)
                return _json(200, self._job_body(self.jobs[name]))
            job = Job(name, body, list(self.queue))
            self.jobs[name] = job
        job.code = self._code_of(job.props.get("codeId"), name)
        return _json(201, self._job_body(job))

    def _job_body(self, job: Job, advance: bool = False) -> dict:
        if advance:
            self._advance(job)
        props = {**job.props, "status": job.status,
                 "services": {"Studio": {"jobServiceType": "Studio",
                                         "endpoint": f"https://ml.azure.com/runs/{job.name}?wsid={ARM}"}}}
        return {"id": f"{ARM}/jobs/{job.name}", "name": job.name,
                "type": "Microsoft.MachineLearningServices/workspaces/jobs", "properties": props,
                "systemData": SYSTEM_DATA}

    def _advance(self, job: Job) -> None:
        with self._mutex:
            if job.canceled or job.finished:
                return
            if job.proc is None:
                if job.statuses and not (self.hold.is_set() and job.status == self.hold_in):
                    job.status = job.statuses.pop(0)
                    return
                if self.hold.is_set():
                    return
                self._launch(job)
                job.status = "Running"
                return
            rc = job.proc.poll()
            if rc is None:
                return
            self._upload_outputs(job)
            job.status, job.finished = ("Completed" if rc == 0 else "Failed"), True

    def _launch(self, job: Job) -> None:
        props = job.props
        command = props["command"]
        for name, spec in (props.get("inputs") or {}).items():
            command = command.replace(f"${{{{inputs.{name}}}}}", str(self._mount(spec["uri"])))
        for name, spec in (props.get("outputs") or {}).items():
            local = self.root / "outputs" / job.name / name
            local.mkdir(parents=True)
            job.outputs[name] = (local, spec.get("uri"))
            command = command.replace(f"${{{{outputs.{name}}}}}", str(local))
        argv = shlex.split(command)
        assert argv[0] == "python", command
        job.log = self.root / "logs" / job.name / "std_log.txt"
        job.log.parent.mkdir(parents=True)
        env = {**os.environ, **(props.get("environmentVariables") or {})}
        with open(job.log, "ab") as log:
            job.proc = subprocess.Popen([sys.executable, *argv[1:]], cwd=job.code, stdout=log,
                                        stderr=subprocess.STDOUT, env=env, start_new_session=True)
        if self.on_launch:
            self.on_launch(job)

    def _mount(self, uri: str) -> Path:
        m = re.fullmatch(r"azureml://datastores/([^/]+)/paths/(.*)", uri or "")
        assert m, f"only datastore paths are mounted here: {uri}"
        return self.folder_of(m[1], m[2])

    def _upload_outputs(self, job: Job) -> None:
        """Upload mode: after the command, the output folder's files are copied to its datastore
        path (added or replaced, never deleted), as Azure ML's upload does."""
        for local, uri in job.outputs.values():
            if not uri:
                continue
            dest = self._mount(uri)
            for dirpath, _, files in os.walk(local):
                for fn in files:
                    src = Path(dirpath) / fn
                    to = dest / src.relative_to(local)
                    to.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, to)

    def _cancel(self, job: Job) -> None:
        with self._mutex:
            job.canceled = True
            job.status = "Canceled"
            if job.proc is not None and job.proc.poll() is None:
                os.killpg(job.proc.pid, signal.SIGKILL)
                job.proc.wait()

    def _code_of(self, code_id: str | None, name: str) -> Path | None:
        """The job's code folder, rebuilt from the blobs the SDK uploaded for its code asset."""
        if not code_id:
            return None
        props = self.assets[urlsplit(code_id).path if "://" in code_id else code_id]
        u = urlsplit(props["codeUri"])
        snap = self.blobs / u.hostname.split(".")[0] / unquote(u.path).lstrip("/")
        assert snap.is_dir(), f"the SDK uploaded no code to {props['codeUri']}"
        dest = self.root / "code" / name
        shutil.copytree(snap, dest)
        return dest

    # -- run history (the data plane jobs.stream reads logs through) ---------------------------
    def _dataplane(self, method, path, body):
        if path == "/discovery":
            return _json(200, {"api": f"https://{API_HOST}", "catalog": f"https://{API_HOST}",
                               "experimentation": f"https://{API_HOST}", "history": f"https://{API_HOST}"})
        m = re.search(r"/runs/([^/]+)/details$", path)
        if m and method == "GET":
            job = self.jobs.get(m[1])
            if job is None:
                return _not_found(path)
            logs = {}
            if job.log is not None and job.log.exists():
                logs["user_logs/std_log.txt"] = (f"https://{ACCOUNT}.blob.core.windows.net/azureml/ExperimentRun/"
                                                 f"dcid.{job.name}/user_logs/std_log.txt?sv=2026&sig=LOG-SAS")
            return _json(200, {"runId": job.name, "status": job.status, "logFiles": logs})
        return _not_found(path)

    # -- blob storage ------------------------------------------------------------------------------
    def _blob(self, method, account, u, headers, body):
        parts = unquote(u.path).lstrip("/").split("/", 1)
        container, name = parts[0], (parts[1] if len(parts) > 1 else "")
        q = parse_qs(u.query)
        m = re.fullmatch(r"ExperimentRun/dcid\.([^/]+)/user_logs/std_log\.txt", name)
        if container == "azureml" and m and method == "GET":
            job = self.jobs.get(m[1])
            return 200, {"Content-Type": "text/plain"}, job.log.read_bytes() if job and job.log else b""
        path = self.blobs / account / container / name
        if method == "PUT" and q.get("comp") == ["metadata"]:
            return 200, {"ETag": '"0x1"'}, b""
        if method == "PUT":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
            return 201, {"ETag": f'"0x{uuid.uuid4().hex[:8]}"', "Content-MD5": ""}, b""
        if method in ("HEAD", "GET") and q.get("restype") == ["container"]:
            return 200, {}, b""
        if method == "HEAD":
            if not path.is_file():
                return 404, {"x-ms-error-code": "BlobNotFound"}, b""
            return 200, {"Content-Length": str(path.stat().st_size), "ETag": '"0x1"', "x-ms-blob-type": "BlockBlob"}, b""
        if method == "GET":
            if not path.is_file():
                return 404, {"x-ms-error-code": "BlobNotFound"}, b""
            data = path.read_bytes()
            return 200, {"Content-Length": str(len(data)), "ETag": '"0x1"', "x-ms-blob-type": "BlockBlob"}, data
        return 400, {"x-ms-error-code": "UnsupportedHttpVerb"}, b""


def _json(status: int, body: dict) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(body).encode()


def _not_found(what: str) -> tuple[int, dict, bytes]:
    return _json(404, {"error": {"code": "ResourceNotFound", "message": f"{what} was not found"}})


class _Session(requests.Session):
    """What azure-core's RequestsTransport sends through: answered by :class:`Service`."""

    def __init__(self, service: Service):
        super().__init__()
        self.service = service

    def request(self, method, url, headers=None, data=None, files=None, **kwargs):
        if files:
            raise AssertionError("multipart requests are not part of this fake")
        body = data if data is not None else b""
        if hasattr(body, "read"):
            body = body.read()
        elif isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, (bytes, bytearray)):
            body = b"".join(c if isinstance(c, bytes) else c.encode() for c in body)
        status, hdrs, content = self.service.handle(method, url, dict(headers or {}), bytes(body))
        r = requests.Response()
        r.status_code = status
        r.raw = io.BytesIO(content)  # read (streamed or not) by requests as from a socket
        r.headers.update({"Content-Length": str(len(content)), "x-ms-request-id": uuid.uuid4().hex, **hdrs})
        r.url = url
        r.request = requests.Request(method, url).prepare()
        r.reason = "OK" if status < 400 else "Error"
        return r


class _Transport(RequestsTransport):
    """azure-core's own requests transport over :class:`_Session`; its ``sleep`` (what the retry
    policy calls between attempts, with Retry-After's value) is recorded, not slept."""

    def __init__(self, service: Service):
        super().__init__(session=_Session(service), session_owner=False)
        self.service = service

    def sleep(self, duration):
        self.service.sleeps.append(float(duration))
