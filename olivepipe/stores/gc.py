"""What a garbage collection must keep, and the collection itself.

Kept: every key that a lock file below the folder gc is run for references, and every key
that a lock file registered with the store (``store.register_root``, done by apply)
references, wherever it lives, while that file exists. The whole run holds the store's
lease exclusively, so it never races an apply that has published a result but not yet
written it into its lock; while an apply runs, gc refuses and deletes nothing.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..core import lock as lockfile
from ..core.errors import OlivepipeError

SKIP_DIRS = {".git", ".olivepipe", "outputs", "node_modules", ".venv", "__pycache__"}


def _locks_in(dirpath: str, filenames: list[str]) -> list[Path]:
    """A folder's lock files: its olivepipe.lock and its rehearsal lock (.olivepipe/rehearsal.lock:
    a rehearsal's results are what the next rehearsal reuses, so gc keeps them too)."""
    out = [Path(dirpath) / "olivepipe.lock"] if "olivepipe.lock" in filenames else []
    rehearsal = Path(dirpath) / ".olivepipe" / "rehearsal.lock"
    return out + ([rehearsal] if rehearsal.is_file() and not rehearsal.is_symlink() else [])


def referenced_keys(root: Path) -> set[str]:
    keys, unreadable = set(), []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for path in _locks_in(dirpath, filenames):
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


def registered_keys(store, *, prune: bool = False) -> set[str]:
    """Keys referenced by the lock files registered with ``store``; ``prune`` forgets
    registrations whose lock file is gone."""
    keys, unreadable = set(), []
    for path in store.roots():
        if not path.exists():
            if prune:
                store.unregister_root(path)
            continue
        try:
            keys |= _keys(lockfile.read(path))
        except (OlivepipeError, OSError, AttributeError, TypeError):
            unreadable.append(path)
    if unreadable:
        raise OlivepipeError(f"cannot read {', '.join(map(str, unreadable))} (a lock file that uses this cache); "
                             "nothing was deleted",
                             "restore the lock file (git checkout), or pass --force to delete regardless")
    return keys


def collect(store, folder: Path, *, force: bool = False, dry_run: bool = False) -> dict:
    """Run gc on ``store``: the result of ``store.gc`` plus "kept" (how many keys lock files
    protect). Raises StoreBusy while an apply holds the store's lease."""
    if not Path(store.root).is_dir():
        return {"entries_removed": [], "bytes_freed": 0, "staging_removed": 0, "objects_removed": 0, "kept": 0}
    with store.lease(exclusive=True, wait=False):  # before reading locks: nothing publishes meanwhile
        keep = set() if force else referenced_keys(folder) | registered_keys(store, prune=not dry_run)
        res = store.gc(keep, dry_run=dry_run)
    return {**res, "kept": len(keep)}


def _keys(data: dict) -> set[str]:
    return {rec["key"] for wf in data["workflows"].values() for rec in (wf.get("nodes") or {}).values()
            if rec.get("key")}


def committed_keys(lock_path: Path, revs: list[str]) -> set[str]:
    """Keys the lock file references now and in each git revision of ``revs`` (as `dvc gc -c
    --rev` scopes it): what `cache gc --remote` keeps. A revision without the lock file keeps
    nothing; an unknown revision or an unreadable lock is an error, and nothing is deleted."""
    import subprocess

    keys = set()
    if lock_path.exists():
        keys |= _keys(lockfile.read(lock_path))
    if not revs:
        return keys

    def git(*args) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(["git", *args], cwd=lock_path.parent, capture_output=True, timeout=120)
        except FileNotFoundError:
            raise OlivepipeError("--rev needs git, which is not installed", "install git, or leave out --rev") \
                from None

    top = git("rev-parse", "--show-toplevel")
    if top.returncode:
        raise OlivepipeError(f"--rev: {lock_path.parent} is not in a git repository; nothing was deleted",
                             "leave out --rev to keep what the lock file references now")
    rel = Path(os.path.relpath(lock_path.resolve(), top.stdout.decode().strip())).as_posix()
    for rev in revs:
        if not rev or rev.startswith("-") or "\0" in rev:
            raise OlivepipeError(f"--rev {rev!r} is not a revision", "e.g. --rev main --rev v1.2")
        if git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").returncode:
            raise OlivepipeError(f"--rev {rev}: no such revision; nothing was deleted", "e.g. --rev main")
        shown = git("show", "--no-textconv", f"{rev}:{rel}")
        if shown.returncode:
            continue  # the lock did not exist in that revision: it references nothing
        try:
            keys |= _keys(lockfile.loads(shown.stdout.decode("utf-8"), f"{rev}:{rel}"))
        except (UnicodeDecodeError, AttributeError, TypeError):
            raise OlivepipeError(f"{rev}:{rel} is not a lock file; nothing was deleted", "") from None
    return keys
