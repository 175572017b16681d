"""Several executors behind one: each node runs where its `executor:` says.

The scheduler talks to one executor; the router hands each call to the executor of the
node's placement (None: this machine; {"azureml": {...}}: an Azure ML compute target;
{"ray": {...}}: a Ray cluster) and waits on all of them at once: each executor it opens is
given a ``wake`` it calls when a job finishes, so the wait sleeps until then."""
from __future__ import annotations

import importlib
import threading
import time
from functools import partial
from pathlib import Path

from .base import Capabilities, Check, placement_key


# the remote executors a node's `executor:` may name: module (in this package) and class, built
# from the workflow's folder when a step first asks (their SDKs load only then)
REMOTE = {"azureml": ("azureml", "AzureMLExecutor"), "ray": ("raycluster", "RayExecutor")}
WAKE_BOUND_S = 5.0


class Router:
    name = "router"

    def __init__(self, local, remote_factories: dict | None = None):
        self.local = local
        self.factories = dict(remote_factories or {})
        self.remotes: dict[str, object] = {}
        self.active: dict[str, object] = {}  # step -> executor running it
        self.opened: dict | None = None  # open()'s arguments, for executors opened at their first job
        self.ready: list = []  # the executors opened
        self._finished = threading.Event()  # set by any executor's wake: a job finished somewhere
        self._wake = None  # the caller's own wake, passed on

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

    def environment(self, packages, placement: dict | None = None) -> dict:
        ex = self.executor_for(placement)
        if ex is None:
            return {"executor": placement_key(placement)}
        return ex.environment(packages, placement)

    def where(self, placement: dict | None = None) -> str:
        ex = self.executor_for(placement)
        return ex.where(placement) if ex is not None else placement_key(placement)

    def capabilities(self, placement: dict | None = None) -> Capabilities:
        ex = self.executor_for(placement)
        return ex.capabilities(placement) if ex is not None else Capabilities()

    def gpus(self) -> list:
        return self.local.gpus()

    def open(self, *, slots: int, offline: bool, log_dir, wake=None) -> None:
        self._wake = wake
        self.opened = dict(slots=slots, offline=offline, log_dir=log_dir, wake=self._woken)
        self.local.open(**self.opened)
        self.ready = [self.local]

    def _woken(self) -> None:
        self._finished.set()
        if self._wake is not None:
            self._wake()

    def start(self, job, ctx) -> None:
        ex = self.executor_for(job.placement)
        if not any(ex is r for r in self.ready):  # a remote executor opens when its first job starts
            ex.open(**self.opened)
            self.ready.append(ex)
        self.active[job.step] = ex
        ex.start(job, ctx)

    def wait(self, timeout: float | None = None) -> list:
        running = {id(ex): ex for ex in self.active.values()}
        if not running:
            return []
        if len(running) == 1:  # the common case: block on the one executor with work
            (ex,) = running.values()
            return self._done(ex.wait(timeout) if timeout is not None else ex.wait())
        # several: sleep until one of them says a job finished (each calls _woken), then take it;
        # cleared before looking, so a job that finishes while we look still wakes the sleep
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._finished.clear()
            for ex in running.values():
                got = ex.wait(0)
                if got:
                    return self._done(got)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return []
            # bounded: an executor that never calls wake costs a few seconds per job, never a hang
            self._finished.wait(WAKE_BOUND_S if left is None else min(left, WAKE_BOUND_S))

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
    """The local executor, and the remote ones (``REMOTE``) a workflow in ``folder`` may place
    steps on, each built when a step first asks for it: its `.olivepipe/config.yaml` names the
    shared cache remote jobs publish into, and Azure ML's config.json is searched from there."""
    from .local import LocalExecutor

    return Router(LocalExecutor(), {kind: partial(_remote, kind, folder) for kind in REMOTE})


def _remote(kind: str, folder: Path | None):
    """The executor of ``kind``, or None when its module cannot load here (Azure ML's needs the
    `azure` extra; Ray's loads without Ray, and its preflight says when ray is missing)."""
    module, name = REMOTE[kind]
    try:
        cls = getattr(importlib.import_module(f"{__package__}.{module}"), name)
    except ImportError:
        return None
    return cls.for_workspace(folder)
