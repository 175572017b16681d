"""The Azure ML executor: a node placed with ``executor: {azureml: {compute: ...}}`` runs as an
Azure ML command job that runs ``python -m olivepipe.run.runtime`` (olivepipe/run/runtime.py).

Where a job runs is where its placeholders are resolved, and an Azure ML job can read only the
store. So before submitting, every input is made reachable there (executors/staging.py: data
files and local model folders uploaded as content-addressed input entries, upstream results the
job's store lacks copied over). Then job.json (the job plus key, record, replace) is written next
to a copy of olivepipe's code (the job's code snapshot: the remote runs exactly the runtime that
planned it, whatever the environment holds), the command job built (olivepipe/azure/jobs.py) and
submitted. The job itself runs ``runtime.run_node``, the same node runtime as a local job, and
publishes its result under the step's key.

The thread per job, the polling loop, Ctrl-C (``close(kill=True)`` cancels every job this
executor submitted; a plain ``close`` leaves them to publish, so a later apply finds them) and
bringing a result into the scheduler's store are executors/remote.py's. What is Azure ML's own
is here: the environment, credential, compute and quota checks, submitting one command job (a
lost answer followed by its name), reading its status (phases, their bounds) and log, and
cancelling it.
"""
from __future__ import annotations

import collections
import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ...core.errors import OlivepipeError, StoreError
from ...core.job import Job
from ..runtime import is_folder_url, open_store_url
from .base import Check, RunContext, placement_options, shared_store_url
from .remote import Ended, RemoteExecutor, RemoteRun

#: Job statuses after which nothing more happens (azure.ai.ml's RunHistoryConstants.TERMINAL_STATUSES).
TERMINAL = ("Completed", "Failed", "Canceled", "NotResponding", "Paused")
#: Azure ML job statuses by the phase they belong to (JobStatus in azure.ai.ml.constants): the
#: environment image is built while Preparing, the job waits for nodes while Queued.
PHASES = {"NotStarted": "starting", "Starting": "starting", "Provisioning": "queued", "Preparing": "preparing image",
          "Queued": "queued", "Running": "running", "Finalizing": "finalizing", "CancelRequested": "cancelling"}
#: ``compute: serverless``: Azure ML picks the machines by ``instance_type``; there is no cluster.
SERVERLESS = "serverless"
#: How many of the job's last log lines a failed node's error carries.
TAIL_LINES = 20


@dataclass
class _AzureRun(RemoteRun):
    """One Azure ML job; ``handle`` is its name, chosen before submitting."""

    studio_url: str = ""
    code_dir: Path | None = None
    stream_failed: bool = False  # said once in the log, then quiet
    tail: Any = field(default_factory=lambda: collections.deque(maxlen=200))  # the job's last log lines
    phase: str = ""  # the phase the job is in (PHASES)
    phase_t0: float = field(default_factory=time.monotonic)
    phases: dict = field(default_factory=dict)  # phase -> seconds spent in it
    status: str | None = None  # the last status read
    last_ok: float = field(default_factory=time.monotonic)  # when a status read last worked
    processed: dict = field(default_factory=dict)  # log file -> lines already written
    seen_errors: set = field(default_factory=set)  # status-read errors already noted
    bounds: dict | None = None  # phase -> (option, seconds), read on the first poll
    environment: Any = None  # the Azure ML environment the key promised (prepare)

    @property
    def name(self) -> str:
        return self.handle or ""


class AzureMLExecutor(RemoteExecutor):
    """``client_factory``: builds the MLClient (default ``azure.ai.ml.MLClient``) from
    ``credential=``, ``subscription_id=``, ``resource_group_name=``, ``workspace_name=`` and
    azure/sdk.py's APPLY_CLIENT_KWARGS. ``credential``: default ``DefaultAzureCredential`` (no managed
    identity, no browser), probed with a time bound before the first submit. ``store_url``: the
    store jobs publish into (default: the configured remote cache, stores/config.py).
    ``open_store``: URL -> Store (default ``runtime.open_store_url``). ``client_kwargs``: more
    MLClient options over azure/sdk.py's APPLY_CLIENT_KWARGS (retries with back-off).
    Submitting, polling, Ctrl-C and bringing results in: executors/remote.py."""

    name = "azureml"

    @classmethod
    def for_workspace(cls, folder: Path | None) -> "AzureMLExecutor":
        """The executor a workflow in ``folder`` uses: its `.olivepipe/config.yaml` names the
        remote cache jobs publish into, and config.json is searched from there (as the register
        node does)."""
        return cls(workspace_dir=folder, start_dir=folder)

    def __init__(self, *, client_factory: Callable[..., Any] | None = None, credential: Any = None,
                 store_url: str | None = None, open_store: Callable[[str], Any] | None = None,
                 poll_s: float = 10.0, poll_grace_s: float = 600.0, submit_timeout_s: float = 900.0,
                 image: str | None = None, cuda_image: str | None = None, identity: Any = None,
                 env: Mapping[str, str] | None = None, start_dir: Path | None = None,
                 workspace_dir: Path | None = None, version: Callable[[str], str | None] | None = None,
                 client_kwargs: Mapping[str, Any] | None = None, jobs_run_here: bool = False):
        from ...azure import jobs as amljobs

        super().__init__(poll_s=poll_s)
        self.client_factory = client_factory
        self.client_kwargs = dict(client_kwargs or {})  # over APPLY_CLIENT_KWARGS (a test's transport=)
        # a stand-in for Azure ML that runs jobs on this machine (a test's): a folder store reaches them
        self.jobs_run_here = jobs_run_here or client_factory is not None
        self._credential = credential
        self.store_url = store_url
        self.open_store = open_store or open_store_url
        self.poll_grace_s = poll_grace_s  # status reads may fail this long before the node is given up
        self.submit_timeout_s = submit_timeout_s
        self.env = os.environ if env is None else env
        self.image = image or self.env.get("OLIVEPIPE_AZUREML_IMAGE") or amljobs.DEFAULT_IMAGE
        self.cuda_image = cuda_image or self.env.get("OLIVEPIPE_AZUREML_CUDA_IMAGE") or amljobs.DEFAULT_CUDA_IMAGE
        self.identity = identity  # the job's identity (None: the compute's, Azure ML's default)
        self.start_dir = start_dir  # where an Azure ML config.json is searched from (None: cwd)
        self.workspace_dir = workspace_dir  # whose .olivepipe/config.yaml names the remote cache
        if version is None:
            from ...core.versions import version
        self.version = version
        self._client = None
        self._where = ""  # subscription/resource group/workspace, for messages
        self._remote = None
        self._setup = threading.Lock()  # the client and the store, made once (a credential probe takes seconds)
        self._identities: dict = {}

    def __repr__(self) -> str:  # never the client or the credential
        return f"AzureMLExecutor(store={self.store_url!r})"

    # -- what it can run (plan: no network, no subprocess, no azure-ai-ml import) ----------
    def preflight(self, needs, device: str, placement: dict | None = None) -> Check:
        from ...azure.errors import RegistrationError
        from ...azure.jobs import environment_spec, named_environment
        from ...azure.sdk import EXTRA_HINT, sdk_installed
        from ...azure.workspace import resolve_workspace

        opts = placement_options(placement, "azureml")
        compute = str(opts.get("compute") or "").strip()
        want = [f"Azure ML compute {compute or '?'}"]
        missing = []
        if not compute:
            missing.append("an Azure ML compute (`executor: {azureml: {compute: <name>}}`)")
        elif compute == SERVERLESS and not opts.get("instance_type"):
            missing.append("an instance_type for serverless compute (e.g. `instance_type: Standard_NC24ads_A100_v4`)")
        sdk = sdk_installed()
        if not sdk:
            missing.append(f"azure-ai-ml, which is not installed here: {EXTRA_HINT}")
        try:
            resolve_workspace(None, self.env, start_dir=self.start_dir)
        except RegistrationError as e:
            missing.append(f"an Azure ML workspace ({e.message})")
        url, why = self._store_url()
        if url is None:
            missing.append(why)
        elif not self.jobs_run_here and is_folder_url(url):
            missing.append(f"a store the Azure ML job can reach ({url} is a folder on this machine; "
                           "set OLIVEPIPE_REMOTE_CACHE=azblob://<account>/<container>)")
        elif opts.get("datastore") and not url.startswith("azblob://"):
            missing.append(f"the shared cache on Azure Blob storage for `datastore: {opts['datastore']}` (not {url})")
        if device == "gpu" or needs.cuda:
            want.append("CUDA GPU (on the compute: not checked from here)")
        if opts.get("environment"):
            try:
                want.append(f"environment {named_environment(opts['environment'])}")
            except RegistrationError as e:
                missing.append(e.message)
        else:
            spec = environment_spec("gpu" if device == "gpu" or needs.cuda else "cpu", needs.packages,
                                    **self._spec_kw())
            missing += [f"package {p} (not installed here, so its version cannot be pinned into the generated "
                        "Azure ML environment; install it here or name one with `environment: name:version`)"
                        for p in spec.missing if sdk or not p.startswith("azure-")]  # else: the extra, said once
        want += list(needs.packages)
        return Check(not missing, tuple(want), tuple(missing), needs.note if missing else "")

    def environment(self, packages, placement: dict | None = None) -> dict:
        """``{"azureml-environment": name:version}`` for a named environment, else the generated
        environment's digest plus the pinned versions of the node's packages (so plan can say
        which one changed). A local result never has that field: local and remote never share a key."""
        from ...azure.errors import RegistrationError
        from ...azure.jobs import IDENTITY_FIELD, named_environment, recipe_identity

        named = placement_options(placement, "azureml").get("environment")
        if named:
            try:
                return {IDENTITY_FIELD: named_environment(named)}
            except RegistrationError:
                return {IDENTITY_FIELD: f"invalid {named}"}  # preflight blocks the node and says why
        extras = tuple(sorted(set(packages)))
        if extras not in self._identities:
            self._identities[extras] = recipe_identity(extras, **self._spec_kw())
        return {IDENTITY_FIELD: self._identities[extras], **{p: self.version(p) for p in extras}}

    def _spec_kw(self) -> dict:
        return {"version": self.version, "image": self.image, "cuda_image": self.cuda_image}

    def _store_url(self) -> tuple[str | None, str]:
        url, why, configured = shared_store_url(self.store_url, self.workspace_dir, self.env,
                                                "a remote cache for Azure ML jobs")
        if not configured:
            return None, ("a remote cache the Azure ML job can read and write "
                          "(set OLIVEPIPE_REMOTE_CACHE=azblob://<account>/<container>)")
        return url, why

    # -- what is Azure ML's own: checks, submitting one job, reading it, cancelling it -----------
    def new_run(self, job: Job, ctx: RunContext) -> _AzureRun:
        return _AzureRun(job, ctx)

    def describe(self, run: _AzureRun) -> str:
        return f"Azure ML job {run.name}"

    def error_text(self, e: OlivepipeError) -> str:
        from ...azure.errors import RegistrationError

        return str(e) if isinstance(e, RegistrationError) else e.message

    def error_line(self, e: BaseException) -> str:
        from ...azure.errors import short

        return short(e)

    def extra(self, run: _AzureRun) -> dict:
        return {"azureml_job": run.name, "studio_url": run.studio_url,
                "azureml_phases": {k: round(v, 3) for k, v in run.phases.items()}} if run.submitted else {}

    def cleanup(self, run: _AzureRun) -> None:
        if run.code_dir:
            shutil.rmtree(run.code_dir, ignore_errors=True)

    def prepare(self, run: _AzureRun) -> None:
        """Before anything is uploaded: the environment the key promised, the credential (probed,
        bounded) and the compute."""
        opts = placement_options(run.job.placement, "azureml")
        run.environment = self._environment_for(run.job, run.job.record, opts)
        self._check_compute(run, self._client_for(), opts)

    def job_store(self, run: _AzureRun):
        return self._store_url()[0], self._store()

    def submit(self, run: _AzureRun, job: Job) -> None:
        from ...azure import jobs as amljobs
        from ...azure.sdk import BoundExceeded

        ctx, client, opts = run.ctx, self._client, placement_options(job.placement, "azureml")
        run.code_dir = _code_dir(job.to_json())
        workflow = ctx.workflow or Path(ctx.log).parent.name
        name = f"olivepipe-{job.key[:12]}-{uuid.uuid4().hex[:8]}"
        cmd = amljobs.build_command_job(
            code_dir=run.code_dir, store_url=self._store_url()[0], compute=opts.get("compute"),
            environment=run.environment, step=job.step, key=job.key, name=name, workflow=workflow,
            kind=job.kind, instance_type=opts.get("instance_type"), timeout_s=job.timeout_s,
            environment_variables=_job_env(self.offline), identity=self.identity or opts.get("identity"),
            **self._datastore_binding(run, client, opts))
        if self._killed.is_set():  # Ctrl-C while the command was built: submit nothing
            raise OlivepipeError(f"interrupted before {job.step} was submitted to Azure ML")
        run.handle = name  # from here on Ctrl-C cancels it: the service may create it whatever we hear
        try:
            created = _sdk(lambda: client.jobs.create_or_update(cmd), self.submit_timeout_s, "submit")
        except BoundExceeded:
            self._cancel(run)  # it may have been created after all: do not leave it running unwatched
            raise OlivepipeError(f"submitting Azure ML job {name} took over {self.submit_timeout_s:g} s",
                                 "check network access to the workspace") from None
        except Exception as e:  # noqa: BLE001 - every SDK failure is one RegistrationError
            # the job's name was chosen here: if the service created it and only its answer was
            # lost (after azure-core's retries), the job exists under that name: follow it
            created = self._existing(client, name)
            if created is None:
                raise _submit_error(e, self._credential, self._where) from None
            self.note(run, f"the submit's answer was lost but job {name} exists: following it")
        run.handle = getattr(created, "name", None) or name
        run.studio_url = getattr(created, "studio_url", None) or ""
        self.note(run, f"submitted Azure ML job {run.name} to compute {opts.get('compute')}"
                       + (f": {run.studio_url}" if run.studio_url else ""))

    def poll(self, run: _AzureRun) -> Ended | None:
        """One status read: each phase change in the node's log with the time spent in the phase
        before it, the per-phase bounds (``prepare_timeout``, ``queue_timeout``) enforced by
        cancelling, and the job's log streamed."""
        from ...azure.errors import RegistrationError, short
        from ...azure.sdk import quiet_azure

        if run.bounds is None:
            run.bounds, run.last_ok = _phase_bounds(placement_options(run.job.placement, "azureml")), time.monotonic()
        try:
            with quiet_azure():
                now_status = self._client.jobs.get(run.name).status
            run.last_ok = time.monotonic()
        except Exception as e:  # noqa: BLE001 - a network blip must not fail a two-hour job
            if time.monotonic() - run.last_ok > self.poll_grace_s:
                raise RegistrationError(f"lost track of Azure ML job {run.name}: {short(e)}",
                                        "it may still run; see the Azure ML studio", kind="network") from None
            if short(e) not in run.seen_errors:
                run.seen_errors.add(short(e))
                self.note(run, f"could not read the status of {run.name} (will retry): {short(e)}")
            now_status = run.status
        # the SDK's JobStatus is a str enum whose str() is "JobStatus.COMPLETED": use its value
        now_status = str(getattr(now_status, "value", now_status) or "")
        if now_status != run.status:
            run.status = now_status
            self._phase(run, now_status)
        self._stream(run, final=False)
        if run.status in TERMINAL:
            self._stream(run, final=True)
            self._phase(run, "")
            return self._ended(run)
        over = _over_bound(run, run.bounds)
        if over:
            self._cancel(run)
            self._stream(run, final=True)
            self._phase(run, "")
            return Ended(False, over)
        return None

    def _ended(self, run: _AzureRun) -> Ended:
        status, why = run.status, _runtime_error(run)
        if status == "Completed":
            return Ended(True, why)  # its result is looked up in the store; ``why`` says it if it is not there
        error = why or f"Azure ML job {run.name} ended {status}"
        if status == "Canceled" and not why:
            limit = run.job.timeout_s
            error = f"Azure ML job {run.name} was canceled"
            if limit:
                error += f" (the workflow's timeout is {limit:g} s)"
        elif why:
            error += f" (Azure ML job {run.name} ended {status})"
        tail = list(run.tail)[-TAIL_LINES:]
        if tail:
            error += "\nlast lines of the job's log:\n" + "\n".join(f"  | {ln}" for ln in tail)
        return Ended(False, error)

    def cancel(self, run: _AzureRun) -> str:
        _sdk(lambda: self._client.jobs.begin_cancel(run.name), 30, "cancel")
        return f"asked Azure ML to cancel job {run.name}"

    def _datastore_binding(self, run: _AzureRun, client, opts: dict) -> dict:
        """With ``datastore:``, the job reaches the store as a datastore input and output (no token
        in the job). The datastore must be the store's container: checked read-only here."""
        from ...azure.errors import RegistrationError, translate
        from ...stores.config import parse_remote

        name = str(opts.get("datastore") or "")
        if not name:
            return {}
        url = self._store_url()[0] or ""
        if not url.startswith("azblob://"):
            raise RegistrationError(f"`datastore: {name}` needs the shared cache on Azure Blob storage, not {url}",
                                    "set OLIVEPIPE_REMOTE_CACHE=azblob://<account>/<container>", kind="config")
        account, container, prefix = parse_remote(url, "the job's store")
        try:
            ds = _sdk(lambda: client.datastores.get(name), 120, "datastore")
        except Exception as e:  # noqa: BLE001
            raise translate(e, credential=self._credential, where=self._where) from None
        got = (getattr(ds, "account_name", None), getattr(ds, "container_name", None))
        if got != (account, container):
            raise RegistrationError(f"Azure ML datastore {name!r} is {got[0]}/{got[1]}, not the shared cache's "
                                    f"{account}/{container}",
                                    f"register one over the cache: az ml datastore create --type azure_blob "
                                    f"--name {name} --account-name {account} --container-name {container}",
                                    kind="config")
        self.note(run, f"the job reaches the store through datastore {name} (no token in the job)")
        return {"datastore": name, "datastore_prefix": prefix}

    def _existing(self, client, name: str):
        try:
            return _sdk(lambda: client.jobs.get(name), 60, "get")
        except Exception:  # noqa: BLE001 - not there (or unreachable): the submit's own error stands
            return None

    def _check_compute(self, run: _AzureRun, client, opts: dict) -> None:
        """Before anything is submitted: the compute exists and can ever start a node (a cluster
        whose maximum node count is 0 queues a job forever). Read-only, at apply only; plan makes
        no call to Azure ML. ``compute: serverless`` has no compute to read."""
        from ...azure.errors import RegistrationError, short, translate

        name = str(opts.get("compute") or "")
        if name == SERVERLESS:
            self._check_quota(run, client, str(opts.get("instance_type") or ""))
            return
        try:
            compute = _sdk(lambda: client.compute.get(name), 120, "compute")
        except Exception as e:  # noqa: BLE001
            err = translate(e, credential=self._credential, where=self._where)
            if err.kind == "not_found":
                raise RegistrationError(f"Azure ML compute {name!r} does not exist in workspace {self._where}",
                                        "create it (e.g. `az ml compute create --type amlcompute ...`), or use "
                                        "`compute: serverless` with an `instance_type`", kind="config") from None
            self.note(run, f"could not read compute {name} (going on): {short(e)}")
            return
        size = getattr(compute, "size", None) or ""
        top = getattr(compute, "max_instances", None)
        self.note(run, f"compute {name}: {type(compute).__name__}" + (f" {size}" if size else "")
                        + (f", up to {top} nodes" if top is not None else ""))
        if top == 0:
            raise RegistrationError(f"Azure ML compute {name!r} can start no node (its maximum node count is 0): "
                                    "a job there would queue forever",
                                    "raise its maximum nodes (and the VM family's quota), or place the node "
                                    "elsewhere", kind="config")
        if size:
            self._check_quota(run, client, size)

    def _check_quota(self, run: _AzureRun, client, size: str) -> None:
        """The subscription's core quota for ``size``'s VM family in the workspace's region (two
        read-only calls; skipped, with a note, if they fail): a family whose quota cannot fit one
        node queues a job forever, so the node fails now; a family used up right now is noted."""
        from ...azure.errors import RegistrationError, short

        if not size:
            return

        def read():
            sizes = {str(v.name).lower(): v for v in client.compute.list_sizes()}
            vm = sizes.get(size.lower())
            if vm is None or not getattr(vm, "family", None):
                return None, None
            fam = str(vm.family).lower()
            for u in client.compute.list_usage():
                label = u.name.get("value") if isinstance(u.name, dict) else getattr(u.name, "value", None)
                if str(label or "").lower() == fam:
                    return vm, u
            return vm, None

        try:
            vm, usage = _sdk(read, 120, "quota")
        except Exception as e:  # noqa: BLE001 - quota is advice; the job is the judge
            self.note(run, f"could not read the quota for {size} (going on): {short(e)}")
            return
        if vm is None or usage is None or usage.limit is None:
            return
        # azure-ai-ml 1.35.2 fills these entities from the REST dict: camelCase keys (vCPUs,
        # currentValue) beside the documented snake_case attributes, which stay None
        need = int(_attr(vm, "v_cp_us", "vCPUs") or 0)
        limit, used = int(usage.limit), int(_attr(usage, "current_value", "currentValue") or 0)
        self.note(run, f"quota for {vm.family}: {used} of {limit} cores in use; one {size} node needs {need}")
        if need and limit < need:
            raise RegistrationError(f"the subscription's quota for {vm.family} is {limit} cores, less than one "
                                    f"{size} node ({need} cores): a job would queue forever",
                                    "request quota in the Azure ML studio (Quota), or use another VM size",
                                    kind="config")
        if need and limit - used < need:
            self.note(run, f"warning: {vm.family} quota is in use right now ({used} of {limit} cores): the job "
                            "will queue until cores are free")

    def _environment_for(self, job: Job, record: dict, opts: dict):
        """The environment the key promised: the named one, or the generated spec for the job's
        device, checked against the identity in the record (a package upgraded mid-apply fails)."""
        from ...azure import jobs as amljobs

        if opts.get("environment"):
            return amljobs.named_environment(opts["environment"])
        packages = dict(record.get("packages") or {})
        extras = [p for p in packages if p != amljobs.IDENTITY_FIELD]
        if self.environment(extras, job.placement) != packages:
            raise OlivepipeError(f"the Olive stack here changed since {job.step}'s key was computed",
                                 "run apply again: the plan pins the versions installed now")
        spec = amljobs.environment_spec(job.device, extras, **self._spec_kw())
        if spec.missing:
            raise OlivepipeError(f"cannot pin {', '.join(spec.missing)} into the Azure ML environment "
                                 "(not installed here)",
                                 "install them here, or name an environment with `environment: name:version`")
        return amljobs.build_environment(spec)

    def _phase(self, run: _AzureRun, status: str) -> None:
        """Record a status change in the node's log: the phase it starts and how long the one
        before it took. A terminal status ends the last phase; "" (the end) sums them up."""
        now = time.monotonic()
        phase = "" if not status or status in TERMINAL else PHASES.get(status, status.lower())
        if run.phase and phase != run.phase:
            run.phases[run.phase] = run.phases.get(run.phase, 0.0) + (now - run.phase_t0)
        if status:
            before = f" after {_human(now - run.phase_t0)} {run.phase}" if run.phase and phase != run.phase else ""
            self.note(run, f"Azure ML job {run.name}: " + (f"{phase} ({status})" if phase else status) + before)
        if phase != run.phase:
            run.phase, run.phase_t0 = phase, now
        if not status and run.phases:
            self.note(run, "time in each phase: " + ", ".join(f"{k} {_human(v)}" for k, v in run.phases.items()))

    def _stream(self, run: _AzureRun, *, final: bool) -> None:
        """New lines of the job's user logs into the node's log, read the way ``jobs.stream``
        reads them (run details' log files, fetched with the client's request pipeline). Only
        complete lines until the end, so a line is never written twice or cut."""
        from ...azure.errors import short
        from ...azure.sdk import quiet_azure

        try:
            from azure.ai.ml._utils.utils import download_text_from_url
            from azure.ai.ml.operations._job_ops_helper import _get_sorted_filtered_logs

            with quiet_azure():
                details = self._client.jobs._runs_operations.get_run_details(run.name)
                files = dict(getattr(details, "log_files", None) or {})
                processed = run.processed
                for name in _get_sorted_filtered_logs(files, "command", processed):
                    text = download_text_from_url(files[name], self._client.jobs._requests_pipeline, timeout=(5, 120))
                    lines = text.splitlines()
                    if not final and text and not text.endswith("\n"):
                        lines = lines[:-1]
                    done = processed.get(name, 0)
                    if len(lines) > done:
                        self.write(run, "".join(f"{ln}\n" for ln in lines[done:]))
                        run.tail.extend(lines[done:])
                        processed[name] = len(lines)
        except Exception as e:  # noqa: BLE001 - logs are a convenience; the job goes on
            if not run.stream_failed:
                run.stream_failed = True
                self.note(run, f"cannot stream the job's log: {short(e)} (see the Azure ML studio)")

    def _client_for(self):
        with self._setup:
            if self._client is None:
                from ...azure.credentials import DEFAULT_CREDENTIAL_TIMEOUT_S, default_credential, probe
                from ...azure.sdk import APPLY_CLIENT_KWARGS, import_ml
                from ...azure.workspace import resolve_workspace

                sub, rg, ws, _ = resolve_workspace(None, self.env, start_dir=self.start_dir)
                self._where = f"{sub}/{rg}/{ws}"
                cred = self._credential
                if cred is None:  # ours: checked (bounded) before anything is uploaded
                    cred = default_credential()
                    err, _name = probe(cred, DEFAULT_CREDENTIAL_TIMEOUT_S)
                    if err is not None:
                        raise err
                    self._credential = cred
                factory = self.client_factory or import_ml().MLClient
                self._client = factory(credential=cred, subscription_id=sub, resource_group_name=rg,
                                       workspace_name=ws, **{**APPLY_CLIENT_KWARGS, **self.client_kwargs})
            return self._client

    def _store(self):
        with self._setup:
            if self._remote is None:
                url, why = self._store_url()
                if url is None:
                    raise StoreError(f"no store for Azure ML jobs: {why}")
                self._remote = self.open_store(url)
            return self._remote

    # -- the node's log -----------------------------------------------------------------------
    def write(self, run: _AzureRun, text: str) -> None:
        from ...azure.redact import redact

        super().write(run, redact(text))


def _sdk(call: Callable[[], Any], timeout_s: float, what: str):
    """One Azure ML call: bounded in time (a thread named after ``what``), its SDK log noise kept
    off the terminal."""
    from ...azure.sdk import quiet_azure, run_bounded

    with quiet_azure():
        return run_bounded(call, timeout_s, f"olivepipe-azureml-{what}")


def _attr(obj, *names):
    """The first of ``names`` that ``obj`` has set (not None)."""
    return next((v for v in (getattr(obj, n, None) for n in names) if v is not None), None)


def _phase_bounds(opts: dict) -> dict:
    """{phase: seconds} from the placement's ``prepare_timeout`` and ``queue_timeout``."""
    from ...spec.workflow import parse_duration

    out = {}
    for opt, phase in (("prepare_timeout", "preparing image"), ("queue_timeout", "queued")):
        if opts.get(opt) is not None:
            out[phase] = (opt, parse_duration(opts[opt]))
    return out


def _over_bound(run: _AzureRun, bounds: dict) -> str:
    """Why the job must be stopped now ("" if it may go on): its phase outlived its bound."""
    if run.phase not in bounds:
        return ""
    opt, limit = bounds[run.phase]
    spent = time.monotonic() - run.phase_t0
    if spent <= limit:
        return ""
    why = {"queued": "the compute may have no quota for its VM size, be at its maximum node count, or be busy; "
                     "check its quota and nodes in the Azure ML studio",
           "preparing image": "the environment image is still building; a first build of the generated "
                              "environment takes 10-30 minutes, later jobs reuse it"}[run.phase]
    return (f"Azure ML job {run.name} was {run.phase} for {_human(spent)}, over {opt} ({_human(limit)}): "
            f"canceled. {why}")


def _human(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


def _runtime_error(run: _AzureRun) -> str:
    """The error the node runtime printed last in the job's log ("" if none)."""
    rx = re.compile(rf"^olivepipe\.runtime: {re.escape(run.job.step)}: failed: (.*?)(?: in [0-9.e+-]+ s)?$")
    for line in reversed(run.tail):
        m = rx.match(line.strip())
        if m:
            return m[1]
    return ""


def _submit_error(exc: BaseException, credential, where: str):
    """The submit's failure, with a hint where the SDK's message needs one: a 403 on the code
    upload means the identity has no data-plane role on the workspace's storage account."""
    from ...azure.errors import RegistrationError, translate

    err = translate(exc, credential=credential, where=where)
    text = str(exc)
    if ("AuthorizationPermissionMismatch" in text or "AuthorizationFailure" in text
            or (err.kind == "permission" and "blob" in text.lower())):
        return RegistrationError(f"uploading the job's code to the workspace's storage was refused: {err.message}",
                                 "your identity needs 'Storage Blob Data Contributor' on the workspace's storage "
                                 "account (or the workspace's 'AzureML Data Scientist' role with credential-based "
                                 "datastore access): docs/azureml.md, Roles", kind="permission")
    return err


def _job_env(offline: bool) -> dict:
    """Environment variables for the job: what local workers get (no telemetry, no hub when
    offline), never anything from this machine's environment (it may hold secrets)."""
    from ...olive.runtime import worker_env

    return {**worker_env({}, offline=offline), "OLIVEPIPE_AZUREML_JOB": "1"}


def _code_dir(doc: dict) -> Path:
    """job.json next to a copy of the olivepipe package: Azure ML uploads this folder as the job's
    code and runs the command in it, so ``python -m olivepipe.run.runtime`` is this very olivepipe."""
    import olivepipe

    d = Path(tempfile.mkdtemp(prefix="olivepipe-aml-"))
    try:
        (d / "job.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        shutil.copytree(Path(olivepipe.__file__).parent, d / "olivepipe",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise
    return d


__all__ = ["AzureMLExecutor", "TERMINAL"]
