"""Installed package versions, read cheaply: keys and environment identities ask for them on every plan."""
from __future__ import annotations

import functools
import os


@functools.lru_cache(maxsize=1)
def _dist_infos() -> dict[str, str]:
    """{normalized name: version} from the *.dist-info folders on sys.path, first wins.

    A directory listing per path entry instead of importlib.metadata's machinery:
    keys need ~10 versions on every plan, and this is the hot path of a no-op apply.
    """
    import sys

    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for n in names:
            if n.endswith(".dist-info"):
                name, _, ver = n[: -len(".dist-info")].partition("-")
                found.setdefault(_norm(name), ver)
    return found


def _norm(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


@functools.lru_cache(maxsize=None)
def version(dist: str) -> str | None:
    v = _dist_infos().get(_norm(dist))
    if v is not None:
        return v
    from importlib import metadata  # egg-info and other layouts: the slow, general way

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
