"""The store seam: where results live, by key.

Every store (local folder, Azure Blob, a tier of both) satisfies ``Store``. Callers
never assume an entry is a local folder: they ``fetch`` it to get one.
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
