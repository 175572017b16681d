"""The plan: for every step, cached / run (and why) / blocked / skip. A value, not an action.

`make_plan` reads the world (store, lock, file digests, machine) once and returns
an immutable Plan; the CLI renders it and `apply` executes it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..core.errors import UnknownTarget
from ..run.executors.base import Check
from ..core.keys import key_of
from ..core import lock as lockfile
from ..spec.steps import warnings_of
from ..spec.workflow import gc_paused
from .planned import FORCED_RUN, NOT_TARGETED, Reason, Why, estimate, why_run
from .status import BLOCKED, CACHED, FORCED, RUN, SKIP, Action, Status
from .workspace import Workspace


_ACTION = {s: Action(s.value) for s in Status}  # a step's action when none is given: its status


@dataclass(frozen=True)
class Step:
    name: str
    kind: str  # tiny-model | olive | generate | register
    label: str  # what it does: the pass alias, or the kind
    status: Status
    why: tuple[Reason, ...] = ()  # typed: renderers say them (``reasons``), nothing reads the words back
    key: str | None = None
    record: dict | None = None
    inputs: tuple[str, ...] = ()
    device: str = "cpu"
    check: Check | None = None
    estimate_s: float | None = None
    warnings: tuple[str, ...] = ()
    action: Action | None = None  # what apply will do (FORCED: runs although a result is cached)
    where: str = "local"  # the executor it runs on: local, azureml:<compute>
    estimate_note: str = ""  # how estimate_s was made from the last run, when not taken as is
    notes: tuple[str, ...] = ()  # about a cached result, from its kind (a select node's winner)

    def __post_init__(self):
        if self.action is None:
            object.__setattr__(self, "action", _ACTION[self.status])

    @property
    def reasons(self) -> tuple[str, ...]:
        """The reasons in words, as plan, status, show and the JSON output say them."""
        return tuple(str(r) for r in self.why)

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "label": self.label, "status": self.status,
                "action": self.action, "where": self.where,
                "reasons": [str(r) for r in self.why], "key": self.key, "inputs": list(self.inputs), "device": self.device,
                "needs": list(self.check.needs) if self.check else [],
                "missing": list(self.check.missing) if self.check else [],
                "estimate_s": self.estimate_s, "estimate_note": self.estimate_note, "warnings": list(self.warnings),
                "notes": list(self.notes)}


@dataclass(frozen=True)
class Plan:
    workflow: str
    steps: tuple[Step, ...]
    rehearse: bool = False
    substitutions: dict = field(default_factory=dict)
    variant: dict | None = None  # -S: {"name", "overrides", "changes"} against the committed file

    def by_name(self) -> dict[str, Step]:
        return {s.name: s for s in self.steps}

    @property
    def to_run(self) -> list[Step]:
        return [s for s in self.steps if s.status == RUN]

    @property
    def blocked(self) -> list[Step]:
        return [s for s in self.steps if s.status == BLOCKED]

    @property
    def has_changes(self) -> bool:
        return bool(self.to_run or self.blocked)

    def counts(self) -> dict:
        out = {CACHED: 0, RUN: 0, BLOCKED: 0, SKIP: 0}
        for s in self.steps:
            out[s.status] += 1
        return out

    def to_json(self) -> dict:
        est = [s.estimate_s for s in self.to_run]
        known = est and all(e is not None for e in est)
        return {"format": 1, "workflow": self.workflow, "rehearse": self.rehearse,
                "substitutions": self.substitutions, "variant": self.variant, "summary": self.counts(),
                "estimate_s": round(sum(est), 1) if known else None,
                "steps": [s.to_json() for s in self.steps]}


def _reference(ws: Workspace) -> dict:
    """The lock records plan compares with: a variant's own last results over the committed
    file's (so its plan says what the overrides change); a rehearsal's own only."""
    own = lockfile.nodes(ws.lock_path, ws.lock_name)
    if ws.variant is None or ws.rehearse:
        return own
    return {**lockfile.nodes(ws.workflow.file.parent / "olivepipe.lock", ws.workflow.name), **own}


def check_targets(ws: Workspace, names) -> None:
    import difflib

    known = list(ws.workflow.nodes) + list(ws.workflow.models)
    for n in names:
        if n not in known:
            close = difflib.get_close_matches(n, known, n=1)
            raise UnknownTarget(f"unknown node '{n}'", f"did you mean '{close[0]}'?" if close else
                                f"nodes: {', '.join(ws.workflow.nodes)}")


@gc_paused
def make_plan(ws: Workspace, *, targets: tuple[str, ...] = (), force: tuple[str, ...] = (),
              force_all: bool = False) -> Plan:
    """The plan as a value. Reads the store (``peek``), the lock and file digests; never writes,
    deletes or starts a process. Its only network calls are read-only lookups in a configured
    shared cache of results the local cache lacks (``OLIVEPIPE_REMOTE_CACHE=off``: none). What
    needs the network to check (e.g. Azure credentials) is asked right before apply runs a step
    (executor.Scheduler._preflight)."""
    check_targets(ws, tuple(targets) + tuple(force))
    steps_order = ws.steps()
    selected = set(steps_order)
    if targets:
        selected = ws.graph.upstream(targets) | {m for m in steps_order if not ws.step(m).is_node}
        selected = {s for s in selected if s in set(steps_order)}
        # a tiny model is needed only if it is a target or something selected reads it
        selected = {s for s in selected if ws.step(s).is_node or s in targets or
                    any(s in ws.step(n).inputs for n in selected)}
    locked = _reference(ws)
    digests: dict[str, str | None] = {}
    actions: dict[str, str] = {}  # step -> its action (a Status or FORCED)
    out: list[Step] = []
    for name in steps_order:
        step = ws.step(name)
        record, complete = ws.record(name, digests) if name in selected else (None, False)
        stand_in = (f"REHEARSAL STAND-IN: {ws.substitutions[name]}",) if name in ws.substitutions else ()
        common = dict(name=name, kind=step.kind.name, label=step.label, inputs=step.inputs, device=step.device,
                      warnings=warnings_of(step) + stand_in, where=ws.executor.where(step.placement))
        if name not in selected:
            digests[name] = None
            actions[name] = SKIP
            out.append(Step(status=SKIP, why=(NOT_TARGETED,), **common))
            continue
        check = ws.executor.preflight(step.kind.needs(step.view), step.device, step.placement)  # can it run there?
        prev = locked.get(name)
        estimate_s, note = estimate(prev, record)
        key = key_of(record) if complete else None
        common |= dict(record=record, check=check, key=key, estimate_s=estimate_s, estimate_note=note)
        blocked_up = [i for i in step.inputs if actions.get(i) == BLOCKED]
        entry = ws.store.peek(key) if key else None
        problem = None
        if not blocked_up and check.ok and not entry and step.is_node:
            problem = step.kind.preflight(step.view, deep=False)
        digests[name] = None
        if blocked_up:
            actions[name] = BLOCKED
            out.append(Step(status=BLOCKED, why=(Reason(Why.INPUT_BLOCKED, tuple(blocked_up)),), **common))
        elif not check.ok and not entry:
            actions[name] = BLOCKED
            out.append(Step(status=BLOCKED, why=(Reason(Why.CANNOT_RUN, text=check.message),), **common))
        elif problem:
            actions[name] = BLOCKED
            out.append(Step(status=BLOCKED, why=(Reason(Why.PROBLEM, text=problem),), **common))
        elif force_all or name in force:
            actions[name] = FORCED
            out.append(Step(status=RUN, action=FORCED, why=(FORCED_RUN,), **common))
        elif entry is not None:
            digests[name] = entry.digest
            actions[name] = CACHED
            note = step.kind.describe(entry.manifest.get("result"))
            out.append(Step(status=CACHED, notes=(note,) if note else (), **common))
        else:
            actions[name] = RUN
            out.append(Step(status=RUN, why=tuple(why_run(step, record, complete, prev, key, digests)), **common))
    return Plan(ws.lock_name, tuple(out), ws.rehearse, dict(ws.substitutions),
                ws.variant.to_json() if ws.variant is not None else None)
