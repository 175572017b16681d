"""The no-op fast path: answer "nothing to do" from a stamp, before click, yaml or jsonschema load.

A full no-op `apply` (everything cached, nothing run, nothing blocked) writes a stamp
(report/stamp.py),
`.olivepipe/fast/<workflow file>.json`: the stat data of everything that answer rested on
(the workflow file, the lock, every data file and model file whose content is in a key,
the folders listed for them, the store entries and the output links), the interpreter,
the package folders on sys.path (a package installed, upgraded or removed changes its
folder), olivepipe's own modules, the OLIVEPIPE_* environment, and what the no-op
printed. The next `apply`, `-q`, `--json`, `status` [--json] or `plan` [--detailed-exitcode]
of that file checks the stamp with stat calls only and, when every figure still holds,
prints the same answer and exits: a Python start and a few dozen stats.

Any doubt falls through to the full path, which decides as always: no stamp, a changed
stat, a flag or option this module does not know (--target, --force, --cache-dir,
--rehearse, -j, -v, --format, ...), a remote (Blob) cache configured (its state is not
on this disk), a node placed on another executor, an apply of the same workflow running,
plan output going to a terminal (rich colours it), a file modified within the last second
(stat times may not tell two edits in the same tick apart). A stale stamp therefore never
hides work: it can only cost the few milliseconds of its check.

OLIVEPIPE_FASTPATH=off disables it; =trace says on stderr why it stepped aside. ``main`` is the
console script (pyproject: olivepipe.fastpath:main).
This module imports only os, sys, json, time, core/filestat.py and core/noopstamp.py (os and sys
alone) at the top: it runs before anything else.
"""
from __future__ import annotations

import json
import os
import sys
import time

from .core.filestat import folder_id, path_sig
from .core.noopstamp import FORMAT, MAX_STAMP_BYTES, SWITCH, env_stamp, stamp_file, trace

# what each command accepts on the fast path; anything else falls through
_FLAGS = {"apply": {"-q", "--quiet", "--json"}, "status": {"--json"}, "plan": {"--detailed-exitcode"}}
_COLOR_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


# -- the check (runs before anything is imported) -------------------------------------------

def main():
    """The `olivepipe` console script: the stamp's answer when it holds, else the full command line."""
    code = answer(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from .cli import main as full

    return full()


def answer(argv: list[str]) -> int | None:
    """Print the no-op answer and return the exit code, or None: run the full command."""
    t0 = time.perf_counter()
    mode = os.environ.get(SWITCH, "")
    if mode == "off":
        return None
    try:
        why, stamp, flags = _check(argv)
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as e:
        why, stamp = f"unreadable stamp ({type(e).__name__})", None
    if why:
        trace(f"no ({why})")
        return None
    trace("yes")
    out = stamp["out"]
    command = argv[0]
    if command == "apply" and "--json" in flags:
        lines = [json.dumps(e) for e in out["events"]]
        lines.append(json.dumps({"event": "result", **out["result"], "seconds": round(time.perf_counter() - t0, 3)}))
    elif command == "apply":
        from .report.summary import nothing_to_do_line

        lines = [nothing_to_do_line(out["cached"], time.perf_counter() - t0)]
    elif command == "status" and flags:
        lines = [json.dumps(out["status_json"], indent=2)]
    elif command == "status":
        lines = out["status_lines"]
    else:
        sys.stdout.write(out["plan_text"])
        return 0
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


def _check(argv: list[str]):
    """(why not, stamp, flags): why is "" when the stamp holds."""
    if not argv or argv[0] not in _FLAGS:
        return "not apply, status or plan", None, None
    command, rest = argv[0], argv[1:]
    positional = [a for a in rest if not a.startswith("-")]
    flags = {a for a in rest if a.startswith("-")}
    if len(positional) != 1 or not flags <= _FLAGS[command]:
        return "arguments it does not handle", None, None
    if command == "plan" and (os.isatty(1) or any(os.environ.get(k) for k in _COLOR_ENV)):
        return "plan output to a terminal", None, None
    if os.environ.get("OLIVEPIPE_NETWORK_AUDIT"):
        return "network audit on", None, None
    workflow = os.path.realpath(positional[0])
    stamp = _read(stamp_file(workflow))
    if stamp is None:
        return "no stamp", None, None
    if stamp.get("format") != FORMAT or stamp.get("workflow") != workflow:
        return "stamp of another workflow or format", None, None
    if stamp.get("folder") != folder_id(os.path.dirname(stamp_file(workflow))):
        return "stamp folder moved", None, None
    if stamp.get("env") != env_stamp():
        return "interpreter, packages, olivepipe or OLIVEPIPE_* changed", None, None
    for path, link, sig in stamp["paths"]:
        if path_sig(path, link) != sig:
            return f"changed: {path}", None, None
    if command == "apply" and not _apply_guard_free(stamp["apply_guard"]):
        return "an apply of this workflow is running", None, None
    return "", stamp, flags


def _read(path: str):
    """The stamp's JSON, read without following a link anywhere below the workflow's folder."""
    state = os.path.dirname(os.path.dirname(path))
    for d in (state, os.path.dirname(path)):
        try:
            st = os.lstat(d)
        except FileNotFoundError:
            return None
        if (st.st_mode & 0o170000) != 0o040000:  # a link or not a folder: a committed .olivepipe
            return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if (st.st_mode & 0o170000) != 0o100000 or st.st_size > MAX_STAMP_BYTES:
            return None
        return json.loads(f.read(MAX_STAMP_BYTES + 1))


def _apply_guard_free(path: str) -> bool:
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops the shared lock
