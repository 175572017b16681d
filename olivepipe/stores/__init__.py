"""Stores of node results (see base.py for the protocol every store follows)."""
from __future__ import annotations

import os
from pathlib import Path

from .base import Entry, Store


def open_store(root: str | os.PathLike, *, base: Path | None = None, workspace: Path | None = None,
               env=None):
    """The store for a cache folder: the local store, or, when a remote cache is configured
    (stores/config.py: OLIVEPIPE_REMOTE_CACHE, or `cache.remote` in `.olivepipe/config.yaml`),
    a TieredStore of the local store in front of it. ``base``, when given, is a folder the root
    must stay inside (created without following symlinks below it). ``workspace`` is the folder
    whose `.olivepipe/config.yaml` is read; by default ``base``, or the folder holding a
    `.olivepipe/cache` root. Opening makes no request: the remote is contacted on first use."""
    from .config import remote_config
    from .local import LocalStore

    local = LocalStore(root, base=base)
    if workspace is None:
        workspace = _workspace_of(local.root, base)
    cfg = remote_config(workspace, env)
    if cfg is None:
        return local
    from .blob import BlobStore
    from .tiered import TieredStore

    return TieredStore(local, BlobStore.from_config(cfg, env), push=cfg.push)


def _workspace_of(root: Path, base: Path | None) -> Path | None:
    if base is not None:
        return Path(base)
    if root.parent.name == ".olivepipe":  # the default <workspace>/.olivepipe/cache
        return root.parent.parent
    return None


__all__ = ["Entry", "Store", "open_store"]
