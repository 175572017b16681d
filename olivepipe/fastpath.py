"""The no-op fast path: answer "nothing to do" from a stamp, before click, yaml or jsonschema load.

A full no-op `apply` (everything cached, nothing run, nothing blocked) writes a stamp,
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
This module imports only os, sys, json, time and core/filestat.py (os alone) at the top: it runs
before anything else.
"""
from __future__ import annotations

import json
import os
import sys
import time

from .core.filestat import PACKAGE_DIR, code_stamp, folder_id, path_sig

FORMAT = 1
SWITCH = "OLIVEPIPE_FASTPATH"
RACY_NS = 1_000_000_000  # a file this close to the stamp's writing is not trusted to it
MAX_STAMP_BYTES = 64 << 20
# what each command accepts on the fast path; anything else falls through
_FLAGS = {"apply": {"-q", "--quiet", "--json"}, "status": {"--json"}, "plan": {"--detailed-exitcode"}}
_COLOR_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


def _env_stamp() -> list:
    """The interpreter, its package folders, olivepipe's code and its settings."""
    folders = []
    for p in sys.path:
        try:
            folders.append([p, os.stat(p or ".").st_mtime_ns])
        except OSError:
            folders.append([p, None])
    env = sorted([k, v] for k, v in os.environ.items() if k.startswith("OLIVEPIPE_") and k != SWITCH)
    return [FORMAT, sys.version, sys.executable, PACKAGE_DIR, folders, code_stamp(), env]


def _stamp_file(workflow_real: str) -> str:
    keep = "".join(c if c.isalnum() or c in "._-" else "_" for c in os.path.basename(workflow_real))
    return os.path.join(os.path.dirname(workflow_real), ".olivepipe", "fast", keep + ".json")


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
        _trace(f"no ({why})")
        return None
    _trace("yes")
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
    stamp = _read(_stamp_file(workflow))
    if stamp is None:
        return "no stamp", None, None
    if stamp.get("format") != FORMAT or stamp.get("workflow") != workflow:
        return "stamp of another workflow or format", None, None
    if stamp.get("folder") != folder_id(os.path.dirname(_stamp_file(workflow))):
        return "stamp folder moved", None, None
    if stamp.get("env") != _env_stamp():
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


# -- the stamp (written by a full no-op apply) ----------------------------------------------

def before(workflow) -> dict:
    """Stat data of the workflow file and its lock taken before the command reads them: a
    stamp may only record what the answer was computed from."""
    wf = os.path.realpath(workflow)
    lock = os.path.join(os.path.dirname(wf), "olivepipe.lock")
    return {wf: path_sig(wf, False), lock: path_sig(lock, False)}


def remember(ws, plan, result, seen_before: dict) -> None:
    """Write the stamp after a full no-op apply (atomically, inside .olivepipe/ only), or
    remove a stale one. Never fails the command: a missing stamp only costs the full path."""
    try:
        target = _stamp_file(str(ws.workflow.file))
        stamp = _stamp(ws, plan, result, seen_before)
        if isinstance(stamp, str):
            _trace(f"stamp not written ({stamp})")
            if os.path.lexists(target) and not os.path.islink(os.path.dirname(target)):
                os.unlink(target)
            return
        from .core.safefs import write_state

        write_state(ws.workflow.file.parent, (".olivepipe", "fast"), os.path.basename(target),
                    lambda folder: json.dumps({**stamp, "folder": folder_id(str(folder))}))
    except Exception as e:  # noqa: BLE001  (an optimisation: whatever went wrong, the full path still answers)
        _trace(f"stamp not written ({type(e).__name__}: {e})")


def _trace(message: str) -> None:
    if os.environ.get(SWITCH) == "trace":
        print(f"olivepipe fast path: {message}", file=sys.stderr)


def _stamp(ws, plan, result, seen_before: dict) -> dict | str:
    """The stamp, or why there is none."""
    from .flow.scheduler import Event
    from .report.summary import event_json, plan_plain, status_lines

    if (ws.rehearse or ws.read_only or type(ws.store).__name__ != "LocalStore" or not result.ok or result.ran
            or plan.to_run or plan.blocked or any(s.status != "cached" for s in plan.steps)
            or any(ws.placement(s.name) for s in plan.steps) or os.environ.get("OLIVEPIPE_NETWORK_AUDIT")):
        return "not a local no-op"
    # what the no-op printed, in every form the fast path answers
    out = {"cached": len(result.outcomes), "events": [event_json(Event("cached", n)) for n in result.outcomes],
           "result": result.to_json(), "status_lines": status_lines(plan),
           "status_json": {s.name: s.status for s in plan.steps}, "plan_text": plan_plain(plan)}
    paths: list = []
    for p, sig in seen_before.items():  # unchanged since the command read them
        if path_sig(p, False) != sig:
            return f"changed while the command ran: {p}"
        paths.append([p, False, sig])
    for p, key in ws.stats.seen().items():  # as they were when their content was hashed
        sig = json.loads(key)
        if path_sig(p, False) != sig:
            return f"changed since it was hashed: {p}"
        paths.append([p, False, sig])
    now = time.time_ns()
    if any(sig is None or now - sig[3] < RACY_NS for _, _, sig in paths):
        return "a file changed within the last second, or no lock: " + repr([p for p, _, sig in paths if sig is None or now - sig[3] < RACY_NS])  # same-tick edits would not show
    state = ws.workflow.file.parent / ".olivepipe"
    config = str(state / "config.yaml")  # absent or as it was: a remote configured later falls through
    paths.append([config, False, path_sig(config, False)])
    store = ws.store
    paths.append([str(store.roots_dir), False, path_sig(str(store.roots_dir), False)])
    outputs = ws.workflow.file.parent / "outputs" / ws.lock_name
    paths.append([str(outputs), False, path_sig(str(outputs), False)])
    for o in result.outcomes.values():
        paths.append([str(outputs / o.name), True, path_sig(str(outputs / o.name), True)])
        for dirpath, dirnames, filenames in os.walk(store.entry_dir(o.key)):
            for n in [".", *dirnames, *filenames]:
                p = os.path.normpath(os.path.join(dirpath, n))
                paths.append([p, False, path_sig(p, False)])
    if any(sig is None for p, _, sig in paths if p != config):
        return "a store entry or output link went missing"
    return {
        "format": FORMAT, "workflow": str(ws.workflow.file), "env": _env_stamp(), "paths": paths,
        "apply_guard": str(state / f"apply-{ws.lock_name}.lock"), "out": out,
    }
