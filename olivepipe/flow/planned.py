"""What a plan says of a step, as types (its status, its action and why), and what apply did with it.

Kept apart from plan.py (which opens workspaces) so renderers and the scheduler read the same
names without planning anything. A status and an action are str-valued enums, so `--json` and a saved plan hold the same plain strings as ever; a reason is a typed value
(``Why`` and what it is about) that renderers turn into words with ``str()``; nothing reads the
words back.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..core.keys import Change


class _Word(str, Enum):
    """A str-valued enum that prints as its value (JSON, f-strings and dict keys see the string)."""

    def __str__(self) -> str:
        return self.value


class Status(_Word):
    """What a planned step is."""

    CACHED = "cached"
    RUN = "run"
    BLOCKED = "blocked"
    SKIP = "skip"  # not needed by the target


class Action(_Word):
    """What apply will do with a planned step: its status, or FORCED (runs although a result is cached)."""

    CACHED = "cached"
    RUN = "run"
    FORCED = "forced"
    BLOCKED = "blocked"
    SKIP = "skip"


class Outcome(_Word):
    """What apply did with a step (executor.Outcome.status)."""

    CACHED = "cached"
    RAN = "ran"
    FAILED = "failed"
    SKIPPED = "skipped"  # an input did not finish, or apply stopped after a failure
    BLOCKED = "blocked"
    EXCLUDED = "excluded"  # not needed by the target
    INTERRUPTED = "interrupted"

    @property
    def ok(self) -> bool:
        """Its result is there for the steps that read it."""
        return self in (Outcome.CACHED, Outcome.RAN)


class Happened(_Word):
    """What an apply event says (executor.Event.kind; `apply --json`'s "event")."""

    START = "start"
    CACHED = "cached"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    BLOCKED = "blocked"


CACHED, RUN, BLOCKED, SKIP = Status.CACHED, Status.RUN, Status.BLOCKED, Status.SKIP
FORCED = Action.FORCED


class Why(Enum):
    NOT_TARGETED = "not-targeted"
    INPUT_BLOCKED = "input-blocked"  # names: the blocked inputs
    CANNOT_RUN = "cannot-run"  # text: what the executor's preflight found missing
    PROBLEM = "problem"  # text: the kind's own reason (a workspace setting, credentials)
    FORCED = "forced"
    NEW = "new"
    RESULT_MISSING = "result-missing"
    INPUT_REBUILT = "input-rebuilt"  # names: inputs that run first, so their digests are not known yet
    NO_DETAILS = "no-details"
    INPUTS_CHANGED = "inputs-changed"
    INPUT_CHANGED = "input-changed"  # names: the input; change: its digest
    DATA_FILE = "data-file"  # names: the file; change: its digest
    FIELD = "field"  # change: one field of the key record


@dataclass(frozen=True)
class Reason:
    """Why a step is planned the way it is."""

    why: Why
    names: tuple[str, ...] = ()
    text: str = ""
    change: Change | None = None

    def __str__(self) -> str:
        fixed = _FIXED.get(self.why)
        return fixed if fixed is not None else _SAY[self.why](self)


def _data_file(r: Reason) -> str:
    c = r.change
    return f"data file {r.names[0]} changed ({c.values})" if c.kind == "changed" else f"data file {r.names[0]} {c.kind}"


_SAY = {
    Why.INPUT_BLOCKED: lambda r: f"input {', '.join(r.names)} is blocked",
    Why.CANNOT_RUN: lambda r: f"cannot run on this machine: {r.text}",
    Why.PROBLEM: lambda r: r.text,
    Why.INPUT_REBUILT: lambda r: f"input {', '.join(r.names)} will be rebuilt first",
    Why.INPUT_CHANGED: lambda r: f"input {r.names[0]} changed" + (f" ({r.change.values})" if r.change.values else ""),
    Why.DATA_FILE: _data_file,
    Why.FIELD: lambda r: r.change.text(),
}
_FIXED = {
    Why.NOT_TARGETED: "not needed by the target",
    Why.FORCED: "forced",
    Why.NEW: "new: no earlier result in the lock file",
    Why.RESULT_MISSING: "result missing from the cache (deleted, corrupt or garbage-collected)",
    Why.NO_DETAILS: "lock record has no details",
    Why.INPUTS_CHANGED: "inputs changed",
}


def change_reason(c: Change, inputs: dict | None = None) -> Reason:
    """One difference of a step's key record as a reason: an input (named by ``inputs``: index ->
    name), a data file, or any other field."""
    p = c.path
    if p[:1] == ("inputs",) and len(p) > 2 and isinstance(p[1], int):
        return Reason(Why.INPUT_CHANGED, (str((inputs or {}).get(p[1], p[1])),), change=c)
    if p[:2] == ("data", "files") and len(p) == 3:
        return Reason(Why.DATA_FILE, (str(p[2]),), change=c)
    return Reason(Why.FIELD, change=c)


__all__ = ["Status", "Action", "Outcome", "Happened", "Why", "Reason", "change_reason", "CACHED", "RUN", "BLOCKED", "SKIP", "FORCED"]
