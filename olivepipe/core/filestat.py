"""Stat figures that stand for content without reading it: a file's, a folder's, olivepipe's own code's.

Standard library only (os): the no-op fast path imports this before anything else."""
from __future__ import annotations

import os

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # olivepipe/


def stat_sig(st: os.stat_result) -> tuple:
    """What a file's stat data says about its content: the stat cache's key (hashing.py) and the
    no-op stamp's figures (fastpath.py)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def path_sig(path: str | os.PathLike, link: bool = False) -> list | None:
    """A path's stat_sig as the no-op stamp records it (a link's own, with its target), or None
    when it is missing; the lock writer's way to tell whether someone else wrote the lock."""
    try:
        if link:
            return [*stat_sig(os.lstat(path)), os.readlink(path)]
        return list(stat_sig(os.stat(path)))
    except OSError:
        return None


def code_stamp() -> list:
    """mtimes of every module and catalog in the package: an edit of any of them (a node
    kind, a renderer) invalidates every memo and stamp."""
    out = []
    todo = [PACKAGE_DIR]
    while todo:
        d = todo.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False) and e.name != "__pycache__":
                todo.append(e.path)
            elif e.name.endswith((".py", ".json")):
                try:
                    out.append([os.path.relpath(e.path, PACKAGE_DIR), e.stat().st_mtime_ns])
                except OSError:
                    pass
    return out


def folder_id(folder) -> list:
    """A folder's (device, inode): a committed copy of it cannot predict them."""
    st = os.lstat(folder)
    return [st.st_dev, st.st_ino]
