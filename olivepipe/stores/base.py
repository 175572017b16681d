"""The store seam: where results live, by key.

Every store (local folder, Azure Blob, a tier of both) satisfies ``Store``. Callers
never assume an entry is a local folder: they ``fetch`` it to get one. The store a
workspace works in (``stores.open_store``: the local store, or it in front of a shared
one) also satisfies ``WorkspaceStore``: what apply, gc and `cache ls|verify` use. No
caller outside stores/ probes a store for a member the protocols do not declare.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol


@dataclass(frozen=True)
class Entry:
    """One published result. ``manifest`` is the record the store wrote at publish:
    {"format", "key", "digest", "files": {rel: {"digest", "size", ...}}, "model", "kind",
    "record", "duration_s", ...}."""

    key: str
    manifest: dict
    store: str = "local"  # which store holds it (for messages)

    @property
    def digest(self) -> str:
        return self.manifest["digest"]

    @property
    def model(self) -> dict | None:
        return self.manifest.get("model")

    @property
    def files(self) -> dict:
        return self.manifest["files"]

    @property
    def size(self) -> int:
        return sum(f["size"] for f in self.manifest["files"].values())


class Store(Protocol):
    def peek(self, key: str) -> Entry | None:
        """Side-effect free lookup for plan/status: never writes, never deletes.
        Returns an entry only if it looks complete (manifest well formed, files present)."""

    def get(self, key: str) -> Entry | None:
        """Health-checked lookup for apply. A broken entry is quarantined and counts as a miss."""

    def fetch(self, entry: Entry, dest: Path | None = None) -> Path:
        """A local, read-only folder holding the entry's files. With dest None the store may
        return a folder it owns (the local store returns its own tree: no copy)."""

    def staging(self, label: str) -> Path:
        """A fresh private folder on the store's filesystem, for a node to write into."""

    def discard(self, staging: Path) -> None:
        """Drop a staging folder (published from or abandoned)."""

    def publish(self, key: str, src: Path, meta: dict, *, replace: bool = False) -> Entry:
        """Make ``src``'s files the entry ``key``, atomically. Without replace, an existing entry
        wins (and is returned); with replace (``--force``) the new entry takes its place in one
        step, and the old one is dropped only after the new one is complete."""

    def keys(self) -> Iterable[str]:
        """Every published key."""

    def remove(self, key: str) -> None:
        """Drop an entry (gc, explicit removal). Never called by read-only commands."""


class WorkspaceStore(Store, Protocol):
    """The store a workspace opens (local.LocalStore, tiered.TieredStore): ``Store`` plus what
    apply (lease, register_root), gc (roots, gc) and `cache ls|verify` (load, verify, disk_usage)
    need. A remote tier alone (blob.BlobStore) need not have these."""

    #: what this workspace accepts from a shared cache, for plan ("" without one)
    trust_note: str

    def lease(self, *, exclusive: bool = False, wait: bool = True):
        """A context manager: shared by applies, exclusive by gc (it never sweeps under an apply)."""

    def register_root(self, lock_path: Path) -> None:
        """Record a lock file whose entries gc keeps, wherever it runs."""

    def unregister_root(self, lock_path: Path) -> None: ...

    def roots(self) -> list[Path]:
        """The registered lock files."""

    def gc(self, keep: set[str], *, dry_run: bool = False) -> dict: ...

    def load(self, key: str) -> Entry | None:
        """An entry as stored, unchecked (for listing)."""

    def verify(self, entry: Entry) -> list[str]:
        """Every problem of an entry, contents re-hashed."""

    def verify_all(self, entries: list[Entry]) -> list[list[str]]:
        """``verify`` of each entry, every distinct stored file hashed once."""

    def disk_usage(self) -> int: ...
