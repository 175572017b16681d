"""Canonical node records and the keys derived from them.

A node's key is sha256 over its record; the lock stores the same record, so the
plan can say exactly which field changed. What is deliberately NOT in a record:
node names, file positions, output paths, timestamps, comments, and a node's
description unless it is part of what the node produces (a register node's
description and tags are the registered model's, so they are in its options).
Renaming a node or editing a comment re-runs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .hashing import digest_obj

RECORD_FORMAT = 1


def key_of(record: dict) -> str:
    return digest_obj(record)


_ABSENT = object()


@dataclass(frozen=True)
class Change:
    """One difference between two records: where (a key path), what it was and what it is."""

    path: tuple
    old: Any = _ABSENT
    new: Any = _ABSENT

    @property
    def kind(self) -> str:
        return "added" if self.old is _ABSENT else "removed" if self.new is _ABSENT else "changed"

    @property
    def values(self) -> str:
        """The change's values for people: "old -> new", the new value, or "" when removed."""
        if self.kind == "changed":
            return f"{_fmt(self.old)} -> {_fmt(self.new)}"
        return _fmt(self.new) if self.kind == "added" else ""

    def text(self) -> str:
        if self.kind == "added":
            return f"{_p(self.path)} added: {_fmt(self.new)}"
        if self.kind == "removed":
            return f"{_p(self.path)} removed (was {_fmt(self.old)})"
        return f"{_p(self.path)}: {self.values}"


def record_changes(old: dict, new: dict) -> list[Change]:
    """Every difference between two canonical records, as typed changes."""
    out: list[Change] = []
    _diff(old, new, (), out)
    return out


def _fmt(v) -> str:
    s = repr(v) if not isinstance(v, str) else v
    return s if len(s) <= 40 else s[:12] + "…" if _looks_like_digest(s) else s[:37] + "..."


def _looks_like_digest(s: str) -> bool:
    return len(s) == 64 and all(c in "0123456789abcdef" for c in s)


def _diff(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a and isinstance(b[k], dict):
                _diff({}, b[k], path + (k,), out)  # a pruned empty mapping: report its entries
            elif k not in b and isinstance(a[k], dict):
                _diff(a[k], {}, path + (k,), out)
            elif k not in a:
                out.append(Change(path + (k,), new=b[k]))
            elif k not in b:
                out.append(Change(path + (k,), old=a[k]))
            else:
                _diff(a[k], b[k], path + (k,), out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, path + (i,), out)
    elif a != b:
        out.append(Change(path, a, b))


def _p(path) -> str:
    return ".".join(str(x) for x in path)
