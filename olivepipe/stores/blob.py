"""A store in an Azure Blob container: the shared cache (see docs/shared-cache.md).

Layout under the container (and the optional prefix P):
  P/objects/<sha256>       one blob per distinct file content, named by its digest (metadata sha256)
  P/entries/<key>.json     an entry's manifest: the local store's manifest fields, files by digest

Publishing uploads every missing object first and the manifest LAST, with a conditional
create (If-None-Match: *): a reader that sees a manifest finds its objects, and of two
publishers of one key the second gets ResourceExistsError and serves the first one's entry.
Nothing here is ever renamed or appended to: a blob is written whole or not at all.

Reads never write: a broken entry (an object missing or of the wrong size) is a miss, noted
in ``problems``; the next publish of that key replaces its manifest (conditionally on the
ETag it saw, so it never overwrites a healthy entry that appeared meanwhile). ``remove``
drops a manifest only; objects no manifest names are left for a separate gc.

Downloads are checked against the manifest's sha256 as they stream. Messages and logs are
redacted: the connection string, account key and SAS never leave this module.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..core.errors import StoreError
from ..core.hashing import digest_many, file_digest, tree_digest
from .base import Entry
from .local import check_onnx
from .manifest import FORMAT, MANIFEST_MAX, OWN_FIELDS, BadManifest, check_key, is_digest, is_key, rel_ok
from .manifest import parse as parse_manifest, safe_label

log = logging.getLogger("olivepipe.store")

INPROGRESS = "inprogress"  # P/inprogress/<uuid>.json: a publish is uploading (see gc)
MARKER_MAX_AGE_S = 24 * 3600  # a marker older than this is from a publisher that died

WORKERS = 8  # concurrent HEAD/upload/download requests per call; the SDK also splits big blobs
BLOB_CONCURRENCY = 4
# bounded so an unreachable endpoint fails in seconds, not in azure-core's default ~5 minutes
CLIENT_KWARGS = {"retry_total": 2, "retry_backoff_factor": 0.5, "connection_timeout": 10, "read_timeout": 120}


class RemoteUnavailable(StoreError):
    """The remote cannot be used at all (unreachable, access denied, no container): asking it
    again for the next key would fail the same way, only slower."""


@dataclass(frozen=True)
class BlobEntry(Entry):
    """An entry of a blob store; ``etag`` is its manifest's, for conditional replacement."""

    etag: str | None = None


class BlobStore:
    """The ``Store`` protocol over one container. ``container`` is an azure ContainerClient or a
    function that makes one (called on first use: opening a store costs no request or import)."""

    def __init__(self, container, *, prefix: str = "", label: str | None = None, secrets=(),
                 hint: str = "", trusted: dict | None = None, signer=None):
        self._container = None if callable(container) else container
        self._factory: Callable | None = container if callable(container) else None
        self.prefix = "/".join(p for p in prefix.split("/") if p)
        self.prefix += "/" if self.prefix else ""
        self.label = label or "azblob://(container)"
        self.hint = hint  # says how to fix access, e.g. which credential was used
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        self._mutex = threading.Lock()
        self.problems: dict[str, list[str]] = {}  # key -> why get() refused it (for messages)
        # objects whose bytes failed their sha256 on download: entries naming them are broken
        # until a publish uploads them again (a same-size corruption passes the HEAD check)
        self._bad_objects: set[str] = set()
        # signed entries (signing.py): {name: PublicKey} a manifest must be signed by (None: any is
        # accepted), and the key this writer signs its manifests with
        self.trusted = trusted or None
        self.signer = signer
        self.stats = {"objects_uploaded": 0, "bytes_uploaded": 0, "objects_downloaded": 0, "bytes_downloaded": 0}

    @classmethod
    def from_config(cls, cfg, env=None) -> BlobStore:
        """A store for a ``config.RemoteConfig``, authenticated from the environment."""
        from ..azure.redact import redact
        from .config import credential_for, default_credential

        cred, endpoint, how, secrets = credential_for(cfg, env)  # settings errors surface now, at open

        def connect():
            try:
                from azure.storage.blob import ContainerClient
            except ImportError:
                raise StoreError("the remote cache needs azure-storage-blob, which is not installed",
                                 'pip install "olivepipe[azure]" (or azure-storage-blob)') from None
            try:
                return ContainerClient(endpoint, cfg.container, credential=cred if cred is not None
                                       else default_credential(cfg), **CLIENT_KWARGS)
            except ValueError as e:  # a malformed endpoint or credential; the message names neither secret
                raise StoreError(f"cannot use the remote cache {cfg.url}: {redact(str(e))[:200]}",
                                 f"check {cfg.source} and the credentials ({how})") from None

        from .signing import Signer, parse_public

        trusted = {}
        for text in cfg.trusted_keys:
            k = parse_public(text, "trusted_keys")
            trusted[k.name] = k
        signer = Signer.from_file(Path(cfg.signing_key)) if cfg.signing_key else None
        return cls(connect, prefix=cfg.prefix, label=cfg.url, secrets=secrets,
                   hint=f"credentials: {how}; configured by {cfg.source}", trusted=trusted, signer=signer)

    def __repr__(self) -> str:
        return f"BlobStore({self.label!r})"  # never the client: its credential is in there

    @property
    def container(self):
        if self._container is None:
            with self._mutex:
                if self._container is None:
                    self._container = self._factory()
        return self._container

    # -- names -----------------------------------------------------------------------------
    def manifest_name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}entries/{key}.json"

    def object_name(self, digest: str) -> str:
        if not is_digest(digest):
            raise StoreError(f"not a sha256 digest: {digest[:80]!r}", "the manifest is corrupt")
        return f"{self.prefix}objects/{digest}"

    # -- reading -----------------------------------------------------------------------------
    def peek(self, key: str) -> BlobEntry | None:
        """The entry if its manifest exists and is well formed: one GET, no write."""
        try:
            return self._read(key)
        except _Broken:
            return None

    def load(self, key: str) -> BlobEntry | None:
        return self.peek(key)

    def get(self, key: str) -> BlobEntry | None:
        """The entry if its manifest is well formed and every object it names exists with its
        size (one HEAD per distinct file, concurrently). A broken entry is a miss; nothing is
        deleted (readers may hold read-only credentials; the next publish replaces it)."""
        try:
            entry = self._read(key)
        except _Broken as e:
            self._broken(key, [f"manifest: {e}"])
            return None
        if entry is None:
            return None
        problems = self.health(entry)
        if problems:
            self._broken(key, problems)
            return None
        self.problems.pop(key, None)
        return entry

    def health(self, entry: Entry) -> list[str]:
        """What is wrong with an entry (empty: it can be served). Never writes."""
        files = entry.manifest["files"]
        problems = []
        if tree_digest({k: v["digest"] for k, v in files.items()}) != entry.digest:
            problems.append("manifest: file digests do not add up to the entry digest")
        sizes: dict[str, int] = {}
        for rel, f in files.items():
            if sizes.setdefault(f["digest"], f["size"]) != f["size"]:
                problems.append(f"{rel}: one digest listed with two sizes")
        found = self._sizes(list(sizes))
        for rel, f in sorted(files.items()):
            got = found.get(f["digest"])
            if f["digest"] in self._bad_objects:
                problems.append(f"{rel}: object {f['digest'][:12]} failed its sha256 check when downloaded")
            elif got is None:
                problems.append(f"{rel}: object {f['digest'][:12]} is missing from {self.label}")
            elif got != f["size"]:
                problems.append(f"{rel}: object {f['digest'][:12]} is {got} bytes, published with {f['size']}")
        return problems

    def keys(self) -> list[str]:
        start = f"{self.prefix}entries/"
        try:
            names = [b.name for b in self.container.list_blobs(name_starts_with=start)]
        except Exception as e:  # noqa: BLE001 - any SDK failure becomes one StoreError
            raise self._error(e, "list the entries of") from None
        out = []
        for n in names:
            k = n[len(start):]
            if k.endswith(".json") and is_key(k[:-5]):
                out.append(k[:-5])
        return sorted(out)

    def fetch(self, entry: Entry, dest: Path | None = None) -> Path:
        """Download the entry's files into ``dest`` (a new or empty folder; None: a private temp
        folder the caller owns). Each file's sha256 is checked as it streams; files are read-only.
        On any failure nothing is left behind in ``dest``."""
        files = entry.manifest["files"]
        made = dest is None
        if dest is None:
            dest = Path(tempfile.mkdtemp(prefix=f"olivepipe-{entry.key[:12]}-"))  # 0700: private
        else:
            dest = Path(dest)
            if os.path.lexists(dest) and (not dest.is_dir() or dest.is_symlink() or any(dest.iterdir())):
                raise StoreError(f"cannot fetch result {entry.key[:12]} into {dest}: it exists and is not an empty folder",
                                 "fetch into a new folder")
            dest.mkdir(parents=True, exist_ok=True)
        by_digest: dict[str, list[str]] = {}
        for rel in sorted(files):
            _check_rel(rel)
            by_digest.setdefault(files[rel]["digest"], []).append(rel)
        try:
            def one(item):
                digest, rels = item
                first = dest / rels[0]
                try:
                    self._download(digest, files[rels[0]]["size"], first)
                except _Corrupt:
                    with self._mutex:
                        self._bad_objects.add(digest)
                    self.problems[entry.key] = [f"{rels[0]}: object {digest[:12]} does not match its digest"]
                    raise
                for rel in rels[1:]:  # the same bytes twice in one result: downloaded once
                    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(first, dest / rel)
                    os.chmod(dest / rel, 0o444)

            self._map(one, list(by_digest.items()))
        except BaseException:
            _rmtree(dest) if made else _empty(dest)
            raise
        return dest

    # -- writing -----------------------------------------------------------------------------
    def staging(self, label: str) -> Path:
        """A fresh private local folder (results are built locally, then published)."""
        return Path(tempfile.mkdtemp(prefix=f"olivepipe-{safe_label(label)}-"))

    def discard(self, staging: Path) -> None:
        _rmtree(Path(staging))

    def publish(self, key: str, src: Path, meta: dict, *, replace: bool = False) -> BlobEntry:
        """Upload ``src``'s files (each distinct content once, only if absent), then the manifest.
        ``src`` is only read. Without replace an existing healthy entry wins, and of two racing
        publishers the first manifest wins: the other gets (and returns) that one. With replace
        the manifest is overwritten, only once all its objects exist."""
        check_key(key)
        if not replace:
            existing = self.get(key)
            if existing is not None:
                return existing
        with self._in_progress(key):  # `cache gc --remote` deletes no object while a publish runs
            return self._publish_new(key, Path(src), meta, replace)

    def _publish_new(self, key: str, src: Path, meta: dict, replace: bool) -> BlobEntry:
        files, paths = _index(src)
        self._upload_objects(files, paths)
        manifest = {"format": FORMAT, "key": key, "id": uuid.uuid4().hex,
                    "digest": tree_digest({k: v["digest"] for k, v in files.items()}),
                    "files": files, "created": time.time(), **meta}
        text = self._scrub(json.dumps(manifest, indent=1, sort_keys=True))
        if self.signer is not None:  # signed as it will be read: after scrubbing
            text = json.dumps(self.signer.sign(json.loads(text)), indent=1, sort_keys=True)
        body = text.encode("utf-8")
        blob = self.container.get_blob_client(self.manifest_name(key))
        etag = None  # None: create only if absent; else replace exactly the broken manifest we saw
        for _ in range(3):
            if replace:
                kw = {"overwrite": True}
            elif etag is None:
                kw = {"overwrite": False}  # If-None-Match: *
            else:
                from azure.core import MatchConditions

                kw = {"overwrite": True, "etag": etag, "match_condition": MatchConditions.IfNotModified}
            try:
                res = self._call(lambda kw=kw: blob.upload_blob(body, content_settings=_json_settings(), **kw),
                                 "publish to")
                return BlobEntry(key, json.loads(body), self.label, (res or {}).get("etag"))
            except _Exists:
                pass
            # another publisher's manifest is there: theirs wins if it can be served
            theirs, etag = self._winner(key)
            if theirs is not None:
                return theirs
        raise StoreError(f"result {key[:12]} in {self.label} is broken and keeps changing while it is replaced",
                         "run again; if it persists, remove it (olivepipe cache push repairs a broken entry)")

    def remove(self, key: str) -> None:
        """Drop an entry's manifest; its objects stay until a gc of the container."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.container.delete_blob(self.manifest_name(key))
        except ResourceNotFoundError:
            pass
        except Exception as e:  # noqa: BLE001
            raise self._error(e, "remove an entry from") from None

    @contextmanager
    def _in_progress(self, key: str):
        """A marker blob naming a running publish, there from before its first object upload
        until after its manifest: gc sees it and leaves every object alone."""
        name = f"{self.prefix}{INPROGRESS}/{uuid.uuid4().hex}.json"
        body = json.dumps({"key": key, "started": time.time(), "pid": os.getpid()}).encode()
        self._call(lambda: self.container.get_blob_client(name).upload_blob(body, overwrite=True), "publish to")
        try:
            yield
        finally:
            try:
                self.container.delete_blob(name)
            except Exception:  # noqa: BLE001 - a marker left behind only delays gc until it is stale
                log.debug("could not remove %s", name)

    def gc(self, keep: set[str], *, grace_s: float = 3600.0, dry_run: bool = False) -> dict:
        """Delete manifests not in ``keep`` and objects no remaining manifest names, neither of
        them younger than ``grace_s`` (by last-modified: what a push is writing now). While a
        publish is running (a marker younger than MARKER_MAX_AGE_S) no object is deleted at all;
        older markers are from publishers that died and are dropped. Like `dvc gc -c`: what to
        keep is the caller's (the lock files of the revisions it names)."""
        now = time.time()

        def listing(sub: str) -> list:
            try:
                return list(self.container.list_blobs(name_starts_with=f"{self.prefix}{sub}/"))
            except Exception as e:  # noqa: BLE001
                raise self._error(e, "list") from None

        def age(b) -> float:
            return now - b.last_modified.timestamp()

        def live_markers() -> list:
            return [b for b in listing(INPROGRESS) if age(b) < MARKER_MAX_AGE_S]

        running = live_markers()
        stale = [b.name for b in listing(INPROGRESS) if age(b) >= MARKER_MAX_AGE_S]
        start = f"{self.prefix}entries/"
        removed, kept = [], []
        for b in listing("entries"):
            k = b.name[len(start):].removesuffix(".json")
            if not b.name.endswith(".json") or not is_key(k):
                continue  # not ours to judge
            (kept if k in keep or age(b) < grace_s else removed).append(k)
        named: set[str] = set()
        for k in kept:
            try:
                raw = self.container.download_blob(self.manifest_name(k)).readall()
                named |= {f["digest"] for f in parse_manifest(raw, k)["files"].values()}
            except BadManifest:
                continue  # never served; the next publish of it uploads its objects again
            except Exception as e:  # noqa: BLE001
                if _code(e) == "BlobNotFound":
                    continue
                raise self._error(e, "read") from None
        objects, freed = [], 0
        for b in listing("objects"):
            d = b.name[len(f"{self.prefix}objects/"):]
            if is_digest(d) and d not in named and age(b) >= grace_s:
                objects.append(b.name)
                freed += b.size or 0
        if running:
            objects, freed = [], 0
        if not dry_run:
            for name in [self.manifest_name(k) for k in removed] + stale:
                self._delete(name)
            if objects and live_markers():  # a publish started meanwhile: its objects may be among these
                objects, freed = [], 0
            for name in objects:
                self._delete(name)
        return {"entries_removed": removed, "objects_removed": len(objects), "bytes_freed": freed,
                "kept": len(kept), "publishing": len(running)}

    def _delete(self, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.container.delete_blob(name)
        except ResourceNotFoundError:
            pass
        except Exception as e:  # noqa: BLE001
            raise self._error(e, "delete from") from None

    # -- internals -----------------------------------------------------------------------------
    def _read(self, key: str) -> BlobEntry | None:
        """The manifest as an entry (None: no manifest). Raises _Broken if it is not one."""
        from azure.core.exceptions import ResourceNotFoundError

        name = self.manifest_name(key)
        try:
            dl = self.container.download_blob(name)
            if dl.size > MANIFEST_MAX:
                raise _Broken(f"{dl.size} bytes: not a manifest")
            raw = dl.readall()
            etag = dl.properties.etag
        except ResourceNotFoundError as e:
            if _code(e) == "ContainerNotFound":
                raise self._error(e, "read") from None
            return None
        except _Broken:
            raise
        except Exception as e:  # noqa: BLE001
            raise self._error(e, "read") from None
        try:
            manifest = parse_manifest(raw, key)
        except BadManifest as e:
            raise _Broken(str(e)) from None
        from ..olive.runtime import model_config_problems

        refused = model_config_problems(manifest.get("model")) if manifest.get("model") is not None else []
        if refused:  # a model config no reader acts on: not a result anyone can use
            raise _Broken(f"model: {refused[0]}")
        if self.trusted:
            from .signing import BadSignature, check

            try:
                check(manifest, self.trusted)
            except BadSignature as e:
                raise _Broken(f"signature: {e}") from None
        return BlobEntry(key, manifest, self.label, etag)

    def _winner(self, key: str) -> tuple[BlobEntry | None, str | None]:
        """The entry now under ``key`` if it is healthy, and the ETag of what is there."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entry = self._read(key)
        except _Broken:
            try:
                etag = self.container.get_blob_client(self.manifest_name(key)).get_blob_properties().etag
            except ResourceNotFoundError:
                etag = None
            except Exception as e:  # noqa: BLE001
                raise self._error(e, "read") from None
            return None, etag
        if entry is None:
            return None, None
        return (entry if not self.health(entry) else None), entry.etag

    def _sizes(self, digests: list[str]) -> dict[str, int]:
        """{digest: size} of the objects that exist (one HEAD each, concurrently)."""
        from azure.core.exceptions import ResourceNotFoundError

        def head(d):
            try:
                return d, self.container.get_blob_client(self.object_name(d)).get_blob_properties().size
            except ResourceNotFoundError as e:
                if _code(e) == "ContainerNotFound":
                    raise
                return d, None

        try:
            return {d: s for d, s in self._map(head, digests) if s is not None}
        except StoreError:
            raise
        except Exception as e:  # noqa: BLE001
            raise self._error(e, "check objects in") from None

    def _upload_objects(self, files: dict, paths: dict) -> None:
        wanted: dict[str, tuple[int, Path]] = {}
        for rel, f in files.items():
            wanted.setdefault(f["digest"], (f["size"], paths[rel]))
        have = self._sizes(list(wanted))
        todo = [(d, size, p) for d, (size, p) in wanted.items() if have.get(d) != size or d in self._bad_objects]

        def put(item):
            digest, size, path = item
            with open(path, "rb") as fh:
                try:
                    # a wrong-size object is overwritten: the name says what its bytes must be
                    self._call(lambda: self.container.get_blob_client(self.object_name(digest)).upload_blob(
                        fh, length=size, overwrite=digest in have,
                        metadata={"sha256": digest}, max_concurrency=BLOB_CONCURRENCY), "upload to")
                except _Exists:
                    return  # another publisher uploaded the same content meanwhile
            with self._mutex:
                self._bad_objects.discard(digest)
                self.stats["objects_uploaded"] += 1
                self.stats["bytes_uploaded"] += size

        self._map(put, todo)

    def _download(self, digest: str, size: int, dest: Path) -> None:
        """Stream one object to ``dest`` (exclusive create), checking size and sha256."""
        from azure.core.exceptions import ResourceNotFoundError

        dest.parent.mkdir(parents=True, exist_ok=True)
        h, n = hashlib.sha256(), 0
        try:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except (OSError, ValueError) as e:
            raise StoreError(f"cannot write {dest}: {getattr(e, 'strerror', None) or e}",
                             "check free disk space and permissions") from None
        with os.fdopen(fd, "wb") as out:
            try:
                for chunk in self.container.download_blob(self.object_name(digest)).chunks():
                    h.update(chunk)
                    n += len(chunk)
                    out.write(chunk)
            except ResourceNotFoundError:
                raise StoreError(f"object {digest[:12]} is missing from {self.label}",
                                 "the remote entry is broken; the next publish of it repairs it") from None
            except OSError as e:
                raise StoreError(f"cannot write {dest}: {e.strerror or e}", "check free disk space") from None
            except Exception as e:  # noqa: BLE001
                raise self._error(e, "download from") from None
        if n != size or h.hexdigest() != digest:
            raise _Corrupt(f"object {digest[:12]} in {self.label} does not match its digest "
                             f"({n} bytes, expected {size})",
                             "the remote copy is corrupt and is not used; the next publish of this result "
                             "replaces it")
        os.chmod(dest, 0o444)
        with self._mutex:
            self.stats["objects_downloaded"] += 1
            self.stats["bytes_downloaded"] += n

    def _map(self, fn, items: list) -> list:
        if len(items) <= 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(WORKERS, len(items)), thread_name_prefix="olivepipe-blob") as pool:
            return list(pool.map(fn, items))

    def _call(self, fn, doing: str):
        """``fn()``; ResourceExistsError (the conditional create lost) becomes _Exists, any
        other SDK failure one redacted StoreError."""
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        try:
            return fn()
        except (ResourceExistsError, ResourceModifiedError):  # 409 If-None-Match / 412 If-Match failed
            raise _Exists() from None
        except StoreError:
            raise
        except Exception as e:  # noqa: BLE001
            raise self._error(e, doing) from None

    def _broken(self, key: str, problems: list[str]) -> None:
        self.problems[key] = problems
        log.warning("remote cached result %s in %s is broken and is not used: %s", key[:12], self.label,
                    self._scrub("; ".join(problems[:5])))

    def _scrub(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def _redact(self, text: str) -> str:
        from ..azure.redact import redact

        return redact(self._scrub(str(text)))

    def _error(self, exc: BaseException, doing: str) -> StoreError:
        """One redacted line for any SDK failure, with what to do about it."""
        if isinstance(exc, StoreError):
            return exc
        try:
            from azure.core import exceptions as core
        except ImportError:  # pragma: no cover - azure-core comes with azure-storage-blob
            core = None
        status = getattr(exc, "status_code", None)
        code = _code(exc)
        first = next((ln.strip() for ln in str(getattr(exc, "message", None) or exc).splitlines() if ln.strip()), "")
        detail = self._redact(" ".join(x for x in (f"HTTP {status}" if status else "", code or "", first[:200]) if x))
        where = f"the remote cache {self.label}"
        fix = self.hint
        if code == "ContainerNotFound":
            acct, _, rest = self.label.removeprefix("azblob://").partition("/")
            return RemoteUnavailable(f"cannot {doing} {where}: the container does not exist",
                              f"create it (az storage container create --account-name {acct} --name "
                              f"{rest.split('/')[0]} --auth-mode login), or fix the remote's address")
        if status in (401, 403) or (core and isinstance(exc, core.ClientAuthenticationError)):
            return RemoteUnavailable(f"cannot {doing} {where}: access denied ({detail})",
                              "reading needs the 'Storage Blob Data Reader' role (or a SAS with read+list), "
                              "publishing 'Storage Blob Data Contributor' (or a SAS with read+list+create+write); "
                              + fix)
        if core and isinstance(exc, (core.ServiceRequestError, core.ServiceResponseError)):
            return RemoteUnavailable(f"cannot {doing} {where}: could not reach it ({detail})",
                              "check the network and the account name; OLIVEPIPE_REMOTE_CACHE=off works with "
                              "the local cache only")
        return StoreError(f"cannot {doing} {where}: {type(exc).__name__} {detail}".rstrip(), fix)


class _Broken(Exception):
    pass


class _Exists(Exception):
    pass


class _Corrupt(StoreError):
    """Downloaded bytes that do not match their digest."""


def _code(exc) -> str | None:
    return getattr(exc, "error_code", None)


def _json_settings():
    from azure.storage.blob import ContentSettings

    return ContentSettings(content_type="application/json")



def _check_rel(rel: str) -> None:
    if not rel_ok(rel):
        raise StoreError(f"manifest names an unsafe path {rel[:80]!r}", "the remote entry is corrupt")


def _index(src: Path) -> tuple[dict, dict]:
    """({rel: {"digest", "size"}}, {rel: path}) of the regular files under ``src``, read only.
    Links and special files are not part of a result (the local store drops them too)."""
    if not src.is_dir() or src.is_symlink():
        raise StoreError(f"result folder {src} does not exist or is not a folder",
                         "the node wrote no output folder; check its log")
    paths = {}
    for dirpath, _, filenames in os.walk(src):
        for name in filenames:
            p = Path(dirpath) / name
            if stat.S_ISREG(os.lstat(p).st_mode):
                paths[p.relative_to(src).as_posix()] = p
    check_onnx(src, paths)  # an ONNX model without its weights file is never published
    rels = sorted(paths)
    digests = digest_many(file_digest, [paths[rel] for rel in rels])  # several shards at once
    files = {rel: {"digest": d, "size": os.lstat(paths[rel]).st_size} for rel, d in zip(rels, digests)}
    return files, paths


def _empty(d: Path) -> None:
    """Delete what is inside ``d`` (read-only files included), keeping ``d``."""
    for child in list(d.iterdir()) if d.is_dir() else ():
        _rmtree(child)


def _rmtree(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        for dirpath, _, _ in os.walk(p):
            try:
                os.chmod(dirpath, 0o700)
            except OSError:
                pass
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            os.unlink(p)
        except OSError:
            pass


__all__ = ["BlobStore", "BlobEntry", "RemoteUnavailable", "CLIENT_KWARGS", "OWN_FIELDS"]
