"""The `olivepipe` console script: the no-op fast path first, else the full command line."""
from __future__ import annotations

import sys


def main():
    from ..fastpath import answer

    code = answer(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from . import main as full

    return full()
