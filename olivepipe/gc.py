"""What a garbage collection must keep: every key that a lock file in the workspace references."""
from __future__ import annotations

import os
from pathlib import Path

from . import lock as lockfile

SKIP_DIRS = {".git", ".olivepipe", "outputs", "node_modules", ".venv", "__pycache__"}


def referenced_keys(root: Path) -> set[str]:
    keys = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        if "olivepipe.lock" in filenames:
            try:
                data = lockfile.read(Path(dirpath) / "olivepipe.lock")
            except Exception:  # an unreadable lock protects nothing, but must not stop gc of others
                continue
            for wf in data["workflows"].values():
                for rec in (wf.get("nodes") or {}).values():
                    if rec.get("key"):
                        keys.add(rec["key"])
    return keys
