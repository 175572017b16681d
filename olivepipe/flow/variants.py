"""Variants: the committed workflow with `-S PATH=VALUE` overrides, without editing it.

An override names any field a workflow can hold by its key path (``nodes.onnx.params.r``; the
``nodes.`` may be left out: ``onnx.params.r=8``) and a YAML value (``8``, ``fp32``, ``[a, b]``).
The overrides are applied to the file's *text*, in place: a value is replaced where it is
written and a missing key is added to its mapping in that mapping's own style, so the variant
is the committed file plus exactly those edits. It validates like any workflow, and a
problem in it is reported at the committed file's line, with the override that caused it.
`olivepipe exp apply` writes the same edits into the file itself, so comments and layout stay.

A variant's results are cached under their own keys (its records differ only where the
overrides reach) and recorded in ``.olivepipe/variants.lock`` under ``<workflow>@<variant>``,
never in the committed lock; ``.olivepipe/variants/<workflow>.json`` remembers each variant's
overrides for `olivepipe exp show`.
"""
from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..core.errors import OlivepipeError, Problem, SpecError, UsageError

TOP = ("olivepipe", "name", "description", "defaults", "models", "datasets", "nodes")
COMMITTED = "committed"  # what `exp diff` calls the workflow as committed
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Override:
    arg: str  # as the user wrote it
    path: tuple  # ("nodes", "onnx", "params", "r")
    value: object


@dataclass
class Variant:
    name: str
    overrides: tuple[Override, ...]
    changes: list[dict] = field(default_factory=list)  # [{"path", "old", "new"}] against the committed file

    def to_json(self) -> dict:
        return {"name": self.name, "overrides": [o.arg for o in self.overrides], "changes": self.changes}


def parse(args) -> tuple[Override, ...]:
    """`-S` arguments as overrides; a malformed one is a usage error naming it."""
    out = []
    for arg in args:
        path, eq, raw = arg.partition("=")
        if not eq or not path.strip():
            raise UsageError(f"-S {arg}: expected PATH=VALUE", "e.g. -S finetune.params.r=8")
        parts = [p for p in path.strip().split(".")]
        if any(not p for p in parts):
            raise UsageError(f"-S {arg}: empty part in the key path '{path}'", "e.g. -S finetune.params.r=8")
        if parts[0] not in TOP:
            parts = ["nodes", *parts]
        try:
            value = yaml.load(raw, Loader=_Loader) if raw.strip() else raw
        except yaml.YAMLError as e:
            raise UsageError(f"-S {arg}: the value is not valid YAML ({e.__class__.__name__})",
                             "quote it for the shell, e.g. -S 'chat.prompts=[\"hi\"]'") from None
        out.append(Override(arg, tuple(int(p) if p.isdigit() else p for p in parts), value))
    paths = [o.path for o in out]
    for o in out:
        if paths.count(o.path) > 1:
            raise UsageError(f"-S {o.arg}: {'.'.join(map(str, o.path))} is set more than once", "give it once")
    return tuple(out)


def name_of(overrides) -> str:
    """A stable name: the same overrides (in any order) are the same variant."""
    canon = json.dumps(sorted([list(map(str, o.path)), o.value] for o in overrides), sort_keys=True, default=str)
    return "exp-" + hashlib.sha256(canon.encode()).hexdigest()[:8]


# -- editing the text -------------------------------------------------------------------------

def _flow(value) -> str:
    """A value as one line of flow YAML."""
    return yaml.safe_dump([value], default_flow_style=True, width=1 << 16, allow_unicode=True).strip()[1:-1]


def _child(node, part):
    if isinstance(node, yaml.MappingNode):
        return next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(part)), None)
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return (None, node.value[part])
    return None


def _nest(parts, value):
    for p in reversed(parts):
        value = {p: value}
    return value


def edit(text: str, o: Override, shown: str) -> tuple[str, int | None, int]:
    """``text`` with one override applied: (new text, line of an inserted line or None,
    1-based line the change is on). Raises UsageError when the path cannot be set."""
    root = yaml.compose(text, Loader=_Loader)
    node, dotted = root, ".".join(map(str, o.path))
    for i, part in enumerate(o.path):
        hit = _child(node, part)
        if hit is not None:
            key, child = hit
            if i == len(o.path) - 1:
                if isinstance(child, (yaml.MappingNode, yaml.SequenceNode)) and not child.flow_style:
                    raise UsageError(f"-S {o.arg}: {dotted} is a block of several lines in {shown}",
                                     f"set its fields one by one, e.g. -S {dotted}.FIELD=VALUE")
                s, e = child.start_mark.index, child.end_mark.index
                return text[:s] + _flow(o.value) + text[e:], None, child.start_mark.line + 1
            node = child
            continue
        if i < 2 and o.path[0] in ("nodes", "models", "datasets") and i == 1:
            known = [getattr(k, "value", "") for k, _ in node.value] if isinstance(node, yaml.MappingNode) else []
            close = difflib.get_close_matches(str(part), known, n=1)
            raise UsageError(f"-S {o.arg}: {shown} has no {o.path[0][:-1]} '{part}'",
                             f"did you mean '{close[0]}'?" if close else f"known: {', '.join(known[:10]) or 'none'}")
        if not isinstance(node, yaml.MappingNode):
            what = "a list" if isinstance(node, yaml.SequenceNode) else f"the value {node.value!r}"
            raise UsageError(f"-S {o.arg}: {'.'.join(map(str, o.path[:i])) or 'the file'} is {what}; "
                             f"'{part}' cannot be set inside it", "check the key path")
        entry = f"{part}: {_flow(_nest(o.path[i + 1:], o.value))}"
        if node.flow_style:
            at = text.rindex("}", 0, node.end_mark.index)
            sep = ", " if node.value else ""
            return text[:at].rstrip() + sep + entry + (" " if text[at - 1] == " " else "") + text[at:], None, \
                node.start_mark.line + 1
        line = _last_line(node.value[-1][1]) + 1  # 0-based: right after the mapping's last content line
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        indent = node.value[0][0].start_mark.column
        lines.insert(line, " " * indent + entry + "\n")
        return "".join(lines), line + 1, node.start_mark.line + 1
    raise UsageError(f"-S {o.arg}: nothing to set", "")  # an empty path; parse() refuses it


def _last_line(node) -> int:
    """The 0-based line a block node's content ends on (its end mark may sit at the next token)."""
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and not node.flow_style and node.value:
        last = node.value[-1]
        return _last_line(last[1] if isinstance(node, yaml.MappingNode) else last)
    m = node.end_mark
    return m.line if m.column > 0 else m.line - 1


def apply_text(text: str, overrides, shown: str) -> tuple[str, list[tuple[int, int, Override]], dict]:
    """(variant text, inserted lines [(line, parent line, override)], {override arg: line})."""
    inserted, where = [], {}
    for o in overrides:
        text, new_line, line = edit(text, o, shown)
        if new_line is not None:  # later lines move down by one: so do earlier insertions and notes
            inserted = [(ln + 1 if ln >= new_line else ln, p + 1 if p >= new_line else p, oo) for ln, p, oo in inserted]
            where = {a: ln + 1 if ln >= new_line else ln for a, ln in where.items()}
            inserted.append((new_line, line, o))
        where[o.arg] = new_line or line
    return text, inserted, where


def _committed_line(line: int, inserted) -> int:
    """A line of the variant text as a line of the committed file."""
    for ln, parent, _ in inserted:
        if ln == line:
            return _committed_line(parent, [x for x in inserted if x[0] != ln])
    return line - sum(1 for ln, _, _ in inserted if ln < line)


def load(path: Path, overrides) -> tuple[object, Variant]:
    """(Workflow of the variant, Variant). Problems are SpecErrors at the committed file's lines,
    each naming the override on its line."""
    from ..spec.workflow import _read_workflow_file, parse_workflow

    shown = str(path)
    file, raw = _read_workflow_file(path, shown)
    text = raw.decode("utf-8", "replace").removeprefix("\ufeff")
    committed = parse_workflow(raw, shown, base=file.parent, file=file)  # the base must be valid on its own
    new, inserted, where = apply_text(text, overrides, shown)
    by_line = {}
    for o in overrides:
        by_line.setdefault(where[o.arg], []).append(o.arg)
    try:
        wf = parse_workflow(new, shown, base=file.parent, file=file)
    except SpecError as e:
        problems = []
        for p in e.problems:
            note = by_line.get(p.line)
            line = _committed_line(p.line, inserted) if p.line else p.line
            col = p.col if not any(ln == p.line for ln, _, _ in inserted) else 1
            problems.append(Problem(p.file, line, col, p.message + (f" (set by -S {', -S '.join(note)})" if note else ""),
                                    p.hint, p.path))
        raise SpecError(problems) from None
    return wf, Variant(name_of(overrides), tuple(overrides), _changes(committed.raw, overrides))


def _changes(raw: dict, overrides) -> list[dict]:
    out = []
    for o in overrides:
        old = raw
        for p in o.path:
            old = old.get(p) if isinstance(old, dict) else old[p] if isinstance(old, list) and \
                isinstance(p, int) and p < len(old) else None
        out.append({"path": ".".join(map(str, o.path)), "old": old, "new": o.value})
    return out


# -- the record of variants -------------------------------------------------------------------

def index_path(ws) -> Path:
    return ws.dir / "variants" / f"{ws.workflow.name}.json"


def read_index(ws) -> dict:
    from ..core.safefs import read_regular

    try:
        doc = json.loads(read_regular(index_path(ws)))
    except (OSError, ValueError):
        return {}
    return doc.get("variants", {}) if isinstance(doc, dict) and isinstance(doc.get("variants"), dict) else {}


def remember(ws, variant: Variant) -> None:
    """Add a variant to the index (apply writes it; plan writes nothing)."""
    import time

    from ..core.mutex import FileMutex
    from ..core.safefs import confined_dir, write_atomic

    folder = confined_dir(ws.workflow.file.parent, ".olivepipe", "variants")
    with FileMutex(folder / f"{ws.workflow.name}.flock", base=ws.workflow.file.parent):
        known = read_index(ws)
        entry = known.get(variant.name) or {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        entry.update(overrides=[o.arg for o in variant.overrides], changes=variant.changes)
        known[variant.name] = entry
        write_atomic(index_path(ws), json.dumps({"format": 1, "variants": known}, indent=1, sort_keys=True,
                                                default=str) + "\n")


def find(ws, name: str) -> dict:
    known = read_index(ws)
    if name not in known:
        close = difflib.get_close_matches(name, list(known), n=1)
        raise OlivepipeError(f"no variant '{name}' of {ws.workflow.file.name}",
                             f"did you mean '{close[0]}'?" if close else
                             f"variants: {', '.join(known) or 'none yet (apply -S PATH=VALUE makes one)'}")
    return known[name]


def write_back(path: Path, overrides) -> tuple[str, str]:
    """(old text, new text) of the workflow file with the overrides written in; validated first."""
    from ..spec.workflow import parse_workflow

    path = Path(path)
    text = path.read_text(encoding="utf-8")
    new, _, _ = apply_text(text, overrides, str(path))
    parse_workflow(new, str(path), base=path.resolve().parent, file=path.resolve())
    return text, new


# -- exp show / diff ---------------------------------------------------------------------------

def _state(path: Path, overrides, *, cache_dir=None) -> dict:
    """One variant (or the committed file, with no overrides) as exp show/diff see it: its plan
    status, every evaluate node's numbers and every select node's choice. Reads only."""
    from .metrics import collect
    from .plan import make_plan
    from .workspace import open_workspace

    try:
        ws = open_workspace(path, cache_dir=cache_dir, read_only=True, overrides=overrides)
    except (SpecError, UsageError) as e:  # the file moved on and an override no longer applies
        return {"error": e.format().splitlines()[0], "rows": {}, "selected": {}, "pending": 0}
    plan = make_plan(ws)
    has_eval = any(n.kind == "evaluate" for n in ws.workflow.nodes.values())
    rows = {r["node"]: r for r in collect(ws)["rows"]} if has_eval else {}
    selected = {}
    for s in plan.steps:
        if s.kind == "select":  # the stored result's own record of its choice (the lock may be older)
            entry = ws.store.peek(s.key) if s.status == "cached" and s.key else None
            selected[s.name] = ((entry.manifest if entry else {}).get("result") or {}).get("selected")
    return {"rows": rows, "selected": selected, "pending": len(plan.to_run) + len(plan.blocked),
            "workflow": ws.lock_name}


def show(path: Path, *, cache_dir=None) -> dict:
    """`olivepipe exp show`: the committed workflow and every variant applied from it."""
    from .workspace import open_workspace

    ws = open_workspace(path, cache_dir=cache_dir, read_only=True)
    out = [{"name": COMMITTED, "overrides": [], "changes": [], **_state(path, (), cache_dir=cache_dir)}]
    for name, entry in sorted(read_index(ws).items(), key=lambda kv: (kv[1].get("created", ""), kv[0])):
        overrides = parse(entry.get("overrides") or [])
        out.append({"name": name, "overrides": entry.get("overrides") or [], "changes": entry.get("changes") or [],
                    "created": entry.get("created"), **_state(path, overrides, cache_dir=cache_dir)})
    metrics = []
    for v in out:
        for r in v["rows"].values():
            metrics += [k for k in r["values"] if k not in metrics]
    return {"format": 1, "workflow": ws.workflow.name, "file": str(path), "metrics": metrics, "variants": out}


def diff(path: Path, a: str, b: str, *, cache_dir=None) -> dict:
    """`olivepipe exp diff A B`: what B changes against A (names or `committed`) and the numbers."""
    from .metrics import compare
    from .workspace import open_workspace

    ws = open_workspace(path, cache_dir=cache_dir, read_only=True)

    def side(name):
        if name == COMMITTED:
            return {"name": name, "overrides": [], **_state(path, (), cache_dir=cache_dir)}
        entry = find(ws, name)
        return {"name": name, "overrides": entry.get("overrides") or [],
                **_state(path, parse(entry.get("overrides") or []), cache_dir=cache_dir)}

    A, B = side(a), side(b)
    only_a = [o for o in A["overrides"] if o not in B["overrides"]]
    only_b = [o for o in B["overrides"] if o not in A["overrides"]]
    rows = []
    for node in list(dict.fromkeys([*A["rows"], *B["rows"]])):
        ra, rb = A["rows"].get(node) or {}, B["rows"].get(node) or {}
        va, vb = ra.get("values") or {}, rb.get("values") or {}
        status = "unavailable" if not va or not vb else "same" if va == vb else "changed"
        rows.append({"node": node, "status": status, "values": compare(va, vb),
                     "keys": [ra.get("key"), rb.get("key")]})
    selected = [{"node": n, "a": A["selected"].get(n), "b": B["selected"].get(n)}
                for n in dict.fromkeys([*A["selected"], *B["selected"]])]
    return {"a": a, "b": b, "only_a": only_a, "only_b": only_b, "rows": rows, "selected": selected,
            "errors": {x["name"]: x["error"] for x in (A, B) if x.get("error")}}
