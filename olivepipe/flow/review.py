"""Review support: semantic diffs of workflow definitions and lock files, and the
normalized rendering git uses as a diff driver (textconv).

A workflow diff compares what the files *mean* after olivepipe's own normalization
(key order, Olive defaults, anchors, defaults:, matrix expansion), never their text.
What reaches a cache key is the core's answer, not a second copy of its rules: each
side is opened as a store-less Workspace and its steps' records come from
``Workspace.record`` (and through it the node kinds); keys are ``keys.key_of`` of them.
Lock files are read by ``lock.loads``; orders come from ``graph.build_graph``.
Results are plain JSON-able dicts (the `--json` shape, documented in docs/review.md);
the text renderers only read those dicts.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..core.errors import OlivepipeError, SpecError, ReviewError
from ..core.hashing import file_digest
from ..core.safefs import read_regular

FORMAT = 1


# -- where a side comes from ------------------------------------------------------

@dataclass
class Side:
    """One argument of `olivepipe diff`: a file, or REV:PATH read through git."""

    spec: str  # as the user wrote it; also the name in messages
    text: str
    kind: str  # workflow | lock
    base: Path  # the file's folder in the working tree (relative paths resolve here)
    git: tuple[Path, str, str] | None = None  # (toplevel, rev, repo-relative path)
    _digests: dict = field(default_factory=dict)

    def data_digest(self, rel: str) -> str | None:
        """sha256 of a data file (relative to the workflow's folder) on this side; None if absent.

        The same digest the lock records and plan reports. A git side hashes the bytes a
        checkout would write (`git cat-file --filters`: eol and LFS filters applied).
        """
        if rel in self._digests:
            return self._digests[rel]
        if self.git:
            top, rev, path = self.git
            target = posixpath.normpath(posixpath.join(posixpath.dirname(path), rel))
            out = None if target == ".." or target.startswith("../") else _git_digest(top, f"{rev}:{target}")
        else:
            try:
                out = file_digest(self.base / rel)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
                out = None
        self._digests[rel] = out
        return out


def _git_digest(top: Path, obj: str) -> str | None:
    try:
        proc = subprocess.Popen(["git", "cat-file", "--filters", obj], cwd=top, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
    except FileNotFoundError:
        return None
    h = hashlib.sha256()
    for chunk in iter(lambda: proc.stdout.read(1 << 20), b""):
        h.update(chunk)
    proc.stdout.close()
    return h.hexdigest() if proc.wait() == 0 else None


def _git(args: list[str], cwd: Path | str, *, check: bool = True, spec: str = "") -> subprocess.CompletedProcess:
    """Run git with an argument list (never a shell string)."""
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=120)
    except FileNotFoundError:
        raise ReviewError(f"{spec or 'git'}: git is not installed", "install git, or compare two files") from None
    if check and proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        msg = (msg[0] if msg else f"git {args[0]} failed").removeprefix("fatal: ")
        raise ReviewError(f"{spec}: git: {msg}",
                          "give an existing file, or REV:PATH inside a git repository (e.g. HEAD~1:workflow.yaml)")
    return proc


def read_side(spec: str, cwd: Path | None = None) -> Side:
    """A file path, or `REV:PATH` (`:PATH` is the staged version) read with `git show`."""
    cwd = Path(cwd or os.getcwd())
    if spec.startswith("-"):
        raise ReviewError(f"{spec}: not a file or revision", "")
    if "\0" in spec:
        raise ReviewError(f"{spec!r}: a name with a NUL byte is neither a file nor a revision", "")
    p = cwd / spec
    if p.exists():
        if p.is_dir():
            raise ReviewError(f"{spec}: is a directory", "give a workflow file, a lock file or REV:PATH")
        try:
            raw = read_regular(p)  # a FIFO or device fails here instead of hanging the diff
        except OSError as e:
            raise ReviewError(f"{spec}: cannot read: {e.strerror}", "") from None
        text = _decode(raw, spec)
        return Side(spec, text, _kind(text, spec), p.resolve().parent)
    rev, colon, path = spec.partition(":")
    if not colon or not path:
        raise ReviewError(f"{spec}: no such file", "check the path, or compare git revisions as REV:PATH "
                                                   "(e.g. HEAD~1:workflow.yaml)")
    top = Path(_git(["rev-parse", "--show-toplevel"], cwd, spec=spec).stdout.decode().strip())
    # git reads REV:PATH relative to the repository root unless PATH starts with ./ or ../
    if path.startswith(("./", "../")):
        prefix = _git(["rev-parse", "--show-prefix"], cwd, spec=spec).stdout.decode().strip()
        repo_path = posixpath.normpath(posixpath.join(prefix, path))
    else:
        repo_path = posixpath.normpath(path)
    # --no-textconv: with olivepipe's own diff driver configured we want the stored bytes
    raw = _git(["show", "--no-textconv", spec], cwd, spec=spec).stdout
    if raw.startswith(f"tree {spec}\n".encode()):
        raise ReviewError(f"{spec}: is a directory in that revision", "give REV:path/to/workflow.yaml")
    text = _decode(raw, spec)
    return Side(spec, text, _kind(text, spec), top / posixpath.dirname(repo_path), (top, rev, repo_path))


def _decode(raw: bytes, shown: str) -> str:
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ReviewError(f"{shown}:{line}: not valid UTF-8", "workflow and lock files are UTF-8 YAML") from None


def _kind(text: str, shown: str) -> str:
    """lock or workflow, by content (git hands textconv temp files with arbitrary names)."""
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        data = None
    if isinstance(data, dict) and "workflows" in data and "nodes" not in data and "olivepipe" not in data:
        return "lock"
    if not isinstance(data, dict) and Path(shown).name.endswith(".lock"):  # misshapen: lock.loads says why
        return "lock"
    return "workflow"


def parse_side(side: Side):
    """The side's Workflow (SpecError, located with the side's name, when it is invalid)."""
    from ..spec.workflow import parse_workflow

    return parse_workflow(side.text, side.spec, base=side.base, check_files=False)


# -- one side's definition, as the core sees it -------------------------------------

class _SideFiles:
    """The stat cache's seam (``digest``), answered by a side: its working tree, or its
    revision through git. Without a side (textconv) no file is read: every digest is None."""

    def __init__(self, side: Side | None):
        self.side = side

    def digest(self, path: Path) -> str | None:
        if self.side is None:
            return None
        return self.side.data_digest(_rel(path, self.side.base))


def _static_workspace(wf, side: Side | None):
    """The workflow opened like `plan` opens it, minus what a definition cannot tell.

    Records are the core's (Workspace.record and the node kinds' record parts), except:
    package versions are left out (both sides are read on the same machine; versions are
    plan's business), and a local `path:` model is named by its path instead of hashed
    (gigabytes, and at a revision not checked out). A produced input's slot holds the
    static key of the step that produces it instead of its output digest, so a key covers
    everything upstream and never a name.
    """
    from ..spec.graph import build_graph
    from .workspace import Workspace

    class Static(Workspace):
        def environment(self, name):
            return {}

        def source_input(self, model):
            if model.source == "path":
                return {"local": True, "path": _rel(model.path, self.workflow.root),
                        "trust_remote_code": model.trust_remote_code}
            return super().source_input(model)

    return Static(workflow=wf, graph=build_graph(wf), store=None, stats=_SideFiles(side), dir=wf.workspace)


def _rel(p: Path, base: Path) -> str:
    return Path(os.path.relpath(p, base)).as_posix()


@dataclass
class Definition:
    """One side, normalized: what `diff` compares and `textconv` prints.

    ``models``/``datasets``/``nodes`` are display mappings (paths as written, relative to
    the workflow's folder). ``keyed[(section, name)]`` are the display fields that come
    from the entry's record, i.e. reach a cache key; the others (descriptions, `rehearse`,
    `arch`) never re-run anything. ``keys`` are name-free static keys of models and nodes,
    ``data_keys`` those of datasets.
    """

    name: str
    description: str
    models: dict
    datasets: dict
    nodes: dict
    keyed: dict
    keys: dict
    data_keys: dict
    order: list  # nodes, in the order plan and apply use
    layout_free: list  # nodes in dependency order, ties by name: independent of the file's layout


def describe(wf, side: Side | None = None) -> Definition:
    """The normalized definition of a validated Workflow; with a side, data files carry digests."""
    from ..core.keys import key_of

    ws = _static_workspace(wf, side)
    raw = wf.raw if isinstance(wf.raw, dict) else {}
    keys, keyed = {}, {}
    models, datasets, nodes = {}, {}, {}

    def note(section, name, shown_keyed: dict, extras: dict) -> dict:
        keyed[(section, name)] = set(shown_keyed)
        # a field a kind put into the record (a register node's description) stays keyed
        return {**shown_keyed, **{k: v for k, v in extras.items() if v not in (None, "", {}) and k not in shown_keyed}}

    def written(section, name, key):
        """A field as the file spells it, for display only: descriptions of models and datasets
        are not in the spec objects, and paths there are resolved (the record names them
        from the workspace root; a reviewer reads them relative to the workflow, as written)."""
        entry = (raw.get(section) or {}).get(name)
        return entry.get(key) if isinstance(entry, dict) else None

    for name, m in wf.models.items():
        if m.source == "tiny":
            rec = ws.record(name, {})[0]
            keys[name] = key_of(rec)
            shown = {"tiny": dict(sorted(rec["args"].items()))}
            extras = {}
        else:
            src = ws.source_input(m)
            keys[name] = key_of(src)
            shown = {k: v for k, v in src.items() if k not in ("local", "path") and v not in (None, False)}
            if m.source == "path":
                shown = {"path": posixpath.normpath(str(written("models", name, "path"))), **shown}
            extras = {"arch": m.arch, "rehearse": m.rehearse}
        models[name] = note("models", name, shown, {**extras, "description": written("models", name, "description")})

    data_keys = {}
    for name, ds in wf.datasets.items():
        rec = ws.dataset_record(name)
        data_keys[name] = key_of(rec)
        shown = {k: v for k, v in rec.items() if k != "files"}
        if ds.files:
            files = written("datasets", name, "files")
            names = [posixpath.normpath(f) for f in ([files] if isinstance(files, str) else files)]
            # spec resolved the files in the order written: the same digests as the record
            shown["files"] = {n: ws.stats.digest(p) for n, p in zip(names, ds.files)} if side else names
        shown = note("datasets", name, shown, {"description": written("datasets", name, "description")})
        datasets[name] = dict(sorted(shown.items()))

    g = ws.graph
    records = {}
    for name in g.topo:
        if name in wf.nodes:
            records[name] = ws.record(name, keys)[0]  # inputs' static keys in the digest slots
            keys[name] = key_of(records[name])
    for name, n in wf.nodes.items():
        rec = records[name]
        shown = {"kind": rec["kind"]}
        if "pass" in rec:
            shown["pass"] = rec["pass"]
        shown["input"] = list(n.inputs)  # what it reads, by name (the record has their keys)
        if n.data:
            shown["data"] = n.data  # the dataset's record is compared in `datasets`
        shown["device"], shown["provider"] = rec["device"], rec["provider"]
        for k, v in rec.items():
            if k in ("format", "kind", "pass", "inputs", "data", "device", "provider", "packages"):
                continue
            if k == "options":  # kind-specific fields, shown as written on the node
                shown.update({o: _sorted(v[o]) for o in sorted(v)})
            else:
                shown[k] = _sorted(v)
        nodes[name] = note("nodes", name, shown, {"description": n.description, "rehearse": _sorted(n.rehearse)})
    parents = {n: [p for p in g.parents[n] if p in wf.nodes] for n in g.order}
    return Definition(wf.name, wf.description or "", models, datasets, nodes, keyed, keys, data_keys,
                      list(g.order), _by_name(parents))


def _by_name(parents: dict) -> list[str]:
    """Dependency order with ties broken by name (graph.order breaks them by file position,
    which a layout-only edit changes). A cycle, possible only in a hand-edited lock file,
    falls back to name order."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(parents)
    g.add_edges_from((p, n) for n, ps in parents.items() for p in ps if p in parents and p != n)
    try:
        return list(nx.lexicographical_topological_sort(g, key=str))
    except nx.NetworkXUnfeasible:
        return sorted(parents)


def _sorted(v):
    if isinstance(v, dict):
        return {k: _sorted(v[k]) for k in sorted(v, key=str)}
    if isinstance(v, list):
        return [_sorted(x) for x in v]
    return v


# -- structural comparison --------------------------------------------------------

def _changes(old, new, path=()) -> list[dict]:
    """Leaf-level differences of two normalized values; lists compare whole."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in list(old) + [k for k in new if k not in old]:
            if k not in new:
                out.append({"path": _dot(path + (k,)), "op": "removed", "old": old[k], "new": None})
            elif k not in old:
                out.append({"path": _dot(path + (k,)), "op": "added", "old": None, "new": new[k]})
            else:
                out.extend(_changes(old[k], new[k], path + (k,)))
        return out
    if old != new:
        return [{"path": _dot(path), "op": "changed", "old": old, "new": new}]
    return []


def _dot(path) -> str:
    return ".".join(str(p) for p in path)


def _match(old: dict, new: dict, fp_old: dict, fp_new: dict):
    """(added, removed, renamed {old: new}) between two name -> definition maps.

    A rename is a name that disappeared and one that appeared with the same fingerprint.
    """
    removed = [n for n in old if n not in new]
    added = [n for n in new if n not in old]
    renamed = {}
    for a in list(added):
        hit = next((r for r in removed if fp_old[r] == fp_new[a]), None)
        if hit is not None:
            renamed[hit] = a
            removed.remove(hit)
            added.remove(a)
    return added, removed, renamed


def _section(old: dict, new: dict, fp_old: dict, fp_new: dict) -> tuple[dict, dict]:
    added, removed, renamed = _match(old, new, fp_old, fp_new)
    pairs = [(n, n) for n in old if n in new] + list(renamed.items())
    changed = []
    for a, b in pairs:
        ch = _changes(old[a], new[b])
        if ch:
            changed.append({"name": b, "old_name": a, "changes": ch})
    order = {n: i for i, n in enumerate(new)}
    changed.sort(key=lambda c: order[c["name"]])
    return {"added": added, "removed": removed,
            "renamed": [{"old": a, "new": b} for a, b in renamed.items()], "changed": changed}, renamed


def _keyed_changes(changes: list[dict], *keyed: set) -> list[dict]:
    """The changes to fields that reach a key (on either side)."""
    heads = set().union(*keyed)
    return [c for c in changes if c["path"].split(".")[0] in heads]


def _keyed_on_both(da: Definition, db: Definition, section: str, old: str, new: str) -> list[set]:
    return [db.keyed[(section, new)]] + ([da.keyed[(section, old)]] if (section, old) in da.keyed else [])


def diff_workflows(a: Side, b: Side) -> dict:
    """Semantic diff of two workflow definitions, in the documented `--json` shape."""
    wa, wb = parse_side(a), parse_side(b)
    return compare(describe(wa, a), describe(wb, b), a.spec, b.spec)


def compare(da: Definition, db: Definition, shown_a: str = "a", shown_b: str = "b") -> dict:
    """The `--json` diff of two normalized definitions."""
    ka, kb = da.keys, db.keys
    models, m_ren = _section(da.models, db.models, ka, kb)
    datasets, d_ren = _section(da.datasets, db.datasets, da.data_keys, db.data_keys)
    rename = dict(m_ren)

    def mapped(d):  # an old definition in the new names
        d = dict(d)
        d["input"] = [rename.get(i, i) for i in d["input"]]
        if "data" in d:
            d["data"] = d_ren.get(d["data"], d["data"])
        return d

    def ident(side: Definition, name: str, d: dict):  # what a node is, apart from its name
        return {k: v for k, v in d.items() if k in side.keyed[("nodes", name)]}

    # A renamed node does the same thing as before under a new name. Matching in
    # dependency order lets a renamed input count as the same input.
    removed = [n for n in da.nodes if n not in db.nodes]
    n_ren: dict[str, str] = {}
    for name in db.order:
        if name in da.nodes:
            continue
        want = ident(db, name, db.nodes[name])
        hit = next((r for r in removed if ident(da, r, mapped(da.nodes[r])) == want), None)
        if hit is not None:
            n_ren[hit] = name
            rename[hit] = name
            removed.remove(hit)
    added = [n for n in db.nodes if n not in da.nodes and n not in n_ren.values()]
    changed = []
    position = {n: i for i, n in enumerate(db.nodes)}
    for a, b in [(n, n) for n in db.nodes if n in da.nodes] + sorted(n_ren.items(), key=lambda x: position[x[1]]):
        ch = _changes(mapped(da.nodes[a]), db.nodes[b])
        if ch:
            changed.append({"name": b, "old_name": a, "changes": ch})
    nodes = {"added": added, "removed": removed, "renamed": [{"old": a, "new": b} for a, b in n_ren.items()],
             "changed": changed}
    edges_a = {(rename.get(i, i), rename.get(n, n)) for n, d in da.nodes.items() for i in d["input"]}
    edges_b = {(i, n) for n, d in db.nodes.items() for i in d["input"]}
    workflow = _changes({"name": da.name, "description": da.description},
                        {"name": db.name, "description": db.description})

    # impact, in the order plan and apply use; whether a key changes is the records' answer
    back = {v: k for k, v in n_ren.items()}
    changes_by = {c["name"]: c["changes"] for c in changed}
    ds_changes = {c["name"]: c["changes"] for c in datasets["changed"]}
    model_changes = {c["name"]: c["changes"] for c in models["changed"]}
    old_by_key = {ka[n]: n for n in da.nodes}
    impact, status = [], {}
    for name in db.order:
        old = name if name in da.nodes else back.get(name)
        d = db.nodes[name]
        if old is not None and kb[name] == ka[old]:
            st, why = "unchanged", []
        elif old is None and kb[name] in old_by_key:
            st, why = "unchanged", [f"same definition as {old_by_key[kb[name]]}"]
        elif old is None:
            st, why = "new", []
        else:
            own = _keyed_changes(changes_by.get(name, []), da.keyed[("nodes", old)], db.keyed[("nodes", name)])
            why = [_say(c) for c in own]
            data = d.get("data")
            old_data = _old_name(d_ren, data) if data else None
            if data and mapped(da.nodes[old]).get("data") == data and da.data_keys.get(old_data) != db.data_keys[data]:
                keyed = _keyed_on_both(da, db, "datasets", old_data, data)
                why += [f"dataset {data}: {_say(c)}" for c in _keyed_changes(ds_changes.get(data, []), *keyed)]
            if why:
                st = "changed"
            else:
                st = "upstream"
                for i in d["input"]:
                    if i in db.nodes and status.get(i) in ("new", "changed", "upstream"):
                        why.append(f"input {i} changed")
                    elif i in db.models:
                        keyed = _keyed_on_both(da, db, "models", _old_name(m_ren, i), i)
                        mc = _keyed_changes(model_changes.get(i, []), *keyed)
                        if mc:
                            why.append(f"model {i}: " + "; ".join(_say(c) for c in mc))
                why = why or ["an input changed"]
        status[name] = st
        impact.append({"name": name, "old_name": old, "status": st, "reasons": why})
    same = not (workflow or edges_a ^ edges_b or any(
        s[k] for s in (models, datasets, nodes) for k in ("added", "removed", "renamed", "changed")))
    return {
        "format": FORMAT, "type": "workflow", "a": shown_a, "b": shown_b, "same": same,
        "workflow": workflow, "models": models, "datasets": datasets, "nodes": nodes,
        "edges": {"added": sorted(map(list, edges_b - edges_a)), "removed": sorted(map(list, edges_a - edges_b))},
        "impact": {"rerun": [i["name"] for i in impact if i["status"] in ("new", "changed", "upstream")],
                   "unchanged": [i["name"] for i in impact if i["status"] == "unchanged"],
                   "nodes": impact},
    }


def _old_name(renames: dict, new: str) -> str:
    return next((a for a, b in renames.items() if b == new), new)


def _short(v) -> str:
    if isinstance(v, str):
        if len(v) in (40, 64) and all(c in "0123456789abcdef" for c in v):
            return v[:12] + "…"  # a digest: the prefix identifies it
        s = v if v and v.strip() == v and "\n" not in v and not v[0] in "[{'\"" else json.dumps(v, ensure_ascii=False)
    else:
        s = json.dumps(v, ensure_ascii=False, sort_keys=True)
    return s if len(s) <= 72 else s[:69] + "..."


def _say(c: dict) -> str:
    """One change as a line: `params.r: 4 -> 8`, `files.data/x.jsonl: content changed`."""
    p = c["path"]
    if p.startswith("files.") and (c["op"] != "changed" or c["old"] is None or c["new"] is None):
        f = p[len("files."):]
        return f"data file {f} added" if c["op"] == "added" else f"data file {f} removed" \
            if c["op"] == "removed" else f"data file {f} {'now missing' if c['new'] is None else 'appeared'}"
    if p.startswith("files."):
        return f"data file {p[len('files.'):]}: content changed ({_short(c['old'])} -> {_short(c['new'])})"
    if c["op"] == "added":
        return f"{p} added: {_short(c['new'])}"
    if c["op"] == "removed":
        return f"{p} removed (was {_short(c['old'])})"
    return f"{p}: {_short(c['old'])} -> {_short(c['new'])}"


# -- lock files -------------------------------------------------------------------

CATEGORY = {"params": "params", "options": "params", "inputs": "inputs", "packages": "packages", "data": "data"}


def diff_locks(a: Side, b: Side) -> dict:
    """Which recorded node results differ between two lock files, and why (from their records)."""
    la, lb = _lock_nodes(a), _lock_nodes(b)
    out = {}
    for wf in sorted(set(la) | set(lb)):
        na, nb = la.get(wf), lb.get(wf)
        if na is None or nb is None:
            out[wf] = {"status": "added" if na is None else "removed", "added": sorted(nb or {}) if na is None else [],
                       "removed": sorted(na or {}) if nb is None else [], "changed": [], "unchanged": []}
            continue
        prod_a, prod_b = _producers(na), _producers(nb)
        changed, unchanged = [], []
        for node in [n for n in _lock_order(nb) if n in na]:
            ea, eb = na[node], nb[node]
            oa, ob = (ea.get("output") or {}).get("digest"), (eb.get("output") or {}).get("digest")
            if ea.get("key") == eb.get("key") and oa == ob:
                unchanged.append(node)
                continue
            if ea.get("key") == eb.get("key"):
                reasons = [{"category": "output", "text": "same key, different output (rebuilt after the cache lost it, "
                                                          "or the pass is not deterministic)"}]
            else:
                reasons = _lock_reasons(ea.get("record"), eb.get("record"), prod_a, prod_b)
            changed.append({"name": node, "old_key": ea.get("key"), "new_key": eb.get("key"),
                            "old_output": oa, "new_output": ob, "reasons": reasons})
        added = [n for n in _lock_order(nb) if n not in na]
        removed = [n for n in _lock_order(na) if n not in nb]
        out[wf] = {"status": "changed" if changed or added or removed else "same", "added": added,
                   "removed": removed, "changed": changed, "unchanged": unchanged}
    same = all(w["status"] == "same" for w in out.values())
    return {"format": FORMAT, "type": "lock", "a": a.spec, "b": b.spec, "same": same, "workflows": out}


def _lock_nodes(side: Side) -> dict:
    """{workflow: {node: entry}} through the one lock reader (shape checked, errors located)."""
    from ..core.lock import loads

    return {wf: section["nodes"] for wf, section in loads(side.text, side.spec)["workflows"].items()}


def _lock_order(nodes: dict) -> list[str]:
    """Dependency order, read from the records (an input digest is some node's output), ties by name.

    A lock carries no workflow to build a graph from; its records are the edges."""
    prod = _producers(nodes)
    parents = {}
    for n, e in nodes.items():
        ins = [i for i in (e.get("record") or {}).get("inputs") or [] if isinstance(i, dict)]
        digests = [i.get("digest") for i in ins]
        parents[n] = [prod[d] for d in digests if isinstance(d, str) and prod.get(d) not in (None, n)]
    return _by_name(parents)


def _producers(nodes: dict) -> dict[str, str]:
    """output digest -> node name, to name an input by what produced it."""
    return {d: n for n, e in nodes.items() if (d := (e.get("output") or {}).get("digest"))}


def _lock_reasons(old: dict | None, new: dict | None, prod_a: dict, prod_b: dict) -> list[dict]:
    from ..core.keys import record_changes
    from ..core.lock import prune

    if not isinstance(new, dict) or not isinstance(old, dict):
        return [{"category": "record", "text": "no record to compare"}]
    old, new = prune(old), prune(new)
    out = []
    for c in record_changes(old, new) or [None]:
        if c is None:  # the same record: keys differ for another reason
            out.append({"category": "definition", "text": "record differs"})
            continue
        text, head = c.text(), str(c.path[0]) if c.path else ""
        if head == "inputs" and len(c.path) >= 2 and isinstance(c.path[1], int):
            i = c.path[1]
            ia, ib = _input_at(old, i), _input_at(new, i)
            da, db = (ia or {}).get("digest"), (ib or {}).get("digest")
            if da and db:
                who = prod_b.get(db) or prod_a.get(da)
                text = f"input {who or i} rebuilt ({_short(da)} -> {_short(db)})"
        elif c.path[:2] == ("data", "files"):
            text = "data file " + text[len("data.files."):]
        out.append({"category": CATEGORY.get(head, "definition"), "text": text})
    return out


def _input_at(rec: dict, i: int):
    inputs = rec.get("inputs") or []
    return inputs[i] if i < len(inputs) and isinstance(inputs[i], dict) else None


def diff(a_spec: str, b_spec: str, cwd: Path | None = None) -> dict:
    """`olivepipe diff A B`: two workflow definitions, or two lock files.

    Anything a user can cause is "could not compare" (ReviewError, exit 2), never a
    difference (1): invalid workflows stay SpecErrors (located), the rest is wrapped."""
    try:
        a, b = read_side(a_spec, cwd), read_side(b_spec, cwd)
        if a.kind != b.kind:
            raise ReviewError(f"cannot compare a {a.kind} file ({a.spec}) with a {b.kind} file ({b.spec})",
                              "give two workflow files or two olivepipe.lock files")
        return diff_locks(a, b) if a.kind == "lock" else diff_workflows(a, b)
    except (SpecError, ReviewError):
        raise
    except OlivepipeError as e:
        raise ReviewError(e.message, e.hint) from None


# -- text rendering ---------------------------------------------------------------

def render_text(result: dict) -> list[tuple[str, str]]:
    """(line, style) pairs; the CLI prints them through rich (plain when not a terminal)."""
    return _render_lock(result) if result["type"] == "lock" else _render_workflow(result)


def _render_workflow(r: dict) -> list[tuple[str, str]]:
    out = [(f"olivepipe diff {r['a']} -> {r['b']}", "bold")]
    if r["same"]:
        out.append(("no differences (after normalization: comments, key order, defaults, anchors and matrix "
                    "expansion do not count)", "green"))
        return out
    for c in r["workflow"]:
        out.append((f"workflow {_say(c)}", ""))
    for sec in ("models", "datasets", "nodes"):
        s = r[sec]
        if not any(s[k] for k in ("added", "removed", "renamed", "changed")):
            continue
        out.append((sec, "bold"))
        out += [(f"  + {n}", "green") for n in s["added"]]
        out += [(f"  - {n}", "red") for n in s["removed"]]
        out += [(f"  > {x['old']} -> {x['new']}  (renamed; same definition)", "cyan") for x in s["renamed"]]
        for c in s["changed"]:
            name = c["name"] if c["old_name"] == c["name"] else f"{c['old_name']} -> {c['name']}"
            out.append((f"  ~ {name}", "yellow"))
            out += [(f"      {_say(x)}", "") for x in c["changes"]]
    if r["edges"]["added"] or r["edges"]["removed"]:
        out.append(("edges", "bold"))
        out += [(f"  + {x} -> {y}", "green") for x, y in r["edges"]["added"]]
        out += [(f"  - {x} -> {y}", "red") for x, y in r["edges"]["removed"]]
    imp = r["impact"]
    total = len(imp["nodes"])
    out.append((f"impact: {len(imp['rerun'])} of {total} node{'s' if total != 1 else ''} get a new cache key and re-run",
                "bold"))
    sym = {"new": ("+", "green"), "changed": ("~", "yellow"), "upstream": ("^", "yellow"), "unchanged": ("=", "dim")}
    width = max((len(i["name"]) for i in imp["nodes"]), default=0)
    for i in imp["nodes"]:
        s, style = sym[i["status"]]
        why = "; ".join(i["reasons"])
        out.append((f"  {s} {i['name']:<{width}}  {i['status']}" + (f": {why}" if why else ""), style))
    return out


def _render_lock(r: dict) -> list[tuple[str, str]]:
    out = [(f"olivepipe diff {r['a']} -> {r['b']} (lock files: recorded results)", "bold")]
    if r["same"]:
        out.append(("no differences: every recorded result has the same key and output", "green"))
        return out
    for wf, w in r["workflows"].items():
        if w["status"] in ("added", "removed"):
            nodes = w["added"] or w["removed"]
            out.append((f"{wf}: workflow {w['status']} ({len(nodes)} node{'s' if len(nodes) != 1 else ''})",
                        "green" if w["status"] == "added" else "red"))
            continue
        out.append((f"{wf}: {len(w['changed'])} changed, {len(w['added'])} added, {len(w['removed'])} removed, "
                    f"{len(w['unchanged'])} unchanged", "bold"))
        out += [(f"  + {n}", "green") for n in w["added"]]
        out += [(f"  - {n}", "red") for n in w["removed"]]
        for c in w["changed"]:
            out.append((f"  ~ {c['name']}  key {_short(c['old_key'] or '')} -> {_short(c['new_key'] or '')}", "yellow"))
            out += [(f"      {x['category']}: {x['text']}", "") for x in c["reasons"]]
        out += [(f"  = {n}", "dim") for n in w["unchanged"]]
    return out


# -- textconv (git diff driver) ---------------------------------------------------

class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
    pass


def _str(dumper, s):
    # one line per value, so a changed template is one changed line in git diff
    style = '"' if "\n" in s or s != s.strip() else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


def _list(dumper, items):
    flow = all(not isinstance(x, (dict, list)) for x in items)  # `input: [a, b]` reads as one fact
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flow)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(list, _list)


def _dump(obj) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 16)


def textconv(path: Path) -> str:
    """Normalized, stable rendering of a workflow or lock file for `git diff` (never fails on content).

    git hands the old side over as a temp file, so nothing here looks at neighbouring
    files; an invalid file is shown as written, below its problems, so `git diff` still works.
    """
    try:
        raw = read_regular(Path(path))
    except OSError as e:
        raise ReviewError(f"{path}: cannot read: {e.strerror}", "") from None
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return "# olivepipe: not UTF-8 text, shown as git would\n" + raw.decode("utf-8", errors="replace")
    if _kind(text, str(path)) == "lock":
        from ..core.lock import loads

        try:
            return _lock_textconv({wf: s["nodes"] for wf, s in loads(text, "lock")["workflows"].items()})
        except OlivepipeError as e:
            return f"# olivepipe: {e.message}; shown as written\n{text}"
    from ..spec.workflow import parse_workflow

    try:
        # base "/": every relative path counts as inside the workspace; files are not read
        wf = parse_workflow(text, "workflow", base=Path("/"), check_files=False)
    except SpecError as e:
        problems = "".join(f"#   {p.format().splitlines()[0]}\n" for p in e.problems)
        return f"# olivepipe: invalid workflow ({e.message}), shown as written:\n{problems}{text}"
    d = describe(wf)
    doc = {"name": d.name}
    if d.description:
        doc["description"] = d.description
    for sec in ("models", "datasets"):
        entries = getattr(d, sec)
        if entries:
            doc[sec] = {n: entries[n] for n in sorted(entries)}
    doc["nodes"] = {n: d.nodes[n] for n in d.layout_free}
    head = ("# normalized by olivepipe (comments and key order dropped; Olive defaults dropped; "
            "defaults, anchors and matrix expanded; nodes in dependency order)\n")
    return head + _dump(doc)


def _lock_textconv(lock: dict) -> str:
    lines = ["# olivepipe.lock normalized by olivepipe (durations left out; digests shortened to 12 characters)"]
    for wf in sorted(lock):
        nodes = lock[wf]
        prod = _producers(nodes)
        lines.append(f"workflow {wf}")
        for name in sorted(nodes):
            e = nodes[name]
            lines.append(f"  node {name}")
            lines.append(f"    key: {_short(str(e.get('key')))}")
            if e.get("kind"):
                lines.append(f"    kind: {e['kind']}")
            o = e.get("output") or {}
            if o:
                lines.append(f"    output: {_short(str(o.get('digest')))} ({o.get('files')} files, {o.get('bytes')} bytes)")
            for p, v in _flat(e.get("record") or {}, ("record",)):
                note = ""
                if p[-1] == "digest" and "inputs" in p and v in prod:
                    note = f"  ({prod[v]})"
                lines.append(f"    {_dot(p)}: {_short(v)}{note}")
    return "\n".join(lines) + "\n"


def _flat(v, path):
    if isinstance(v, dict):
        for k in sorted(v, key=str):
            yield from _flat(v[k], path + (k,))
    elif isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
        for i, x in enumerate(v):
            yield from _flat(x, path + (i,))
    else:
        yield path, v
