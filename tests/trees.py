"""Small file trees for store tests: {relative path: bytes} written under a folder."""
from __future__ import annotations

from pathlib import Path


def make_tree(d: Path, files: dict) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return d
