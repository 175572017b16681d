"""What a garbage collection must keep: every key that a lock file in the workspace references."""
from __future__ import annotations

import os
from pathlib import Path

from . import lock as lockfile
from .errors import OlivepipeError

SKIP_DIRS = {".git", ".olivepipe", "outputs", "node_modules", ".venv", "__pycache__"}


def referenced_keys(root: Path) -> set[str]:
    keys, unreadable = set(), []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        if "olivepipe.lock" in filenames:
            path = Path(dirpath) / "olivepipe.lock"
            try:
                found = _keys(lockfile.read(path))
            except (OlivepipeError, OSError, AttributeError, TypeError):  # unreadable or not shaped like a lock
                unreadable.append(path)
                continue
            keys |= found
    if unreadable:
        # what it references is unknown, so anything might be in use: deleting would be a guess
        raise OlivepipeError(f"cannot read {', '.join(map(str, unreadable))}; nothing was deleted",
                             "restore the lock file (git checkout), or pass --force to delete regardless")
    return keys


def _keys(data: dict) -> set[str]:
    return {rec["key"] for wf in data["workflows"].values() for rec in (wf.get("nodes") or {}).values()
            if rec.get("key")}
