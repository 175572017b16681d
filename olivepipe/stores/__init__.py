"""Stores of node results (see base.py for the protocol every store follows)."""
from __future__ import annotations

import os
from pathlib import Path

from .base import Entry, Store


def open_store(root: str | os.PathLike, *, base: Path | None = None):
    """The store for a cache folder. Today always the local store; ``base``, when given, is a
    folder the root must stay inside (created without following symlinks below it)."""
    from .local import LocalStore

    return LocalStore(root, base=base)


__all__ = ["Entry", "Store", "open_store"]
