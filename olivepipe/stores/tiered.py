"""A local store in front of a remote one (the shared cache), itself a store.

Reads look local first, then remote; a remote hit is pulled into the local store (downloaded
into a local staging folder, checked, published locally) and served from there, so every
caller still gets a local, read-only folder and the next lookup costs no request. Writes go
local first, then remote: the local entry stands whatever the remote does.

Everything about the local machine (lease, roots for gc, ls/verify/gc, disk usage) is the
local store's: gc never deletes anything remote. A remote that cannot be read is a miss with
a warning (apply then builds locally); a remote that cannot be written fails the publish
with a StoreError that says the result is cached locally and how to upload it later.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..core.errors import StoreError
from .base import Entry
from .blob import RemoteUnavailable
from .manifest import meta_of

log = logging.getLogger("olivepipe.store")


class TieredStore:
    def __init__(self, local, remote, *, push: bool = True):
        self.local, self.remote = local, remote
        self.push = push  # False: a read-only shared cache (pull, never upload from apply)
        self.remote_errors: list[str] = []  # read failures, for callers that report them
        # set by the first failure that every later request would repeat (no network, access
        # denied): from then on this store does not wait on the remote again
        self.unavailable: RemoteUnavailable | None = None
        self.pulled: list[str] = []  # keys this store downloaded, in order

    def __repr__(self) -> str:
        return f"TieredStore({self.local!r}, {self.remote!r})"

    # -- the protocol ----------------------------------------------------------------------------
    def peek(self, key: str) -> Entry | None:
        """Local, else the remote's manifest: no write anywhere (plan may say "cached" for an
        entry that apply will pull)."""
        return self.local.peek(key) or self._remote(lambda: self.remote.peek(key))

    def get(self, key: str) -> Entry | None:
        """Local (health-checked), else a healthy remote entry pulled into local."""
        entry = self.local.get(key)
        if entry is not None:
            return entry
        found = self._remote(lambda: self.remote.get(key))
        # a download that fails its digest check is a miss too: the work runs here, and the
        # publish that follows repairs the remote entry
        return self._remote(lambda: self.pull(found)) if found is not None else None

    def fetch(self, entry: Entry, dest: Path | None = None) -> Path:
        if entry.store != "local":  # peeked in the remote tier, whatever store that is (plan, show): bring it here first
            entry = self.local.get(entry.key) or self.pull(entry)
        return self.local.fetch(entry, dest)

    def staging(self, label: str) -> Path:
        return self.local.staging(label)

    def discard(self, staging: Path) -> None:
        self.local.discard(staging)

    def publish(self, key: str, src: Path, meta: dict, *, replace: bool = False) -> Entry:
        """Local first (that is what is served), then remote. A remote failure raises a
        StoreError saying the local entry stands."""
        entry = self.local.publish(key, src, meta, replace=replace)
        if self.push:
            self.upload(entry, replace=replace)
        return entry

    def keys(self):
        return self.local.keys()

    def remove(self, key: str) -> None:
        self.local.remove(key)  # the shared cache is not this machine's to clean

    # -- moving entries between the tiers --------------------------------------------------------
    def pull(self, remote_entry: Entry) -> Entry:
        """Download a remote entry into the local store; returns the local entry."""
        key = remote_entry.key
        staging = self.local.staging(f"pull-{key[:12]}")
        try:
            tree = self.remote.fetch(remote_entry, Path(staging) / "tree")
            local = self.local.publish(key, tree, {**meta_of(remote_entry.manifest), "pulled_from": self.remote.label})
        finally:
            self.local.discard(staging)
        self.pulled.append(key)
        return local

    def upload(self, entry: Entry, *, replace: bool = False) -> Entry:
        """Publish a local entry to the remote (only what the remote lacks is uploaded)."""
        try:
            if self.unavailable is not None:
                raise self.unavailable
            return self.remote.publish(entry.key, self.local.fetch(entry), meta_of(entry.manifest), replace=replace)
        except StoreError as e:
            raise StoreError(f"result {entry.key[:12]} is stored in the local cache ({self.local.root}) but not in "
                             f"the remote cache: {e.message}",
                             (e.hint + "; " if e.hint else "") + "`olivepipe cache push` uploads it later, "
                             "OLIVEPIPE_REMOTE_PUSH=0 stops apply from uploading") from None

    def _remote(self, fn):
        if self.unavailable is not None:
            return None
        try:
            return fn()
        except StoreError as e:
            if isinstance(e, RemoteUnavailable):
                self.unavailable = e
            # the shared cache is an accelerator: unreachable, it is a miss and the work runs here
            text = e.message
            if text not in self.remote_errors:
                self.remote_errors.append(text)
                log.warning("%s (treated as not cached)", text)
            return None

    @property
    def trust_note(self) -> str:
        """What this workspace accepts from the shared cache, for plan."""
        trusted = getattr(self.remote, "trusted", None)
        if trusted:
            return (f"shared cache {self.remote.label}: only entries signed by {', '.join(sorted(trusted))} "
                    "are used")
        return (f"shared cache {self.remote.label}: entries are not signature-checked (no cache.trusted_keys): "
                "anyone who can write to it can supply results; see docs/shared-cache.md#signed-entries")

    # -- the local store's business --------------------------------------------------------------
    @property
    def root(self):
        return self.local.root

    @property
    def base(self):
        return self.local.base

    @property
    def quarantined(self):
        return self.local.quarantined

    def lease(self, *, exclusive: bool = False, wait: bool = True):
        return self.local.lease(exclusive=exclusive, wait=wait)

    def register_root(self, lock_path: Path) -> None:
        self.local.register_root(lock_path)

    def unregister_root(self, lock_path: Path) -> None:
        self.local.unregister_root(lock_path)

    def roots(self):
        return self.local.roots()

    def gc(self, keep: set[str], *, dry_run: bool = False) -> dict:
        return self.local.gc(keep, dry_run=dry_run)

    def load(self, key: str):
        return self.local.load(key)

    def verify(self, entry: Entry) -> list[str]:
        return self.local.verify(entry)

    def verify_all(self, entries: list[Entry]) -> list[list[str]]:
        return self.local.verify_all(entries)

    def health(self, entry: Entry, **kw) -> list[str]:
        return self.local.health(entry, **kw)

    def disk_usage(self) -> int:
        return self.local.disk_usage()

    def ensure(self) -> None:
        self.local.ensure()

    def entry_dir(self, key: str):
        return self.local.entry_dir(key)



__all__ = ["TieredStore", "meta_of"]
