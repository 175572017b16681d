"""Validation memo: a workflow that validated, byte for byte, need not be validated again.

The memo is JSON (never pickle: a checked-out repository could carry a crafted
.olivepipe folder), keyed by the file's bytes and everything else validation
depends on (olivepipe's own validation code, the Olive catalog, the workspace
root). Referenced data and model paths are re-checked for existence on every read.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import fields
from pathlib import Path

from . import __version__
from .spec import DatasetSpec, ModelSpec, NodeSpec, Workflow, find_root

FORMAT = 1
_CODE = ("spec.py", "schema.py", "yamlpos.py", "olive/catalog.py")


def _key(file: Path, raw: bytes, check_files: bool) -> str:
    from importlib.metadata import PackageNotFoundError, version

    here = Path(__file__).parent
    try:
        olive = version("olive-ai")
    except PackageNotFoundError:
        olive = None
    code = [os.stat(here / c).st_mtime_ns for c in _CODE]
    parts = [FORMAT, __version__, olive, code, str(find_root(file.parent)), str(file), check_files,
             hashlib.sha256(raw).hexdigest()]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _memo_path(file: Path, key: str) -> Path:
    return file.parent / ".olivepipe" / "validated" / f"{key}.json"


def recall(file: Path, check_files: bool) -> Workflow | None:
    try:
        file = file.resolve()
        raw = file.read_bytes()
        data = json.loads(_memo_path(file, _key(file, raw, check_files)).read_text())
        wf = _decode(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if check_files:
        paths = [m.path for m in wf.models.values() if m.path] + [f for d in wf.datasets.values() for f in d.files]
        if not all(p.exists() for p in paths):
            return None  # let full validation say what is missing, with its position
    return wf


def remember(wf: Workflow, raw: bytes, check_files: bool) -> None:
    try:
        path = _memo_path(wf.file, _key(wf.file, raw, check_files))
        text = json.dumps(_encode(wf))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_text(text)
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError):
        pass  # a memo is an optimisation: read-only folders and exotic YAML values just skip it


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


def _encode(wf: Workflow) -> dict:
    return {"file": str(wf.file), "root": str(wf.root), "name": wf.name, "description": wf.description,
            "models": {k: _spec_enc(v) for k, v in wf.models.items()},
            "datasets": {k: _spec_enc(v) for k, v in wf.datasets.items()},
            "nodes": {k: _spec_enc(v) for k, v in wf.nodes.items()},
            "positions": [[list(p), lc[0], lc[1]] for p, lc in wf.positions.items()],
            "raw": wf.raw, "catalog_source": wf.catalog_source}


def _decode(d: dict) -> Workflow:
    return Workflow(file=Path(d["file"]), root=Path(d["root"]), name=d["name"], description=d["description"],
                    models={k: _spec_dec(ModelSpec, v) for k, v in d["models"].items()},
                    datasets={k: _spec_dec(DatasetSpec, v) for k, v in d["datasets"].items()},
                    nodes={k: _spec_dec(NodeSpec, v) for k, v in d["nodes"].items()},
                    positions={tuple(p): (line, col) for p, line, col in d["positions"]},
                    raw=d["raw"], catalog_source=d["catalog_source"])
