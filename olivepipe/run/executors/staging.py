"""Inputs made readable from a remote job's store (Azure ML, Ray): what every executor whose jobs
run elsewhere does before submitting.

A job's refs name this machine's files (``DataFile``, ``ModelFolder``) and upstream results in the
scheduler's store (``StoredResult``); the node runtime (runtime.run_node) without a workspace
reads only its store. So data files and local model folders are uploaded as content-addressed
input entries (``runtime.input_key``; hashed as they are copied, so the bytes uploaded are the
bytes in the key) and become ``UploadedInput`` refs; an upstream result the job's store lacks is
copied there. When the job's store is the scheduler's own (a Ray cluster on this machine), an
upload is a local publish and an upstream result is already there.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

from ...core.errors import InputChanged, OlivepipeError, StoreError
from ...core.hashing import tree_digest
from ...core.job import DataFile, ModelFolder, StoredResult, UploadedInput
from ..runtime import INPUT_KIND, input_key, no_links_out

_CHUNK = 1 << 20


def stage_inputs(refs: dict, ctx, remote, note: Callable[[str], None]) -> dict:
    """Every ref made readable from ``remote``: data files and model folders uploaded (once: by
    content), upstream results copied over when the job's store lacks them. ``ctx`` is the job's
    RunContext (store, root, stats); ``note`` writes a line into the node's log."""
    out = {}
    for ph, ref in refs.items():
        if isinstance(ref, StoredResult):
            ensure_entry(ctx, ref.key, remote, note)
            out[ph] = ref
        elif isinstance(ref, DataFile):
            out[ph] = upload(ctx, ph, ref.file, ref.digest, remote, "file", note)
        elif isinstance(ref, ModelFolder):
            out[ph] = upload(ctx, ph, ref.tree, ref.digest, remote, "tree", note)
        else:  # a text dataset: built where the job runs, from the data inputs above
            out[ph] = ref
    return out


def upload(ctx, ph: str, rel: str, digest: str, remote, what: str, note: Callable[[str], None]) -> UploadedInput:
    src = Path(ctx.root) / rel
    no_links_out(src, Path(ctx.root))
    label = "data file" if what == "file" else "model folder"
    if what == "tree" and ctx.stats is not None and tree_digest(ctx.stats.tree(src)) != digest:
        raise InputChanged(f"{label} {rel} changed after it was hashed; nothing was run", "run apply again")
    name = Path(rel).name if what == "file" else ""
    key = input_key(what, digest, name)
    single = what == "file" or src.is_file()
    new = UploadedInput(key, what, digest, rel, src.name if single else "")
    if remote.get(key) is not None:
        return new  # uploaded before (by anyone): content-addressed, nothing to send
    staging = Path(remote.staging(f"input-{ph.lstrip('$')}"))
    try:
        out = staging / "out"
        files = copy_hashed(src, out / src.name) if single else copy_hashed(src, out)
        got = files[src.name] if what == "file" else tree_digest(files)
        if got != digest:
            raise InputChanged(f"{label} {rel} changed after it was hashed; nothing was uploaded or run",
                               "run apply again: the plan hashes it anew")
        entry = remote.publish(key, out, {"kind": INPUT_KIND, "model": None,
                                          "record": {"input": what, "digest": digest, "name": name}})
    finally:
        remote.discard(staging)
    note(f"uploaded {label} {rel} ({sum(f['size'] for f in entry.files.values())} bytes) as input {key[:12]}")
    return new


def ensure_entry(ctx, key: str, remote, note: Callable[[str], None]) -> None:
    if remote.get(key) is not None:
        return
    entry = ctx.store.get(key)
    if entry is None:
        raise OlivepipeError(f"input result {key[:12]} is no longer in the cache",
                             "run apply again: the missing input is rebuilt first")
    tree = Path(ctx.store.fetch(entry))
    staging = Path(remote.staging(f"result-{key[:12]}"))
    try:
        files = copy_hashed(tree, staging / "out")
        if tree_digest(files) != entry.digest:
            raise StoreError(f"result {key[:12]} in the local cache does not match its manifest",
                             "run `olivepipe cache verify`, then apply again")
        from ...stores.manifest import meta_of

        remote.publish(key, staging / "out", meta_of(entry.manifest))
    finally:
        remote.discard(staging)
    note(f"copied input result {key[:12]} to the job's store")


def copy_hashed(src: Path, dst: Path) -> dict[str, str]:
    """Copy a file (to ``dst``) or the regular files of a folder (into ``dst``), hashing each as it
    is copied: {relative path: digest}, walked like hashing.StatCache.tree, so the digests compare."""
    src, dst = Path(src), Path(dst)
    if src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        return {dst.name: _copy_one(src, dst)}
    out = {}
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            if p.is_file():
                rel = p.relative_to(src).as_posix()
                (dst / rel).parent.mkdir(parents=True, exist_ok=True)
                out[rel] = _copy_one(p, dst / rel)
    dst.mkdir(parents=True, exist_ok=True)
    return out


def _copy_one(src: Path, dst: Path) -> str:
    h = hashlib.sha256()
    with open(src, "rb") as fi, open(dst, "xb") as fo:
        while True:
            chunk = fi.read(_CHUNK)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)
            fo.write(chunk)
