"""Inter-process locks on a file (flock): released by the kernel when a process dies,
so a kill -9 never leaves a stale lock behind.

The lock file's folder is created with ``confined_dir`` and the file opened with
O_NOFOLLOW: a committed `.olivepipe -> /elsewhere` symlink (or a planted link at the
lock file) is refused with UnsafePath instead of written through.
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from .errors import OlivepipeError
from .safefs import UnsafePath, confined_dir, open_nofollow


class Busy(OlivepipeError):
    """The lock is held by another process: what holds it, its pid, and the hint."""


class FileMutex:
    def __init__(self, path: Path, *, base: Path | None = None, busy: tuple[str, str] = ("", "")):
        """``base``: the folder below which nothing may be a symlink (default: the lock
        file's grandparent, e.g. the workspace for `.olivepipe/x.lock`). ``busy``: (what holds
        it, hint), what Busy says when another process does."""
        self.path = Path(path)
        self.base = Path(base) if base is not None else self.path.parent.parent
        self.busy = busy
        self.fd: int | None = None

    def _busy(self) -> Busy:
        what, hint = self.busy
        return Busy(f"{what or f'another process holds {self.path}'} (pid {self.holder()})", hint)

    def _open(self) -> int:
        confined_dir(self.base, *self.path.parent.relative_to(self.base).parts)
        return open_nofollow(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    def acquire(self, timeout: float | None = None) -> "FileMutex":
        """timeout None waits forever; 0 fails at once with Busy."""
        fd = self._open()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    os.close(fd)
                    raise self._busy() from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def holder(self) -> str:
        try:
            fd = open_nofollow(self.path, os.O_RDONLY)
        except (OSError, UnsafePath):
            return "?"
        with os.fdopen(fd) as f:
            return f.read().strip() or "?"

    def held_elsewhere(self) -> bool:
        """Whether another process holds the lock now; creates nothing (a read-only probe)."""
        try:
            fd = open_nofollow(self.path, os.O_RDONLY)
        except (OSError, UnsafePath):
            return False  # no lock file: nobody ever held it here
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def check_free(self) -> None:
        """Busy when another process holds the lock now; creates nothing."""
        if self.held_elsewhere():
            raise self._busy()

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
