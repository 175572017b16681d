"""Why a plan says what it says of a step: typed reasons (``Why`` and what it is about) that
renderers turn into words with ``str()`` (nothing reads the words back), and the estimate of its
duration. The status and action words themselves are ``status.py``'s.

Kept apart from plan.py (which opens workspaces) so renderers and the scheduler read the same
names without planning anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..core.keys import Change, record_changes


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


# the reasons that carry nothing of their own, made once (a plan of 10,000 new steps says NEW 10,000 times)
NOT_TARGETED, FORCED_RUN, _NEW, _MISSING = (Reason(w) for w in (Why.NOT_TARGETED, Why.FORCED, Why.NEW,
                                                                Why.RESULT_MISSING))


def _steps(record: dict | None) -> int | None:
    targs = ((record or {}).get("params") or {}).get("training_args") or {}
    steps = targs.get("max_steps") if isinstance(targs, dict) else None
    return steps if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else None


def estimate(prev: dict | None, record: dict) -> tuple[float | None, str]:
    """The last run's duration, scaled by the change in training steps (a LoRA going from 4 to 30
    max_steps takes about 7.5 times as long): (seconds or None, how it was scaled)."""
    last = prev.get("duration_s") if prev else None
    if not isinstance(last, (int, float)):
        return None, ""
    old, new = _steps(prev.get("record")), _steps(record)
    if old and new and old != new:
        return round(last * new / old, 1), f"{last:.1f}s last time for {old} steps, scaled to {new}"
    return last, ""


def why_run(step, record: dict, complete: bool, prev: dict | None, key: str | None, digests: dict) -> list[Reason]:
    """Why a step that is not cached runs: new, its result missing, or what changed in its key
    record since the lock's (``prev``); ``digests``: its inputs' result digests, None for those
    that run first."""
    if prev is None:
        return [_NEW]
    if complete and prev.get("key") == key:
        return [_MISSING]
    from ..core.lock import prune

    old = prune(prev.get("record") or {})
    record = prune(record)
    reasons = []
    pending = [i for i in step.produced if i in digests and digests[i] is None]
    if pending:
        reasons.append(Reason(Why.INPUT_REBUILT, tuple(pending)))
        old = {k: v for k, v in old.items() if k != "inputs"}
        record = {k: v for k, v in record.items() if k != "inputs"}
    if not old:
        return reasons + [Reason(Why.NO_DETAILS)]
    labels = dict(enumerate(step.inputs))
    reasons += [change_reason(c, labels) for c in record_changes(old, record)]
    return reasons or [Reason(Why.INPUTS_CHANGED)]


__all__ = ["Why", "Reason", "change_reason", "estimate", "why_run", "NOT_TARGETED", "FORCED_RUN"]
