"""The local store: node results in a folder, by key.

Layout under the (absolute) store root:
  entries/ke/key.../      manifest.json (immutable) + tree/ (the result's files); files 0444, dirs 0555
  objects/di/digest...    one inode per distinct large file; entry files are hard links to it
  stamps/ke/key....json   stat (size, mtime_ns) last seen for verified content; rewritable
  roots/<hash>.json       lock files that reference entries ({"lock": "/abs/olivepipe.lock"}), for gc
  locks/<name>.lock       flock held by whoever uses tmp/<name> (kernel-released when it dies)
  lease                   flock: shared by applies, exclusive by gc
  tmp/                    staging, quarantined entries, trash; never served from

Dedup: only files of at least LINK_MIN bytes are linked, and never anything under a folder
holding a .onnx file, nor a file some .onnx names as external data: onnx/onnx_ir refuse
external data with more than one link ("hard link attack"). An object is only an index for
dedup: deleting one never takes bytes from an entry, which holds its own link.

An entry appears by one rename of a complete folder (a replacement by one RENAME_EXCHANGE),
so a crash leaves the old entry or the new one, never half of either. A hit (``get``) is
checked by stat (every file present with its size, nothing extra); a file whose mtime
differs from its stamp is re-hashed and, if unchanged, re-stamped, so a copied or synced
cache stays valid. A broken entry is moved aside to tmp/ (quarantined), never served.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import stat
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import StoreError, StoreBusy
from ..core.filestat import stat_sig
from ..core.hashing import digest_many, digest_obj, file_digest, tree_digest
from ..core.safefs import UnsafePath, confined_dir, open_nofollow, open_text, write_atomic
from .base import Entry
from .manifest import FORMAT, BadManifest, parse as parse_manifest, is_key as _is_key
from .manifest import check_key as _check_key, reader_problems, safe_label as _safe_label

MANIFEST = "manifest.json"
LINK_MIN = 64 * 1024  # below this a shared block costs about what a link saves
FILE_MODE, DIR_MODE = 0o444, 0o555



@dataclass(frozen=True)
class LocalEntry(Entry):
    """An entry of the local store. ``path``/``tree`` are for callers written before the
    store seam; new code asks ``store.fetch(entry)`` for the folder."""

    path: Path | None = None  # the entry directory

    @property
    def tree(self) -> Path:
        return self.path / "tree"


class LocalStore:
    def __init__(self, root: str | os.PathLike, *, base: Path | None = None):
        # absolute now: workers run in other folders, and a relative staging path there
        # is another folder (an empty result got published that way)
        self.root = Path(os.path.abspath(root))
        self.base = Path(os.path.abspath(base)) if base is not None else None
        self.entries = self.root / "entries"
        self.objects = self.root / "objects"
        self.stamps = self.root / "stamps"
        self.roots_dir = self.root / "roots"
        self.locks = self.root / "locks"
        self.tmp = self.root / "tmp"
        self.quarantined: dict[str, list[str]] = {}  # key -> problems, for callers to report
        self._staging: dict[str, int] = {}  # staging folder -> fd holding its flock
        self._mutex = threading.Lock()
        self._lease_fd: int | None = None
        self._lease_depth = 0
        self._lease_exclusive = False

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # -- folders ---------------------------------------------------------------------------
    def ensure(self) -> None:
        """Create the store's folders (confined: no symlink below the root or ``base``)."""
        try:
            if self.base is not None:
                confined_dir(self.base, self.root.relative_to(self.base))
            for d in ("entries", "objects", "stamps", "roots", "locks", "tmp"):
                confined_dir(self.root, d)
        except UnsafePath:
            raise
        except ValueError:
            raise StoreError(f"cache store {self.root} is not inside {self.base}",
                             "point --cache-dir inside the workspace, or leave it unset") from None
        except OSError as e:
            raise StoreError(f"cannot create cache store at {self.root}: {e.strerror}",
                             "set OLIVEPIPE_CACHE_DIR or --cache-dir to a writable folder") from None
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"cache store {self.root} is not writable",
                             "fix its permissions or point --cache-dir elsewhere")

    def entry_dir(self, key: str) -> Path:
        _check_key(key)
        return self.entries / key[:2] / key

    # -- reading -----------------------------------------------------------------------------
    def load(self, key: str) -> LocalEntry | None:
        """The entry as its manifest says, unchecked (for ls/verify). Never writes."""
        try:
            return self._read(key)
        except _Unreadable:
            return None

    def peek(self, key: str, *, rehash: bool = True) -> LocalEntry | None:
        """Side-effect free (never writes, deletes or re-stamps): an entry if it is complete and
        unchanged. A file whose mtime differs from its stamp is re-read (``rehash=False``: only
        stat is checked), so plan says "will run" exactly when apply's ``get`` would rebuild."""
        try:
            entry = self._read(key)
        except _Unreadable:
            return None
        if entry is None:
            return None
        problems, _ = self._health(entry, rehash=rehash)
        return None if problems else entry

    def get(self, key: str, *, check: bool = True) -> LocalEntry | None:
        """Health-checked lookup for apply; a broken entry is quarantined (see ``quarantined``)
        and counts as a miss. ``check=False`` is ``load`` (kept for older callers)."""
        if not check:
            return self.load(key)
        for _ in range(5):  # again if a concurrent replace swapped the entry mid-check
            d = self.entry_dir(key)
            try:
                ino = os.lstat(d).st_ino
            except FileNotFoundError:
                return None
            try:
                entry = self._read(key)
            except _Unreadable as e:
                problems = [f"manifest: {e}"]
                entry = None
            else:
                if entry is None:
                    return None
                problems, verified = self._health(entry, rehash=True)
                if not problems:
                    if verified:
                        self._restamp(entry, verified)
                    return entry
            if _ino(d) != ino:
                continue
            self.quarantine(key, problems, entry)
            return None
        return None  # replaced faster than it can be checked: a miss, nothing set aside

    def health(self, entry: Entry, *, rehash: bool = True) -> list[str]:
        """What is wrong with an entry (empty: it can be served). Never writes."""
        return self._health(entry, rehash=rehash)[0]

    def verify(self, entry: Entry) -> list[str]:
        """Full check: re-hash every file against the manifest. Never writes."""
        return self.verify_all([entry])[0]

    def verify_all(self, entries: list[Entry]) -> list[list[str]]:
        """``verify`` of each entry (`cache verify`): every distinct file (by inode and stat data) is
        read once however many entries share it through a hard link, and files are hashed several
        at once across entries (one large file per entry would otherwise keep one core busy)."""
        found = []  # (entry, its problems so far, [(rel, digest wanted, stat data)])
        todo: dict = {}  # stat data -> path, each distinct file once
        for entry in entries:
            tree = self._tree(entry)
            problems = self._health(entry, rehash=False)[0]
            known = {p.partition(": ")[0] for p in problems}
            checks = []
            for rel, f in sorted(entry.manifest["files"].items()):
                p = tree / rel
                if rel in known or not os.path.isfile(p) or os.path.islink(p):
                    continue
                sig = stat_sig(os.stat(p))
                checks.append((rel, f["digest"], sig))
                todo.setdefault(sig, p)
            found.append((entry, problems, checks))
        digests = dict(zip(todo, digest_many(file_digest, list(todo.values()))))
        out = []
        for entry, problems, checks in found:
            problems += [f"{rel}: content does not match its digest" for rel, want, sig in checks if digests[sig] != want]
            if tree_digest({k: v["digest"] for k, v in entry.manifest["files"].items()}) != entry.digest:
                problems.append("manifest: file digests do not add up to the entry digest")
            out.append(problems + reader_problems(entry.manifest))
        return out

    def keys(self) -> list[str]:
        if not self.entries.is_dir():
            return []
        out = []
        for sub in self.entries.iterdir():
            if sub.is_dir() and not sub.is_symlink():
                out += [p.name for p in sub.iterdir() if p.is_dir() and not p.is_symlink() and _is_key(p.name)]
        return sorted(out)

    def fetch(self, entry: Entry, dest: Path | None = None) -> Path:
        """The entry's tree (read-only; no copy), or a copy of it at ``dest``."""
        tree = self.entry_dir(entry.key) / "tree"
        if not tree.is_dir():
            raise StoreError(f"result {entry.key[:12]} is no longer in the cache at {self.root}",
                             "run apply again: it is rebuilt")
        if dest is None:
            return tree
        dest = Path(dest)
        shutil.copytree(tree, dest, symlinks=True)
        return dest

    def _tree_files(self, keys):
        """(file name, lstat) of every file in the trees of ``keys`` (vanished ones skipped)."""
        for k in keys:
            for dirpath, _, filenames in os.walk(self.entry_dir(k) / "tree"):
                for fn in filenames:
                    try:
                        yield fn, os.lstat(os.path.join(dirpath, fn))
                    except OSError:
                        continue

    def disk_usage(self) -> int:
        """Bytes of the entries' files, each distinct file (inode) once."""
        seen, total = set(), 0
        for _, st in self._tree_files(self.keys()):
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
        return total

    # -- writing -----------------------------------------------------------------------------
    def staging(self, label: str) -> Path:
        """A fresh private folder in tmp/ (same filesystem, so publish can rename), guarded by
        a flock this process holds until the folder is gone: gc never takes it from a live
        creator, whatever its PID looks like from another PID namespace."""
        self.ensure()
        self._reap()
        name = f"{_safe_label(label)}-{uuid.uuid4().hex[:12]}"
        fd = self._lock_new(self.locks / f"{name}.lock")
        try:
            d = confined_dir(self.tmp, name)
        except BaseException:
            self._unlock(self.locks / f"{name}.lock", fd)
            raise
        with self._mutex:
            self._staging[str(d)] = fd
        return d

    def discard(self, staging: Path) -> None:
        """Delete a staging folder and drop its lock (optional: gone folders are reaped anyway)."""
        _rmtree(Path(staging))
        self._reap()

    def publish(self, key: str, src: Path, meta: dict, *, replace: bool = False) -> LocalEntry:
        """Make ``src``'s files the entry ``key`` (moved in; copied if on another filesystem).
        Without replace an existing healthy entry wins; with replace the complete new entry
        takes the old one's place in one step, and a failure before that leaves the old one."""
        _check_key(key)
        if not replace:
            existing = self.get(key)
            if existing:
                return existing
        self.ensure()
        build = self.staging(f"entry-{key[:12]}")
        tree = build / "tree"
        final = self.entry_dir(key)
        try:
            _move_in(Path(src), tree)
            files = self._index(tree)
            manifest = {"format": FORMAT, "key": key, "id": uuid.uuid4().hex,
                        "digest": tree_digest({k: v["digest"] for k, v in files.items()}),
                        "files": files, "created": time.time(), **meta}
            _write_durable(build / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
            os.chmod(build / MANIFEST, FILE_MODE)
            _chmod_dirs(tree, DIR_MODE)
            confined_dir(self.entries, key[:2])
            entry = self._place(key, build, final, replace)
        except StoreError:
            _rmtree(build)
            raise
        except OSError as e:
            _rmtree(build)
            raise StoreError(f"could not store result {key[:12]}: {e.strerror or e}",
                             "check free disk space and permissions of the cache folder") from None
        except BaseException:
            _rmtree(build)
            raise
        finally:
            self._release_staging(build)
        return entry or LocalEntry(key, manifest, "local", final)

    def remove(self, key: str) -> None:
        """Drop an entry (copes with its read-only folders). Objects are left to gc."""
        d = self.entry_dir(key)
        if not os.path.lexists(d):
            return
        trash = self.tmp / f"trash-{key[:12]}-{uuid.uuid4().hex[:8]}"
        try:
            confined_dir(self.root, "tmp")
            _make_movable(d)
            os.rename(d, trash)  # disappears atomically, then deleted at leisure
        except OSError:
            trash = d
        _rmtree(trash)
        self._drop_stamps(key)

    def quarantine(self, key: str, problems: list[str], entry: Entry | None = None) -> Path | None:
        """Move a broken entry aside to tmp/quarantine-... with a note of what was wrong."""
        d = self.entry_dir(key)
        self.quarantined[key] = list(problems)
        import logging  # only on this rare path: a no-op apply should not pay for logging's import

        logging.getLogger("olivepipe.store").warning("cached result %s is broken and was set aside: %s",
                                                     key[:12], "; ".join(problems[:5]))
        q = None
        try:
            q = confined_dir(self.root, "tmp", f"quarantine-{key[:16]}-{uuid.uuid4().hex[:8]}")
            with open_text(q / "problems.txt") as f:
                f.write("\n".join(problems) + "\n")
            _make_movable(d)
            os.rename(d, q / "entry")
        except OSError:  # someone else moved it first, or a read-only store: still a miss
            if q is not None:
                _rmtree(q)
            return None
        self._drop_stamps(key)
        if entry is not None:  # a changed linked file changed its object too: never link to it again
            for p in problems:
                rel = p.partition(": ")[0]
                f = entry.manifest["files"].get(rel)
                if f and "content changed" in p:
                    obj = self._object(f["digest"])
                    if _ino(obj) is not None and _ino(obj) == _ino(q / "entry" / "tree" / rel):
                        try:
                            os.rename(obj, q / f"object-{f['digest'][:16]}")
                        except OSError:
                            pass
        return q

    # -- lease and roots (gc) ------------------------------------------------------------------
    #: what this workspace accepts from a shared cache: nothing, it has none (tiered.TieredStore has)
    trust_note = ""

    @contextmanager
    def lease(self, *, exclusive: bool = False, wait: bool = True):
        """Shared (applies, held while they may publish) or exclusive (gc). Re-entrant per
        store object. ``wait=False`` raises StoreBusy instead of waiting."""
        with self._mutex:
            if self._lease_depth:
                if exclusive and not self._lease_exclusive:  # this process is applying
                    raise StoreBusy(f"an `olivepipe apply` is using the cache at {self.root}; nothing was deleted",
                                    "run it again when the apply has finished")
                self._lease_depth += 1
                nested = True
            else:
                nested = False
        if nested:
            try:
                yield self
            finally:
                with self._mutex:
                    self._lease_depth -= 1
            return
        self.ensure()
        fd = open_nofollow(self.root / "lease", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise StoreBusy(f"an `olivepipe apply` (or another gc) is using the cache at {self.root}; "
                            "nothing was deleted", "run it again when the apply has finished") from None
        with self._mutex:
            self._lease_fd, self._lease_depth, self._lease_exclusive = fd, 1, exclusive
        try:
            yield self
        finally:
            with self._mutex:
                self._lease_depth, self._lease_fd = 0, None
            os.close(fd)  # releases the flock

    def register_root(self, lock_path: Path) -> None:
        """Record that the lock file at ``lock_path`` references entries here: gc run from any
        folder keeps them while that file exists."""
        path = os.path.abspath(lock_path)
        f = confined_dir(self.root, "roots") / f"{digest_obj(path)[:32]}.json"
        text = json.dumps({"lock": path})
        try:
            if f.read_text() == text:
                return
        except OSError:
            pass
        write_atomic(f, text, durable=False)

    def roots(self) -> list[Path]:
        """Lock files registered with ``register_root`` (whether they still exist or not)."""
        out = []
        if self.roots_dir.is_dir():
            for f in sorted(self.roots_dir.glob("*.json")):
                try:
                    p = json.loads(f.read_text())["lock"]
                except (OSError, ValueError, KeyError, TypeError):
                    continue
                if isinstance(p, str) and os.path.isabs(p):
                    out.append(Path(p))
        return out

    def unregister_root(self, lock_path: Path) -> None:
        try:
            os.unlink(self.roots_dir / f"{digest_obj(os.path.abspath(lock_path))[:32]}.json")
        except FileNotFoundError:
            pass

    def gc(self, keep: set[str], *, dry_run: bool = False) -> dict:
        """Drop entries not in ``keep``, objects no entry links, stamps of gone entries, and
        tmp/ folders nobody holds. Under the exclusive lease: refuses (StoreBusy) while an
        apply runs."""
        if not self.root.is_dir():
            return {"entries_removed": [], "bytes_freed": 0, "staging_removed": 0, "objects_removed": 0}
        with self.lease(exclusive=True, wait=False):
            self._reap()
            removed = [k for k in self.keys() if k not in keep]
            freed = self._bytes_freed(removed)
            if not dry_run:
                for k in removed:
                    self.remove(k)
            return {"entries_removed": removed, "bytes_freed": freed,
                    "staging_removed": self._sweep_tmp(dry_run), "objects_removed": self._sweep_objects(dry_run)}

    # -- internals -----------------------------------------------------------------------------
    def _read(self, key: str) -> LocalEntry | None:
        _check_key(key)
        # as entry_dir, in strings: plan asks this once per node, and a miss needs no Path at all
        d = os.path.join(self.entries, key[:2], key)
        if not os.access(d, os.F_OK, follow_symlinks=False):  # nothing there (the common miss): no exception
            return None
        try:
            fd = os.open(os.path.join(d, MANIFEST), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            if os.path.lexists(d):
                raise _Unreadable("missing (an unfinished entry)") from None
            return None
        except OSError as e:
            raise _Unreadable(f"unreadable ({e.strerror})") from None
        try:
            with os.fdopen(fd, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise _Unreadable(f"unreadable ({e.strerror})") from None
        try:  # valid JSON but mangled is as untrustworthy as unreadable
            manifest = parse_manifest(raw, key)
        except BadManifest as e:
            raise _Unreadable(str(e) if str(e) == "not valid JSON" else f"not a well-formed olivepipe manifest: {e}"
                              ) from None
        return LocalEntry(key, manifest, "local", Path(d))

    def _tree(self, entry: Entry) -> Path:
        return self.entry_dir(entry.key) / "tree"

    def _health(self, entry: Entry, *, rehash: bool) -> tuple[list[str], dict]:
        """(problems, {rel: [size, mtime_ns]} re-hashed and found unchanged). Never writes."""
        tree = self._tree(entry)
        files = entry.manifest["files"]
        stamps = self._stamps_of(entry)
        found: dict[str, str] = {}  # rel -> its problem
        rehashed = {}  # rel -> mtime_ns, for files re-read below
        for rel, f in sorted(files.items()):
            p = tree / rel
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                found[rel] = f"{rel}: missing"
                continue
            except OSError as e:
                found[rel] = f"{rel}: unreadable ({e.strerror})"
                continue
            if not stat.S_ISREG(st.st_mode):
                found[rel] = f"{rel}: not a regular file"
            elif st.st_size != f["size"]:
                found[rel] = f"{rel}: {st.st_size} bytes, published with {f['size']}"
            elif stamps.get(rel) != st.st_mtime_ns and rehash:
                # a new mtime alone proves nothing (cp -r, rsync, touch): the content decides
                rehashed[rel] = st.st_mtime_ns
        verified = {}
        # several files at once (a copied store: every shard has a new mtime)
        for rel, (digest, err) in zip(rehashed, digest_many(_digest_or_error, [tree / rel for rel in rehashed])):
            if err is not None:
                found[rel] = f"{rel}: unreadable ({err})"
            elif digest == files[rel]["digest"]:
                verified[rel] = rehashed[rel]
            else:
                found[rel] = f"{rel}: content changed since publish"
        problems = [found[rel] for rel in sorted(found)]
        problems += [f"{rel}: not in the manifest" for rel in _extras(tree, files)]
        if not os.path.isdir(tree) or os.path.islink(tree):
            problems.insert(0, "tree: missing")
        return problems, verified

    def _stamps_of(self, entry: Entry) -> dict:
        """{rel: mtime_ns} last seen with verified content: the stamps file if it belongs to this
        very entry (same manifest id), else what publish recorded."""
        out = {rel: f.get("mtime_ns") for rel, f in entry.manifest["files"].items()}
        try:
            data = json.loads((self.stamps / entry.key[:2] / f"{entry.key}.json").read_text())
            if data.get("id") == _entry_id(entry.manifest) and isinstance(data.get("files"), dict):
                out.update({k: v for k, v in data["files"].items() if k in out and isinstance(v, int)})
        except (OSError, ValueError, AttributeError):
            pass
        return out

    def _restamp(self, entry: Entry, verified: dict) -> None:
        stamps = {**self._stamps_of(entry), **verified}
        try:
            d = confined_dir(self.root, "stamps", entry.key[:2])
            write_atomic(d / f"{entry.key}.json", json.dumps({"id": _entry_id(entry.manifest), "files": stamps}),
                         durable=False)
        except OSError:
            pass  # a read-only store: verified again next time

    def _drop_stamps(self, key: str) -> None:
        try:
            os.unlink(self.stamps / key[:2] / f"{key}.json")
        except OSError:
            pass

    def _index(self, tree: Path) -> dict:
        """Make ``tree`` a self-contained, read-only result; return its manifest files."""
        regular = {}
        for dirpath, dirnames, filenames in os.walk(tree):
            for name in list(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                p = Path(dirpath) / name
                st = os.lstat(p)
                if stat.S_ISREG(st.st_mode):
                    regular[p.relative_to(tree).as_posix()] = p
                else:
                    os.unlink(p)  # links, fifos, sockets: a result is self-contained; links could point anywhere
        no_link = check_onnx(tree, regular)
        onnx_dirs = {os.path.dirname(rel) for rel in regular if rel.lower().endswith(".onnx")}
        files = {}
        rels = sorted(regular)
        for rel in rels:
            p = regular[rel]
            if os.lstat(p).st_nlink > 1:  # linked to a file outside the result: take a private copy
                tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.copy")
                shutil.copy2(p, tmp)
                os.replace(tmp, p)
            os.chmod(p, FILE_MODE)
        digests = digest_many(file_digest, [regular[rel] for rel in rels])  # several shards at once
        for rel, digest in zip(rels, digests):
            p = regular[rel]
            size = os.lstat(p).st_size
            if size >= LINK_MIN and rel not in no_link and not _under(rel, onnx_dirs):
                self._link_object(p, digest, size)
            files[rel] = {"digest": digest, "size": size, "mtime_ns": os.lstat(p).st_mtime_ns}
        return files

    def _object(self, digest: str) -> Path:
        return self.objects / digest[:2] / digest

    def _link_object(self, path: Path, digest: str, size: int) -> None:
        """Share ``path``'s bytes with an identical earlier file (or make it the shared copy).
        Any failure (no hard links here, too many links, another owner) keeps the copy."""
        try:
            obj = confined_dir(self.objects, digest[:2]) / digest
        except OSError:
            return
        for _ in range(3):
            try:
                ost = os.lstat(obj)
            except FileNotFoundError:
                try:
                    os.link(path, obj)
                    return
                except FileExistsError:
                    continue  # another publisher made it first: use theirs
                except OSError:
                    return
            if ost.st_ino == os.lstat(path).st_ino:
                return
            # an object can have been changed in place through an entry: trust its bytes, not its name
            if not stat.S_ISREG(ost.st_mode) or ost.st_size != size or not _same_bytes(obj, path):
                try:
                    os.rename(obj, self.tmp / f"quarantine-object-{digest[:16]}-{uuid.uuid4().hex[:8]}")
                except OSError:
                    return
                continue
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.link")
            try:
                os.link(obj, tmp)
            except FileNotFoundError:
                continue  # gc dropped it meanwhile
            except OSError:
                return
            os.replace(tmp, path)
            return

    def _place(self, key: str, build: Path, final: Path, replace: bool) -> LocalEntry | None:
        """Rename the built entry into place. None: ours is in place; else the winner's entry."""
        if replace and os.path.lexists(final):
            _make_movable(final)
            if _exchange(build, final):  # atomic: readers see the old entry or the new one
                os.chmod(final, DIR_MODE)
                self._drop_stamps(key)
                _rmtree(build)  # now the old entry
                return None
            aside = self.tmp / f"trash-{key[:12]}-{uuid.uuid4().hex[:8]}"
            os.rename(final, aside)
            try:
                os.rename(build, final)
            except BaseException:
                os.rename(aside, final)
                raise
            os.chmod(final, DIR_MODE)
            self._drop_stamps(key)
            _rmtree(aside)
            return None
        try:
            os.rename(build, final)
        except OSError:
            if not os.path.lexists(final):
                raise
            theirs = self.get(key)  # another process published the same key first: theirs wins
            if theirs is not None:
                _rmtree(build)
                return theirs
            os.rename(build, final)  # theirs was broken and is set aside now
        os.chmod(final, DIR_MODE)
        self._drop_stamps(key)
        return None

    def _lock_new(self, path: Path) -> int:
        confined_dir(self.root, "locks")
        while True:
            fd = open_nofollow(path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _ino(path) == os.fstat(fd).st_ino:  # gc can unlink a lock it took just before we locked it
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
            os.close(fd)

    def _unlock(self, path: Path, fd: int) -> None:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)

    def _release_staging(self, d: Path) -> None:
        with self._mutex:
            fd = self._staging.pop(str(d), None)
        if fd is not None:
            self._unlock(self.locks / f"{Path(d).name}.lock", fd)

    def _reap(self) -> None:
        """Drop the locks of our staging folders that their users deleted."""
        with self._mutex:
            gone = [d for d in self._staging if not os.path.lexists(d)]
        for d in gone:
            self._release_staging(Path(d))

    def _sweep_tmp(self, dry_run: bool) -> int:
        """Delete tmp/ folders whose lock nobody holds (and lock files without a folder)."""
        n = 0
        names = set()
        if self.tmp.is_dir():
            for d in self.tmp.iterdir():
                names.add(d.name)
                lock = self.locks / f"{d.name}.lock"
                if os.path.lexists(lock):
                    fd = _try_lock(lock)
                    if fd is None:
                        continue  # its creator is alive
                    if not dry_run:
                        _rmtree(d)
                        self._unlock(lock, fd)
                    else:
                        os.close(fd)
                    n += 1
                elif not _legacy_alive(d.name):
                    if not dry_run:
                        _rmtree(d) if d.is_dir() and not d.is_symlink() else d.unlink()
                    n += 1
        if self.locks.is_dir() and not dry_run:
            for lock in self.locks.glob("*.lock"):
                if lock.name[:-5] not in names and lock.name[:-5] not in (Path(s).name for s in self._staging):
                    fd = _try_lock(lock)
                    if fd is not None:
                        self._unlock(lock, fd)
        return n

    def _sweep_objects(self, dry_run: bool) -> int:
        n = 0
        if self.objects.is_dir():
            for sub in self.objects.iterdir():
                for obj in (sub.iterdir() if sub.is_dir() and not sub.is_symlink() else ()):
                    try:
                        st = os.lstat(obj)
                    except OSError:
                        continue
                    if st.st_nlink <= 1:  # no entry links it: only an index entry now
                        n += 1
                        if not dry_run:
                            try:
                                os.unlink(obj)
                            except OSError:
                                pass
        if self.stamps.is_dir() and not dry_run:
            live = set(self.keys())
            for f in self.stamps.glob("*/*.json"):
                if f.stem not in live:
                    f.unlink()
        return n

    def _bytes_freed(self, removed: list[str]) -> int:
        """Distinct bytes freed by removing ``removed``: an inode is freed once no other entry links it."""
        links: dict[tuple, list] = {}
        for fn, st in self._tree_files(removed):
            rec = links.setdefault((st.st_dev, st.st_ino), [0, st.st_nlink, st.st_size, fn])
            rec[0] += 1
        freed = 0
        for (dev, ino), (n, nlink, size, _) in links.items():
            others = nlink - n
            if others <= 0 or (others == 1 and self._is_object_inode(dev, ino, removed)):
                freed += size
        return freed

    def _is_object_inode(self, dev: int, ino: int, removed: list[str]) -> bool:
        for k in removed:
            e = self.load(k)
            for f in (e.manifest["files"].values() if e else ()):
                try:
                    st = os.lstat(self._object(f["digest"]))
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) == (dev, ino):
                    return True
        return False


Store = LocalStore


class _Unreadable(Exception):
    pass


# -- ONNX: complete, and external data never linked ------------------------------------------------

def check_onnx(tree: Path, regular: dict[str, Path]) -> set[str]:
    """Every external-data file a .onnx in ``tree`` names must be a file inside the tree, long
    enough for what it is said to hold. Returns those files (never hard-linked). Reads only
    the .onnx protobufs, never the data. A .onnx onnx cannot parse is not checked."""
    models = [rel for rel in regular if rel.lower().endswith(".onnx")]
    if not models:
        return set()
    try:
        import onnx
        from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data
    except ImportError:  # pragma: no cover - onnx comes with Olive
        return set()
    referenced, problems = set(), []
    for rel in sorted(models):
        try:
            model = onnx.load(str(regular[rel]), load_external_data=False)
            tensors = [t for t in _get_all_tensors(model) if uses_external_data(t)]
        except Exception:  # noqa: BLE001 - not a model onnx can read: nothing to check, nothing linked
            continue
        for t in tensors:
            try:
                info = ExternalDataInfo(t)
            except ValueError as e:
                problems.append(f"{rel}: tensor {t.name!r}: {e}")
                continue
            loc = info.location
            target = os.path.normpath(os.path.join(os.path.dirname(rel), loc)).replace(os.sep, "/")
            if not loc or os.path.isabs(loc) or target.startswith("../") or target == "..":
                problems.append(f"{rel}: external data {loc!r} of tensor {t.name!r} is outside the result")
            elif target not in regular:
                problems.append(f"{rel}: external data file {loc!r} (tensor {t.name!r}) is missing")
            else:
                referenced.add(target)
                end = (info.offset or 0) + (info.length or 0)
                if end > os.lstat(regular[target]).st_size:
                    problems.append(f"{rel}: external data file {loc!r} is shorter than tensor {t.name!r} needs "
                                    f"({end} bytes)")
    if problems:
        shown = "; ".join(sorted(set(problems))[:5])
        raise StoreError(f"the result is incomplete, nothing was published: {shown}",
                         "the pass wrote an ONNX model whose weights file is not in its output folder; "
                         "check the node's log and output_dir")
    return referenced


# -- helpers ---------------------------------------------------------------------------------------







def _entry_id(manifest: dict) -> str:
    return manifest.get("id") or f"created:{manifest.get('created')!r}"




def _digest_or_error(p: Path) -> tuple[str | None, str | None]:
    """(digest, None), or (None, why) for a file that cannot be read."""
    try:
        return file_digest(p), None
    except OSError as e:
        return None, e.strerror


def _extras(tree: Path, files: dict) -> list[str]:
    """Anything in ``tree`` that is neither a folder nor in the manifest (written after
    publish: permission bits stop everyone but root)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, tree).replace(os.sep, "/")
            if os.path.islink(p) or (name in filenames and rel not in files):
                out.append(rel)
    return sorted(out)


def _under(rel: str, dirs: set[str]) -> bool:
    d = os.path.dirname(rel)
    while True:
        if d in dirs:
            return True
        if not d:
            return False
        d = os.path.dirname(d)


def _ino(path: Path) -> int | None:
    try:
        return os.lstat(path).st_ino
    except OSError:
        return None


def _same_bytes(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def _move_in(src: Path, tree: Path) -> None:
    if not src.is_dir() or src.is_symlink():
        raise StoreError(f"result folder {src} does not exist or is not a folder",
                         "the node wrote no output folder; check its log")
    try:
        os.rename(src, tree)  # same filesystem: a move, not a copy
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        shutil.copytree(src, tree, symlinks=True)


def _chmod_dirs(top: Path, mode: int) -> None:
    for dirpath, dirnames, _ in os.walk(top, topdown=False):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, mode)
    os.chmod(top, mode)


def _make_movable(d: Path) -> None:
    """Moving a folder to another parent rewrites its '..': it needs write permission on it."""
    try:
        if not os.path.islink(d):
            os.chmod(d, 0o755)
    except OSError:
        pass


def _rmtree(path: Path) -> None:
    """Delete a tree whose folders may be read-only (entries are)."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not path.is_dir():
        try:
            os.unlink(path)
        except OSError:
            pass
        return
    try:
        shutil.rmtree(path)
        return
    except PermissionError:
        pass
    except OSError:
        pass
    for dirpath, dirnames, _ in os.walk(path):
        if not os.path.islink(dirpath):
            try:
                os.chmod(dirpath, 0o700)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)


def _try_lock(path: Path) -> int | None:
    """A held exclusive flock on ``path``, or None if someone holds it (or it is not ours to take)."""
    try:
        fd = open_nofollow(path, os.O_RDWR)
    except (OSError, UnsafePath):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    if _ino(path) != os.fstat(fd).st_ino:
        os.close(fd)
        return None
    return fd


def _legacy_alive(name: str) -> bool:
    """Folders without a lock: staging of older olivepipe versions carried the creator's pid
    (kept while that pid exists); quarantine and trash folders are never in use."""
    pid = name.split("-", 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except (OverflowError, ValueError):
        return False


def _write_durable(path: Path, text: str) -> None:
    fd = open_nofollow(Path(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
_renameat2 = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    global _renameat2
    if _renameat2 is None:
        try:
            import ctypes  # only for --force replacements

            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = fn
        except (AttributeError, OSError, ImportError):
            _renameat2 = False
    if not _renameat2:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # kernel or filesystem without it: the caller renames in two steps
    raise OSError(err, os.strerror(err), str(b))


def materialize(entry, dest: Path) -> None:
    """Expose an entry (or a fetched folder) at ``dest`` as a symlink: O(1) whatever its size."""
    tree = Path(entry) if isinstance(entry, (str, os.PathLike)) else entry.tree
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(tree, dest.parent)
    if dest.is_symlink() and os.readlink(dest) == target:
        return
    if dest.exists() and not dest.is_symlink():
        raise StoreError(f"{dest} exists and is not an olivepipe output link", "move it away; olivepipe will not overwrite it")
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}")
    os.symlink(target, tmp)
    os.replace(tmp, dest)


__all__ = ["LocalStore", "LocalEntry", "Store", "Entry", "StoreBusy", "MANIFEST", "materialize", "check_onnx"]
