"""The executor seam: where a job runs.

An executor says what it can run (``preflight``), what environment identity goes into
keys (``environment``), what it can do (``capabilities``, as data), and starts and waits for
typed jobs. The ready set, failure policy, GPU slots, events and lock writes are the shared
scheduler's (olivepipe/flow/scheduler.py); running a job and publishing its result is the node
runtime's (run/runtime.run_node), wherever the job runs; the running half of an executor whose jobs
run elsewhere is executors/remote.py.
"""
from __future__ import annotations

import os
import queue
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from ...core.job import Job


@dataclass(frozen=True)
class Check:
    """Whether a node's needs are met where it would run."""

    ok: bool
    needs: tuple[str, ...]  # human-readable needs, e.g. "CUDA GPU", "autoawq"
    missing: tuple[str, ...]
    note: str = ""

    @property
    def message(self) -> str:
        if self.ok:
            return ""
        return "needs " + ", ".join(self.missing) + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class Capabilities:
    """What an executor can do, as data: the scheduler reads these instead of asking where a
    node runs."""

    local_gpus: bool = False  # its jobs run on this machine's GPUs (the scheduler pins one per GPU job)
    uploads_inputs: bool = False  # local data files and model folders are uploaded to the job's store first
    publishes_results: bool = False  # its jobs publish into a store of their own; the executor brings a
    # result into the scheduler's store before it reports the job ok (executors/remote.py)


@dataclass
class RunContext:
    """What the scheduler hands an executor with each job (never part of the job itself)."""

    store: object  # stores.base.Store: inputs are fetched from it, outputs staged in it
    root: Path  # workspace root: data and local model refs are relative to it
    log: Path  # the step's log file
    stats: object = None  # hashing.StatCache: local inputs are re-checked without re-reading
    gpu: str = ""  # the GPU the job is pinned to ("" for a CPU job)
    workflow: str = ""  # the workflow's name (e.g. the Azure ML experiment)


@dataclass
class JobResult:
    """A finished job. When ``ok``, its result is in the scheduler's store under the job's key:
    every executor publishes through runtime.run_node (or copies a remote result in)."""

    step: str
    ok: bool
    error: str = ""
    seconds: float = 0.0
    model: dict | None = None  # the result's model config ($OUT-relative)
    extra: dict = field(default_factory=dict)


def placement_key(placement: dict | None) -> str:
    """A short, stable name for a placement: 'local' or 'azureml:gpu-cluster'. An executor may
    name its placements more exactly (``where``: Ray names the cluster's address)."""
    if not placement:
        return "local"
    (kind, opts), = placement.items()
    return f"{kind}:{opts.get('compute', '')}" if isinstance(opts, dict) else kind


def placement_options(placement: dict | None, kind: str) -> dict:
    """The options of a ``{kind: {...}}`` placement (a copy), {} for any other placement."""
    opts = placement.get(kind) if isinstance(placement, dict) else None
    return dict(opts) if isinstance(opts, dict) else {}


class Executor(Protocol):
    name: str

    def preflight(self, needs, device: str, placement: dict | None = None) -> Check:
        """Can a node with these needs run here? No network, no subprocess: plan calls it.
        ``placement`` is the node's `executor:` mapping (None: this machine)."""

    def environment(self, packages, placement: dict | None = None) -> dict:
        """The environment identity for a key: {package: version} where jobs run."""

    def where(self, placement: dict | None = None) -> str:
        """A short, stable name of where a step of this placement runs: 'local', 'azureml:gpu-cluster'."""

    def capabilities(self, placement: dict | None = None) -> Capabilities:
        """What it can do for a node of this placement (data, no side effect)."""

    def gpus(self) -> list:
        """The GPUs jobs can be pinned to (gpus.Gpu), asked only when a GPU node is about to run."""

    def open(self, *, slots: int, offline: bool, log_dir: Path, wake: Callable[[], None] | None = None) -> None:
        """Get ready to run up to ``slots`` jobs at once. ``wake``, when given, is called (from any
        thread) each time a started job finishes, so a caller waiting on several executors at
        once (the router) hears of it without polling."""

    def start(self, job: Job, ctx: RunContext) -> None:
        """Start a job (returns at once); it runs through runtime.run_node wherever it runs."""

    def wait(self, timeout: float | None = None) -> list[JobResult]:
        """Block until at least one started job finished (or ``timeout`` passed: then []);
        return every finished one."""

    def close(self, *, kill: bool = False) -> None:
        """Stop workers (kill: at once, for Ctrl-C and errors)."""


class Finished:
    """An executor's finished jobs, put by the threads that ran them, taken by its ``wait``; each
    put calls the ``wake`` its ``open`` was given (the router's: it waits on several executors at
    once without polling them)."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self.wake: Callable[[], None] | None = None

    def put(self, result: JobResult) -> None:
        self._queue.put(result)
        if self.wake is not None:
            self.wake()

    def take(self, timeout: float | None) -> list[JobResult]:
        """Block for the first (or until ``timeout``: then []), then take every other one already there."""
        try:
            out = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out


def append_log(path, text: str) -> None:
    """Append to a node's log, never through a planted link; a log that cannot be written is skipped."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError:
        return
    try:
        os.write(fd, text.encode("utf-8", "replace"))
    finally:
        os.close(fd)


def shared_store_url(given: str | None, workspace_dir, env, what: str) -> tuple[str | None, str, bool]:
    """(url, why not, configured) of the shared cache a remote executor's jobs use: the URL it was
    given, else the workspace's remote cache; ``configured`` is False when none is set at all."""
    if given:
        return given, "", True
    from ...core.errors import StoreError
    from ...stores.config import remote_config

    try:
        cfg = remote_config(workspace_dir, env)
    except StoreError as e:
        return None, f"{what} ({e.message})", True
    return (cfg.url, "", True) if cfg is not None else (None, "", False)
