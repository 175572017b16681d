"""A saved plan, as Terraform does it: `plan -o plan.json`, then `apply plan.json` runs exactly
that plan, or refuses and lists what changed since it was made.

The file holds what the plan was computed from: the workflow file's digest, the lock section's
digest, the olivepipe version, the plan's options, and per step its action and key record
(which carries the data files' digests and the package versions where it runs). Applying
recomputes the plan the same way and compares; cache state is in the comparison too (a step
the plan meant to run that is cached by now, or a cached result that went missing, is a
change). Nothing is executed unless the two plans are the same.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import OlivepipeError
from ..core.hashing import digest_obj
from ..core.keys import record_changes
from .planned import change_reason
from .status import CACHED

FORMAT = "olivepipe-plan/1"
MAX_BYTES = 32 << 20


class StalePlan(OlivepipeError):
    """The saved plan no longer matches the workflow, lock, data, cache or packages."""


def _file_sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def snapshot(ws, plan, options: dict) -> dict:
    """What `plan -o` writes: the plan and everything it was computed from."""
    from .. import __version__

    return {"format": FORMAT, "olivepipe": __version__,
            "workflow": {"file": ws.workflow.file.name, "sha256": _file_sha(ws.workflow.file)},
            "lock": {"section": ws.lock_name, "digest": digest_obj(ws.lock_nodes())},
            "options": options,
            "steps": [{"name": s.name, "action": s.action, "status": s.status, "key": s.key, "record": s.record,
                       "reasons": list(s.reasons)} for s in plan.steps],
            "plan": plan.to_json()}


def write(path: Path, doc: dict) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@dataclass(frozen=True)
class Saved:
    """A saved plan read back: its document, the workflow it is for and the options it was made with."""
    doc: dict
    workflow: Path
    target: tuple[str, ...]
    force: tuple[str, ...]
    rehearse: bool
    cache_dir: Path | None


def read(path) -> Saved | None:
    """The saved plan at ``path``, or None when it is not one (then it is read as a workflow)."""
    if not _looks_saved(path):
        return None
    doc = _load(path)
    opts = doc.get("options") or {}
    return Saved(doc, _workflow_path(path, doc), tuple(opts.get("target") or ()), tuple(opts.get("force") or ()),
                 bool(opts.get("rehearse")), Path(opts["cache_dir"]) if opts.get("cache_dir") else None)


def _looks_saved(path) -> bool:
    """A `.json` file that starts like a saved plan (anything else is read as a workflow)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return Path(path).suffix.lower() == ".json" and FORMAT.encode() in head


def _load(path) -> dict:
    try:
        if os.path.getsize(path) > MAX_BYTES:
            raise OlivepipeError(f"{path}: too big for a saved plan", "")
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise OlivepipeError(f"{path}: cannot read the saved plan ({e})", "make it again with `olivepipe plan -o`") \
            from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise OlivepipeError(f"{path}: not a saved plan of this olivepipe ({FORMAT})",
                             "make it again with `olivepipe plan -o`")
    return doc


def _workflow_path(plan_file, doc: dict) -> Path:
    """The workflow a saved plan is for: next to the plan file, where `plan -o` recorded it."""
    name = (doc.get("workflow") or {}).get("file")
    if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
        raise OlivepipeError(f"{plan_file}: names no workflow file", "make it again with `olivepipe plan -o`")
    return Path(plan_file).parent / name


def differences(doc: dict, ws, plan) -> list[str]:
    """Every way the world differs from when ``doc`` was saved; empty: apply may run it."""
    from .. import __version__

    out = []
    if doc.get("olivepipe") != __version__:
        out.append(f"olivepipe is {__version__} now, was {doc.get('olivepipe')}")
    if _file_sha(ws.workflow.file) != doc["workflow"]["sha256"]:
        out.append(f"{ws.workflow.file.name} changed")
    if digest_obj(ws.lock_nodes()) != doc["lock"]["digest"]:
        out.append(f"{ws.lock_path.name} changed (section '{ws.lock_name}': another apply ran, or it was edited)")
    then = {s["name"]: s for s in doc["steps"]}
    now = {s.name: s for s in plan.steps}
    for name in [*then, *(n for n in now if n not in then)]:
        a, b = then.get(name), now.get(name)
        if a is None:
            out.append(f"step {name}: new since the plan")
            continue
        if b is None:
            out.append(f"step {name}: no longer in the workflow")
            continue
        if a["key"] == b.key and a["action"] == b.action:
            continue
        inputs = dict(enumerate(b.inputs))
        what = [str(change_reason(c, inputs)) for c in record_changes(a["record"], b.record)] \
            if a["record"] and b.record else []
        if a["action"] != b.action:
            what.insert(0, f"the plan said {a['action']}, now {b.action}"
                           + (" (its result is in the cache by now)" if b.action == CACHED else
                              " (its cached result is gone)" if a["action"] == CACHED else ""))
        out.append(f"step {name}: " + ("; ".join(what[:4]) if what else "its key changed"))
    return out


def check(saved: Saved, ws, plan) -> None:
    """Exactly the saved plan, or StalePlan listing what changed since it was made."""
    diffs = differences(saved.doc, ws, plan)
    if diffs:
        raise StalePlan("the saved plan is out of date; nothing was run:\n" + "\n".join(f"  - {d}" for d in diffs),
                        "make a new plan (`olivepipe plan -o FILE`), review it, and apply that")
