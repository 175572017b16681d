"""Validation memo: a workflow that validated, byte for byte, need not be validated again.

The memo is JSON (never pickle: a checked-out repository could carry a crafted
.olivepipe folder), keyed by the file's bytes and everything else validation
depends on (olivepipe's own code, the Olive catalog, the workspace root, and the
memo folder's inode, which a committed folder cannot predict). One memo file per
workflow file and mode, overwritten on each new validation, so the folder never
grows with edits. The caller (spec.load_workflow) re-checks referenced paths on
every hit; this module only stores and reads, and never imports spec (the
dataclasses come in as arguments), so there is no import cycle.

Everything here is an optimisation: any doubt reads as a miss, any failure to
write is silent.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import fields
from pathlib import Path

from .. import __version__
from ..core.filestat import code_stamp, folder_id
from ..core.safefs import UnsafePath, check_confined, open_nofollow, write_state

FORMAT = 3
MAX_MEMO_BYTES = 64 << 20  # a 20,000-node workflow is ~20 MB of JSON; beyond that the file is not ours
_LEGACY = re.compile(r"[0-9a-f]{64}\.json")  # FORMAT 1 wrote one file per validated version


def _key(file: Path, root: Path, raw: bytes, check_files: bool) -> str:
    # the dist-info listing, not importlib.metadata (14 ms of a no-op apply's import time)
    from ..core.versions import version

    olive = version("olive-ai")
    parts = [FORMAT, __version__, olive, code_stamp(), str(root), str(file), check_files,
             hashlib.sha256(raw).hexdigest()]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _name(file: Path, check_files: bool) -> str:
    # by workflow path (and mode), not by content: a new version overwrites the old memo
    return f"w-{hashlib.sha256(str(file).encode()).hexdigest()[:32]}-{'f' if check_files else 'n'}.json"


def recall(file: Path, raw: bytes, check_files: bool, root: Path, types: dict):
    """The memoised Workflow for exactly these bytes, or None. ``file`` is resolved.

    ``types`` maps "Workflow", "ModelSpec", "DatasetSpec", "NodeSpec" to the classes.
    """
    folder = file.parent / ".olivepipe" / "validated"
    try:
        key = _key(file, root, raw, check_files)
        here = folder_id(folder)  # no folder (lstat fails): a miss
        check_confined(file.parent, folder)  # a symlinked .olivepipe is not read through
        fd = open_nofollow(folder / _name(file, check_files), os.O_RDONLY, 0)  # refuses FIFOs and links
        with os.fdopen(fd, "rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_MEMO_BYTES:
                return None
            data = json.loads(f.read(MAX_MEMO_BYTES + 1))
        if data.get("key") != key or data.get("folder") != here:
            return None
        wf = _decode(data["workflow"], types)
    except (OSError, UnsafePath, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    if wf.file != file or wf.root != root:
        return None
    return wf


def remember(wf, raw: bytes, check_files: bool) -> None:
    try:
        key, workflow = _key(wf.file, wf.root, raw, check_files), _encode(wf)
        memo = write_state(wf.file.parent, (".olivepipe", "validated"), _name(wf.file, check_files),
                           lambda folder: json.dumps({"key": key, "folder": folder_id(folder), "workflow": workflow}))
        _drop_legacy(memo.parent)
    except (OSError, UnsafePath, TypeError, ValueError, RecursionError):
        pass  # read-only workspace, symlinked .olivepipe, exotic YAML values: just no memo


def _drop_legacy(folder: Path) -> None:
    with os.scandir(folder) as it:
        for e in it:
            if _LEGACY.fullmatch(e.name) and stat.S_ISREG(e.stat(follow_symlinks=False).st_mode):
                os.unlink(e.path)


def _spec_enc(obj) -> dict:
    out = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, Path):
            v = {"$path": str(v)}
        elif isinstance(v, tuple):
            v = {"$tuple": [str(x) if isinstance(x, Path) else x for x in v],
                 "paths": bool(v) and isinstance(v[0], Path)}
        out[f.name] = v
    return out


def _spec_dec(cls, d: dict):
    kw = {}
    for k, v in d.items():
        if isinstance(v, dict) and "$path" in v:
            v = Path(v["$path"])
        elif isinstance(v, dict) and "$tuple" in v:
            v = tuple(Path(x) for x in v["$tuple"]) if v.get("paths") else tuple(v["$tuple"])
        kw[k] = v
    return cls(**kw)


def _encode(wf) -> dict:
    return {"file": str(wf.file), "root": str(wf.root), "name": wf.name, "description": wf.description,
            "models": {k: _spec_enc(v) for k, v in wf.models.items()},
            "datasets": {k: _spec_enc(v) for k, v in wf.datasets.items()},
            "nodes": {k: _spec_enc(v) for k, v in wf.nodes.items()},
            "positions": [[list(p), lc[0], lc[1]] for p, lc in wf.positions.items()],
            "raw": wf.raw, "catalog_source": wf.catalog_source, "order": list(wf.order)}


def _decode(d: dict, types: dict):
    return types["Workflow"](
        file=Path(d["file"]), root=Path(d["root"]), name=d["name"], description=d["description"],
        models={k: _spec_dec(types["ModelSpec"], v) for k, v in d["models"].items()},
        datasets={k: _spec_dec(types["DatasetSpec"], v) for k, v in d["datasets"].items()},
        nodes={k: _spec_dec(types["NodeSpec"], v) for k, v in d["nodes"].items()},
        positions={tuple(p): (line, col) for p, line, col in d["positions"]},
        raw=d["raw"], catalog_source=d["catalog_source"], order=tuple(d["order"]))
