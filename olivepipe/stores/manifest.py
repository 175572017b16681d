"""Manifest rules, the same for every store: what an entry's manifest may look like.

A manifest says which files make a result (by digest) and what the writer recorded about it.
A shared cache's manifest was written by someone else, so before anything acts on one it is
size-, depth- and shape-checked here: a manifest that breaks a rule is not a manifest (its
entry is a miss), never a crash. What a reader *does* with an entry (how it loads the model,
whether remote code may run, which paths it reads) comes from the reader's own workflow
(olive/runtime.py ``reader_model_config``), never from these fields.
"""
from __future__ import annotations

from ..core import boundedjson
from ..core.errors import StoreError

FORMAT = 1
OWN_FIELDS = ("format", "key", "id", "digest", "files", "created", "signature")  # what publish writes itself
MANIFEST_MAX = 64 << 20  # a manifest lists files, it never holds them: anything bigger is not one
MAX_DEPTH = 32  # Olive model configs nest 4-5 levels; deeper is an attack on the JSON parser
MAX_FILES = 200_000
MAX_REL = 1024  # characters of one file path inside a result


class BadManifest(ValueError):
    """Why a manifest is not one (for messages; the entry is a miss)."""


def is_key(name) -> bool:
    return isinstance(name, str) and len(name) == 64 and name.isalnum() and name.isascii()


def check_key(key) -> None:
    if not is_key(key):
        raise StoreError(f"not a store key: {str(key)[:80]!r}", "keys are 64 hex digits (or the legacy 64-character ids)")


def is_digest(d) -> bool:
    return isinstance(d, str) and len(d) == 64 and all(c in "0123456789abcdef" for c in d)


def rel_ok(rel) -> bool:
    """A relative path that stays inside a result: no absolute, empty, '.' or '..' parts."""
    if not isinstance(rel, str) or not rel or len(rel) > MAX_REL:
        return False
    return "\0" not in rel and "\\" not in rel and all(p not in ("", ".", "..") for p in rel.split("/"))


def safe_label(label) -> str:
    s = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(label))[:48] or "staging"
    return s if s[0].isalpha() else f"s{s}"  # a leading digit would read as a legacy pid




def parse(raw: bytes, key: str) -> dict:
    """The manifest in ``raw`` for ``key``; BadManifest if it breaks a rule."""
    if len(raw) > MANIFEST_MAX:
        raise BadManifest(f"{len(raw)} bytes: not a manifest")
    try:
        manifest = boundedjson.loads(raw, max_depth=MAX_DEPTH)
    except ValueError as e:
        raise BadManifest(str(e) if "nested" in str(e) else "not valid JSON") from None
    problem = shape_problem(manifest, key)
    if problem:
        raise BadManifest(problem)
    return manifest


def well_formed(m, key: str) -> bool:
    return shape_problem(m, key) is None


def shape_problem(m, key: str) -> str | None:
    """What is wrong with a manifest's shape (None: readers can rely on every field they use)."""
    if not isinstance(m, dict):
        return "not a JSON object"
    if m.get("key") != key:
        return "written for another key"
    if not isinstance(m.get("digest"), str):
        return "no digest"
    files = m.get("files")
    if not isinstance(files, dict):
        return "no file list"
    if len(files) > MAX_FILES:
        return f"more than {MAX_FILES} files"
    for rel, f in files.items():
        if not rel_ok(rel):
            return f"unsafe path {str(rel)[:80]!r}"
        if not (isinstance(f, dict) and is_digest(f.get("digest")) and type(f.get("size")) is int
                and f["size"] >= 0 and type(f.get("mtime_ns", 0)) is int):
            return f"{rel[:80]}: not a file record (digest, size)"
    clash = _file_and_folder(files)
    if clash:
        return f"{clash[:80]!r} is listed both as a file and as a folder"
    model = m.get("model")
    if model is not None and not isinstance(model, dict):
        return "model is not a mapping"
    sig = m.get("signature")
    if sig is not None and not (isinstance(sig, dict) and isinstance(sig.get("key"), str)
                                and isinstance(sig.get("sig"), str)):
        return "signature is not {key, sig}"
    return None


def _file_and_folder(files: dict) -> str | None:
    """A path listed as a file while another listed path lies under it (`model` and
    `model/config.json`): no folder can hold both."""
    dirs = set()
    for rel in files:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
    return next((rel for rel in sorted(files) if rel in dirs), None)


def reader_problems(manifest: dict) -> list[str]:
    """What a reader would refuse or ignore in a manifest's model config (for `cache verify` and
    for remote reads): paths outside the entry, unknown model types, load settings."""
    from ..olive.runtime import ignored_load_settings, model_config_problems

    model = manifest.get("model")
    if model is None:
        return []
    out = [f"model: {p}" for p in model_config_problems(model)]
    ignored = ignored_load_settings(model)
    if ignored:
        out.append(f"model: asks for {', '.join(ignored[:5])}, which readers ignore "
                   "(how a result is loaded is the reading workflow's to say)")
    return out


def meta_of(manifest: dict) -> dict:
    """What a caller gave ``publish`` (model, kind, record, ...), without the store's own fields."""
    return {k: v for k, v in manifest.items() if k not in OWN_FIELDS and k != "pulled_from"}




__all__ = ["FORMAT", "OWN_FIELDS", "MANIFEST_MAX", "BadManifest", "is_key", "check_key", "is_digest", "rel_ok", "safe_label",
           "parse", "well_formed", "shape_problem", "meta_of", "reader_problems"]
