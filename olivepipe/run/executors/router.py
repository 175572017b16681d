"""Several executors behind one: each node runs where its `executor:` says.

The scheduler talks to one executor; the router hands each call to the executor of the
node's placement (None: this machine; {"azureml": {...}}: an Azure ML compute target;
{"ray": {...}}: a Ray cluster)
and waits on all of them at once."""
from __future__ import annotations

import os
import time
from pathlib import Path

from .base import Capabilities, Check


def placement_key(placement: dict | None) -> str:
    """A short, stable name for a placement: 'local' or 'azureml:gpu-cluster'."""
    if not placement:
        return "local"
    (kind, opts), = placement.items()
    if kind == "ray":  # the cluster's address (RAY_ADDRESS when the workflow names none)
        from .raycluster import address_of

        return f"ray:{address_of(placement, os.environ) or '?'}"
    return f"{kind}:{opts.get('compute', '')}" if isinstance(opts, dict) else kind


class Router:
    name = "router"

    def __init__(self, local, remote_factories: dict | None = None):
        self.local = local
        self.factories = dict(remote_factories or {})
        self.remotes: dict[str, object] = {}
        self.active: dict[str, object] = {}  # step -> executor running it
        self.opened: dict | None = None  # open()'s arguments, for executors opened at their first job
        self.ready: list = []  # the executors opened

    def executor_for(self, placement: dict | None):
        """The executor for a placement, or None when none can serve it here."""
        if not placement:
            return self.local
        (kind, opts), = placement.items()
        if kind not in self.remotes:
            factory = self.factories.get(kind)
            self.remotes[kind] = factory() if factory else None
        return self.remotes[kind]

    # -- the executor protocol, by placement -------------------------------------------
    def preflight(self, needs, device: str, placement: dict | None = None) -> Check:
        ex = self.executor_for(placement)
        if ex is None:
            return Check(False, (placement_key(placement),), (f"an executor for {placement_key(placement)} "
                                                              "(none is configured here)",))
        return ex.preflight(needs, device, placement)

    def can_run(self, needs, device: str, placement: dict | None = None) -> bool:
        return self.preflight(needs, device, placement).ok

    def environment(self, packages, placement: dict | None = None) -> dict:
        ex = self.executor_for(placement)
        if ex is None:
            return {"executor": placement_key(placement)}
        return ex.environment(packages, placement)

    def capabilities(self, placement: dict | None = None) -> Capabilities:
        ex = self.executor_for(placement)
        return ex.capabilities(placement) if ex is not None else Capabilities()

    def gpus(self) -> list:
        return self.local.gpus()

    def open(self, *, slots: int, offline: bool, log_dir) -> None:
        self.opened = dict(slots=slots, offline=offline, log_dir=log_dir)
        self.local.open(**self.opened)
        self.ready = [self.local]

    def start(self, job, ctx) -> None:
        ex = self.executor_for(job.placement)
        if not any(ex is r for r in self.ready):  # a remote executor opens when its first job starts
            ex.open(**self.opened)
            self.ready.append(ex)
        self.active[job.step] = ex
        ex.start(job, ctx)

    def wait(self, timeout: float | None = None) -> list:
        running = {id(ex): ex for ex in self.active.values()}
        if len(running) == 1:  # the common case: block on the one executor with work
            (ex,) = running.values()
            return self._done(ex.wait(timeout) if timeout is not None else ex.wait())
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for ex in running.values():
                got = ex.wait(0.2)
                if got:
                    return self._done(got)
            if deadline is not None and time.monotonic() >= deadline:
                return []

    def _done(self, results: list) -> list:
        for r in results:
            self.active.pop(r.step, None)
        return results

    def close(self, *, kill: bool = False) -> None:
        self.local.close(kill=kill)
        for ex in self.remotes.values():
            if ex is not None:
                ex.close(kill=kill)


def default_router(folder: Path | None = None) -> Router:
    """The local executor, and the remote ones a workflow in ``folder`` may place steps on, each
    built when a step first asks for it."""
    from .local import LocalExecutor

    return Router(LocalExecutor(), {"azureml": lambda: _azureml_executor(folder),
                                    "ray": lambda: _ray_executor(folder)})


def _azureml_executor(folder: Path | None = None):
    """The Azure ML executor, when its module and azure-ai-ml are installed (the `azure` extra).
    ``folder``: the workflow's folder: its `.olivepipe/config.yaml` names the remote cache jobs
    publish into, and an Azure ML config.json is searched from there (as the register node does)."""
    try:
        from .azureml import AzureMLExecutor
    except ImportError:
        return None
    return AzureMLExecutor(workspace_dir=folder, start_dir=folder)


def _ray_executor(folder: Path | None = None):
    """The Ray executor (its module needs no Ray; preflight says when ray is not installed).
    ``folder``: the workflow's folder, whose `.olivepipe/config.yaml` may name the shared cache."""
    from .raycluster import RayExecutor

    return RayExecutor(workspace_dir=folder)
