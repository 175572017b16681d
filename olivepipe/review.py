"""Review support: semantic diffs of workflow definitions and lock files, and the
normalized rendering git uses as a diff driver (textconv).

A workflow diff compares what the files *mean* after olivepipe's own normalization
(key order, Olive defaults, anchors, defaults:, matrix expansion), never their text.
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

from .errors import OlivepipeError, SpecError
from .hashing import digest_obj, file_digest

FORMAT = 1
# Node fields that do not reach the cache key: changing them re-runs nothing.
UNKEYED = ("description", "rehearse")
MODEL_KEYED = ("hf", "revision", "trust_remote_code", "path", "tiny")


class ReviewError(OlivepipeError):
    """A diff/fmt input that cannot be read (missing file, bad revision, wrong kind of file)."""

    exit_code = 2


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
    p = cwd / spec
    if p.exists():
        if p.is_dir():
            raise ReviewError(f"{spec}: is a directory", "give a workflow file, a lock file or REV:PATH")
        try:
            raw = p.read_bytes()
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
    if data is None and Path(shown).name.endswith(".lock"):
        return "lock"
    return "workflow"


def parse_side(side: Side):
    """The side's Workflow (SpecError, located with the side's name, when it is invalid)."""
    from .spec import parse_workflow

    return parse_workflow(side.text, side.spec, base=side.base, check_files=False)


def parse_lock(text: str, shown: str) -> dict:
    """{workflow: {node: entry}} from lock file text (the file format of olivepipe/lock.py)."""
    from .lock import LOCK_FORMAT

    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
        raise ReviewError(f"{where}: lock file is not valid YAML", "restore it from git; `olivepipe apply` rewrites it") from None
    if not isinstance(data, dict) or data.get("format") != LOCK_FORMAT:
        got = data.get("format") if isinstance(data, dict) else None
        raise ReviewError(f"{shown}: unsupported lock file format {got!r}", f"this olivepipe reads format {LOCK_FORMAT}")
    wfs = data.get("workflows") or {}
    if not isinstance(wfs, dict):
        raise ReviewError(f"{shown}: `workflows` must be a mapping", "")
    return {str(name): dict((w or {}).get("nodes") or {}) for name, w in wfs.items()}


# -- normalization ----------------------------------------------------------------

def _files_as_written(raw) -> list[str]:
    files = raw.get("files") if isinstance(raw, dict) else None
    if files is None:
        return []
    return [posixpath.normpath(f) for f in ([files] if isinstance(files, str) else files)]


def describe(wf, side: Side | None = None) -> dict:
    """The normalized definition: what olivepipe will do, independent of layout.

    With a side, dataset files carry content ids (git blob ids) so data edits show up.
    """
    from .graph import build_graph
    from .workspace import TINY_DEFAULTS

    raw = wf.raw
    models = {}
    for name, m in wf.models.items():
        r = (raw.get("models") or {}).get(name) or {}
        d: dict = {}
        if m.source == "tiny":
            d["tiny"] = dict(sorted({**TINY_DEFAULTS, **(m.tiny or {})}.items()))
        elif m.source == "hf":
            d["hf"] = m.hf
            if m.revision:
                d["revision"] = m.revision
        else:
            d["path"] = posixpath.normpath(str(r.get("path")))
        if m.trust_remote_code:
            d["trust_remote_code"] = True
        for k in ("arch", "rehearse", "description"):
            if r.get(k) is not None:
                d[k] = r[k]
        models[name] = d
    datasets = {}
    for name, ds in wf.datasets.items():
        r = (raw.get("datasets") or {}).get(name) or {}
        d = {k: v for k, v in ds.__dict__.items() if k not in ("name", "files") and v is not None}
        files = _files_as_written(r)
        if files:
            d["files"] = {f: side.data_digest(f) for f in files} if side else files
        if r.get("description"):
            d["description"] = r["description"]
        datasets[name] = dict(sorted(d.items()))
    nodes = {}
    for name, n in wf.nodes.items():
        d = {"kind": n.kind}
        if n.kind == "olive":
            d["pass"] = n.pass_type
        d["input"] = list(n.inputs)
        if n.data:
            d["data"] = n.data
        d["device"] = n.device
        d["provider"] = n.provider
        if n.kind == "olive":
            d["params"] = _sorted(n.params)
        for k in sorted(n.options):
            d[k] = _sorted(n.options[k])
        if n.description:
            d["description"] = n.description
        if n.rehearse:
            d["rehearse"] = _sorted(n.rehearse)
        nodes[name] = d
    return {"name": wf.name, "description": wf.description or "", "models": models, "datasets": datasets,
            "nodes": nodes, "order": build_graph(wf).order, "topo": _order(wf)}


def _order(wf) -> list[str]:
    """Topological, ties by name: independent of where nodes sit in the file."""
    return _toposort({n: [i for i in node.inputs if i in wf.nodes] for n, node in wf.nodes.items()})


def _toposort(parents: dict[str, list[str]]) -> list[str]:
    """Kahn's algorithm, smallest name first among the ready; a cycle's members go last, by name."""
    import heapq

    waiting = {n: len(set(ps)) for n, ps in parents.items()}
    children: dict[str, list[str]] = {n: [] for n in parents}
    for n, ps in parents.items():
        for p in set(ps):
            children[p].append(n)
    ready = [n for n, k in waiting.items() if k == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        n = heapq.heappop(ready)
        out.append(n)
        for c in children[n]:
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, c)
    return out + sorted(n for n in parents if n not in set(out))


def _sorted(v):
    if isinstance(v, dict):
        return {k: _sorted(v[k]) for k in sorted(v, key=str)}
    if isinstance(v, list):
        return [_sorted(x) for x in v]
    return v


def _keyed_model(d: dict) -> dict:
    return {k: v for k, v in d.items() if k in MODEL_KEYED}


def _keyed_dataset(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "description"}


def _own(d: dict) -> dict:
    """A node's keyed fields other than the names of what it reads."""
    return {k: v for k, v in d.items() if k not in UNKEYED and k not in ("input", "data")}


def static_keys(desc: dict) -> dict[str, str]:
    """Name-free fingerprints: equal when the cache keys would be, as far as definitions tell
    (same machine and packages; a local `path:` model's files are not read).

    A node's fingerprint covers its own keyed fields, its dataset's definition and the
    fingerprints of its inputs, so it changes with anything upstream and never with a rename.
    """
    keys = {m: digest_obj({"model": _keyed_model(d)}) for m, d in desc["models"].items()}
    ds = {n: digest_obj(_keyed_dataset(d)) for n, d in desc["datasets"].items()}
    for name in desc["topo"]:
        d = desc["nodes"][name]
        keys[name] = digest_obj({"node": _own(d), "inputs": [keys[i] for i in d["input"]],
                                 "data": ds.get(d.get("data"))})
    return keys


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


def _section(old: dict, new: dict, fp_old: dict, fp_new: dict, mapper) -> tuple[dict, dict]:
    added, removed, renamed = _match(old, new, fp_old, fp_new)
    pairs = [(n, n) for n in old if n in new] + list(renamed.items())
    changed = []
    for a, b in pairs:
        ch = _changes(mapper(old[a]), new[b])
        if ch:
            changed.append({"name": b, "old_name": a, "changes": ch})
    order = {n: i for i, n in enumerate(new)}
    changed.sort(key=lambda c: order[c["name"]])
    return {"added": added, "removed": removed,
            "renamed": [{"old": a, "new": b} for a, b in renamed.items()], "changed": changed}, renamed


def diff_workflows(a: Side, b: Side) -> dict:
    """Semantic diff of two workflow definitions, in the documented `--json` shape."""
    wa, wb = parse_side(a), parse_side(b)
    da, db = describe(wa, a), describe(wb, b)
    return diff_descriptions(da, db, a.spec, b.spec)


def diff_descriptions(da: dict, db: dict, shown_a: str = "a", shown_b: str = "b") -> dict:
    ka, kb = static_keys(da), static_keys(db)
    dsa = {n: digest_obj(_keyed_dataset(d)) for n, d in da["datasets"].items()}
    dsb = {n: digest_obj(_keyed_dataset(d)) for n, d in db["datasets"].items()}
    models, m_ren = _section(da["models"], db["models"], ka, kb, lambda d: d)
    datasets, d_ren = _section(da["datasets"], db["datasets"], dsa, dsb, lambda d: d)
    rename = dict(m_ren)

    def mapped(d):  # an old definition in the new names
        d = dict(d)
        d["input"] = [rename.get(i, i) for i in d["input"]]
        if "data" in d:
            d["data"] = d_ren.get(d["data"], d["data"])
        return d

    def ident(d):  # what a node is, apart from its name: own keyed fields and what it reads
        return {**_own(d), "input": d["input"], "data": d.get("data")}

    # A renamed node does the same thing as before under a new name. Matching in
    # dependency order lets a renamed input count as the same input.
    removed = [n for n in da["nodes"] if n not in db["nodes"]]
    n_ren: dict[str, str] = {}
    for name in db["topo"]:
        if name in da["nodes"]:
            continue
        hit = next((r for r in removed if ident(mapped(da["nodes"][r])) == ident(db["nodes"][name])), None)
        if hit is not None:
            n_ren[hit] = name
            rename[hit] = name
            removed.remove(hit)
    added = [n for n in db["nodes"] if n not in da["nodes"] and n not in n_ren.values()]
    changed = []
    for a, b in [(n, n) for n in db["nodes"] if n in da["nodes"]] + sorted(n_ren.items(), key=lambda x: list(db["nodes"]).index(x[1])):
        ch = _changes(mapped(da["nodes"][a]), db["nodes"][b])
        if ch:
            changed.append({"name": b, "old_name": a, "changes": ch})
    nodes = {"added": added, "removed": removed, "renamed": [{"old": a, "new": b} for a, b in n_ren.items()],
             "changed": changed}
    edges_a = {(rename.get(i, i), rename.get(n, n)) for n, d in da["nodes"].items() for i in d["input"]}
    edges_b = {(i, n) for n, d in db["nodes"].items() for i in d["input"]}
    workflow = _changes({"name": da["name"], "description": da["description"]},
                        {"name": db["name"], "description": db["description"]})

    # impact, in the order plan and apply use
    back = {v: k for k, v in n_ren.items()}
    changes_by = {c["name"]: c["changes"] for c in changed}
    ds_changes = {c["name"]: c["changes"] for c in datasets["changed"]}
    model_changes = {c["name"]: c["changes"] for c in models["changed"]}
    old_by_key = {ka[n]: n for n in da["nodes"]}
    impact, status = [], {}
    for name in db["order"]:
        old = name if name in da["nodes"] else back.get(name)
        d = db["nodes"][name]
        if old is not None and kb[name] == ka[old]:
            st, why = "unchanged", []
        elif old is None and kb[name] in old_by_key:
            st, why = "unchanged", [f"same definition as {old_by_key[kb[name]]}"]
        elif old is None:
            st, why = "new", []
        else:
            why = [_say(c) for c in changes_by.get(name, []) if c["path"].split(".")[0] not in UNKEYED]
            data = d.get("data")
            if data and mapped(da["nodes"][old]).get("data") == data and dsa.get(_old_name(d_ren, data)) != dsb[data]:
                why += [f"dataset {data}: {_say(c)}" for c in ds_changes.get(data, []) if c["path"] != "description"]
            if why:
                st = "changed"
            else:
                st = "upstream"
                for i in d["input"]:
                    if i in db["nodes"] and status.get(i) in ("new", "changed", "upstream"):
                        why.append(f"input {i} changed")
                    elif i in db["models"]:
                        mc = [c for c in model_changes.get(i, []) if c["path"].split(".")[0] in MODEL_KEYED]
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
    la, lb = parse_lock(a.text, a.spec), parse_lock(b.text, b.spec)
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
            ea, eb = na[node] or {}, nb[node] or {}
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


def _lock_order(nodes: dict) -> list[str]:
    """Dependency order, read from the records (an input digest is some node's output), ties by name."""
    prod = _producers(nodes)
    parents = {}
    for n, e in nodes.items():
        rec = (e or {}).get("record") if isinstance(e, dict) else None
        ins = [i for i in (rec or {}).get("inputs") or [] if isinstance(i, dict)]
        parents[n] = [prod[i.get("digest")] for i in ins if prod.get(i.get("digest")) not in (None, n)]
    return _toposort(parents)


def _producers(nodes: dict) -> dict[str, str]:
    """output digest -> node name, to name an input by what produced it."""
    return {(e.get("output") or {}).get("digest"): n for n, e in nodes.items() if isinstance(e, dict)}


def _lock_reasons(old: dict | None, new: dict | None, prod_a: dict, prod_b: dict) -> list[dict]:
    from .keys import diff_records
    from .lock import prune

    if not isinstance(new, dict) or not isinstance(old, dict):
        return [{"category": "record", "text": "no record to compare"}]
    old, new = prune(old), prune(new)
    out = []
    for text in diff_records(old, new):
        path = text.split(":")[0].split(" ")[0]
        head = path.split(".")[0]
        parts = path.split(".")
        if head == "inputs" and len(parts) >= 2 and parts[1].isdigit():
            i = int(parts[1])
            ia, ib = _input_at(old, i), _input_at(new, i)
            da, db = (ia or {}).get("digest"), (ib or {}).get("digest")
            if da and db:
                who = prod_b.get(db) or prod_a.get(da)
                text = f"input {who or i} rebuilt ({_short(da)} -> {_short(db)})"
        elif path.startswith("data.files."):
            text = "data file " + text[len("data.files."):]
        out.append({"category": CATEGORY.get(head, "definition"), "text": text})
    return out


def _input_at(rec: dict, i: int):
    inputs = rec.get("inputs") or []
    return inputs[i] if i < len(inputs) and isinstance(inputs[i], dict) else None


def diff(a_spec: str, b_spec: str, cwd: Path | None = None) -> dict:
    """`olivepipe diff A B`: two workflow definitions, or two lock files."""
    a, b = read_side(a_spec, cwd), read_side(b_spec, cwd)
    if a.kind != b.kind:
        raise ReviewError(f"cannot compare a {a.kind} file ({a.spec}) with a {b.kind} file ({b.spec})",
                          "give two workflow files or two olivepipe.lock files")
    return diff_locks(a, b) if a.kind == "lock" else diff_workflows(a, b)


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
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return "# olivepipe: not UTF-8 text, shown as git would\n" + raw.decode("utf-8", errors="replace")
    if _kind(text, str(path)) == "lock":
        try:
            return _lock_textconv(parse_lock(text, "lock"))
        except OlivepipeError as e:
            return f"# olivepipe: {e.message}; shown as written\n{text}"
    from .spec import parse_workflow

    try:
        # base "/": every relative path counts as inside the workspace; files are not read
        wf = parse_workflow(text, "workflow", base=Path("/"), check_files=False)
    except SpecError as e:
        problems = "".join(f"#   {p.format().splitlines()[0]}\n" for p in e.problems)
        return f"# olivepipe: invalid workflow ({e.message}), shown as written:\n{problems}{text}"
    d = describe(wf)
    doc = {"name": d["name"]}
    if d["description"]:
        doc["description"] = d["description"]
    for sec in ("models", "datasets"):
        if d[sec]:
            doc[sec] = {n: d[sec][n] for n in sorted(d[sec])}
    doc["nodes"] = {n: d["nodes"][n] for n in d["topo"]}
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
            e = nodes[name] or {}
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
