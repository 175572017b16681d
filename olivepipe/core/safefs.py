"""Confined writes: olivepipe never writes outside the workspace and its cache.

A repository can carry symlinks (`.olivepipe -> /etc`, `outputs -> ~`); a CI job that
runs `olivepipe validate` on a pull request must not follow them. Every folder
olivepipe creates under a base goes through ``confined_dir`` (no component below the
base may be a symlink or a non-directory), and every file it writes is opened with
O_NOFOLLOW, so a planted link at the last component fails instead of redirecting.
"""
from __future__ import annotations

import errno
import os
import stat
import uuid
from pathlib import Path
from typing import Callable

from .errors import UnsafePath

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _refuse(path: Path, what: str, verb: str = "write") -> UnsafePath:
    return UnsafePath(f"refusing to {verb} {path}: {what}",
                      "olivepipe writes only inside the workspace and its cache; remove the link "
                      "(e.g. `rm .olivepipe` if it is a committed symlink) and run again")


def confined_dir(base: Path, *parts: str | os.PathLike) -> Path:
    """Create ``base/parts...`` as real directories and return it.

    ``base`` must exist (or be creatable) as a directory; every component below it must
    be a real directory, never a symlink. Raises UnsafePath otherwise.
    """
    base = Path(base)
    cur = base
    if not cur.exists():
        cur.mkdir(parents=True, exist_ok=True)
    rel = Path(*parts) if parts else Path()
    if rel.is_absolute() or ".." in rel.parts:
        raise _refuse(base / rel, "path leaves its base folder")
    for part in rel.parts:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            try:
                os.mkdir(cur)
            except FileExistsError:
                pass
            st = os.lstat(cur)
        if stat.S_ISLNK(st.st_mode):
            raise _refuse(cur, "it is a symlink")
        if not stat.S_ISDIR(st.st_mode):
            raise _refuse(cur, "it exists and is not a folder")
    return cur


def check_confined(base: Path, path: Path, verb: str = "write") -> None:
    """Raise UnsafePath if any existing component of ``path`` below ``base`` is a symlink."""
    base, path = Path(base), Path(path)
    try:
        rel = path.relative_to(base)
    except ValueError:
        raise _refuse(path, f"it is not inside {base}", verb) from None
    cur = base
    for part in rel.parts:
        cur = cur / part
        try:
            if stat.S_ISLNK(os.lstat(cur).st_mode):
                raise _refuse(cur, "it is a symlink", verb)
        except FileNotFoundError:
            return


def open_nofollow(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode: int = 0o644) -> int:
    """os.open that refuses a symlink (or FIFO, device) at the last component."""
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0), mode)
    except OSError as e:
        if e.errno == getattr(__import__("errno"), "ELOOP", 40):
            raise _refuse(Path(path), "it is a symlink") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _refuse(Path(path), "it is not a regular file")
    os.set_blocking(fd, True)
    return fd


def open_text(path: Path, mode: str = "w", encoding: str = "utf-8"):
    """A text file object opened without following links (modes w, a)."""
    flags = {"w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND}[mode]
    return os.fdopen(open_nofollow(path, flags), mode, encoding=encoding)


def write_atomic(path: Path, data: bytes | str, *, durable: bool = True) -> None:
    """Write ``path`` through a fresh temp file in the same folder and a rename.

    The temp file is created with O_EXCL|O_NOFOLLOW; a symlink at ``path`` itself is
    replaced by the rename, never written through.
    """
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_state(base: Path, parts: tuple[str, ...], name: str, text_for: Callable[[Path], str]) -> Path:
    """Write a state file ``base/parts.../name`` whose text names the folder it lives in
    (``text_for(folder)``, e.g. the folder's inode, which a committed copy cannot predict):
    the folder created confined, the file written atomically and not durably (losing it only
    costs the work it saves)."""
    folder = confined_dir(base, *parts)
    write_atomic(folder / name, text_for(folder), durable=False)
    return folder / name


def read_regular(path) -> bytes:
    """The bytes of a regular file; OSError otherwise, at once.

    Opened non-blocking and checked with fstat, so a FIFO or a device planted under a
    name olivepipe reads (a lock, a workflow) fails instead of hanging or streaming
    forever. Symlinks are followed: this guards reads, not writes.
    """
    return _read_fd(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)), path)


def _read_fd(fd: int, path, limit: int | None = None) -> bytes:
    """Read an open descriptor (closed after) if it is a regular file; OSError otherwise."""
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, device or socket)", str(path))
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
            fd = -1  # owned by f now
            return f.read() if limit is None else f.read(limit + 1)
    finally:
        if fd >= 0:
            os.close(fd)


def read_confined(base: Path, path: Path, *, limit: int | None = None) -> bytes:
    """The bytes of a regular file inside ``base`` that no symlink below ``base`` leads to: a
    committed link (`.olivepipe/config.yaml -> ~/.ssh/...`, `olivepipe.lock -> /etc/...`) is
    refused, never read. At most ``limit`` + 1 bytes are read (the caller says "too big")."""
    path = Path(path)
    if not path.is_absolute():
        path = Path(base) / path
    check_confined(Path(base), path, "read")
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _refuse(path, "it is a symlink", "read") from None
        raise
    return _read_fd(fd, path, limit)


def user_output(base: Path, path: Path) -> Path:
    """A file a command writes where the user asked (`metrics --plot F`, `show --export D`):
    inside the workspace ``base`` no component of it may be a symlink (folders are made
    confined); outside it, the user named the place, but the last component is still never a
    link. Returns the absolute path; raises UnsafePath."""
    path = Path(os.path.abspath(path))
    base = Path(os.path.abspath(base))
    if path.is_relative_to(base):
        confined_dir(base, path.parent.relative_to(base))
        check_confined(base, path)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        if os.path.islink(path):
            raise _refuse(path, "it is a symlink")
    return path
