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
    _Parser = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _Parser = yaml.SafeLoader


class _Loader(_Parser):
    """The safe loader, resolving each distinct plain scalar's tag once: the parser asks for every
    scalar (60,000 in a 10,000-node file, mostly the same few keys and values), and the safe
    loader's answer depends on the text alone (it has no path resolvers)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._tags: dict = {}

    def resolve(self, kind, value, implicit):
        if kind is not yaml.ScalarNode:
            return super().resolve(kind, value, implicit)
        tag = self._tags.get((value, implicit))
        if tag is None:
            tag = self._tags[(value, implicit)] = super().resolve(kind, value, implicit)
        return tag

Path_ = tuple  # a key path: ("nodes", "finetune", "params", "r")
Positions = dict  # Path_ -> (line, col), both 1-based

MAX_BYTES = 1 << 20  # a workflow is a review artifact; a megabyte is already absurd
MAX_NODES = 100_000  # after alias expansion: caps "billion laughs" documents long before they cost anything
MAX_DEPTH = 64  # workflows need ~6 levels; deep nesting would only overflow recursive consumers (json, jsonschema)
# Workflows are plain JSON-like data: anything else (python/*, !!binary, !!set, dates) is refused
# before construction, so no constructor but these ever sees user input.
_PLAIN_TAGS = {"tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "seq", "map")}
_MERGE = "tag:yaml.org,2002:merge"


def too_big(size: int, file: str) -> Problem:
    """Also used before reading: spec/workflow.py checks the size first and never reads past the limit."""
    return Problem(file, 1, 1, f"file is {size:,} bytes; workflow files are limited to {MAX_BYTES:,}",
                   "split data out of the workflow; reference data files from `datasets:` instead")


def decode(raw: bytes, file: str) -> tuple[str | None, list[Problem]]:
    if len(raw) > MAX_BYTES:
        return None, [too_big(len(raw), file)]
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
            built = _plain_document(node, loader)
            if built is not None:
                return built[0], built[1], []
            shape = _check_shape(node, file)
            if shape:
                return None, {}, [shape]
            _check_keys(node, (), file, problems)
            try:
                data = loader.construct_document(node)
            except yaml.YAMLError:
                raise
            except Exception as e:  # noqa: BLE001 - a scalar Python cannot hold: `!!int 12x`, 2001-02-30, 5000 digits
                line, col = _unreadable_scalar(node)
                return None, {}, [Problem(file, line, col, f"value cannot be read: {e}", "quote it to make it a string")]
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        msg = f"YAML syntax error: {e.problem or e.context}"
        hint = "YAML forbids tab characters for indentation; use spaces" if "\t" in _line(text, line) else \
            "check indentation and quoting around this position"
        return None, {}, [Problem(file, line, col, msg, hint)]
    except yaml.reader.ReaderError as e:  # NUL and other control characters; carries a character offset
        line = text.count("\n", 0, e.position) + 1
        col = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        what = f"character U+{e.character:04X}" if isinstance(e.character, int) else "character"
        return None, {}, [Problem(file, line, col, f"{what} is not allowed in YAML ({e.reason})",
                                  "remove it; workflow files are plain text")]
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


class _NotPlain(Exception):
    """The document needs the careful path (yamlpos.load's checks, then PyYAML's constructor)."""


_STR, _SEQ, _MAP = ("tag:yaml.org,2002:" + t for t in ("str", "seq", "map"))


def _plain_document(root, loader) -> tuple[Any, Positions] | None:
    """(data, positions) of a plain document in one walk, or None for anything else.

    Plain: a tree (no node reached twice: no alias), plain tags only, string keys, no duplicate
    or merge key, within MAX_NODES and MAX_DEPTH, every scalar readable. That is what a workflow
    is, and then this walk gives what the shape check, the key check, the position walk and
    PyYAML's constructor give together, in a fraction of their time. Anything else returns None,
    and those steps run as before and locate the problem."""
    walk = _PlainWalk(loader, _mark(root))
    try:
        return walk.value(root, (), 1), walk.positions
    except (_NotPlain, RecursionError):
        return None


class _PlainWalk:
    # a class, not a recursive closure: a closure that calls itself is a reference cycle, and it
    # would keep every position and node id alive until the cyclic GC ran
    def __init__(self, loader, root_mark):
        self.loader = loader
        self.seen: set[int] = set()
        self.positions: Positions = {(): root_mark}
        self.scalars = {t: loader.yaml_constructors[t] for t in _PLAIN_TAGS if t not in (_SEQ, _MAP)}

    def value(self, node, path, level):
        seen, positions = self.seen, self.positions
        if id(node) in seen or level > MAX_DEPTH or len(seen) >= MAX_NODES:
            raise _NotPlain
        seen.add(id(node))
        cls, tag = type(node), node.tag
        if cls is yaml.ScalarNode:
            if tag == _STR:
                return node.value
            construct = self.scalars.get(tag)
            if construct is None:
                raise _NotPlain
            try:
                return construct(self.loader, node)
            except Exception:  # noqa: BLE001 - unreadable: the careful path says where and why
                raise _NotPlain from None
        if cls is yaml.MappingNode and tag == _MAP:
            out = {}
            for k, v in node.value:
                if type(k) is not yaml.ScalarNode or k.tag != _STR or k.value in out or id(k) in seen:
                    raise _NotPlain  # a merge, a non-string or duplicate key: located by _check_keys
                seen.add(id(k))
                key = k.value
                sub = path + (key,)
                m = k.start_mark
                positions[sub] = (m.line + 1, m.column + 1)
                m = v.start_mark
                positions[sub + ("$value",)] = (m.line + 1, m.column + 1)
                out[key] = self.value(v, sub, level + 1)
            return out
        if cls is yaml.SequenceNode and tag == _SEQ:
            out = []
            for i, item in enumerate(node.value):
                sub = path + (i,)
                m = item.start_mark
                positions[sub] = (m.line + 1, m.column + 1)
                out.append(self.value(item, sub, level + 1))
            return out
        raise _NotPlain


def _check_shape(root, file) -> Problem | None:
    """Refuse, before anything walks or constructs it: cycles through aliases, alias bombs,
    absurd nesting, and tags outside plain data. Iterative: the input may be arbitrarily deep.
    Reached only when the document is not plain (``_plain_document`` gave up)."""
    size: dict[int, int] = {}  # expanded node count per composed node (aliases share nodes)
    depth: dict[int, int] = {}
    state: dict[int, int] = {}  # 1 = on the stack, 2 = done
    stack = [(root, False)]
    shared = False  # some node is reached twice (an alias)
    while stack:
        node, children_done = stack.pop()
        i = id(node)
        if not children_done:
            if state.get(i) == 2:
                shared = True
                continue
            if state.get(i) == 1:  # reached again while still open: it contains itself
                line, col = _mark(node)
                return Problem(file, line, col, "recursive YAML alias: this value contains itself",
                               "an alias (*name) cannot point into its own anchor (&name)")
            if isinstance(node, yaml.ScalarNode):
                if node.tag not in _PLAIN_TAGS:
                    return _tag_problem(node, file)
                size[i], depth[i], state[i] = 1, 1, 2
                continue
            if node.tag not in _PLAIN_TAGS:
                return _tag_problem(node, file)
            state[i] = 1
            stack.append((node, True))
            kids = node.value if isinstance(node, yaml.SequenceNode) else [x for kv in node.value for x in kv]
            for k in kids:
                if isinstance(k, yaml.ScalarNode) and k.tag == _MERGE:
                    size[id(k)], depth[id(k)], state[id(k)] = 1, 1, 2  # the `<<` key itself
                    continue
                shared |= state.get(id(k)) == 2
                if state.get(id(k)) == 1:
                    line, col = _mark(k)
                    return Problem(file, line, col, "recursive YAML alias: this value contains itself",
                                   "an alias (*name) cannot point into its own anchor (&name)")
                stack.append((k, False))
            continue
        kids = node.value if isinstance(node, yaml.SequenceNode) else [x for kv in node.value for x in kv]
        size[i] = 1 + sum(size[id(k)] for k in kids)
        depth[i] = 1 + max((depth[id(k)] for k in kids), default=0)
        state[i] = 2
        if size[i] > MAX_NODES:
            line, col = _mark(node)
            return Problem(file, line, col, f"this value holds more than {MAX_NODES:,} YAML values"
                           + (" once aliases are expanded" if shared else ""),
                           "an alias bomb (\"billion laughs\")? a workflow needs nowhere near that many")
    if depth[id(root)] > MAX_DEPTH:  # point at the first level too many, walking down the deepest branch
        node = root
        for _ in range(MAX_DEPTH):
            kids = node.value if isinstance(node, yaml.SequenceNode) else [x for kv in node.value for x in kv]
            node = max(kids, key=lambda k: depth[id(k)])
        line, col = _mark(node)
        return Problem(file, line, col, f"YAML nesting is deeper than {MAX_DEPTH} levels", "flatten the structure")
    return None


def _tag_problem(node, file) -> Problem:
    line, col = _mark(node)
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    if tag == "!!timestamp":
        return Problem(file, line, col, f"{node.value!r} reads as a YAML date", "quote it to make it a string")
    return Problem(file, line, col, f"YAML tag '{tag}' is not allowed",
                   "workflows are plain data: olivepipe loads them safely and never creates objects from tags")


def _unreadable_scalar(root) -> tuple[int, int]:
    """Where construction failed: the first scalar that does not construct on its own."""
    probe = yaml.SafeLoader("")
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                probe.construct_object(node)
            except Exception:  # noqa: BLE001 - that is what we are looking for
                return _mark(node)
        else:
            kids = node.value if isinstance(node, yaml.SequenceNode) else [x for kv in node.value for x in kv]
            stack.extend(reversed(kids))
    return _mark(root)


def _check_keys(node, path, file, problems, depth=0):
    """Duplicate keys and non-string keys, on the composed tree (before merges)."""
    if depth > 200:
        return
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, Any] = {}
        for k, v in node.value:
            if k.tag == _MERGE:
                continue
            if not isinstance(k, yaml.ScalarNode) or k.tag != _STR:
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
