"""Safe YAML loading that remembers where every key came from.

Returns plain data plus a map from key path to (line, col), so that schema,
graph and compiler errors can all point at ``file:line:col``. Only the safe
loader is used: no Python object tags can be constructed from a workflow file.
"""
from __future__ import annotations

from typing import Any

import yaml

from .errors import Problem

try:  # the C parser is ~10x faster and keeps marks just the same
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

Path_ = tuple  # a key path: ("nodes", "finetune", "params", "r")
Positions = dict  # Path_ -> (line, col), both 1-based

MAX_BYTES = 1 << 20  # a workflow is a review artifact; a megabyte is already absurd


def decode(raw: bytes, file: str) -> tuple[str | None, list[Problem]]:
    if len(raw) > MAX_BYTES:
        return None, [Problem(file, 1, 1, f"file is {len(raw):,} bytes; workflow files are limited to {MAX_BYTES:,}",
                              "split data out of the workflow; reference data files from `datasets:` instead")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        return None, [Problem(file, line, col, f"file is not valid UTF-8 (byte 0x{raw[e.start]:02x})",
                              "save the file as UTF-8")]
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, []


def load(text: str, file: str) -> tuple[Any, Positions, list[Problem]]:
    """Parse ``text``; return (data, positions, problems). Never raises for bad input."""
    problems: list[Problem] = []
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None, {}, [Problem(file, 1, 1, "file is empty", "start with `olivepipe: 1`")]
            _check_keys(node, (), file, problems)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        msg = f"YAML syntax error: {e.problem or e.context}"
        hint = "YAML forbids tab characters for indentation; use spaces" if "\t" in _line(text, line) else \
            "check indentation and quoting around this position"
        return None, {}, [Problem(file, line, col, msg, hint)]
    except yaml.YAMLError as e:  # e.g. recursion limits on pathological input
        return None, {}, [Problem(file, 1, 1, f"YAML error: {e}", "")]
    except RecursionError:
        return None, {}, [Problem(file, 1, 1, "YAML nesting is too deep", "")]
    positions: Positions = {}
    _positions(node, (), positions)
    return data, positions, problems


def _line(text: str, line: int) -> str:
    lines = text.splitlines()
    return lines[line - 1] if 0 < line <= len(lines) else ""


def _mark(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _check_keys(node, path, file, problems, depth=0):
    """Duplicate keys and non-string keys, on the composed tree (before merges)."""
    if depth > 200:
        return
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, Any] = {}
        for k, v in node.value:
            if k.tag == "tag:yaml.org,2002:merge":
                continue
            if not isinstance(k, yaml.ScalarNode) or k.tag != "tag:yaml.org,2002:str":
                line, col = _mark(k)
                problems.append(Problem(file, line, col, f"key {getattr(k, 'value', '?')!r} must be a string",
                                        "quote the key", _dotted(path)))
                continue
            if k.value in seen:
                line, col = _mark(k)
                first = seen[k.value]
                problems.append(Problem(file, line, col, f"duplicate key '{k.value}' (first defined at line {first})",
                                        "YAML keeps only the last one; remove or rename one of them",
                                        _dotted(path + (k.value,))))
            else:
                seen[k.value] = k.start_mark.line + 1
            _check_keys(v, path + (k.value,), file, problems, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_keys(item, path + (i,), file, problems, depth + 1)


def _positions(node, path, out, depth=0):
    if depth > 200:
        return
    if not path:
        out[()] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k)
            sub = path + (key,)
            out.setdefault(sub, _mark(k))
            out.setdefault(sub + ("$value",), _mark(v))
            _positions(v, sub, out, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.setdefault(path + (i,), _mark(item))
            _positions(item, path + (i,), out, depth + 1)


def _dotted(path) -> str:
    return ".".join(str(p) for p in path)


def locate(positions: Positions, path, *, value: bool = False) -> tuple[int, int]:
    """Best position for ``path``: the exact key, else the nearest ancestor."""
    path = tuple(path)
    if value and path + ("$value",) in positions:
        return positions[path + ("$value",)]
    while path:
        if path in positions:
            return positions[path]
        path = path[:-1]
    return positions.get((), (1, 1))


dotted = _dotted
