"""The no-op stamp, written after a full no-op apply: what it printed (in every form the fast
path answers: plain, `-q`, `--json`, status, plan) and the stat figures of everything that answer
rested on. ``fastpath.py`` answers the next no-op from it; the format is ``core/noopstamp.py``'s.
"""
from __future__ import annotations

import json
import os
import time

from ..core.filestat import folder_id, path_sig
from ..core.noopstamp import FORMAT, RACY_NS, env_stamp, stamp_file, trace
from ..core.safefs import write_state
from ..flow.scheduler import Event
from ..flow.status import Happened, Status
from .summary import event_json, plan_plain, status_lines


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
        stamp = _stamp(ws, plan, result, seen_before)
        target = stamp_file(str(ws.workflow.file))
        if isinstance(stamp, str):
            trace(f"stamp not written ({stamp})")
            if os.path.lexists(target) and not os.path.islink(os.path.dirname(target)):
                os.unlink(target)
            return
        write_state(ws.workflow.file.parent, (".olivepipe", "fast"), os.path.basename(target),
                    lambda folder: json.dumps({**stamp, "folder": folder_id(str(folder))}))
    except Exception as e:  # noqa: BLE001  (an optimisation: whatever went wrong, the full path still answers)
        trace(f"stamp not written ({type(e).__name__}: {e})")


def _stamp(ws, plan, result, seen_before: dict) -> dict | str:
    """The stamp, or why there is none."""
    if (ws.rehearse or ws.read_only or type(ws.store).__name__ != "LocalStore" or not result.ok or result.ran
            or plan.to_run or plan.blocked or any(s.status != Status.CACHED for s in plan.steps)
            or any(ws.step(s.name).placement for s in plan.steps) or os.environ.get("OLIVEPIPE_NETWORK_AUDIT")):
        return "not a local no-op"
    # what the no-op printed, in every form the fast path answers
    out = {"cached": len(result.outcomes), "events": [event_json(Event(Happened.CACHED, n)) for n in result.outcomes],
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
        "format": FORMAT, "workflow": str(ws.workflow.file), "env": env_stamp(), "paths": paths,
        "apply_guard": str(state / f"apply-{ws.lock_name}.lock"), "out": out,
    }
