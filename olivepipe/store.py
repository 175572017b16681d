"""Content-addressed store of node results.

Layout under the store root:
  entries/ke/key.../      manifest.json + tree/ (the result's files, read-only)
  tmp/                    staging; anything here is unfinished and may be deleted

Files are moved in by rename (no copy) and never shared between entries by hard
link: onnx/onnx_ir refuse external-data files with more than one link ("hard link
attack") or reached through a symlink leaving the model folder.

An entry appears by a single rename of a fully written directory, so a crash
leaves either nothing or a complete entry. A hit is health-checked (every file
present with the size and mtime recorded at publish) before it is served; a
broken entry is deleted and counts as a miss. `verify` re-hashes content.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .errors import StoreError
from .hashing import file_digest, tree_digest

MANIFEST = "manifest.json"
FORMAT = 1


@dataclass(frozen=True)
class Entry:
    key: str
    path: Path  # the entry directory
    manifest: dict

    @property
    def tree(self) -> Path:
        return self.path / "tree"

    @property
    def digest(self) -> str:
        return self.manifest["digest"]

    @property
    def model(self) -> dict | None:
        return self.manifest.get("model")

    @property
    def size(self) -> int:
        return sum(f["size"] for f in self.manifest["files"].values())


class Store:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.entries = self.root / "entries"
        self.tmp = self.root / "tmp"

    def ensure(self) -> None:
        try:
            for d in (self.entries, self.tmp):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create cache store at {self.root}: {e.strerror}",
                             "set OLIVEPIPE_CACHE_DIR or --cache-dir to a writable folder") from None
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"cache store {self.root} is not writable",
                             "fix its permissions or point --cache-dir elsewhere")

    def entry_dir(self, key: str) -> Path:
        return self.entries / key[:2] / key

    # -- reading -----------------------------------------------------------------
    def get(self, key: str, *, check: bool = True) -> Entry | None:
        d = self.entry_dir(key)
        try:
            manifest = json.loads((d / MANIFEST).read_text())
            if not _well_formed(manifest, key):  # valid JSON but mangled: as untrustworthy as unreadable
                raise ValueError(key)
        except (OSError, ValueError):
            if d.exists():
                self.remove(key)  # unreadable manifest: not an entry we can trust
            return None
        entry = Entry(key, d, manifest)
        if check and self.health(entry):
            self.remove(key)
            return None
        return entry

    def health(self, entry: Entry) -> list[str]:
        """Cheap check (stat only): every file present, size and mtime as published."""
        problems = []
        for rel, f in entry.manifest["files"].items():
            try:
                st = os.stat(entry.tree / rel)
            except OSError:
                problems.append(f"{rel}: missing")
                continue
            if st.st_size != f["size"] or st.st_mtime_ns != f["mtime_ns"]:
                problems.append(f"{rel}: changed since publish")
        return problems

    def verify(self, entry: Entry) -> list[str]:
        """Full check: re-hash every file against the manifest."""
        problems = self.health(entry)
        if problems:
            return problems
        for rel, f in entry.manifest["files"].items():
            if file_digest(entry.tree / rel) != f["digest"]:
                problems.append(f"{rel}: content does not match its digest")
        listed = set(entry.manifest["files"])
        for p in sorted(entry.tree.rglob("*")):
            rel = p.relative_to(entry.tree).as_posix()
            if (p.is_symlink() or p.is_file()) and rel not in listed:
                problems.append(f"{rel}: not in the manifest")
        if tree_digest({k: v["digest"] for k, v in entry.manifest["files"].items()}) != entry.digest:
            problems.append("manifest: file digests do not add up to the entry digest")
        return problems

    def keys(self) -> list[str]:
        if not self.entries.exists():
            return []
        return sorted(p.name for sub in self.entries.iterdir() if sub.is_dir() for p in sub.iterdir() if p.is_dir())

    # -- writing -----------------------------------------------------------------
    def staging(self, label: str) -> Path:
        """A fresh private folder inside the store (same filesystem, so publish can rename)."""
        self.ensure()
        d = self.tmp / f"{os.getpid()}-{label}-{uuid.uuid4().hex[:8]}"
        d.mkdir(parents=True)
        return d

    def publish(self, key: str, output: Path, meta: dict) -> Entry:
        """Move the files of ``output`` into the store as entry ``key``; atomic."""
        existing = self.get(key)
        if existing:
            return existing
        files = {}
        build = self.staging(f"entry-{key[:12]}")
        tree = build / "tree"
        try:
            os.rename(output, tree)  # same filesystem: a move, not a copy
            for src in sorted(p for p in tree.rglob("*") if p.is_file() and not p.is_symlink()):
                rel = src.relative_to(tree).as_posix()
                os.chmod(src, 0o444)
                st = os.stat(src)
                files[rel] = {"digest": file_digest(src), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
            for link in (p for p in tree.rglob("*") if p.is_symlink()):
                link.unlink()  # a result is self-contained; links could point anywhere
            manifest = {"format": FORMAT, "key": key, "digest": tree_digest({k: v["digest"] for k, v in files.items()}),
                        "files": files, "created": time.time(), **meta}
            _write_durable(build / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
            final = self.entry_dir(key)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(build, final)
            except OSError:
                if final.exists():  # another process published the same key first: theirs wins
                    shutil.rmtree(build, ignore_errors=True)
                    return self.get(key, check=False)
                raise
        except OSError as e:
            shutil.rmtree(build, ignore_errors=True)
            raise StoreError(f"could not store result {key[:12]}: {e.strerror or e}",
                             "check free disk space and permissions of the cache folder") from None
        return Entry(key, final, manifest)

    def remove(self, key: str) -> None:
        d = self.entry_dir(key)
        if not d.exists():
            return
        trash = self.tmp / f"trash-{key[:12]}-{uuid.uuid4().hex[:8]}"
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
            os.rename(d, trash)  # disappears atomically, then deleted at leisure
        except OSError:
            trash = d
        shutil.rmtree(trash, ignore_errors=True)

    def gc(self, keep: set[str], *, dry_run: bool = False) -> dict:
        """Drop entries not in ``keep`` and staging left by dead processes."""
        removed = [k for k in self.keys() if k not in keep]
        freed = sum(self.get(k, check=False).size for k in removed if self.get(k, check=False))
        if not dry_run:
            for k in removed:
                self.remove(k)
        stale = 0
        if self.tmp.exists():
            for d in self.tmp.iterdir():
                if not _pid_alive(d.name) and not dry_run:
                    shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink()
                    stale += 1
        return {"entries_removed": removed, "bytes_freed": freed, "staging_removed": stale}

    def disk_usage(self) -> int:
        total = 0
        for k in self.keys():
            e = self.get(k, check=False)
            total += e.size if e else 0
        return total


def _well_formed(m, key: str) -> bool:
    """The fields health checks and readers rely on, with the types they expect."""
    try:
        return (isinstance(m, dict) and m.get("key") == key and isinstance(m.get("digest"), str)
                and isinstance(m.get("files"), dict)
                and all(isinstance(f, dict) and isinstance(f.get("digest"), str) and isinstance(f.get("size"), int)
                        and isinstance(f.get("mtime_ns"), int) and not rel.startswith("/")
                        and ".." not in rel.split("/") for rel, f in m["files"].items()))
    except TypeError:
        return False


def materialize(entry: Entry, dest: Path) -> None:
    """Expose an entry at ``dest`` as a symlink: O(1) whatever the artifact size."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(entry.tree, dest.parent)
    if dest.is_symlink() and os.readlink(dest) == target:
        return
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}")
    os.symlink(target, tmp)
    if dest.exists() and not dest.is_symlink():
        raise StoreError(f"{dest} exists and is not an olivepipe output link", "move it away; olivepipe will not overwrite it")
    os.replace(tmp, dest)


def _write_durable(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _pid_alive(name: str) -> bool:
    """Staging folders carry their creator's pid; a dead creator means abandoned work."""
    pid = name.split("-", 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True

