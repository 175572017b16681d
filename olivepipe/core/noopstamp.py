"""The no-op stamp's format: where it lives, the environment it is checked against, and the
trace switch. ``fastpath.py`` reads stamps (before anything else loads: this module imports os,
sys and filestat only); ``report/stamp.py`` writes them after a full no-op apply.
"""
from __future__ import annotations

import os
import sys

from .filestat import PACKAGE_DIR, code_stamp

FORMAT = 1
SWITCH = "OLIVEPIPE_FASTPATH"
RACY_NS = 1_000_000_000  # a file this close to the stamp's writing is not trusted to it
MAX_STAMP_BYTES = 64 << 20


def env_stamp() -> list:
    """The interpreter, its package folders, olivepipe's code and its settings."""
    folders = []
    for p in sys.path:
        try:
            folders.append([p, os.stat(p or ".").st_mtime_ns])
        except OSError:
            folders.append([p, None])
    env = sorted([k, v] for k, v in os.environ.items() if k.startswith("OLIVEPIPE_") and k != SWITCH)
    return [FORMAT, sys.version, sys.executable, PACKAGE_DIR, folders, code_stamp(), env]


def stamp_file(workflow_real: str) -> str:
    keep = "".join(c if c.isalnum() or c in "._-" else "_" for c in os.path.basename(workflow_real))
    return os.path.join(os.path.dirname(workflow_real), ".olivepipe", "fast", keep + ".json")


def trace(message: str) -> None:
    if os.environ.get(SWITCH) == "trace":
        print(f"olivepipe fast path: {message}", file=sys.stderr)
