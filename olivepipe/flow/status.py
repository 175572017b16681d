"""The words of a plan and an apply, as str-valued enums: what a planned step is (``Status``),
what apply will do with it (``Action``), what apply did (``Outcome``) and what its events say
(``Happened``). `--json` and a saved plan hold the same plain strings.

Import-light (enum only, which json already loads): the no-op fast path's one-line answer and
the plain renderers (report/summary.py) read these without loading the planner.
"""
from __future__ import annotations

from enum import Enum


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
