"""The shared half of every executor whose jobs run elsewhere (Azure ML, Ray), the way
Snakemake's ``RemoteExecutor`` owns polling.

``RemoteExecutor`` owns the executor protocol's running half: one thread per job that
prepares, stages the job's inputs into the store where it runs (``uploads_inputs``), submits,
polls until the job ends, and brings a published result into the scheduler's store
(``publishes_results``); the finished queue ``wait`` takes from; ``close(kill=True)`` (Ctrl-C) cancelling
every submitted job within a bound; and the node's log. A subclass keeps only what is its own:

| hook | what it does |
|---|---|
| ``connect(run)`` | optional, in the scheduler's thread before the job's thread starts (Ray: the driver connection) |
| ``job_store(run) -> (url, store)`` | the store the job reads its inputs from and publishes into |
| ``prepare(run)`` | optional checks before anything is uploaded (Azure ML: environment, credential, compute) |
| ``submit(run, job)`` | send one job whose refs are readable from the job's store; set ``run.handle`` first |
| ``poll(run) -> Ended or None`` | read its state once (None: still going); log streaming goes here |
| ``cancel(run) -> str`` | ask where it runs to stop it; the note for the node's log |
| ``describe(run)`` | the job as people know it ("Azure ML job olivepipe-…", "Ray task 0a1b…") |
| ``disconnect()`` | optional, on every ``close`` |

A remote job runs ``runtime.run_node`` where it runs and publishes its result into the job's
store under the step's key; ``_collect`` checks the entry is there (and, when the job reported
one, its digest) and copies it into the scheduler's store when that is another store, manifest
metadata unchanged, so the scheduler only looks the key up, whatever ran it.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...core.errors import OlivepipeError
from ...core.job import Job
from .base import Capabilities, Finished, JobResult, RunContext, append_log, placement_key
from .staging import stage_inputs

#: How long Ctrl-C waits for the cancel requests (a service that does not answer must not hang it).
CANCEL_BOUND_S = 30.0


@dataclass
class RemoteRun:
    """One job of a remote executor, from ``start`` to its result."""

    job: Job
    ctx: RunContext
    t0: float = field(default_factory=time.monotonic)
    handle: object = None  # the job where it runs (an Azure ML job name, a Ray ObjectRef); None: not sent
    submitted: bool = False  # the submit returned
    finished: bool = False
    cancel_sent: bool = False  # where it runs took the cancel request
    cancelling: bool = False  # a cancel request is in flight (close and the job's thread may race)


@dataclass
class Ended:
    """What ``poll`` saw when a job ended: ok (its result is published in the job's store), or why not."""

    ok: bool
    error: str = ""
    digest: str | None = None  # the result digest the job reported, checked against the store
    extra: dict = field(default_factory=dict)


class RemoteExecutor:
    """Subclasses set ``name``, ``CAPABILITIES`` and the hooks above; ``poll_s`` is the time between polls."""

    name = "remote"
    CAPABILITIES = Capabilities(local_gpus=False, uploads_inputs=True, publishes_results=True)

    def __init__(self, *, poll_s: float):
        self.poll_s = poll_s
        self.offline = True
        self._runs: dict[str, RemoteRun] = {}
        self._mutex = threading.Lock()  # runs and their cancel flags
        self._done = Finished()
        self._killed = threading.Event()

    # -- declared, not asked of anyone --------------------------------------------------------------
    def where(self, placement: dict | None = None) -> str:
        return placement_key(placement)

    def capabilities(self, placement: dict | None = None) -> Capabilities:
        return self.CAPABILITIES

    def gpus(self) -> list:
        return []  # a remote job's GPU is where it runs: none of this machine's is taken

    # -- the executor protocol's running half ---------------------------------------------------------
    def open(self, *, slots: int, offline: bool, log_dir: Path, wake=None) -> None:
        self.offline = offline
        self._done.wake = wake

    def new_run(self, job: Job, ctx: RunContext) -> RemoteRun:
        return RemoteRun(job, ctx)

    def start(self, job: Job, ctx: RunContext) -> None:
        run = self.new_run(job, ctx)
        with self._mutex:
            self._runs[job.step] = run
        try:
            self.connect(run)
        except OlivepipeError as e:
            self.note(run, e.format())
            self._finish(run, JobResult(job.step, False, self.error_text(e)))
            return
        threading.Thread(target=self._drive, args=(run,), name=f"olivepipe-{self.name}-{job.step}",
                         daemon=True).start()

    def wait(self, timeout: float | None = None) -> list[JobResult]:
        return self._done.take(timeout)

    def close(self, *, kill: bool = False) -> None:
        """kill (Ctrl-C): cancel every submitted job, waiting at most CANCEL_BOUND_S. A plain close
        leaves running jobs alone: they still publish into their store, so a later apply finds them."""
        if kill:
            self._killed.set()  # a job still uploading its inputs submits nothing
            with self._mutex:
                runs = [r for r in self._runs.values() if r.handle is not None and not r.finished
                        and not r.cancel_sent]
            threads = [threading.Thread(target=self._cancel, args=(r,), daemon=True) for r in runs]
            for t in threads:
                t.start()
            deadline = time.monotonic() + CANCEL_BOUND_S
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
        self.disconnect()

    # -- hooks ---------------------------------------------------------------------------------------
    def connect(self, run: RemoteRun) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def prepare(self, run: RemoteRun) -> None:
        pass

    def job_store(self, run: RemoteRun) -> tuple[str, object]:
        raise NotImplementedError

    def submit(self, run: RemoteRun, job: Job) -> None:
        raise NotImplementedError

    def poll(self, run: RemoteRun) -> Ended | None:
        raise NotImplementedError

    def cancel(self, run: RemoteRun) -> str:
        raise NotImplementedError

    def describe(self, run: RemoteRun) -> str:
        return f"{self.name} job {run.handle}"

    def extra(self, run: RemoteRun) -> dict:
        """What the scheduler's JobResult.extra carries about where the job ran."""
        return {}

    def cleanup(self, run: RemoteRun) -> None:
        """After the job ended (whatever way): local leftovers of submitting it."""

    def error_text(self, e: OlivepipeError) -> str:
        """A failed job's error from an OlivepipeError raised while submitting or polling."""
        return e.message

    def error_line(self, e: BaseException) -> str:
        """One line of an error the service raised (a failed cancel)."""
        return first_line(e)

    # -- one job, in its own thread -------------------------------------------------------------------
    def _drive(self, run: RemoteRun) -> None:
        step = run.job.step
        try:
            res = self._run(run)
        except OlivepipeError as e:
            self.note(run, e.format())
            res = JobResult(step, False, self.error_text(e))
        except BaseException as e:  # noqa: BLE001 - anything here fails the node, never hangs wait()
            res = JobResult(step, False, f"{type(e).__name__}: {first_line(e)}")
        finally:
            run.finished = True
            try:
                self.cleanup(run)
            except OSError:
                pass
        res.extra.update(self.extra(run))
        self._finish(run, res)

    def _run(self, run: RemoteRun) -> JobResult:
        job = run.job
        if not job.key or not job.record:
            raise OlivepipeError(f"the scheduler handed the {self.name} executor no key and record for {job.step}",
                                 "a job for a remote executor carries its step's key and record")
        self.prepare(run)
        url, store = self.job_store(run)
        if self.CAPABILITIES.uploads_inputs:
            job = dataclasses.replace(job, refs=stage_inputs(job.refs, run.ctx, store,
                                                             lambda text: self.note(run, text)))
        if self._killed.is_set():  # Ctrl-C while the inputs were uploading: submit nothing
            raise OlivepipeError(f"interrupted before {job.step} was submitted ({self.name})")
        self.submit(run, job)
        run.submitted = True
        if self._killed.is_set():  # Ctrl-C came while the submit was in flight: close's cancel may have missed it
            deadline = time.monotonic() + CANCEL_BOUND_S
            while run.cancelling and time.monotonic() < deadline:
                time.sleep(0.05)
            self._cancel(run)
        while True:
            if self._killed.is_set():
                return JobResult(job.step, False, f"interrupted: {self.describe(run)} was asked to cancel")
            ended = self.poll(run)
            if ended is not None:
                break
            self._killed.wait(self.poll_s)
        if not ended.ok:
            return JobResult(job.step, False, ended.error or "failed", extra=ended.extra)
        res = self._collect(run, url, store, ended)
        res.extra.update(ended.extra)
        return res

    def _collect(self, run: RemoteRun, url: str, store, ended: Ended) -> JobResult:
        """The published result into the scheduler's store (when the job's store is another one)."""
        step, ctx, key = run.job.step, run.ctx, run.job.key
        entry = store.get(key)
        if entry is None or (ended.digest and entry.digest != ended.digest):
            return JobResult(step, False, f"{self.describe(run)} completed but result {key[:12]} is not in the "
                                          f"store {url}" + (f" ({ended.error})" if ended.error else ""))
        if not self.CAPABILITIES.publishes_results:
            return JobResult(step, True, model=entry.model)
        have = ctx.store.get(key)  # a tiered store in front of the job's pulls it here
        if have is not None and have.digest == entry.digest:  # the same store (or a tier of it): nothing to copy
            return JobResult(step, True, model=have.model)
        staging = Path(ctx.store.staging(step))
        try:
            from ...stores.manifest import meta_of

            out = Path(store.fetch(entry, staging / "out"))
            for d, _, _ in os.walk(out):  # a store's copy may keep read-only folders: publish moves into them
                os.chmod(d, 0o755)
            ctx.store.publish(key, out, meta_of(entry.manifest), replace=run.job.replace)
        finally:
            ctx.store.discard(staging)
        return JobResult(step, True, model=entry.model)

    def _cancel(self, run: RemoteRun) -> None:
        with self._mutex:
            if run.cancel_sent or run.cancelling or run.handle is None:
                return
            run.cancelling = True
        try:
            text = self.cancel(run)
            run.cancel_sent = True
            self.note(run, text)
        except Exception as e:  # noqa: BLE001 - not sent: the job's thread tries again once its submit returns
            self.note(run, f"could not cancel {self.describe(run)}: {self.error_line(e)}"
                           + ("" if run.submitted else " (not submitted yet)"))
        finally:
            run.cancelling = False

    def _finish(self, run: RemoteRun, res: JobResult) -> None:
        run.finished = True
        res.seconds = time.monotonic() - run.t0
        self._done.put(res)

    # -- the node's log -----------------------------------------------------------------------------
    def note(self, run: RemoteRun, text: str) -> None:
        self.write(run, f"olivepipe: {text}\n")

    def write(self, run: RemoteRun, text: str) -> None:
        if text:
            append_log(run.ctx.log, text)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


__all__ = ["RemoteExecutor", "RemoteRun", "Ended", "CANCEL_BOUND_S", "first_line"]
