"""The Ray executor: a node placed with ``executor: {ray: {address: ...}}`` runs as a Ray task
that runs olivepipe's node runtime (``runtime.run_node``, the one local workers and Azure ML jobs run) on whichever
cluster node Ray picks, and publishes its result into the job's store under the step's key.

Why tasks, not the Jobs API: a task needs only Ray core (the Jobs API needs ``ray[default]``,
its dashboard server and an HTTP port on the head); it gets Ray's own placement (``num_cpus``,
``num_gpus``, ``memory``: Ray sets CUDA_VISIBLE_DEVICES for the GPUs it grants), a
caller-held handle to wait on and ``ray.cancel`` to kill it; and olivepipe's code travels with
the connection as a ``py_modules`` runtime environment, so every node runs exactly the runtime
that planned it, whatever olivepipe the cluster has installed. docs/remote.md argues it.

The job's store: the shared cache (``OLIVEPIPE_REMOTE_CACHE``) when one is configured (then
nodes on other machines read their inputs and publish there, and this machine pulls the result
into its cache); otherwise this workspace's cache folder, which only a cluster on this machine
can reach (preflight refuses a non-loopback address without a shared cache).

Environment identity: the key holds the versions of the packages that shape the node's result,
read here (as for a local node: the same inputs with the same versions are the same result,
wherever it ran). The task compares them with the versions where it runs before doing anything
and refuses, naming each difference, when they differ: a key never claims versions that did not
make the result. Plan and preflight make no connection to the cluster and import no Ray.

``close(kill=True)`` (Ctrl-C) force-cancels every running task: Ray kills the worker processes.
The thread per task, the polling, Ctrl-C and bringing a result in are executors/remote.py's.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from ...core.errors import OlivepipeError, StoreError
from ...core.job import Job
from ..runtime import is_folder_url, open_store_url
from .base import Check, RunContext, placement_options, shared_store_url
from .remote import Ended, RemoteExecutor, RemoteRun, first_line as _first_line

LOOPBACK = ("127.0.0.1", "localhost", "::1")
LOG_TAIL_BYTES = 4 << 20  # a node's log comes back with its result; a runaway one is cut to its end
_CONNECT = threading.Lock()  # one Ray connection per process (ray.init is process-wide)


def address_of(placement: dict | None, env: Mapping[str, str]) -> str:
    """The cluster's address: the placement's, else RAY_ADDRESS ("" when neither)."""
    return str(placement_options(placement, "ray").get("address") or env.get("RAY_ADDRESS") or "").strip()


def is_loopback(address: str) -> bool:
    """Whether a cluster address names this machine's loopback ("auto" does not: it may be any head)."""
    a = address.strip()
    if a.startswith("[") and "]" in a:
        host = a[1:a.index("]")]
    else:
        host = a.split(":")[0] if a.count(":") == 1 else a
    return host in LOOPBACK or host.startswith("127.")


def resources(placement: dict | None, device: str, cuda: bool) -> dict:
    """What the task asks Ray for: CPUs (default 1), GPUs (a GPU node: default one whole GPU; a
    fraction packs nodes on one GPU), memory (host RAM, so Ray does not start a node where it
    would not fit)."""
    opts = placement_options(placement, "ray")
    gpus = opts.get("num_gpus")
    if gpus is None:
        gpus = 1 if device == "gpu" or cuda else 0
    out = {"num_cpus": float(opts.get("num_cpus", 1)), "num_gpus": float(gpus)}
    if opts.get("memory_gb"):
        out["memory"] = int(float(opts["memory_gb"]) * 2**30)
    return out


@dataclass
class _RayRun(RemoteRun):
    url: str = ""  # the store the task publishes into


class RayExecutor(RemoteExecutor):
    """``store_url``: the store tasks publish into (default: the configured shared cache, else the
    workspace's cache folder). ``env``: where RAY_ADDRESS and the remote cache settings are read
    (default os.environ). ``version``: package -> version here (default core.versions.version).
    Submitting, polling, Ctrl-C and bringing results in: executors/remote.py."""

    name = "ray"

    @classmethod
    def for_workspace(cls, folder: Path | None) -> "RayExecutor":
        """The executor a workflow in ``folder`` uses: its `.olivepipe/config.yaml` may name the shared cache."""
        return cls(workspace_dir=folder)

    def __init__(self, *, store_url: str | None = None, workspace_dir: Path | None = None,
                 env: Mapping[str, str] | None = None, version: Callable[[str], str | None] | None = None,
                 poll_s: float = 0.5):
        super().__init__(poll_s=poll_s)
        self.store_url = store_url
        self.workspace_dir = workspace_dir
        self.env = os.environ if env is None else env
        if version is None:
            from ...core.versions import version
        self.version = version
        self.address = ""  # the cluster this executor is connected to
        self._remote = None
        self._remote_url = ""
        self._tasks = None  # (cpu task, gpu task): the remote functions, made on connect

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r})"

    # -- what it can run (plan: no network, no subprocess, no Ray import) ----------------------
    def preflight(self, needs, device: str, placement: dict | None = None) -> Check:
        address = address_of(placement, self.env)
        want = [f"Ray cluster {address or '?'}"]
        missing = []
        if importlib.util.find_spec("ray") is None:
            missing.append("package ray (not installed here; pip install 'olivepipe[ray]')")
        if not address:
            missing.append("a Ray cluster address (`executor: {ray: {address: <host>:<port>}}` or RAY_ADDRESS)")
        elif "://" in address:
            missing.append(f"a Ray cluster's GCS address <host>:<port> ({address} is a Ray Client or dashboard "
                           "address; olivepipe connects as a driver, on the head node or inside the cluster's network)")
        url, why = self._store_url(None)
        if url is None:
            missing.append(why)
        elif address and is_folder_url(url) and not is_loopback(address):
            missing.append(f"a shared store the Ray cluster's machines can reach ({address} is not this machine "
                           "and the cache is a folder here; set OLIVEPIPE_REMOTE_CACHE=azblob://<account>/<container>)")
        if device == "gpu" or needs.cuda:
            want.append(f"{resources(placement, device, True)['num_gpus']:g} GPU (Ray places it)")
        missing += [f"package {p} (not installed here, so its version cannot go into the key and be checked "
                    "on the cluster)" for p in needs.packages if self.version(p) is None]
        want += list(needs.packages)
        return Check(not missing, tuple(want), tuple(missing), needs.note if missing else "")

    def where(self, placement: dict | None = None) -> str:
        """The cluster's address (RAY_ADDRESS when the workflow names none)."""
        return f"ray:{address_of(placement, self.env) or '?'}"

    def environment(self, packages, placement: dict | None = None) -> dict:
        """The versions of the node's packages here: the task refuses to run where they differ."""
        return {p: self.version(p) for p in sorted(set(packages))}

    def _store_url(self, ctx: RunContext | None) -> tuple[str | None, str]:
        """The store tasks read and publish: the shared cache, else the workspace's cache folder."""
        url, why, configured = shared_store_url(self.store_url, self.workspace_dir, self.env, "a store for Ray tasks")
        if configured:
            return url, why
        if ctx is None:
            return "file://", ""  # the cache folder, known once a job starts
        return os.path.abspath(ctx.store.root), ""

    # -- what is Ray's own: connecting, submitting one task, reading it, cancelling it ------------
    def new_run(self, job: Job, ctx: RunContext) -> _RayRun:
        return _RayRun(job, ctx)

    def connect(self, run: _RayRun) -> None:
        """In the scheduler's (main) thread: ray.init installs signal handlers."""
        address = address_of(run.job.placement, self.env)
        with _CONNECT:
            if self.address:
                if address != self.address:
                    raise OlivepipeError(f"this apply is connected to the Ray cluster {self.address}; one apply "
                                         f"drives one Ray cluster, not also {address}",
                                         "place the workflow's Ray nodes on one cluster")
                return
            if not address:
                raise OlivepipeError("no Ray cluster address", "set `executor: {ray: {address: <host>:<port>}}` "
                                     "or RAY_ADDRESS")
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            if is_loopback(address):
                # Ray turns a loopback address into this machine's outward IP unless it believes it
                # runs where clusters are single-machine: keep a local cluster's traffic on loopback
                os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
            try:
                import ray
            except ImportError:
                raise OlivepipeError("package ray is not installed here", "pip install 'olivepipe[ray]'") from None
            import olivepipe

            env_vars = _task_env(self.offline, self.env)
            runtime_env = {"py_modules": [str(Path(olivepipe.__file__).parent)], "env_vars": env_vars,
                           "excludes": ["__pycache__", "*.pyc"]}
            term = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
            try:
                ray.init(address=address, runtime_env=runtime_env, namespace="olivepipe", log_to_driver=False,
                         logging_level="ERROR", include_dashboard=False)
            except Exception as e:  # noqa: BLE001 - a cluster that is not there is the user's to fix
                raise OlivepipeError(f"cannot connect to the Ray cluster at {address}: {type(e).__name__}: "
                                     f"{_first_line(e)}", "is the cluster up (`ray status --address ...`)? "
                                     "With token authentication, set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH") from None
            finally:
                if term is not None:  # ray.init installs its own SIGTERM handler; olivepipe's stays
                    signal.signal(signal.SIGTERM, term)
            self._tasks = (ray.remote(max_retries=0)(run_task), ray.remote(max_retries=0, max_calls=1)(run_task))
            self.address = address

    def disconnect(self) -> None:
        if self.address:
            import ray

            ray.shutdown()  # the driver leaves; Ray ends whatever of its tasks still runs
            self.address = ""

    def job_store(self, run: _RayRun):
        url, why = self._store_url(run.ctx)
        if url is None:
            raise StoreError(f"no store for Ray tasks: {why}")
        run.url = url
        with self._mutex:
            if self._remote is None or self._remote_url != url:
                self._remote, self._remote_url = (run.ctx.store if is_folder_url(url) else open_store_url(url)), url
            return url, self._remote

    def submit(self, run: _RayRun, job: Job) -> None:
        res = resources(job.placement, job.device, job.device == "gpu")
        task = self._tasks[1] if res["num_gpus"] > 0 else self._tasks[0]  # a GPU worker exits after its node
        with self._mutex:
            run.handle = task.options(name=f"olivepipe:{job.step}", **res).remote(job.to_json(), run.url)
        self.note(run, f"submitted to the Ray cluster at {self.address} as task {run.handle.task_id().hex()} "
                       f"({', '.join(f'{k} {v:g}' for k, v in res.items())})")

    def poll(self, run: _RayRun) -> Ended | None:
        import ray

        ready, _ = ray.wait([run.handle], timeout=0)
        if not ready:
            return None
        try:
            out = ray.get(run.handle)
        except Exception as e:  # noqa: BLE001 - cancelled, worker died, node lost: the node fails
            name = type(e).__name__
            return Ended(False, "the Ray task was cancelled" if "Cancel" in name else f"{name}: {_first_line(e)}")
        self.write(run, out.get("log", ""))
        where = out.get("where", {})
        self.note(run, f"ran on Ray node {where.get('node_id', '?')} ({where.get('ip', '?')}), pid "
                       f"{where.get('pid', '?')}, GPUs {','.join(where.get('gpu_ids') or []) or 'none'}, from "
                       f"{where.get('started', 0):.3f} to {where.get('ended', 0):.3f}")
        if "cuda" in where:
            self.note(run, f"CUDA: {json.dumps({k: where[k] for k in ('cuda', 'gpu_name', 'gpu_peak_mib') if k in where})}")
        result = out.get("result") or {}
        extra = {"ray_task": run.handle.task_id().hex(), "ray": where}
        if not result.get("ok"):
            return Ended(False, result.get("error") or "failed", extra=extra)
        return Ended(True, digest=result.get("digest"), extra=extra)

    def cancel(self, run: _RayRun) -> str:
        import ray

        ray.cancel(run.handle, force=True)  # force: Ray kills the worker process, and the node's work with it
        return f"cancelled {self.describe(run)}"

    def describe(self, run: _RayRun) -> str:
        return f"Ray task {run.handle.task_id().hex()}" if run.handle is not None else f"Ray task for {run.job.step}"


def _task_env(offline: bool, env: Mapping[str, str]) -> dict:
    """Environment variables for the tasks: what local workers get (no telemetry, no hub when
    offline), plus the network audit when one is on; never anything else from this machine's
    environment (it may hold secrets: the cluster authenticates to the shared cache itself)."""
    from ...olive.runtime import worker_env

    out = {**worker_env({}, offline=offline), "RAY_USAGE_STATS_ENABLED": "0", "OLIVEPIPE_RAY_TASK": "1"}
    if env.get("OLIVEPIPE_NETWORK_AUDIT"):
        out["OLIVEPIPE_NETWORK_AUDIT"] = env["OLIVEPIPE_NETWORK_AUDIT"]
    return out


def version_mismatch(record: dict | None, version: Callable[[str], str | None]) -> list[str]:
    """Packages whose version here differs from the one in the key's record."""
    wanted = (record or {}).get("packages") or {}
    out = []
    for name, want in sorted(wanted.items()):
        have = version(name)
        if have != want:
            out.append(f"{name} {have or 'not installed'} (the key says {want or 'not installed'})")
    return out


# -- the task: runs on a cluster node ---------------------------------------------------------------
def run_task(doc: dict, store_url: str) -> dict:
    """One node, in a Ray worker: the environment check, then the node runtime against the job's
    store. Returns {"result": the runtime's RESULT, "log": the node's log, "where": node, GPUs, times}."""
    import tempfile

    import ray

    from ...core.versions import version
    from ..runtime import _tee, run_node

    ctx = ray.get_runtime_context()
    job = Job.from_json(doc)
    where = {"node_id": ctx.get_node_id(), "ip": ray.util.get_node_ip_address(), "host": socket.gethostname(),
             "pid": os.getpid(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "started": time.time()}
    work = Path(tempfile.mkdtemp(prefix="olivepipe-ray-"))
    log = work / "node.log"
    try:
        with _tee(log):
            print(f"olivepipe.runtime: {job.step} (key {job.key[:12]}) on Ray node "
                  f"{where['node_id'][:12]} ({where['ip']})", flush=True)
            differ = version_mismatch(job.record, version)
            if differ:
                result = {"ok": False, "error": f"Ray node {where['ip']} ({where['node_id'][:12]}) has other package "
                                                f"versions than the key: {'; '.join(differ)}. Nothing was run: install "
                                                "the same versions on the cluster (e.g. one image for apply and the "
                                                "cluster, or a Ray runtime environment that pins them)"}
                print(f"olivepipe.runtime: {result['error']}", flush=True)
            else:
                try:
                    store = open_store_url(store_url)
                except OlivepipeError as e:
                    result = {"ok": False, "error": e.message}
                else:
                    result = run_node(job, store, log=log).to_json()
                print(f"olivepipe.runtime: {job.step}: "
                      f"{'ok' if result['ok'] else 'failed: ' + result['error']}", flush=True)
        if where["gpu_ids"]:
            where.update(_cuda_used())
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_TAIL_BYTES))
            text = f.read().decode("utf-8", "replace")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    where["ended"] = time.time()
    return {"result": result, "log": text, "where": where}


def _cuda_used() -> dict:
    """What the GPU task's node did on CUDA, for its log: the device torch saw and its peak memory."""
    try:
        import torch

        if not torch.cuda.is_available():
            return {"cuda": False}
        return {"cuda": True, "gpu_name": torch.cuda.get_device_name(0),
                "gpu_peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)}
    except Exception as e:  # noqa: BLE001 - a report, never a failure
        return {"cuda": f"unknown ({type(e).__name__})"}


__all__ = ["RayExecutor", "resources", "address_of", "is_loopback", "run_task", "version_mismatch"]
