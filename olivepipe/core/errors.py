"""One exception family, so the CLI can tell a user's mistake from a bug.

Everything a user can cause derives from ``OlivepipeError``; the CLI maps it to a
clean message and an exit code. Anything else is a bug and gets a traceback in the
log, exit code 3.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One located problem in a workflow file."""

    file: str
    line: int  # 1-based; 0 when unknown
    col: int  # 1-based; 0 when unknown
    message: str
    hint: str = ""
    path: str = ""  # key path inside the document, e.g. nodes.finetune.params.r

    def format(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.col}"
        text = f"{where}: {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text

    def to_json(self) -> dict:
        return {"file": self.file, "line": self.line, "col": self.col, "path": self.path,
                "message": self.message, "hint": self.hint}


class OlivepipeError(Exception):
    """A failure the user can act on. ``exit_code`` is what the CLI returns."""

    exit_code = 1

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def format(self) -> str:
        return self.message + (f"\n    hint: {self.hint}" if self.hint else "")


class SpecError(OlivepipeError):
    """The workflow file is invalid; carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        # set(): matrix variants of one node would otherwise repeat the same located problem
        self.problems = sorted(set(problems), key=lambda p: (p.file, p.line, p.col, p.message, p.hint, p.path))
        n = len(self.problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} found")

    def format(self) -> str:
        return "\n".join(p.format() for p in self.problems)


class StoreError(OlivepipeError):
    """The cache store cannot be used (unwritable, full, locked)."""


class LockError(OlivepipeError):
    """A lock file that cannot be read, or is not shaped like one."""


class StoreBusy(StoreError):
    """The store's lease is held by someone else (an apply, a gc)."""


class ReviewError(OlivepipeError):
    """A diff/fmt input that cannot be read (missing file, bad revision, wrong kind of file)."""

    exit_code = 2


class Interrupted(OlivepipeError):
    """Ctrl-C during apply: running steps were stopped; finished ones are cached and locked."""

    exit_code = 130

    def __init__(self, result, running: list[str], signal_name: str = ""):
        self.result, self.running = result, running
        done = [n for n, o in result.outcomes.items() if o.status.ok]  # ran or cached (flow/status.Outcome)
        what = f"stopped {', '.join(running)}" if running else "stopped between steps"
        are = "finished step is" if len(done) == 1 else "finished steps are"
        head = f"terminated ({signal_name})" if signal_name else "interrupted"
        if signal_name == "SIGTERM":
            self.exit_code = 143  # 128 + 15, as a shell reports a process SIGTERM ended
        super().__init__(f"{head}: {what}; {len(done)} {are} cached and in the lock",
                         "run the same command again to resume")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI runner's cancel, `kill`): stops apply the way Ctrl-C does, and says so."""

    signal_name = "SIGTERM"


class InputChanged(OlivepipeError):
    """An input changed between hashing and the end of the run: the result would lie."""


class UnsafePath(OlivepipeError):
    """A path olivepipe would write goes through a symlink or a non-directory."""


class UnknownTarget(OlivepipeError):
    """--target/--force names no node: nothing is planned (a usage error, as click's)."""

    exit_code = 2


class UsageError(OlivepipeError):
    """A malformed command-line value (an `-S PATH=VALUE` that cannot be applied): exit 2, as click's."""

    exit_code = 2


class FmtError(OlivepipeError):
    exit_code = 2
