"""`olivepipe fmt`: one canonical layout for workflow files, comments kept.

ruamel.yaml's round trip re-indents (2 spaces, sequences indented under their key),
keeps comments, quotes, flow style and anchors, and reorders keys of flow mappings.
Block mappings are reordered on the text instead: each key moves with the comment
lines just above it, which is where people write what a key is about (ruamel files
those under the *previous* key, so moving keys there would move comments to the
wrong place). The result must load to exactly the same data as the input, or
nothing is written.
"""
from __future__ import annotations

import io
import os
import stat
import uuid
from pathlib import Path

import yaml

from ..core.errors import FmtError

TOP_ORDER = ("olivepipe", "name", "description", "defaults", "models", "datasets", "nodes")
# A merge key first: it reads as "based on"; explicit keys override it wherever they are.
NODE_ORDER = ("<<", "pass", "kind", "input", "data", "device", "provider", "matrix", "params")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def format_text(text: str, shown: str, base: Path) -> str:
    """The canonical layout of a workflow file's text. SpecError if the workflow is invalid."""
    from .workflow import parse_workflow

    text = text.removeprefix("\ufeff")
    parse_workflow(text, shown, base=Path(base).resolve(), check_files=False)  # never lay out what does not validate
    want = yaml.load(text, Loader=_Loader)
    out = text
    # each round settles what the previous one moved (comment indentation follows the
    # content lines); a fixed point is what makes fmt(fmt(x)) == fmt(x)
    for _ in range(6):
        nxt = _round(out, shown)
        if nxt == out:
            break
        out = nxt
    try:
        same = yaml.load(out, Loader=_Loader) == want
    except yaml.YAMLError:
        same = False
    if not same:
        raise FmtError(f"{shown}: formatting would change what the file means; left unchanged",
                       "please report this with the file: it is a bug in olivepipe fmt")
    return out


def _rt():
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 1 << 16  # never re-wrap long lines: reviewers diff them
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _round(text: str, shown: str) -> str:
    y = _rt()
    try:
        doc = y.load(text)
    except Exception as e:  # ruamel rejects a few things PyYAML accepts
        raise FmtError(f"{shown}: cannot lay out this YAML ({type(e).__name__}: {str(e).splitlines()[0]})",
                       "simplify the construct at that position") from None
    _keep_anchors(doc, set())
    _reorder_flow(doc)
    buf = io.StringIO()
    y.dump(doc, buf)
    out = _reindent_comments(text, buf.getvalue())
    return _reorder_blocks(out)


def _keep_anchors(o, seen):
    """ruamel drops anchors nothing refers to; they are the user's, keep them."""
    if id(o) in seen:
        return
    seen.add(id(o))
    a = getattr(o, "anchor", None)
    if a is not None and getattr(a, "value", None):
        a.always_dump = True
    if isinstance(o, dict):
        for v in o.values():
            _keep_anchors(v, seen)
    elif isinstance(o, list):
        for v in o:
            _keep_anchors(v, seen)


def _rank(order):
    def key(item):
        i, k = item
        return (order.index(k), 0) if k in order else (len(order), i)
    return key


def _reorder_flow(doc):
    from ruamel.yaml.comments import CommentedMap

    def sort(m, order):
        if not isinstance(m, CommentedMap) or not m.fa.flow_style() or getattr(m, "merge", None):
            return
        for _, k in sorted(enumerate(list(m)), key=_rank(order)):
            m.move_to_end(k)

    if isinstance(doc, CommentedMap):
        sort(doc, TOP_ORDER)
        nodes = doc.get("nodes")
        if isinstance(nodes, dict):
            for v in nodes.values():
                sort(v, NODE_ORDER)


# -- lines ------------------------------------------------------------------------

def _kinds(text: str) -> list[str]:
    """Per line: blank | comment | content | scalar (inside a multi-line scalar: never touched)."""
    lines = text.splitlines()
    inside = set()
    try:
        for tok in yaml.scan(text, Loader=_Loader):
            if isinstance(tok, yaml.ScalarToken) and tok.end_mark.line > tok.start_mark.line:
                last = tok.end_mark.line if tok.end_mark.column > 0 else tok.end_mark.line - 1
                inside.update(range(tok.start_mark.line + 1, last + 1))
    except yaml.YAMLError:
        pass
    out = []
    for n, line in enumerate(lines):
        s = line.strip()
        out.append("scalar" if n in inside else "blank" if not s else "comment" if s.startswith("#") else "content")
    return out


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _reindent_comments(before: str, after: str) -> str:
    """Indent full-line comments like the content they belong to (ruamel keeps their old column).

    A comment belongs to the next content line unless it sits deeper than that line:
    then it closes the block above it (a commented-out param, say) and takes the
    indentation of the nearest line above at or left of its own column.
    """
    kb, ka = _kinds(before), _kinds(after)
    lb, la = before.splitlines(), after.splitlines()
    seq_b = [k for k in kb if k in ("comment", "content")]
    seq_a = [k for k in ka if k in ("comment", "content")]
    # columns are judged in the input's layout when the two line up one to one
    src = lb if seq_a == seq_b else la
    src_idx = [i for i, k in enumerate(kb if seq_a == seq_b else ka) if k in ("comment", "content")]
    dst_idx = [i for i, k in enumerate(ka) if k in ("comment", "content")]
    col = {d: _indent(src[s]) for s, d in zip(src_idx, dst_idx)}
    out = list(la)
    content = [i for i in dst_idx if ka[i] == "content"]
    for i in dst_idx:
        if ka[i] != "comment":
            continue
        nxt = next((j for j in content if j > i), None)
        n_src, n_dst = (col[nxt], _indent(la[nxt])) if nxt is not None else (0, 0)
        c = col[i]
        if c <= n_src:
            ind = n_dst
        else:
            prev = next((j for j in reversed(content) if j < i and col[j] <= c), None)
            ind = max(_indent(la[prev]) if prev is not None else 0, n_dst)
        out[i] = " " * ind + la[i].lstrip(" ")
    return "\n".join(out) + ("\n" if after.endswith("\n") else "")


def _reorder_blocks(text: str) -> str:
    """Put keys of the top-level mapping and of each node in canonical order, moving whole line spans."""
    skip: set = set()
    for _ in range(10_000):  # bounded: each step orders one mapping or skips it
        root = yaml.compose(text, Loader=_Loader)
        target = _next_unordered(root, skip)
        if target is None:
            return text
        path, m, parent_line, order = target
        new = _permute(text, m, parent_line, order, root=not path)
        try:
            ok = yaml.load(new, Loader=_Loader) == yaml.load(text, Loader=_Loader)
        except yaml.YAMLError:  # e.g. an alias moved above its anchor
            ok = False
        if ok:
            text = new
        else:
            skip.add(path)
    return text


def _next_unordered(root, skip):
    if not isinstance(root, yaml.MappingNode):
        return None
    cands = []
    for k, v in root.value:
        if k.value == "nodes" and isinstance(v, yaml.MappingNode) and not v.flow_style:
            cands += [(("nodes", nk.value), nv, nk.start_mark.line, NODE_ORDER) for nk, nv in v.value
                      if isinstance(nv, yaml.MappingNode) and not nv.flow_style and nv.value]
    if not root.flow_style:
        cands.append(((), root, -1, TOP_ORDER))
    for path, m, parent_line, order in cands:
        if path in skip:
            continue
        keys = [k.value for k, _ in m.value]
        if keys != [k for _, k in sorted(enumerate(keys), key=_rank(order))]:
            return path, m, parent_line, order
    return None


def _permute(text: str, m, parent_line: int, order, *, root: bool) -> str:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    kinds = _kinds(text)
    keys = [k.value for k, _ in m.value]
    K = [k.start_mark.line for k, _ in m.value]
    col = m.value[0][0].start_mark.column

    def run_above(line, floor):
        """Start of the blank/comment lines (at or left of the keys' column) right above `line`."""
        s = line
        while s - 1 >= floor and (kinds[s - 1] == "blank" or (kinds[s - 1] == "comment" and _indent(lines[s - 1]) <= col)):
            s -= 1
        return s

    end = next((n for n in range(K[-1] + 1, len(lines)) if kinds[n] == "content" and _indent(lines[n]) < col), len(lines))
    if root:
        # the file's header (its first comment paragraph) stays on top; a paragraph after a
        # blank line, right above the first key, is about that key and moves with it
        s = run_above(K[0], 0)
        blanks = [n for n in range(s, K[0]) if kinds[n] == "blank"]
        first = blanks[-1] + 1 if blanks else K[0]
    else:
        first = run_above(K[0], parent_line + 1)  # a nested mapping's first key keeps the comments above it
    starts = [first]
    starts += [run_above(K[j], K[j - 1] + 1) for j in range(1, len(K))]
    tail = run_above(end, K[-1] + 1)
    seps, leads, bodies = [], [], []
    for j in range(len(K)):
        above = lines[starts[j]:K[j]]
        blank = next((n for n, ln in enumerate(above) if ln.strip()), len(above))
        seps.append(above[:blank])  # a blank line above a key sets that key apart: it moves along
        leads.append(above[blank:])
        bodies.append(lines[K[j]:starts[j + 1] if j + 1 < len(K) else tail])
    perm = [j for j, _ in sorted(enumerate(keys), key=_rank(order))]
    out = lines[:starts[0]]
    for p, j in enumerate(perm):
        # ...except at the top, which keeps its own spacing (none, right under a parent key)
        out += (seps[0] if p == 0 else seps[j]) + leads[j] + bodies[j]
    out += lines[tail:]
    return "".join(out)


# -- files --------------------------------------------------------------------------

def format_file(path: Path) -> tuple[str, str]:
    """(original text, formatted text) of a workflow file."""
    from ..core.errors import Problem, SpecError
    from ..core.safefs import read_regular

    path = Path(path)
    shown = str(path).replace("\0", "\\0")
    try:
        raw = read_regular(path)  # a FIFO or device among the files fails here instead of hanging
    except ValueError:  # a NUL byte in the name (only possible in-process)
        raise SpecError([Problem(shown, 0, 0, "file name contains a NUL byte", "")]) from None
    except FileNotFoundError:
        raise SpecError([Problem(shown, 0, 0, "no such file", "check the path")]) from None
    except IsADirectoryError:
        raise SpecError([Problem(shown, 0, 0, "is a directory, not a workflow file", "")]) from None
    except OSError as e:
        raise SpecError([Problem(shown, 0, 0, f"cannot read: {e.strerror}", "")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        from .workflow import parse_workflow

        parse_workflow(raw, shown, base=path.resolve().parent, check_files=False)  # raises, located
        raise
    return text, format_text(text, shown, path.resolve().parent)


def unified_diff(old: str, new: str, shown: str) -> str:
    """`fmt --diff`: what formatting would change, as a unified diff."""
    import difflib

    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                        f"{shown} (current)", f"{shown} (formatted)"))


def write_atomic(path: Path, text: str) -> None:
    """Temp file in the same folder, then one rename: readers see the old file or the new one.

    Through a symlink the target is written and the link kept (fmt edits what the link
    names); the file's permissions are kept. Unlike safefs.write_atomic, which replaces a
    link, this is for a file the user named. The temp file is created exclusively and
    without following links.
    """
    target = Path(path).resolve()
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    mode = stat.S_IMODE(target.stat().st_mode)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
