"""Workflow file -> validated, matrix-expanded ``Workflow`` (or a SpecError listing every problem).

Loading never executes or writes anything. Every problem carries file:line:col.
"""
from __future__ import annotations

import difflib
import errno
import functools
import gc
import itertools
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .. import kinds
from . import memo as specmemo
from ..core import yamlpos
from ..core.errors import OlivepipeError, Problem, SpecError
from ..kinds.base import CheckContext
from ..olive.passes import EXECUTION_PROVIDERS, KNOWN_PROVIDERS

if TYPE_CHECKING:  # the catalog is loaded only when a file is validated for real, not on a memo hit
    from ..olive.catalog import Catalog

COMMON_FIELDS = {"kind", "input", "device", "provider", "matrix", "description", "timeout", "gpu_memory_gb",
                 "executor"}
DATA_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
MAX_VARIANTS = 256  # per node: a matrix times its inputs' variants; beyond this it is a typo or a DoS
MAX_EXPANDED = 20_000  # per workflow, after matrix expansion: bounds validation, plans and locks
# schema.NAME, applied with fullmatch: jsonschema's re.search would let `$` accept a trailing newline
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
MAX_SUGGESTIONS = 50  # difflib hints for unknown references: each costs a scan of every name


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str  # hf | path | tiny
    hf: str | None = None
    revision: str | None = None
    path: Path | None = None
    tiny: dict | None = None
    arch: str | None = None
    rehearse: dict | None = None
    trust_remote_code: bool = False
    load_kwargs: dict | None = None  # e.g. {attn_implementation: eager}
    adapter: Path | None = None  # an existing PEFT adapter folder the model carries (olive's --adapter_path)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    files: tuple[Path, ...] = ()
    format: str | None = None
    hf: str | None = None
    subset: str | None = None
    revision: str | None = None
    split: str = "train"
    text_template: str | None = None
    text_field: str | None = None
    limit: int | None = None  # first N rows
    max_seq_len: int | None = None
    add_special_tokens: bool | None = None
    max_samples: int | None = None  # sequences after tokenization


@dataclass(frozen=True)
class NodeSpec:
    name: str  # expanded name, e.g. onnx-int4
    base: str  # name as written in the file, e.g. onnx
    kind: str  # olive | generate | register
    inputs: tuple[str, ...]  # expanded node names or model names
    pass_type: str | None = None  # Olive pass type for kind olive
    alias: str | None = None  # as written (lora, model-builder, ...)
    data: str | None = None
    params: dict = field(default_factory=dict)  # canonical (defaults dropped)
    device: str = "cpu"
    provider: str = "CPUExecutionProvider"
    variant: dict = field(default_factory=dict)  # matrix values that made this node
    options: dict = field(default_factory=dict)  # kind-specific fields (prompts, workspace, ...)
    rehearse: dict | None = None
    description: str = ""
    timeout_s: float | None = None  # scheduling, not identity: never in the key
    gpu_memory_gb: float | None = None  # estimate for packing GPU nodes (gpus.py)
    executor: dict | None = None  # where it runs: None (local) or {"azureml": {"compute": ...}}
    # nodes that must finish first without being inputs (an evaluate goal's baseline): ordering only,
    # never in the key
    after: tuple[str, ...] = ()


@dataclass
class Workflow:
    file: Path
    root: Path  # workspace root: paths may not escape it
    name: str
    description: str
    models: dict[str, ModelSpec]
    datasets: dict[str, DatasetSpec]
    nodes: dict[str, NodeSpec]  # expanded, in file order
    positions: dict
    raw: dict
    catalog_source: str = ""
    # expanded node names in topological order (generation by generation, each by file
    # position), computed once at validation and kept in the memo; graph.build_graph uses it
    order: tuple[str, ...] = ()

    def position(self, *path) -> tuple[int, int]:
        return yamlpos.locate(self.positions, path)

    @property
    def workspace(self) -> Path:
        """Where olivepipe keeps its state for this workflow."""
        return self.file.parent / ".olivepipe"


# the classes the validation memo rebuilds (specmemo gets them here and never imports spec)
_MEMO_TYPES = {"Workflow": Workflow, "ModelSpec": ModelSpec, "DatasetSpec": DatasetSpec, "NodeSpec": NodeSpec}


def find_root(start: Path) -> Path:
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    return start


def load_workflow(path: str | Path, *, catalog: Catalog | None = None, check_files: bool = True,
                  remember: bool = False) -> Workflow:
    """Read, parse, schema-check and semantically check a workflow file.

    Every failure, the file's own (missing, a FIFO, a device, a symlink loop) included,
    is a SpecError, so a multi-file validate goes on with the next file.

    A file that validated before, byte for byte, is read back from the validation
    memo (.olivepipe/validated/) instead: the hot path of a no-op apply then never
    imports jsonschema or networkx. What the bytes do not pin (the data files and model
    paths on disk) is re-checked on every hit exactly as validation checks it; on any
    doubt the file is validated again, which reports the located problem.

    Only ``remember=True`` (apply) writes the memo: validate, plan and the other read-only
    commands leave the tree exactly as they found it.
    """
    shown = str(path)
    file, raw_bytes = _read_workflow_file(path, shown)
    if catalog is None:
        root = find_root(file.parent)
        hit = specmemo.recall(file, raw_bytes, check_files, root, _MEMO_TYPES)
        if hit is not None and _memo_still_valid(hit, check_files):
            return hit
    wf = parse_workflow(raw_bytes, shown, base=file.parent, catalog=catalog, check_files=check_files, file=file)
    if catalog is None and remember:
        specmemo.remember(wf, raw_bytes, check_files)
    return wf


_OPEN_ERRORS = {  # errno -> (message, hint) for a workflow path that cannot be opened
    errno.ENOENT: ("no such file", "check the path"),
    errno.ENOTDIR: ("no such file: a folder in the path is a file", "check the path"),
    errno.ELOOP: ("is a symlink loop (or too many links to follow)", "point at the workflow file itself"),
    errno.EACCES: ("cannot read: permission denied", ""),
    errno.ENAMETOOLONG: ("cannot read: the path is too long", ""),
}


def _file_type(mode: int) -> str:
    return {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
            stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}.get(stat.S_IFMT(mode), "not a regular file")


def _read_workflow_file(path, shown: str) -> tuple[Path, bytes]:
    """(resolved path, bytes), reading no more than the size limit. Only a regular file is
    opened at all: a FIFO would block, /dev/zero never ends, and opening some devices acts."""
    def fail(message, hint=""):
        return SpecError([Problem(shown, 0, 0, message, hint)])

    text = os.fspath(path)
    text = os.fsdecode(text) if isinstance(text, bytes) else text
    if "\0" in text:
        raise fail("the path contains a NUL character", "check the file name")
    try:
        st = os.stat(text)
        if stat.S_ISDIR(st.st_mode):
            raise fail("is a directory, not a workflow file", "name the workflow file, e.g. workflow.yaml")
        if not stat.S_ISREG(st.st_mode):
            raise fail(f"is {_file_type(st.st_mode)}, not a regular file",
                       "olivepipe reads workflow files only, never pipes or devices")
        # O_NONBLOCK: if a FIFO replaced the file since stat, open returns at once and fstat refuses it
        fd = os.open(text, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise fail(f"is {_file_type(st.st_mode)}, not a regular file",
                           "olivepipe reads workflow files only, never pipes or devices")
            if st.st_size > yamlpos.MAX_BYTES:
                raise SpecError([yamlpos.too_big(st.st_size, shown)])
            os.set_blocking(fd, True)
            chunks, n = [], 0
            while n <= yamlpos.MAX_BYTES:  # the size may lie (/proc) or grow: never read past the limit
                chunk = os.read(fd, yamlpos.MAX_BYTES + 1 - n)
                if not chunk:
                    break
                chunks.append(chunk)
                n += len(chunk)
        finally:
            os.close(fd)
    except OSError as e:
        raise fail(*_OPEN_ERRORS.get(e.errno, (f"cannot read: {e.strerror or e}", ""))) from None
    return Path(os.path.realpath(text)), b"".join(chunks)


def check_local_path(base: Path, root: Path, raw, *, want: str, check_files: bool) -> tuple[Path | None, str, str]:
    """The one check of a model path (``want="model"``) or data file (``want="data"``):
    validation and the memo's re-check both use it. Returns (resolved path or None,
    problem message or "", hint)."""
    label = "model path" if want == "model" else "data file"
    text = str(raw)
    if "\0" in text:
        return None, f"{label} {text!r} contains a NUL character", "remove it"
    p = Path(os.path.realpath(base / text))  # non-strict: loops and long names surface at stat below
    try:
        p.relative_to(root)
    except ValueError:
        return None, f"path '{text}' escapes the workspace ({root})", \
            "keep models and data inside the repository that holds the workflow"
    if not check_files:
        return p, "", ""
    try:
        mode = os.stat(p).st_mode
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return p, f"{label} '{text}' does not exist", \
                "check the path (relative to the workflow file)" if want == "model" else "paths are relative to the workflow file"
        if e.errno == errno.ELOOP:
            return p, f"{label} '{text}' is a symlink loop", "point it at a real file or folder"
        return p, f"{label} '{text}' cannot be read: {e.strerror or e}", ""
    if want == "data" and not stat.S_ISREG(mode):
        return p, f"data file '{text}' is {_file_type(mode)}, not a regular file", \
            "point `files:` at JSON, JSONL, CSV or parquet files"
    if want == "model" and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return p, f"model path '{text}' is {_file_type(mode)}, not a folder or a file", "point `path:` at a model folder"
    return p, "", ""


def _memo_still_valid(wf: Workflow, check_files: bool) -> bool:
    """A memo hit stands only if what validation checked on disk still holds, and its
    names and order are sane (the memo is a file a repository could carry)."""
    base, raw = wf.file.parent, wf.raw
    try:
        for name, spec in wf.models.items():
            m = raw["models"][name]
            want = None
            if "path" in m:
                want, problem, _ = check_local_path(base, wf.root, m["path"], want="model", check_files=check_files)
                if problem:
                    return False
            if spec.path != want:
                return False
            if "adapter" in m:
                got, problem, _ = check_local_path(base, wf.root, m["adapter"], want="model", check_files=check_files)
                if problem or got != spec.adapter:
                    return False
        for name, spec in wf.datasets.items():
            s = raw["datasets"][name]
            files = [s["files"]] if isinstance(s.get("files"), str) else list(s.get("files") or [])
            got = []
            for f in files:
                p, problem, _ = check_local_path(base, wf.root, f, want="data", check_files=check_files)
                if problem:
                    return False
                got.append(p)
            if tuple(got) != spec.files:
                return False
            # the data may have changed under the same workflow bytes (parquet is left to the run:
            # reading it costs pyarrow's import on every no-op apply)
            if check_files and data_column_problems(spec, base, formats=("json", "csv")):
                return False
        if check_files and namesakes(wf.file, wf.name):  # a copy made since: validation names it
            return False
        if not all(isinstance(n, str) and NAME_RE.fullmatch(n) for n in (wf.name, *wf.models, *wf.datasets, *wf.nodes)):
            return False
        known = wf.models.keys() | wf.nodes.keys()
        if any(i not in known for n in wf.nodes.values() for i in n.inputs):
            return False
        return len(wf.order) == len(wf.nodes) and set(wf.order) == wf.nodes.keys()
    except (KeyError, TypeError, AttributeError, ValueError):
        return False


def gc_paused(fn):
    """Run ``fn`` with Python's cyclic garbage collector paused (restored after, and left alone
    when a caller paused it already). Validating and planning 10,000 nodes allocates a few
    hundred thousand dicts, tuples and YAML nodes that all stay alive until the end, and every
    collection the allocations trigger walks all of them again: a third of the time, for
    garbage that has no cycles. Nothing here needs the collector; it runs again afterwards."""
    @functools.wraps(fn)
    def paused(*args, **kwargs):
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()

    return paused


@gc_paused
def parse_workflow(raw: bytes | str, shown: str, *, base: Path, catalog: Catalog | None = None,
                   check_files: bool = True, file: Path | None = None) -> Workflow:
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    text, problems = yamlpos.decode(raw, shown)
    if text is None:
        raise SpecError(problems)
    data, pos, problems = yamlpos.load(text, shown)
    if data is None and not problems:
        problems = [Problem(shown, 1, 1, "file is empty", "start with `olivepipe: 1`")]
    if problems:
        raise SpecError(problems)
    if not isinstance(data, dict):
        raise SpecError([Problem(shown, 1, 1, f"top level must be a mapping, got {type(data).__name__}",
                                 "start with `olivepipe: 1`")])
    problems = _schema_problems(data, pos, shown)
    if problems and not isinstance(data.get("nodes"), dict):
        raise SpecError(problems)
    # Entries with schema errors are set aside so the rest still gets semantic checks:
    # the user sees every problem in one pass.
    broken = {p.path.split(".")[:2][1] for p in problems
              if p.path.split(".")[0] in ("models", "datasets", "nodes") and len(p.path.split(".")) > 1}
    if catalog is None:
        from ..olive.catalog import load_catalog

        catalog = load_catalog()
    builder = _Builder(data, pos, shown, base, catalog, check_files, file, broken)
    builder.text = text  # to point inside a scalar (a template's placeholder)
    try:
        return builder.build(extra=problems)
    except SpecError:
        raise
    except Exception:
        if problems:  # semantic checks tripped over data the schema already rejected
            raise SpecError(problems) from None
        raise
    finally:
        # the kinds' context holds the builder's bound methods: a reference cycle that would keep
        # every NodeSpec and position the builder holds alive until the cyclic GC walked them all
        builder._kind_ctx = None


def _schema():
    """The schema for the kinds registered now (a test or plugin may add one)."""
    from . import schema

    names = tuple(kinds.node_kinds())
    if names != tuple(schema.SCHEMA["properties"]["nodes"]["additionalProperties"]["properties"]["kind"]["enum"]):
        return schema.build_schema()
    return schema.SCHEMA


def _schema_problems(data, pos, shown) -> list[Problem]:
    import jsonschema  # only when validating for real (see load_workflow's memo)

    document, named, node = _validators(jsonschema, _schema())
    nodes = data.get("nodes")
    if isinstance(nodes, dict) and all(isinstance(n, str) and NAME_RE.fullmatch(n) for n in nodes):
        document = named  # every node name is valid: no descent per name into `propertyNames`
    errors = list(document.iter_errors(data))
    if isinstance(nodes, dict):
        # Each node on its own, and a node shaped like one already found valid is not walked again
        # (10,000 generated nodes are mostly one shape): the same errors, a fraction of the time.
        valid: set[str] = set()
        for name, body in nodes.items():
            shape = _node_shape(body)
            if shape is not None and shape in valid:
                continue
            found = list(node.iter_errors(body))
            for err in found:  # located as in a whole-document pass: nodes.<name>...
                err.path.extendleft((name, "nodes"))
            errors += found
            if not found and shape is not None:
                valid.add(shape)
    out = []
    for err in errors:
        out.extend(_explain(err, pos, shown))
    out.extend(_number_problems(data, pos, shown))
    # one message per location and text
    uniq = {(p.line, p.col, p.message): p for p in out}
    return list(uniq.values())


_SHAPE = json.JSONEncoder(sort_keys=True)  # json.dumps(..., sort_keys=True) without a new encoder per node


def _node_shape(body) -> str | None:
    """A node with its `input` stood in for (when the input is valid on its own: a name, or a
    non-empty list of distinct names), as canonical JSON; nothing else in the node's schema reads
    `input`, so two nodes of one shape are valid or invalid together. None: validate it fully."""
    if not isinstance(body, dict):
        return None
    inp = body.get("input")
    if isinstance(inp, str) and NAME_RE.fullmatch(inp):
        stand_in = "x"
    elif (isinstance(inp, list) and inp and all(isinstance(i, str) and NAME_RE.fullmatch(i) for i in inp)
          and len(set(inp)) == len(inp)):
        stand_in = ["x"]
    else:
        return None
    try:
        return _SHAPE.encode({**body, "input": stand_in})
    except (TypeError, ValueError):  # keys that are not strings (reported by the YAML checks)
        return None


def _number_problems(data, pos, shown) -> list[Problem]:
    """What JSON Schema cannot say: no number anywhere is NaN or infinite (NaN passes every
    minimum and maximum; `.inf` as a timeout enforced nothing), and the format version is the
    integer 1 (`1.0 == 1` to a schema)."""
    import math

    out = []
    version = data.get("olivepipe")
    if isinstance(version, (float, bool)):
        line, col = yamlpos.locate(pos, ("olivepipe",), value=True)
        out.append(Problem(shown, line, col, f"olivepipe: {version!r} is not a format version",
                           "write `olivepipe: 1` (an integer)", "olivepipe"))
    try:  # the common case, at C speed: json refuses the first NaN or infinity it meets
        json.dumps(data, allow_nan=False)
        return out
    except (ValueError, TypeError, RecursionError):
        pass  # one is there (or data json cannot say): the walk below finds and locates each
    stack = [((), data)]
    while stack:  # iterative: yamlpos bounded the depth, but no recursion is needed either
        path, v = stack.pop()
        if isinstance(v, dict):
            stack.extend((path + (k,), x) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((path + (i,), x) for i, x in enumerate(v))
        elif isinstance(v, float) and not math.isfinite(v):
            line, col = yamlpos.locate(pos, path, value=True)
            out.append(Problem(shown, line, col, f"{yamlpos.dotted(path)}: {v} is not a finite number",
                               "write a plain number", yamlpos.dotted(path)))
    return out


_LAST_VALIDATOR: list = [None, None, None, None]  # (schema, document, named, node): changes only when kinds do


def _validators(jsonschema, schema):
    """(the document's validator with node bodies left out, the same for node names already
    found valid (NAME_RE is the schema's name pattern), one node's validator): Draft 2020-12,
    with `pattern` applied as ECMA-262 (the schema's dialect, what editors use): jsonschema's
    re.search lets `$` match before a trailing newline, so names like "x\\n" passed."""
    if _LAST_VALIDATOR[0] is not schema:
        def pattern(validator, patrn, instance, _schema):
            if validator.is_type(instance, "string") and not _ecma_regex(patrn).search(instance):
                yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")

        cls = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": pattern})
        nodes = schema["properties"]["nodes"]
        bodies_left_out = {**nodes, "additionalProperties": True}
        names_left_out = {k: v for k, v in bodies_left_out.items() if k != "propertyNames"}
        document = {**schema, "properties": {**schema["properties"], "nodes": bodies_left_out}}
        named = {**schema, "properties": {**schema["properties"], "nodes": names_left_out}}
        _LAST_VALIDATOR[:] = [schema, cls(document), cls(named), cls(nodes["additionalProperties"])]
    return _LAST_VALIDATOR[1], _LAST_VALIDATOR[2], _LAST_VALIDATOR[3]


@functools.lru_cache(maxsize=64)
def _ecma_regex(pattern: str) -> re.Pattern:
    """ECMA-262 `$` (no multiline flag) is the end of input: Python's `\\Z`."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "$":
            c = r"\Z"
        out.append(c)
        i += 1
    return re.compile("".join(out))


def _explain(err, pos, shown) -> list[Problem]:
    path = tuple(err.absolute_path)
    where = yamlpos.dotted(path) or "top level"
    v = err.validator
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extras = [k for k in err.instance if k not in err.schema.get("properties", {})]
        probs = []
        for k in extras:
            close = difflib.get_close_matches(str(k), allowed, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(allowed)}"
            line, col = yamlpos.locate(pos, path + (k,))
            probs.append(Problem(shown, line, col, f"unknown key '{k}' in {where}", hint, yamlpos.dotted(path + (k,))))
        return probs
    line, col = yamlpos.locate(pos, path, value=True)
    if v == "oneOf":
        if path[:1] == ("models",) and len(path) == 2:
            msg, hint = f"model '{path[1]}' must have exactly one of hf, path or tiny", \
                "e.g. `hf: microsoft/Phi-3.5-mini-instruct` or `tiny: {arch: phi3}`"
        elif path[:1] == ("datasets",) and len(path) == 2:
            msg, hint = f"dataset '{path[1]}' must have exactly one of files or hf", "e.g. `files: data/train.jsonl`"
        elif path and path[-1] == "input":
            msg, hint = f"{where} must be a node or model name, or a list of them", "e.g. `input: finetune`"
        elif path and path[-1] == "files":
            msg, hint = f"{where} must be a path or a list of paths", "e.g. `files: data/train.jsonl`"
        elif path and path[-1] == "adapters":
            msg, hint = f"{where} must be 'auto', 'none' or a list of adapter files", ""
        elif path and path[-1] == "executor":
            msg, hint = (f"{where} must be `local` or `{{azureml: {{compute: NAME}}}}`",
                         "compute and instance names use letters, digits, '-' and '_' (no shell or path "
                         "characters); environment is `name:version`")
        else:
            msg, hint = f"{where}: {err.message}", ""
        return [Problem(shown, line, col, msg, hint, yamlpos.dotted(path))]
    if v == "required":
        missing = [m for m in err.validator_value if m not in (err.instance or {})]
        hints = {"olivepipe": "add `olivepipe: 1` (the format version)", "name": "add `name: my-pipeline`",
                 "nodes": "add a `nodes:` mapping with at least one node", "input": "say what the node reads: `input: <model or node>`"}
        return [Problem(shown, line, col, f"{where} is missing required key '{m}'", hints.get(m, ""), yamlpos.dotted(path))
                for m in missing]
    if v == "pattern" and path[-1:] == ("revision",):
        return [Problem(shown, line, col, f"{where}: {err.instance!r} is not a git revision",
                        "a commit, tag or branch: letters, digits, '.', '_', '-' and '/', never '..'",
                        yamlpos.dotted(path))]
    if v == "pattern" and path[-1:] == ("hf",):  # an id, not a name: the name hint would mislead
        return [Problem(shown, line, col, f"{where}: {err.instance!r} is not a Hugging Face id",
                        "e.g. `hf: microsoft/Phi-3.5-mini-instruct`", yamlpos.dotted(path))]
    if v == "pattern" and path and path[0] in ("models", "datasets", "nodes", "name") or v == "propertyNames":
        bad = err.instance
        return [Problem(shown, line, col, f"invalid name {bad!r} in {where}",
                        "names start with a letter and use letters, digits, '-' or '_' (at most 64)", yamlpos.dotted(path))]
    if v == "const" and path == ("olivepipe",):
        return [Problem(shown, line, col, f"unsupported format version {err.instance!r}",
                        "this olivepipe reads format `olivepipe: 1`", "olivepipe")]
    if v == "type":
        want = err.validator_value
        return [Problem(shown, line, col, f"{where} must be {_article(want)}, got {_tname(err.instance)}", "",
                        yamlpos.dotted(path))]
    if v == "enum":
        choices = ", ".join(map(str, err.validator_value))
        close = difflib.get_close_matches(str(err.instance), [str(c) for c in err.validator_value], n=1)
        return [Problem(shown, line, col, f"{where}: {err.instance!r} is not one of: {choices}",
                        f"did you mean '{close[0]}'?" if close else "", yamlpos.dotted(path))]
    return [Problem(shown, line, col, f"{where}: {err.message}", "", yamlpos.dotted(path))]


def _article(t) -> str:
    if isinstance(t, list):
        return " or ".join(_article(x) for x in t)
    return {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
            "boolean": "true or false", "number": "a number"}.get(t, t)


def _tname(v) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", int: "an integer", float: "a number",
            bool: "a boolean", type(None): "null"}.get(type(v), type(v).__name__) + ("" if v is None or isinstance(v, (dict, list)) else f" ({v!r})")


_SAFE = re.compile(r"[^A-Za-z0-9_]+")


def variant_suffix(values: list) -> str:
    return "-".join(_SAFE.sub("-", str(v).lower()).strip("-") or "x" for v in values)


class _Builder:
    def __init__(self, data, pos, shown, base: Path, catalog: Catalog, check_files: bool, file: Path | None,
                 broken: set = frozenset()):
        self.data, self.pos, self.shown, self.base = data, pos, shown, base
        self.broken = set(broken)
        self.schema_broken = frozenset(broken)  # their schema errors are reported; semantic checks would echo them
        self.root = find_root(base)
        self.catalog, self.check_files, self.file = catalog, check_files, file
        self.problems: list[Problem] = []
        self._kind_ctx: CheckContext | None = None

    def problem(self, path, message, hint="", *, value=False):
        line, col = yamlpos.locate(self.pos, path, value=value)
        self.problems.append(Problem(self.shown, line, col, message, hint, yamlpos.dotted(path)))

    def local_path(self, raw, where, want: str) -> Path | None:
        """Resolved model path or data file (None if it leaves the workspace); see check_local_path."""
        p, message, hint = check_local_path(self.base, self.root, raw, want=want, check_files=self.check_files)
        if message:
            self.problem(where, message, hint, value=True)
        return p

    def build(self, extra=()) -> Workflow:
        d = self.data
        self.problems.extend(extra)
        defaults = d.get("defaults") if isinstance(d.get("defaults"), dict) else {}
        models = {n: self.model(n, m) if n not in self.broken else ModelSpec(n, "broken")
                  for n, m in (d.get("models") or {}).items()} if isinstance(d.get("models"), dict) else {}
        datasets = {n: self.dataset(n, s) if n not in self.broken else DatasetSpec(n)
                    for n, s in (d.get("datasets") or {}).items()} if isinstance(d.get("datasets"), dict) else {}
        for n in set(models) & set(d["nodes"]):
            self.problem(("nodes", n), f"name '{n}' is used by both a model and a node", "rename one of them")
        order = self.raw_order(models)
        per_base: dict[str, list[NodeSpec]] = {}
        seen: set[str] = set(models)
        total = 0
        expanded: dict[str, list[tuple[dict, str]]] = {m: [({}, m)] for m in models}
        self.models_built, self.built = models, {}  # for arch_of (kinds' checks)
        for base in order:
            specs = self.expand(base, d["nodes"][base], expanded, models, datasets, defaults)
            if not specs:  # its problem is reported; dependents would only echo it
                self.broken.add(base)
                expanded[base] = []
            for spec in specs:
                if spec.name in seen:
                    self.problem(("nodes", base, "matrix"), f"matrix variant name '{spec.name}' collides with another node",
                                 "rename the node or change the matrix values")
                seen.add(spec.name)
                self.built[spec.name] = spec
            per_base[base] = specs
            total += len(specs)
            if total > MAX_EXPANDED:  # stop here: the rest would only cost time
                self.problem(("nodes", base), f"the workflow expands to more than {MAX_EXPANDED:,} nodes "
                             f"(node '{base}' brings it to {total:,})",
                             "split it into several workflows, or use fewer matrix values")
                break
        for spec in self.built.values():
            for a in spec.after:
                if a not in self.built:  # a sibling variant named in a goal (see kinds/evaluate.py)
                    self.problem(("nodes", spec.base), f"'{spec.name}' compares with '{a}', which is not a node",
                                 f"variants: {', '.join(n for n, b in self.built.items() if b.base == spec.base)}")
        if self.problems:
            ordered = set(order)
            for base, n in d["nodes"].items():
                if base not in ordered:
                    self.check_alone(base, n, datasets, defaults)
        self.check_data_columns(datasets)
        if self.check_files and self.file is not None and isinstance(d.get("name"), str):
            others = namesakes(self.file, d["name"])
            if others:
                listed = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
                self.problem(("name",), f"workflow name '{d['name']}' is also the name of {listed} in this folder",
                             f"give each file its own `name:`: the folder's olivepipe.lock and outputs/{d['name']}/ "
                             "are per name, and two files would mix them", value=True)
        if self.problems:
            raise SpecError(self.problems)
        # file order for display (expansion order inside each base); topological order for running
        nodes = {s.name: s for b in d["nodes"] for s in per_base.get(b, ())}
        topo = tuple(s.name for b in order for s in per_base[b])
        return Workflow(file=self.file or self.base / "workflow.yaml", root=self.root, name=d["name"],
                        description=d.get("description", ""), models=models, datasets=datasets, nodes=nodes,
                        positions=self.pos, raw=d, catalog_source=self.catalog.source, order=topo)

    def arch_of(self, name: str) -> str | None:
        """The architecture of the model a node ultimately reads (first inputs up to a model);
        remembered per node, so long chains stay linear."""
        memo = self.__dict__.setdefault("_arch", {})
        walked = []
        while name not in memo:  # iterative: a 20,000-node chain must not hit the recursion limit
            if name in self.models_built:
                memo[name] = self.models_built[name].arch
                break
            node = self.built.get(name)
            if node is None or not node.inputs:
                memo[name] = None
                break
            walked.append(name)
            name = node.inputs[0]
        for n in walked:
            memo[n] = memo[name]
        return memo[name]

    # -- models and datasets -------------------------------------------------
    def model(self, name, m) -> ModelSpec:
        where = ("models", name)
        spec = self._model(name, m, where)
        if "adapter" in m:
            adapter = self.local_path(m["adapter"], where + ("adapter",), "model")
            if adapter is not None and self.check_files and adapter.is_dir() \
                    and not (adapter / "adapter_config.json").is_file():
                self.problem(where + ("adapter",), f"'{m['adapter']}' is not a PEFT adapter folder (no adapter_config.json)",
                             "point at the folder a LoRA run saved (adapter_config.json + adapter_model.safetensors)",
                             value=True)
            from dataclasses import replace

            spec = replace(spec, adapter=adapter)
        return spec

    def _model(self, name, m, where) -> ModelSpec:
        if "path" in m:
            p = self.local_path(m["path"], where + ("path",), "model")
            return ModelSpec(name, "path", path=p, arch=m.get("arch") or _folder_arch(p), rehearse=m.get("rehearse"),
                             trust_remote_code=m.get("trust_remote_code", False), load_kwargs=m.get("load_kwargs"))
        if "tiny" in m:
            t = m["tiny"]
            hidden, heads = t.get("hidden", 64), t.get("heads", 4)
            if hidden % heads or (hidden // heads) % 16:
                self.problem(where + ("tiny",), f"tiny model head size {hidden}/{heads} is not a multiple of 16",
                             "onnxruntime's CPU attention needs head sizes of 16, 32, 64...: e.g. hidden 64 with heads 4")
            return ModelSpec(name, "tiny", tiny=dict(m["tiny"]), arch=m["tiny"].get("arch", "phi3"))
        if "revision" not in m:
            pass  # allowed, but plan warns: an unpinned hub model can change under the cache
        return ModelSpec(name, "hf", hf=m["hf"], revision=m.get("revision"), arch=m.get("arch") or _guess_arch(m["hf"]),
                         rehearse=m.get("rehearse"), trust_remote_code=m.get("trust_remote_code", False),
                         load_kwargs=m.get("load_kwargs"))

    def dataset(self, name, s) -> DatasetSpec:
        where = ("datasets", name)
        if s.get("text_template") and s.get("text_field"):
            self.problem(where, f"dataset '{name}' has both text_template and text_field", "keep one")
        if s.get("text_template"):
            try:
                list(__import__("string").Formatter().parse(s["text_template"]))
            except ValueError as e:
                self.problem(where + ("text_template",), f"text_template is not a valid format string: {e}",
                             "use {column} placeholders; write {{ and }} for literal braces", value=True)
        files: list[Path] = []
        fmt = s.get("format")
        if "files" in s:
            raw_files = [s["files"]] if isinstance(s["files"], str) else s["files"]
            for i, f in enumerate(raw_files):
                at = where + ("files",) if isinstance(s["files"], str) else where + ("files", i)
                p, message, hint = check_local_path(self.base, self.root, f, want="data", check_files=self.check_files)
                if message and s.get("source") and message.endswith("does not exist"):
                    hint = f"it comes from {s['source']}; put it at {f} (relative to the workflow file)"
                if message:
                    self.problem(at, message, hint, value=True)
                if p is None:
                    continue
                files.append(p)
                suffix_fmt = DATA_FORMATS.get(p.suffix.lower())
                if fmt is None and suffix_fmt is None:
                    self.problem(at, f"cannot tell the format of '{f}' from its extension", "add `format: jsonl|json|csv|parquet`", value=True)
                fmt = fmt or suffix_fmt
        return DatasetSpec(name, files=tuple(files), format={"jsonl": "json"}.get(fmt, fmt), hf=s.get("hf"),
                           subset=s.get("subset"), revision=s.get("revision"), split=s.get("split", "train"),
                           text_template=s.get("text_template"), text_field=s.get("text_field"),
                           limit=s.get("limit"), max_seq_len=s.get("max_seq_len"),
                           add_special_tokens=s.get("add_special_tokens"), max_samples=s.get("max_samples"))

    def check_data_columns(self, datasets) -> None:
        """A text_template (or text_field) names columns of the data: checked against the first
        rows of each local file now, not 36 s into a training run. Each problem points at the
        placeholder inside the template."""
        if not self.check_files:
            return
        for name, ds in datasets.items():
            if name in self.broken or not ds.files:
                continue
            field = "text_template" if ds.text_template else "text_field" if ds.text_field else None
            for column, message, hint in data_column_problems(ds, self.base):
                self.problem_at_text(("datasets", name, field or "files"), column, message, hint)

    def problem_at_text(self, path, needle, message, hint) -> None:
        """A problem at ``needle`` inside the scalar at ``path`` (its first occurrence at or after
        where the value starts), else at the value itself."""
        line, col = yamlpos.locate(self.pos, path, value=True)
        text = getattr(self, "text", None)
        if needle and text and line:
            lines = text.splitlines()
            for i in range(line - 1, min(len(lines), line + 50)):
                at = lines[i].find(needle, col - 1 if i == line - 1 else 0)
                if at >= 0:
                    line, col = i + 1, at + 1
                    break
        self.problems.append(Problem(self.shown, line, col, message, hint, yamlpos.dotted(path)))

    # -- graph of names as written --------------------------------------------
    def raw_order(self, models) -> list[str]:
        """The one graph of the workflow (node names as written, edge input -> reader):
        references, cycles and the order nodes expand and run in. Linear in its size."""
        nodes = self.data["nodes"]
        index = {n: i for i, n in enumerate(nodes)}
        succ: dict[str, dict[str, None]] = {n: {} for n in nodes}  # readers of each node, each once
        edges = []  # (input, reader) in the order found: networkx's graph, if there is a cycle to name
        bad = set()
        suggestions = 0
        for name, n in nodes.items():
            if not isinstance(n, dict) or not isinstance(n.get("input"), (str, list)):
                continue
            refs = [n["input"]] if isinstance(n["input"], str) else n["input"]
            located = [(("nodes", name, "input") if isinstance(n["input"], str) else ("nodes", name, "input", i), ref)
                       for i, ref in enumerate(refs)]
            for at, ref in located + self.kind_refs(name, n):
                if not isinstance(ref, str):
                    continue  # the schema reported it
                target = self.ref_base(ref, models)
                if target is None:
                    pool = [*models, *nodes]
                    suggestions += 1  # each suggestion scans every name: cap them, or a big bad file is quadratic
                    close = difflib.get_close_matches(ref, pool, n=1, cutoff=0.6) if suggestions <= MAX_SUGGESTIONS else []
                    known = ", ".join(pool[:10]) + (f", ... ({len(pool)} in all)" if len(pool) > 10 else "")
                    self.problem(at, f"node '{name}' reads unknown input '{ref}'",
                                 f"did you mean '{close[0]}'?" if close else f"known models and nodes: {known or 'none'}",
                                 value=True)
                    bad.add(name)
                elif target == name:
                    self.problem(at, f"node '{name}' reads itself", "a node's input must be a model or another node", value=True)
                    bad.add(name)
                elif target in nodes:
                    succ[target][name] = None
                    edges.append((target, name))
        order = topological_order(succ, index)
        if order is None:  # a cycle: networkx names one per strongly connected component
            self.cycles(nodes, edges, index, models, bad)
        # nodes downstream of a problem are left out: their checks would only echo it
        todo = list(bad)
        while todo:
            for c in succ[todo.pop()]:
                if c not in bad:
                    bad.add(c)
                    todo.append(c)
        self.broken.update(bad)
        return topological_order(succ, index, bad) if bad else order

    def cycles(self, nodes, edges, index, models, bad: set) -> None:
        """One cycle per strongly connected component, never all of them: n mutually reading
        nodes have more simple cycles than n!; every member of such a component is broken."""
        import networkx as nx  # only here: an acyclic workflow never needs it

        g = nx.DiGraph()
        g.add_nodes_from(nodes)
        g.add_edges_from(edges)
        for comp in nx.strongly_connected_components(g):
            if len(comp) < 2:
                continue  # self-reads never become edges
            first = min(comp, key=index.__getitem__)
            cyc = [u for u, _ in nx.find_cycle(g.subgraph(comp), source=first)]
            i = cyc.index(min(cyc, key=index.__getitem__))
            cyc = cyc[i:] + cyc[:i]
            self.problem(self._input_at(cyc[1], cyc[0], models), f"cycle: {' -> '.join(cyc + [cyc[0]])}",
                         "break the cycle: a node cannot depend on its own output", value=True)
            bad.update(comp)

    def kind_refs(self, name: str, n: dict) -> list[tuple]:
        """Other nodes a node's kind names besides `input` (an evaluate goal's baseline), as
        (path, reference): they order the graph and join its cycle check. A node naming its own
        matrix variant is no edge (a sweep's baseline variant judges itself)."""
        kind = n.get("kind", "olive")
        if kind not in kinds.node_kinds():
            return []
        return [(("nodes", name) + at, ref) for at, ref in kinds.get(kind).refs(n)
                if not (isinstance(ref, str) and self.ref_base(ref, {}) == name)]

    def _input_at(self, reader: str, source: str, models) -> tuple:
        """Where ``reader`` names ``source`` (or a variant of it) in its input."""
        inp = self.data["nodes"][reader]["input"]
        if isinstance(inp, list):
            for i, ref in enumerate(inp):
                if isinstance(ref, str) and self.ref_base(ref, models) == source:
                    return ("nodes", reader, "input", i)
        return ("nodes", reader, "input")

    def ref_base(self, ref, models) -> str | None:
        nodes = self.data["nodes"]
        if not isinstance(ref, str):
            return None
        if ref in models or ref in nodes:
            return ref
        # an explicit variant (onnx-int4 -> onnx): the longest base that is a prefix ending
        # before a '-'; names are at most 64 characters, so this is a few dict lookups
        if len(ref) <= 128:
            i = len(ref)
            while (i := ref.rfind("-", 0, i)) > 0:
                if ref[:i] in nodes:
                    return ref[:i]
        return None

    # -- nodes ------------------------------------------------------------------
    def variant_name_ok(self, base, name, mine: dict, matrix: dict) -> bool:
        """Variant names become path components and lock keys: the node-name rules hold for them too."""
        if NAME_RE.fullmatch(name):
            return True
        shown = name if len(name) <= 80 else name[:77] + "..."
        if mine:  # point at this node's longest matrix value in the combination
            k = max(mine, key=lambda k: len(variant_suffix([mine[k]])))
            at, value = ("nodes", base, "matrix", k, matrix[k].index(mine[k])), True
        else:  # the length came with the input's variant
            at, value = ("nodes", base, "input"), True
        self.problem(at, f"matrix variant name '{shown}' is {len(name)} characters; names have at most 64",
                     "use shorter matrix values (or a shorter node name)", value=value)
        return False

    def _unknown_variant(self, base, ref, variants, models):
        """(where, message, hint) for an input naming a variant that does not exist. A node without
        variants (`input: finetune-v2` where finetune has no matrix) is a misspelled name, so the
        hint searches node and model names, not variants."""
        where = self._input_at_ref(base, ref)
        if len(variants) > 1 or any(v for v, _ in variants):
            return where, f"no matrix variant named '{ref}'", f"variants: {', '.join(nm for _, nm in variants)}"
        pool = [*models, *self.data["nodes"]]
        close = difflib.get_close_matches(ref, pool, n=1, cutoff=0.6)
        owner = self.ref_base(ref, models)
        return where, f"node '{base}' reads unknown input '{ref}'", \
            (f"did you mean '{close[0]}'? " if close else "") + f"('{owner}' has no matrix, so no variants)"

    def _input_at_ref(self, reader, ref) -> tuple:
        inp = self.data["nodes"][reader]["input"]
        return ("nodes", reader, "input", inp.index(ref)) if isinstance(inp, list) else ("nodes", reader, "input")

    def check_alone(self, base, n, datasets, defaults) -> None:
        """A node left out of expansion (a bad reference, a cycle, or one of those upstream) still
        gets its own checks (keys, pass, params): one bad reference must not hide the file's
        other problems."""
        if not isinstance(n, dict) or base in self.schema_broken:
            return
        self.own_checks(base, n, ("nodes", base), datasets, defaults, inputs_broken=True)

    def kind_context(self, datasets) -> CheckContext:
        """All a kind sees while it is checked (kinds/base.py), made once per build."""
        if self._kind_ctx is None or self._kind_ctx.datasets is not datasets or self._kind_ctx.built is not self.built:
            self._kind_ctx = CheckContext(problem=self.problem, catalog=self.catalog, datasets=datasets,
                                          models=self.models_built, built=self.built, arch_of=self.arch_of,
                                          raw_nodes=self.data["nodes"], ref_base=self.ref_base)
        return self._kind_ctx

    def own_checks(self, base, n, where, datasets, defaults, *, inputs_broken: bool):
        """The checks of a node that need nothing from its inputs; returns (kind, device, provider,
        own fields), or None when the kind's check failed. With ``inputs_broken`` the node's
        params are checked as written (no variants: upstream problems are reported already)."""
        kind = n.get("kind", "olive")
        k_impl = kinds.get(kind)
        allowed = COMMON_FIELDS | set(k_impl.fields)
        for k in n:
            if k not in allowed:
                owner = next((kk.name for kk in kinds.all_kinds() if k in kk.fields), None)
                self.problem(where + (k,), f"'{k}' does not apply to a node of kind '{kind}'",
                             f"'{k}' belongs to kind '{owner}' nodes" if owner else "")
        device = n.get("device", defaults.get("device", "cpu"))
        provider = n.get("provider", defaults.get("provider") if "device" not in n else None) or EXECUTION_PROVIDERS[device]
        if provider not in KNOWN_PROVIDERS:
            close = difflib.get_close_matches(provider, sorted(KNOWN_PROVIDERS), n=1)
            self.problem(where + ("provider",), f"unknown execution provider '{provider}'",
                         f"did you mean '{close[0]}'?" if close else "", value=True)
        self.datasets = datasets
        ctx = self.kind_context(datasets)
        own_fields = k_impl.check(ctx, base, n, where)
        if own_fields is None:
            return None
        if inputs_broken:
            # upstream problems are reported already; still check this node's own params
            k_impl.finish(ctx, NodeSpec(name=base, base=base, kind=kind, inputs=(), pass_type=own_fields.get("pass_type"),
                                         alias=own_fields.get("alias"), params={**(n.get("params") or {})}), where)
        return kind, device, provider, own_fields

    def expand(self, base, n, expanded, models, datasets, defaults) -> list[NodeSpec]:
        where = ("nodes", base)
        refs = [n["input"]] if isinstance(n.get("input"), str) else list(n.get("input") or [])
        inputs_broken = any((b := self.ref_base(r, models)) in self.broken and b not in models for r in refs)
        if base in self.broken:
            expanded[base] = []
            return []
        checked = self.own_checks(base, n, where, datasets, defaults, inputs_broken=inputs_broken)
        if checked is None or inputs_broken:
            return []
        kind, device, provider, own_fields = checked
        k_impl = kinds.get(kind)
        pass_type, alias = own_fields.get("pass_type"), own_fields.get("alias")
        # each input contributes its expanded variants; a node fans out along them
        choices = []
        for ref in refs:
            if ref in expanded:
                choices.append(expanded[ref])
            else:  # explicit variant name
                variants = expanded.get(self.ref_base(ref, models), [])
                hits = [(v, nm) for v, nm in variants if nm == ref]
                if not hits:
                    at, message, hint = self._unknown_variant(base, ref, variants, models)
                    self.problem(at, message, hint, value=True)
                    return []
                choices.append([({}, ref)])  # a variant named explicitly adds no fan-out
        if k_impl.gathers:  # a fan-in kind (select) reads every variant of its inputs in one node
            choices = [[({}, nm)] for c in choices for _, nm in c]
        matrix = n.get("matrix") or {}
        # count before building: three 60-value matrix keys would otherwise hang validation
        fan = 1
        for c in [*choices, *matrix.values()]:
            fan *= len(c) if isinstance(c, list) else 1
        if fan > MAX_VARIANTS:
            self.problem(where + ("matrix",) if matrix else where + ("input",),
                         f"node '{base}' expands to {fan:,} variants (at most {MAX_VARIANTS})",
                         "use fewer matrix values, or read one input variant by name")
            return []
        own = [dict(zip(matrix, combo)) for combo in itertools.product(*matrix.values())] if matrix else [{}]
        ctx = self.kind_context(datasets)
        k_impl.check_matrix(ctx, own_fields, n, where)
        # what every variant shares, read once (a 250-value matrix builds 250 NodeSpecs)
        description, params_as_written = n.get("description", ""), n.get("params") or {}
        shared = dict(base=base, kind=kind, pass_type=pass_type, alias=alias, data=n.get("data"), device=device,
                      provider=provider, rehearse=n.get("rehearse"), description=description,
                      timeout_s=parse_duration(n.get("timeout")), gpu_memory_gb=n.get("gpu_memory_gb"))
        placement = n.get("executor", defaults.get("executor"))
        out = []
        for combo in itertools.product(*choices):
            inherited: dict = {}
            clash = False
            for variant, _ in combo:
                for k, v in variant.items():
                    if k in inherited and inherited[k] != v:
                        clash = True
                    inherited[k] = v
            if clash:
                continue
            for mine in own:
                variant = {**inherited, **mine}
                name = f"{base}-{variant_suffix(list(variant.values()))}" if variant else base
                if variant and not self.variant_name_ok(base, name, mine, matrix):
                    continue
                spec = NodeSpec(name=name, inputs=tuple(nm for _, nm in combo), params={**params_as_written, **mine},
                                variant=variant, options=k_impl.options(n, description), executor=_placement(placement),
                                **shared)
                out.append(k_impl.finish(ctx, spec, where))
        expanded[base] = [(s.variant, s.name) for s in out]
        return out


def topological_order(succ: dict, index: dict, leave_out=frozenset()) -> list[str] | None:
    """Kahn's order of the graph ``succ`` (node -> its readers) without the nodes in ``leave_out``:
    generation by generation (each node after all it reads), each generation by ``index`` (file
    position). None when a cycle is left (some node never becomes ready). spec/graph.py orders
    a workflow without a stored order the same way."""
    waiting = {n: 0 for n in succ if n not in leave_out}
    for a, readers in succ.items():
        if a not in leave_out:
            for b in readers:
                if b in waiting:
                    waiting[b] += 1
    generation = [n for n, k in waiting.items() if k == 0]
    out, placed = [], 0
    while generation:
        out.append(generation)
        placed += len(generation)
        ready = []
        for a in generation:
            for b in succ[a]:
                if b in waiting:
                    waiting[b] -= 1
                    if not waiting[b]:
                        ready.append(b)
        generation = ready
    if placed != len(waiting):
        return None
    return [n for gen in out for n in sorted(gen, key=index.__getitem__)]


def data_column_problems(ds: DatasetSpec, base: Path, formats=None) -> list[tuple[str, str, str]]:
    """(needle, message, hint) for each column the dataset's text_template or text_field reads that
    the first rows of its files lack, or a file whose first rows cannot be read. ``formats``
    limits which file formats are read (the memo's re-check skips parquet: pyarrow costs an import)."""
    from ..core.datasets import head_rows, template_columns

    if ds.text_template:
        wanted, what = template_columns(ds.text_template), "text_template"
    elif ds.text_field:
        wanted, what = [ds.text_field], "text_field"
    else:
        return []
    out = []
    for path in ds.files:
        if formats is not None and (ds.format or DATA_FORMATS.get(path.suffix.lower())) not in formats:
            continue
        if not os.path.isfile(path):  # missing, a folder, a name too long...: reported by the path check
            continue
        shown = os.path.relpath(path, base)
        try:
            rows = head_rows(path, ds.format)
        except OSError as e:
            out.append(("", f"data file '{shown}' cannot be read: {e.strerror or e}", ""))
            continue
        except OlivepipeError as e:
            out.append(("", f"data file {e.message.replace(str(path), shown, 1)}", e.hint))
            continue
        for i, row in enumerate(rows or []):
            if not isinstance(row, dict):
                out.append(("", f"row {i + 1} of '{shown}' is {type(row).__name__}, not an object with columns",
                            f"{what} reads named columns: one JSON object per row"))
                break
            missing = [c for c in wanted if c not in row]
            if not missing:
                continue
            have = ", ".join(map(str, row)) or "none"
            for c in missing:
                close = difflib.get_close_matches(c, [str(k) for k in row], n=1, cutoff=0.6)
                where = f"'{shown}'" if i == 0 else f"row {i + 1} of '{shown}'"
                out.append(("{" + c if what == "text_template" else c,
                            f"{what} reads column '{c}', which {where} does not have",
                            (f"did you mean '{close[0]}'? " if close else "") + f"its columns: {have}"))
            break  # one row's problems per file: the next rows would repeat them
    return out


_TOP_NAME = re.compile(rb"^name:[ \t]*[\"']?([A-Za-z][A-Za-z0-9_-]{0,63})[\"']?[ \t]*(?:#.*)?\r?$", re.M)
_TOP_FORMAT = re.compile(rb"^olivepipe:", re.M)
NAMESAKE_BYTES = 64 << 10  # `name:` sits at the top of a workflow file; a sibling is read no further


def namesakes(file: Path, name: str) -> list[str]:
    """Other workflow files in ``file``'s folder whose top-level `name:` is ``name``, sorted.

    The folder's olivepipe.lock, outputs/<name>/ and .olivepipe/logs/<name>/ are keyed by the
    name, so two such files would mix their records and results: validation refuses it (a
    plain scan of the first bytes of each sibling: no YAML parse on the hot path)."""
    out = []
    try:
        siblings = sorted(os.scandir(file.parent), key=lambda e: e.name)
    except OSError:
        return out
    for e in siblings:
        if e.name == file.name or not e.name.endswith((".yaml", ".yml")):
            continue
        try:
            if not e.is_file():
                continue
            with open(e.path, "rb") as f:
                head = f.read(NAMESAKE_BYTES)
        except OSError:
            continue
        m = _TOP_NAME.search(head)
        if m and m.group(1).decode() == name and _TOP_FORMAT.search(head):
            out.append(e.name)
    return out


def _placement(value) -> dict | None:
    """`executor:` as data: None for the local machine (the default), else e.g. {"azureml": {...}}."""
    return None if value in (None, "local") else dict(value)


def parse_duration(value) -> float | None:
    """`timeout: 90` (seconds) or `"90s" | "30m" | "2h"` -> seconds (the schema checked the shape)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return float(value[:-1]) * {"s": 1, "m": 60, "h": 3600}[value[-1]]


def _folder_arch(path: Path | None) -> str | None:
    """The architecture a local Hugging Face folder declares (config.json model_type), if any."""
    import json

    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    return {"phi3": "phi3", "llama": "llama", "mistral": "llama"}.get(str(model_type).lower())


def _guess_arch(hf_id: str) -> str | None:
    low = hf_id.lower()
    for key, arch in (("phi-3", "phi3"), ("phi3", "phi3"), ("llama", "llama"), ("mistral", "llama")):
        if key in low:
            return arch
    return None
