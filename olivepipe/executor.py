"""Executes a Plan: runs steps in dependency order in worker processes, publishes results.

Failure policy: a failed or blocked step skips its dependents; independent branches
keep going. Every finished step is published to the store and recorded in the lock
immediately, so an interrupted apply resumes from the last finished step.
"""
from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable

from . import lock as lockfile
from .errors import OlivepipeError
from .keys import key_of
from .mutex import Busy, FileMutex
from .olive.runtime import worker_env
from .plan import BLOCKED, CACHED, RUN, SKIP, Plan
from .pool import Pool, WorkerCrashed
from .store import Entry, materialize
from .workspace import Workspace


@dataclass(frozen=True)
class Event:
    kind: str  # start | cached | done | failed | skipped | blocked
    step: str
    message: str = ""
    seconds: float = 0.0
    log: str = ""


@dataclass
class Outcome:
    name: str
    status: str  # cached | ran | failed | skipped (input failed) | blocked | excluded (not targeted)
    seconds: float = 0.0
    error: str = ""
    log: str = ""
    key: str | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class ApplyResult:
    plan: Plan
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(o.status in ("cached", "ran", "excluded") for o in self.outcomes.values())

    @property
    def ran(self) -> list[str]:
        return [n for n, o in self.outcomes.items() if o.status == "ran"]

    def to_json(self) -> dict:
        return {"format": 1, "workflow": self.plan.workflow, "ok": self.ok, "seconds": round(self.seconds, 3),
                "steps": [o.to_json() for o in self.outcomes.values()]}


def apply(ws: Workspace, plan: Plan, *, jobs: int = 1, gpu_slots: int = 1,
          on_event: Callable[[Event], None] | None = None, prune_lock: bool = True) -> ApplyResult:
    emit = on_event or (lambda e: None)
    t0 = time.perf_counter()
    ws.dir.mkdir(parents=True, exist_ok=True)
    guard = FileMutex(ws.dir / f"apply-{ws.lock_name}.lock")
    try:
        guard.acquire(timeout=0)
    except Busy:
        raise OlivepipeError(f"another `olivepipe apply` of '{ws.lock_name}' is running in {ws.dir.parent} "
                             f"(pid {guard.holder()})",
                             "wait for it to finish; two applies of one workflow would race on its outputs") from None
    try:
        run = _Run(ws, plan, emit, jobs, gpu_slots)
        result = run.execute()
        if prune_lock and all(s.status != SKIP for s in plan.steps) and result.ok:
            lockfile.update(ws.lock_path, ws.lock_name, {}, keep_only={s.name for s in plan.steps})
        result.seconds = time.perf_counter() - t0
        return result
    finally:
        guard.release()


class _Run:
    def __init__(self, ws: Workspace, plan: Plan, emit, jobs: int, gpu_slots: int):
        self.ws, self.plan, self.emit = ws, plan, emit
        self.steps = plan.by_name()
        self.entries: dict[str, Entry] = {}
        self.digests: dict[str, str | None] = {}
        self.result = ApplyResult(plan)
        self.jobs = max(1, jobs)
        self.gpu = threading.Semaphore(max(1, gpu_slots))
        self.pool: Pool | None = None
        self.locked = ws.lock_nodes()
        self.lock_mutex = threading.Lock()

    # -- scheduling ----------------------------------------------------------------
    def execute(self) -> ApplyResult:
        order = [s.name for s in self.plan.steps]
        pending = [n for n in order if self.steps[n].status != SKIP]
        for n in order:
            if self.steps[n].status == SKIP:
                self.result.outcomes[n] = Outcome(n, "excluded", error="not needed by the target")
        needs_worker = any(self.steps[n].status == RUN for n in pending)
        if needs_worker:
            self.ws.store.ensure()
            size = min(self.jobs, sum(1 for n in pending if self.steps[n].status == RUN))
            self.pool = Pool(size, worker_env(offline=not self._needs_hub()), self.ws.logs)
        try:
            with ThreadPoolExecutor(max_workers=self.jobs) as ex:
                running = {}
                while pending or running:
                    for n in list(pending):
                        ins = [i for i in self.ws.step_inputs(n) if self.ws.produces(i)]
                        if any(self._failed(i) for i in ins):
                            pending.remove(n)
                            bad = [i for i in ins if self._failed(i)]
                            self._finish(Outcome(n, "skipped", error=f"input {', '.join(bad)} did not finish"))
                            self.emit(Event("skipped", n, f"input {', '.join(bad)} did not finish"))
                        elif all(i in self.entries for i in ins) and len(running) < self.jobs:
                            pending.remove(n)
                            running[ex.submit(self._step, n)] = n
                    if not running:
                        if pending:  # nothing runnable and nothing running: a scheduling bug
                            raise RuntimeError(f"cannot schedule {pending}")
                        continue
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        running.pop(fut)
                        fut.result()  # _step never raises for node failures; re-raise bugs
        except BaseException:
            if self.pool:
                self.pool.close(kill=True)
            raise
        finally:
            if self.pool:
                self.pool.close()
        return self.result

    def _needs_hub(self) -> bool:
        wf = self.ws.workflow
        return any(m.source == "hf" for m in wf.models.values()) or any(d.hf for d in wf.datasets.values())

    def _failed(self, name: str) -> bool:
        o = self.result.outcomes.get(name)
        return o is not None and o.status not in ("cached", "ran")

    def _finish(self, outcome: Outcome):
        with self.lock_mutex:
            self.result.outcomes[outcome.name] = outcome

    # -- one step --------------------------------------------------------------------
    def _step(self, name: str) -> None:
        step = self.steps[name]
        log = str(self.ws.log_path(name))
        if step.status == BLOCKED:
            self._finish(Outcome(name, "blocked", error="; ".join(step.reasons)))
            self.emit(Event("blocked", name, "; ".join(step.reasons)))
            return
        record, complete = self.ws.record(name, {k: e.digest for k, e in self.entries.items()})
        assert complete, f"inputs of {name} not ready"
        key = key_of(record)
        forced = step.status == RUN and step.reasons == ("forced",)
        if forced:
            self.ws.store.remove(key)
        entry = None if forced else self.ws.store.get(key)
        if entry is not None:
            self._publish_done(name, entry, record, "cached", 0.0, log)
            return
        self.emit(Event("start", name, step.label, log=log))
        t0 = time.perf_counter()
        staging = self.ws.store.staging(name)
        try:
            out, scratch = staging / "out", staging / "scratch"
            scratch.mkdir()
            self.ws.logs.mkdir(parents=True, exist_ok=True)
            open(log, "w").close()  # a fresh log per run
            job = self.ws.job(name, self.entries, out, scratch)
            worker = self.pool.acquire()
            gpu = step.device == "gpu"
            try:
                if gpu:
                    self.gpu.acquire()
                res = worker.run(job)
            except WorkerCrashed as e:
                res = {"ok": False, "error": str(e)}
            finally:
                if gpu:
                    self.gpu.release()
                self.pool.release(worker)
            seconds = time.perf_counter() - t0
            if not res.get("ok"):
                self._finish(Outcome(name, "failed", seconds, res.get("error", "failed"), log, key))
                self.emit(Event("failed", name, res.get("error", ""), seconds, log))
                return
            if not out.exists():
                out.mkdir()
            meta = {"model": res.get("model"), "kind": step.kind, "record": record, "duration_s": round(seconds, 3)}
            entry = self.ws.store.publish(key, out, meta)
            self._publish_done(name, entry, record, "ran", seconds, log)
        except OlivepipeError as e:
            seconds = time.perf_counter() - t0
            self._finish(Outcome(name, "failed", seconds, e.message, log, key))
            self.emit(Event("failed", name, e.message, seconds, log))
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _publish_done(self, name: str, entry: Entry, record: dict, status: str, seconds: float, log: str):
        materialize(entry, self.ws.outputs / name)
        self.entries[name] = entry
        rec = {"key": entry.key, "kind": record["kind"], "record": record,
               "output": {"digest": entry.digest, "files": len(entry.manifest["files"]), "bytes": entry.size},
               "duration_s": entry.manifest.get("duration_s")}
        with self.lock_mutex:
            if lockfile.prune(self.locked.get(name)) != lockfile.prune(rec):
                lockfile.update(self.ws.lock_path, self.ws.lock_name, {name: rec})
                self.locked[name] = rec
        self._finish(Outcome(name, status, seconds, log=log if status == "ran" else "", key=entry.key))
        self.emit(Event("done" if status == "ran" else "cached", name, seconds=seconds, log=log))


__all__ = ["apply", "ApplyResult", "Event", "Outcome", "CACHED", "RUN"]
