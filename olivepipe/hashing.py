"""Content digests with a stat cache, so unchanged files are never read twice.

A file's digest is sha256 of its bytes. The stat cache remembers (device, inode,
size, mtime_ns, ctime_ns) -> digest in SQLite; any change to the file changes one
of those and forces a re-read.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path

CHUNK = 1 << 20


def file_digest(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def canonical(obj) -> str:
    """The one serializer behind keys and lock records: sorted, compact, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest_obj(obj) -> str:
    return hashlib.sha256(canonical(obj).encode("utf-8")).hexdigest()


def tree_digest(files: dict[str, str]) -> str:
    """Digest of a folder from its {relative path: file digest} map."""
    return digest_obj(sorted(files.items()))


def _stat_key(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class StatCache:
    """Path -> digest memo, invalidated by any stat change. Safe across processes."""

    def __init__(self, db_path: Path | None):
        self._lock = threading.Lock()
        self._mem: dict[str, tuple] = {}
        self._db = None
        if db_path is not None:
            try:
                db_path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(str(db_path), timeout=30, check_same_thread=False, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("CREATE TABLE IF NOT EXISTS stat (path TEXT PRIMARY KEY, st TEXT, digest TEXT)")
            except sqlite3.Error:
                self._db = None  # a read-only workspace still works, just slower

    def digest(self, path: Path) -> str:
        path = Path(path)
        st = path.stat()
        key = json.dumps(_stat_key(st))
        p = str(path.resolve())
        with self._lock:
            hit = self._mem.get(p)
            if hit and hit[0] == key:
                return hit[1]
            if self._db is not None:
                row = self._db.execute("SELECT st, digest FROM stat WHERE path=?", (p,)).fetchone()
                if row and row[0] == key:
                    self._mem[p] = (key, row[1])
                    return row[1]
        d = file_digest(path)
        # a file modified while we read it would get a digest of mixed content: re-stat
        if json.dumps(_stat_key(path.stat())) != key:
            return self.digest(path)
        with self._lock:
            self._mem[p] = (key, d)
            if self._db is not None:
                try:
                    self._db.execute("INSERT OR REPLACE INTO stat VALUES (?,?,?)", (p, key, d))
                except sqlite3.Error:
                    pass
        return d

    def tree(self, root: Path) -> dict[str, str]:
        """{relative posix path: digest} for every regular file under root (or root itself)."""
        root = Path(root)
        if root.is_file():
            return {root.name: self.digest(root)}
        out = {}
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for fn in sorted(filenames):
                p = Path(dirpath) / fn
                if p.is_file():
                    out[p.relative_to(root).as_posix()] = self.digest(p)
        return out

    def close(self):
        if self._db is not None:
            self._db.close()
            self._db = None
