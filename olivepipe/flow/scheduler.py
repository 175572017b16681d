"""Executes a Plan: the scheduling loop every executor shares.

The loop keeps the ready set (a step whose inputs are all done), starts jobs on the
workspace's executor within ``jobs`` and ``gpu_slots``, looks each finished job's result up in
the store (the node runtime published it, wherever it ran), writes the lock after every finished
step and emits events for a renderer. Where a job runs is the executor's business (run/executors/);
this loop asks only what it declares (``capabilities``: whether its jobs take this machine's GPUs).

Failure policy: ``keep_going`` (default) skips a failed step's dependents and lets
independent branches finish; ``stop`` starts nothing new after the first failure.
"""
from __future__ import annotations

import heapq
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..core import lock as lockfile
from ..core.errors import Interrupted, OlivepipeError
from ..run.executors.base import RunContext
from ..run.gpus import GpuAllocator, parse_gib
from ..core.keys import key_of
from ..core.mutex import FileMutex
from .plan import BLOCKED, FORCED, RUN, SKIP, Plan
from .planned import Reason, Why
from .status import Happened, Outcome as Did
from ..core.safefs import confined_dir, open_nofollow
from .workspace import Workspace


@dataclass(frozen=True)
class Event:
    kind: Happened
    step: str
    message: str = ""
    seconds: float = 0.0
    log: str = ""

    def __post_init__(self):
        object.__setattr__(self, "kind", Happened(self.kind))


@dataclass
class Outcome:
    name: str
    status: Did
    seconds: float = 0.0
    error: str = ""
    log: str = ""
    key: str | None = None

    def __post_init__(self):
        self.status = Did(self.status)

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class ApplyResult:
    plan: Plan
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(o.status.ok or o.status == Did.EXCLUDED for o in self.outcomes.values())

    @property
    def ran(self) -> list[str]:
        return [n for n, o in self.outcomes.items() if o.status == Did.RAN]

    def to_json(self) -> dict:
        return {"format": 1, "workflow": self.plan.workflow, "ok": self.ok, "seconds": round(self.seconds, 3),
                "steps": [o.to_json() for o in self.outcomes.values()]}


def apply(ws: Workspace, plan: Plan, *, jobs: int | None = 1, gpu_slots: int | None = None,
          on_event: Callable[[Event], None] | None = None, prune_lock: bool = True,
          on_failure: str = "keep_going") -> ApplyResult:
    if ws.read_only:
        raise OlivepipeError("this workspace was opened read-only", "open it with open_workspace(...) to apply")
    emit = on_event or (lambda e: None)
    t0 = time.perf_counter()
    try:
        confined_dir(ws.workflow.file.parent, ".olivepipe")  # ws.dir, where the apply lock lives
        # every folder apply writes, checked before anything runs: a committed link fails now, not an hour in
        confined_dir(ws.workflow.file.parent, "outputs", ws.lock_name)
        confined_dir(ws.workflow.file.parent, os.path.relpath(ws.logs, ws.workflow.file.parent))
        guard = apply_mutex(ws).acquire(timeout=0)  # Busy (it says who) when another apply holds it
    except OSError as e:  # a read-only checkout (EROFS), no permission, a full disk: nothing has run yet
        raise OlivepipeError(f"cannot write to the workspace {ws.workflow.file.parent}: "
                             f"{e.strerror or e}{f' ({e.filename})' if e.filename else ''}",
                             "apply writes .olivepipe/ and outputs/ next to the workflow: make that folder "
                             "writable, or use `olivepipe plan` (it writes nothing)") from None
    try:
        with ws.store.lease():  # gc leaves a store alone while an apply may publish
            _register_root(ws)
            if ws.variant is not None:  # `olivepipe exp show` lists it with what it changed
                from .variants import remember

                remember(ws, ws.variant)
            sched = Scheduler(ws, plan, emit, jobs, gpu_slots, on_failure)
            result = sched.execute()
        if prune_lock and all(s.status != SKIP for s in plan.steps) and result.ok:
            sched.lock.set({}, keep_only={s.name for s in plan.steps})  # writes only if a node went away
        result.seconds = time.perf_counter() - t0
        return result
    finally:
        guard.release()


def apply_mutex(ws: Workspace) -> FileMutex:
    """The lock one apply of a workflow holds (.olivepipe/apply-<name>.lock)."""
    return FileMutex(ws.dir / f"apply-{ws.lock_name}.lock",
                     busy=(f"another `olivepipe apply` of '{ws.lock_name}' is running in {ws.dir.parent}",
                           "wait for it to finish; two applies of one workflow would race on its outputs"))


def check_no_other_apply(ws: Workspace) -> None:
    """Refuse early (before a plan is printed) when another apply of this workflow runs; apply()
    still takes the lock itself, so a race between this check and it is caught there."""
    apply_mutex(ws).check_free()


def _register_root(ws: Workspace) -> None:
    """Tell the store which lock file references its entries, so gc anywhere spares them."""
    # the rehearsal lock too: its results are what the next rehearsal reuses
    ws.store.register_root(Path(os.path.abspath(ws.lock_path)))


class Scheduler:
    def __init__(self, ws: Workspace, plan: Plan, emit, jobs: int | None, gpu_slots: int | None,
                 on_failure: str = "keep_going"):
        if on_failure not in ("keep_going", "stop"):
            raise ValueError(on_failure)
        self.ws, self.plan, self.emit = ws, plan, emit
        self.executor = ws.executor
        self.steps = plan.by_name()
        self.entries: dict = {}
        self.result = ApplyResult(plan)
        # -j default: one job, plus one per GPU when GPU nodes will run (see _gpu_alloc)
        self.jobs_given = jobs
        self.jobs = max(1, jobs or 1)
        self.gpu_slots = gpu_slots
        self.alloc = None
        self.pinned: dict[str, str] = {}
        self.on_failure = on_failure
        self.lock = lockfile.Writer(ws.lock_path, ws.lock_name)  # in memory for the whole run
        self.running: dict[str, tuple[str, dict]] = {}  # step -> (key, record)
        self.prepared: dict[str, tuple[str, dict]] = {}  # runnable, waiting for a slot: step -> (key, record)
        self.digests: dict[str, str] = {}  # step -> its result's digest (what dependents' records read)
        self.dependents: dict[str, list[str]] = {}  # step -> the pending steps that read it
        self.stopped = False

    # -- the loop ------------------------------------------------------------------
    # Each step is looked at when its inputs settle, not on every pass: a step waits in
    # ``ready`` (inputs settled: settle it or find it needs a job) then in ``runnable``
    # (needs a job slot), both heaps in plan order, so scheduling costs the same per
    # step at 10 or 10,000 nodes.
    def execute(self) -> ApplyResult:
        order = [s.name for s in self.plan.steps]
        self.index = {n: i for i, n in enumerate(order)}
        pending = [n for n in order if self.steps[n].status != SKIP]
        for n in order:
            if self.steps[n].status == SKIP:
                self.result.outcomes[n] = Outcome(n, Did.EXCLUDED, error="not needed by the target")
        self._preflight(pending)
        self.unsettled: dict[str, int] = {}
        self.ready: list[int] = []
        self.queued: set[str] = set()
        for n in pending:
            # ordering-only dependencies (a goal's baseline) settle a step like its inputs
            ins = list(self.ws.step(n).produced) + list(self._after(n))
            self.unsettled[n] = sum(1 for i in ins if i not in self.result.outcomes)
            for i in ins:
                self.dependents.setdefault(i, []).append(n)
            if not self.unsettled[n]:
                self._queue(n)
        runnable: list[int] = []
        opened = False
        try:
            while True:
                while self.ready or runnable:  # cached and blocked steps settle at once and may free others
                    while self.ready:
                        n = order[heapq.heappop(self.ready)]
                        if self._prepare(n) == "runnable":
                            heapq.heappush(runnable, self.index[n])
                    deferred = []
                    while runnable and (self.stopped or len(self.running) < self.jobs):
                        n = order[heapq.heappop(runnable)]
                        verdict = self._try_start(n)
                        if verdict == "wait":  # its GPU is busy: later, and let the next one try
                            deferred.append(self.index[n])
                        elif verdict == "start":
                            if not opened:
                                self._open()
                                opened = True
                            self._start(n)
                    for i in deferred:
                        heapq.heappush(runnable, i)
                    if not self.ready:
                        break
                if not self.running:
                    left = [n for n in pending if n not in self.result.outcomes]
                    if left:  # nothing runnable and nothing running: a scheduling bug
                        raise RuntimeError(f"cannot schedule {left}")
                    break
                for res in self.executor.wait():
                    self._finished(res)
        except KeyboardInterrupt as e:
            # stop what runs now; nothing half-done is published (results only land on success)
            self.executor.close(kill=True)
            running = sorted(self.running)
            why = getattr(e, "signal_name", "") or "Ctrl-C"
            for n in running:
                self._finish(Outcome(n, Did.INTERRUPTED, error=f"interrupted by {why}"))
            raise Interrupted(self.result, running, getattr(e, "signal_name", "")) from None
        except BaseException:
            self.executor.close(kill=True)
            raise
        finally:
            if opened:
                self.executor.close()
        return self.result

    def _queue(self, n: str) -> None:
        if n not in self.queued:
            self.queued.add(n)
            heapq.heappush(self.ready, self.index[n])

    def _open(self):
        runs = sum(1 for s in self.plan.steps if s.status == RUN)
        if any(s.status == RUN and self._uses_gpu(s.name) for s in self.plan.steps):
            self._gpu_alloc()  # sizes -j before the pool is made
        self.executor.open(slots=min(self.jobs, max(1, runs)), offline=not self._needs_hub(), log_dir=self.ws.logs)

    def _preflight(self, pending):
        """Right before anything runs: the checks plan may not make (network, credentials)."""
        for n in pending:
            step = self.steps[n]
            resolved = self.ws.step(n)
            if step.status == RUN and resolved.is_node:
                why = resolved.kind.preflight(resolved.view, deep=True)
                if why:
                    self.steps[n] = _blocked(step, why)

    def _prepare(self, n: str) -> str:
        """A step whose inputs all settled (or one failed): 'settled' (cached, blocked,
        skipped) or 'runnable' (it needs a job; its key is computed)."""
        ins = self.ws.step(n).produced
        after = self._after(n)  # judged against, not read: a result that missed its own goal still counts
        bad = [i for i in ins if self._failed(i)] + [a for a in after if self._failed(a) and a not in self.entries]
        if bad:
            self._finish(Outcome(n, Did.SKIPPED, error=f"input {', '.join(bad)} did not finish"))
            self.emit(Event(Happened.SKIPPED, n, f"input {', '.join(bad)} did not finish"))
            return "settled"
        step = self.steps[n]
        if step.status == BLOCKED:
            self._finish(Outcome(n, Did.BLOCKED, error="; ".join(step.reasons)))
            self.emit(Event(Happened.BLOCKED, n, "; ".join(step.reasons)))
            return "settled"
        if self.stopped:
            self._skip_stopped(n)
            return "settled"
        record, complete = self.ws.record(n, self.digests)
        assert complete, f"inputs of {n} not ready"
        key = key_of(record)
        if step.action != FORCED:
            entry = self.ws.store.get(key)
            if entry is not None:
                self._done(n, entry, record, Did.CACHED, 0.0, "")
                return "settled"
        self.prepared[n] = (key, record)
        return "runnable"

    def _skip_stopped(self, n: str) -> None:
        self._finish(Outcome(n, Did.SKIPPED, error="apply stopped after a failure"))
        self.emit(Event(Happened.SKIPPED, n, "apply stopped after a failure"))

    def _try_start(self, n: str) -> str:
        """A runnable step: 'start' (a slot and, for a GPU step, a GPU), 'wait' or 'settled'."""
        if self.stopped:
            self.prepared.pop(n)
            self._skip_stopped(n)
            return "settled"
        key, record = self.prepared[n]
        if self._uses_gpu(n):
            alloc = self._gpu_alloc()
            need = parse_gib(self.ws.step(n).gpu_memory_gb)
            if not alloc.fits_anywhere(need):
                self.prepared.pop(n)
                self._fail(n, f"needs {need / 1024:g} GiB of GPU memory; the largest GPU here has "
                              f"{max((s.gpu.memory_mib or 0) for s in alloc.slots) / 1024:g} GiB"
                           if alloc.slots else "no GPU to run on", 0.0, "", key)
                return "settled"
            gpu = alloc.take(n, need)
            if gpu is None:
                return "wait"
            self.pinned[n] = gpu
        self.prepared.pop(n)
        self.running[n] = (key, record)
        return "start"

    def _after(self, n: str) -> tuple[str, ...]:
        """Ordering-only dependencies that this apply runs or serves (not those --target left out)."""
        return tuple(a for a in self.ws.step(n).after if self.steps.get(a) and self.steps[a].status != SKIP)

    def _uses_gpu(self, n: str) -> bool:
        step = self.ws.step(n)
        if not self.executor.capabilities(step.placement).local_gpus:  # e.g. a remote compute's own GPU
            return False
        return step.device == "gpu" or step.kind.needs(step.view).cuda

    def _gpu_alloc(self) -> GpuAllocator:
        if self.alloc is None:
            gpus = self.executor.gpus()
            limit = self.gpu_slots
            per_gpu = -(-limit // len(gpus)) if limit and gpus else 1
            self.alloc = GpuAllocator(gpus, limit=limit, per_gpu=per_gpu)
            if self.jobs_given is None:  # one job per GPU slot on top of the CPU one
                self.jobs = 1 + (limit or len(gpus))
        return self.alloc

    def _start(self, n: str):
        log = self.ws.log_path(n)  # its folder was made confined by apply() before anything ran
        os.close(open_nofollow(log))  # a fresh log per run
        key, record = self.running[n]
        try:
            job = self.ws.job(n, self.entries, key=key, record=record, replace=self.steps[n].action == FORCED,
                              offline=not self._needs_hub())
        except OlivepipeError as e:
            self.running.pop(n)
            self._fail(n, e.message, 0.0, str(log), None)
            return
        self.emit(Event(Happened.START, n, self.steps[n].label, log=str(log)))
        ctx = RunContext(store=self.ws.store, root=self.ws.workflow.root, log=log, stats=self.ws.stats,
                         gpu=self.pinned.get(n, ""), workflow=self.ws.lock_name)
        self.executor.start(job, ctx)

    def _finished(self, res):
        n = res.step
        key, record = self.running.pop(n)
        if n in self.pinned:
            self.alloc.give(n)
            del self.pinned[n]
        log = str(self.ws.log_path(n))
        if not res.ok:
            self._fail(n, res.error or "failed", res.seconds, log, key)
            return
        # the job's node runtime published it (every executor runs jobs through runtime.run_node)
        entry = self.ws.store.get(key)
        if entry is None:
            self._fail(n, f"{n} reported its result {key[:12]} as stored, but the cache has no such entry; "
                          "run apply again", res.seconds, log, key)
            return
        self._done(n, entry, record, Did.RAN, res.seconds, log)

    def _fail(self, n, error, seconds, log, key):
        self._finish(Outcome(n, Did.FAILED, seconds, error, log, key))
        self.emit(Event(Happened.FAILED, n, error, seconds, log))
        if self.on_failure == "stop":
            self.stopped = True

    def _needs_hub(self) -> bool:
        wf = self.ws.workflow
        return any(m.source == "hf" for m in wf.models.values()) or any(d.hf for d in wf.datasets.values())

    def _failed(self, name: str) -> bool:
        o = self.result.outcomes.get(name)
        return o is not None and not o.status.ok

    def _finish(self, outcome: Outcome):
        self.result.outcomes[outcome.name] = outcome
        failed = not outcome.status.ok
        for d in self.dependents.get(outcome.name, ()):
            self.unsettled[d] -= 1
            if failed or not self.unsettled[d]:  # a failed input settles its dependents now
                self._queue(d)

    def _done(self, name: str, entry, record: dict, status: Did, seconds: float, log: str):
        tree = self.ws.store.fetch(entry)
        link_output(self.ws, name, tree)
        self.entries[name] = entry
        self.digests[name] = entry.digest
        rec = {"key": entry.key, "kind": record["kind"], "record": record,
               "output": {"digest": entry.digest, "files": len(entry.files), "bytes": entry.size},
               "duration_s": entry.manifest.get("duration_s"), "result": entry.manifest.get("result")}
        self.lock.set({name: rec})  # written only when the entry changed
        why = None
        step = self.ws.step(name)
        if step.is_node:
            kind, spec = step.kind, step.spec
            if status == Did.RAN:
                from .metrics import keep_history

                keep_history(self.ws, name, kind.history(spec, tree), entry, record)
            try:
                why = kind.verdict(spec, tree, {a: self.ws.store.fetch(self.entries[a]) for a in self._after(name)})
            except (OSError, ValueError, KeyError) as e:  # a result it cannot read is a failed check, not a crash
                why = f"cannot judge its result: {e.__class__.__name__}: {e}"
        if why:  # the result stays cached: changing the goal re-judges it without running again
            self._fail(name, why, seconds, log, entry.key)
            return
        self._finish(Outcome(name, status, seconds, log=log if status == Did.RAN else "", key=entry.key))
        self.emit(Event(Happened.DONE if status == Did.RAN else Happened.CACHED, name, seconds=seconds, log=log))


def _blocked(step, why: str):
    from dataclasses import replace

    return replace(step, status=BLOCKED, action=BLOCKED, why=(Reason(Why.PROBLEM, text=why),))


def link_output(ws: Workspace, name: str, tree: Path) -> None:
    """Expose a result at outputs/<workflow>/<node> as a symlink: O(1) whatever its size.
    The outputs folder is created confined: a committed `outputs -> /elsewhere` link is refused."""
    from ..stores.local import materialize

    materialize(tree, confined_dir(ws.workflow.file.parent, "outputs", ws.lock_name) / name)


__all__ = ["apply", "ApplyResult", "Event", "Interrupted", "Outcome", "Scheduler", "link_output"]
