"""Content digests with a stat cache, so unchanged files are never read twice.

A file's digest is sha256 of its bytes. The stat cache remembers (device, inode,
size, mtime_ns, ctime_ns) -> digest in SQLite; any change to the file changes one
of those and forces a re-read, whose result replaces the old row (a touched but
unchanged file is read once, then remembered).

The database lives in the workspace's `.olivepipe/`, which a repository could commit
as a symlink: the folder is created with ``confined_dir`` and a symlinked database
(or its -wal/-shm/-journal) is refused; then, or when ``read_only``, digests are
remembered in memory only (an existing database is still read, never written).
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import sqlite3
import threading
from pathlib import Path
from urllib.parse import quote

from .filestat import stat_sig
from .safefs import UnsafePath, confined_dir, open_nofollow

CHUNK = 4 << 20
PIPELINE_MIN = 16 << 20  # below this a second thread costs more than the overlap saves
# files hashed at once (sha256 releases the GIL): one per core this process may run on, up to 4
THREADS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes. A large file is read on a second thread while this one
    hashes (both release the GIL): a cold read and the hashing overlap instead of adding up."""
    with open(path, "rb", buffering=0) as f:
        if os.fstat(f.fileno()).st_size < PIPELINE_MIN:
            return hashlib.file_digest(f, "sha256").hexdigest()
        return _pipelined(f)


def _pipelined(f) -> str:
    if hasattr(os, "posix_fadvise"):
        # a doubled readahead window: the kernel keeps reading while the reader thread waits for a
        # core (1.17x the cold rate, median of 8 alternating pairs on the 2-core machine at load 7;
        # a plain read gained nothing)
        try:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except OSError:
            pass
    h = hashlib.sha256()
    free: queue.Queue = queue.Queue()
    full: queue.Queue = queue.Queue()
    for _ in range(3):  # one being read, one being hashed, one ready
        free.put(bytearray(CHUNK))
    failed: list[BaseException] = []

    def read():
        try:
            while (buf := free.get()) is not None:
                n = f.readinto(buf)
                full.put((buf, n))
                if not n:
                    return
        except BaseException as e:  # handed to the hashing side, which raises it
            failed.append(e)
            full.put((None, 0))

    reader = threading.Thread(target=read, name="olivepipe-read", daemon=True)
    reader.start()
    try:
        while True:
            buf, n = full.get()
            if not n:
                break
            h.update(memoryview(buf)[:n])
            free.put(buf)
    finally:
        free.put(None)
        reader.join()
    if failed:
        raise failed[0]
    return h.hexdigest()


def digest_many(fn, items: list) -> list:
    """``[fn(x) for x in items]``, several at once: hashing threads overlap on several cores
    and several reads keep the disk busy. Plain threads (no concurrent.futures import)."""
    if len(items) < 2 or THREADS == 1:
        return [fn(x) for x in items]
    out: list = [None] * len(items)
    todo = iter(enumerate(items))
    lock = threading.Lock()
    failed: list[BaseException] = []

    def work():
        while True:
            with lock:
                nxt = None if failed else next(todo, None)
            if nxt is None:
                return
            try:
                out[nxt[0]] = fn(nxt[1])
            except BaseException as e:  # the first failure is raised by the caller's thread
                with lock:
                    failed.append(e)
                return

    threads = [threading.Thread(target=work, name="olivepipe-hash", daemon=True)
               for _ in range(min(THREADS, len(items)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise failed[0]
    return out


# json.dumps builds a new encoder per call when given options; keys are computed per planned node
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def canonical(obj) -> str:
    """The one serializer behind keys and lock records: sorted, compact, UTF-8."""
    return _CANONICAL(obj)


def digest_obj(obj) -> str:
    return hashlib.sha256(canonical(obj).encode("utf-8")).hexdigest()


def tree_digest(files: dict[str, str]) -> str:
    """Digest of a folder from its {relative path: file digest} map."""
    return digest_obj(sorted(files.items()))


def _stat_key(st: os.stat_result) -> tuple:
    return stat_sig(st)  # the no-op stamp compares the same figures


class StatCache:
    """Path -> digest memo, invalidated by any stat change. Safe across processes."""

    def __init__(self, db_path: Path | None, *, read_only: bool = False, base: Path | None = None):
        """``base``: the folder below which nothing may be a symlink (default: the parent of
        the database's folder, i.e. the workspace for `.olivepipe/state.db`)."""
        self._lock = threading.Lock()
        self._mem: dict[str, tuple] = {}
        self._walked: dict[str, str] = {}  # folder -> its stat key when tree() listed it
        self._db = None
        self.read_only = read_only
        if db_path is not None:
            self._db, self.read_only = _open_db(Path(db_path), read_only, base)

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
                try:
                    row = self._db.execute("SELECT st, digest FROM stat WHERE path=?", (p,)).fetchone()
                except sqlite3.Error:
                    row = None
                if row and row[0] == key:
                    self._mem[p] = (key, row[1])
                    return row[1]
        d = file_digest(path)
        # a file modified while we read it would get a digest of mixed content: re-stat
        if json.dumps(_stat_key(path.stat())) != key:
            return self.digest(path)
        with self._lock:
            self._mem[p] = (key, d)
            if self._db is not None and not self.read_only:
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
        files = [Path(dirpath) / fn for dirpath, _, filenames in self._walk(str(root)) for fn in filenames]
        files = [p for p in files if p.is_file()]
        return {p.relative_to(root).as_posix(): d for p, d in zip(files, digest_many(self.digest, files))}

    def _walk(self, top: str):
        """os.walk, names sorted, each folder's stat taken before it is listed (``seen``)."""
        try:
            key = json.dumps(_stat_key(os.stat(top)))
            with os.scandir(top) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return
        with self._lock:
            self._walked[os.path.realpath(top)] = key
        dirs = [e for e in entries if e.is_dir()]
        yield top, [e.name for e in dirs], [e.name for e in entries if not e.is_dir()]
        for d in dirs:
            if not d.is_symlink():  # as os.walk: a linked folder is listed, never entered
                yield from self._walk(d.path)

    def seen(self) -> dict[str, str]:
        """{resolved path: stat key} of every file digested and folder listed through this cache,
        as it was when read: what the no-op stamp (fastpath.py) records."""
        with self._lock:
            return {**{p: v[0] for p, v in self._mem.items()}, **self._walked}

    def close(self):
        if self._db is not None:
            self._db.close()
            self._db = None


_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def _open_db(db_path: Path, read_only: bool, base: Path | None):
    """(connection or None, read_only). Never writes through a symlink."""
    folder = db_path.parent
    base = Path(base) if base is not None else folder.parent
    try:
        rel = folder.relative_to(base)
        if not read_only:
            try:
                confined_dir(base, *rel.parts)
            except OSError:
                read_only = True  # a read-only workspace: read what is there
        for suffix in _SIDE_FILES:
            p = Path(f"{db_path}{suffix}")
            if p.is_symlink() or (p.exists() and not p.is_file()):
                return None, True
        cur = base
        for part in rel.parts:  # a symlinked folder on the way, even when only reading
            cur = cur / part
            if cur.is_symlink():
                return None, True
        if read_only:
            if not db_path.is_file():
                return None, True
            # immutable: not even -wal/-shm files appear; rows are checked against the file's stat anyway
            db = sqlite3.connect(f"file:{quote(str(db_path))}?mode=ro&immutable=1", uri=True, timeout=30,
                                 check_same_thread=False, isolation_level=None)
            db.execute("SELECT 1 FROM stat LIMIT 1")
            return db, True
        os.close(open_nofollow(db_path, os.O_RDWR | os.O_CREAT))  # refuses a link planted just now
        db = sqlite3.connect(str(db_path), timeout=30, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS stat (path TEXT PRIMARY KEY, st TEXT, digest TEXT)")
        return db, False
    except (sqlite3.Error, OSError, ValueError, UnsafePath):
        return None, True  # still works, just slower
