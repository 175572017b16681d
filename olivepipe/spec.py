"""Workflow file -> validated, matrix-expanded ``Workflow`` (or a SpecError listing every problem).

Loading never executes or writes anything. Every problem carries file:line:col.
"""
from __future__ import annotations

import difflib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import yamlpos
from .errors import Problem, SpecError
from .olive.catalog import EXECUTION_PROVIDERS, KNOWN_PROVIDERS, Catalog, load_catalog
from .schema import SCHEMA

KINDS_FIELDS = {
    "olive": {"pass", "data", "params", "rehearse"},
    "generate": {"prompts", "max_new_tokens", "adapters", "chat_template"},
    "register": {"name", "version", "workspace", "tags"},
}
COMMON_FIELDS = {"kind", "input", "device", "provider", "matrix", "description"}
DATA_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
MAX_VARIANTS = 256  # per node: a matrix times its inputs' variants; beyond this it is a typo or a DoS


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
    limit: int | None = None
    max_seq_len: int | None = None


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

    def position(self, *path) -> tuple[int, int]:
        return yamlpos.locate(self.positions, path)

    @property
    def workspace(self) -> Path:
        """Where olivepipe keeps its state for this workflow."""
        return self.file.parent / ".olivepipe"


def find_root(start: Path) -> Path:
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    return start


def load_workflow(path: str | Path, *, catalog: Catalog | None = None, check_files: bool = True) -> Workflow:
    """Read, parse, schema-check and semantically check a workflow file.

    A file that validated before, byte for byte, is read back from the validation
    memo (.olivepipe/validated/) instead: the hot path of a no-op apply then never
    imports jsonschema or networkx.
    """
    file = Path(path)
    shown = str(path)
    if catalog is None:
        from . import specmemo

        hit = specmemo.recall(file, check_files)
        if hit is not None:
            return hit
    try:
        raw_bytes = file.read_bytes()
    except FileNotFoundError:
        raise SpecError([Problem(shown, 0, 0, "no such file", "check the path")]) from None
    except IsADirectoryError:
        raise SpecError([Problem(shown, 0, 0, "is a directory, not a workflow file", "")]) from None
    except OSError as e:
        raise SpecError([Problem(shown, 0, 0, f"cannot read: {e.strerror}", "")]) from None
    wf = parse_workflow(raw_bytes, shown, base=file.resolve().parent, catalog=catalog, check_files=check_files,
                        file=file.resolve())
    if catalog is None:
        from . import specmemo

        specmemo.remember(wf, raw_bytes, check_files)
    return wf


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
    builder = _Builder(data, pos, shown, base, catalog or load_catalog(), check_files, file, broken)
    try:
        return builder.build(extra=problems)
    except SpecError:
        raise
    except Exception:
        if problems:  # semantic checks tripped over data the schema already rejected
            raise SpecError(problems) from None
        raise


def _schema_problems(data, pos, shown) -> list[Problem]:
    import jsonschema  # only when validating for real (see load_workflow's memo)

    validator = jsonschema.Draft202012Validator(SCHEMA)
    out = []
    for err in validator.iter_errors(data):
        out.extend(_explain(err, pos, shown))
    # one message per location and text
    uniq = {(p.line, p.col, p.message): p for p in out}
    return list(uniq.values())


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
        else:
            msg, hint = f"{where}: {err.message}", ""
        return [Problem(shown, line, col, msg, hint, yamlpos.dotted(path))]
    if v == "required":
        missing = [m for m in err.validator_value if m not in (err.instance or {})]
        hints = {"olivepipe": "add `olivepipe: 1` (the format version)", "name": "add `name: my-pipeline`",
                 "nodes": "add a `nodes:` mapping with at least one node", "input": "say what the node reads: `input: <model or node>`"}
        return [Problem(shown, line, col, f"{where} is missing required key '{m}'", hints.get(m, ""), yamlpos.dotted(path))
                for m in missing]
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
        self.root = find_root(base)
        self.catalog, self.check_files, self.file = catalog, check_files, file
        self.problems: list[Problem] = []

    def problem(self, path, message, hint="", *, value=False):
        line, col = yamlpos.locate(self.pos, path, value=value)
        self.problems.append(Problem(self.shown, line, col, message, hint, yamlpos.dotted(path)))

    def inside_root(self, path: Path, where) -> Path | None:
        p = (self.base / path).resolve()
        try:
            p.relative_to(self.root)
        except ValueError:
            self.problem(where, f"path '{path}' escapes the workspace ({self.root})",
                         "keep models and data inside the repository that holds the workflow", value=True)
            return None
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
        nodes: dict[str, NodeSpec] = {}
        if order is not None:
            expanded: dict[str, list[tuple[dict, str]]] = {m: [({}, m)] for m in models}
            for base in order:
                specs = self.expand(base, d["nodes"][base], expanded, models, datasets, defaults)
                if not specs:  # its problem is reported; dependents would only echo it
                    self.broken.add(base)
                    expanded[base] = []
                for spec in specs:
                    if spec.name in nodes or spec.name in models:
                        self.problem(("nodes", base, "matrix"), f"matrix variant name '{spec.name}' collides with another node",
                                     "rename the node or change the matrix values")
                    nodes[spec.name] = spec
            # keep file order for display, expansion order inside each base
            file_order = {n: i for i, n in enumerate(d["nodes"])}
            nodes = dict(sorted(nodes.items(), key=lambda kv: (file_order[kv[1].base], list(nodes).index(kv[0]))))
        if self.problems:
            raise SpecError(self.problems)
        return Workflow(file=self.file or self.base / "workflow.yaml", root=self.root, name=d["name"],
                        description=d.get("description", ""), models=models, datasets=datasets, nodes=nodes,
                        positions=self.pos, raw=d, catalog_source=self.catalog.source)

    # -- models and datasets -------------------------------------------------
    def model(self, name, m) -> ModelSpec:
        where = ("models", name)
        if "path" in m:
            p = self.inside_root(Path(m["path"]), where + ("path",))
            if p is not None and self.check_files and not p.exists():
                self.problem(where + ("path",), f"model path '{m['path']}' does not exist", "check the path (relative to the workflow file)", value=True)
            return ModelSpec(name, "path", path=p, arch=m.get("arch"), rehearse=m.get("rehearse"),
                             trust_remote_code=m.get("trust_remote_code", False))
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
                         rehearse=m.get("rehearse"), trust_remote_code=m.get("trust_remote_code", False))

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
                p = self.inside_root(Path(f), at)
                if p is None:
                    continue
                if self.check_files and not p.is_file():
                    self.problem(at, f"data file '{f}' does not exist", "paths are relative to the workflow file", value=True)
                files.append(p)
                suffix_fmt = DATA_FORMATS.get(p.suffix.lower())
                if fmt is None and suffix_fmt is None:
                    self.problem(at, f"cannot tell the format of '{f}' from its extension", "add `format: jsonl|json|csv|parquet`", value=True)
                fmt = fmt or suffix_fmt
        return DatasetSpec(name, files=tuple(files), format={"jsonl": "json"}.get(fmt, fmt), hf=s.get("hf"),
                           subset=s.get("subset"), revision=s.get("revision"), split=s.get("split", "train"),
                           text_template=s.get("text_template"), text_field=s.get("text_field"),
                           limit=s.get("limit"), max_seq_len=s.get("max_seq_len"))

    # -- graph of names as written --------------------------------------------
    def raw_order(self, models) -> list[str] | None:
        import networkx as nx

        nodes = self.data["nodes"]
        g = nx.DiGraph()
        g.add_nodes_from(nodes)
        bad = set()
        for name, n in nodes.items():
            if not isinstance(n, dict) or not isinstance(n.get("input"), (str, list)):
                continue
            refs = [n["input"]] if isinstance(n["input"], str) else n["input"]
            for i, ref in enumerate(refs):
                at = ("nodes", name, "input") if isinstance(n["input"], str) else ("nodes", name, "input", i)
                target = self.ref_base(ref, models)
                if target is None:
                    pool = list(models) + list(nodes)
                    close = difflib.get_close_matches(ref, pool, n=1, cutoff=0.6)
                    self.problem(at, f"node '{name}' reads unknown input '{ref}'",
                                 f"did you mean '{close[0]}'?" if close else f"known models and nodes: {', '.join(pool) or 'none'}",
                                 value=True)
                    bad.add(name)
                elif target == name:
                    self.problem(at, f"node '{name}' reads itself", "a node's input must be a model or another node", value=True)
                    bad.add(name)
                elif target in nodes:
                    g.add_edge(target, name)
        cycles = list(nx.simple_cycles(g))
        for cyc in cycles[:5]:
            first = min(cyc, key=lambda c: list(nodes).index(c))
            i = cyc.index(first)
            cyc = cyc[i:] + cyc[:i]
            path = " -> ".join(cyc + [cyc[0]])
            self.problem(("nodes", cyc[1 % len(cyc)], "input"), f"cycle: {path}", "break the cycle: a node cannot depend on its own output", value=True)
            bad.update(cyc)
        # nodes downstream of a problem are left out: their checks would only echo it
        for b in list(bad):
            bad.update(nx.descendants(g, b))
        self.broken.update(bad)
        g.remove_nodes_from(bad)
        # stable order: ready layer sorted by file position
        index = {n: i for i, n in enumerate(nodes)}
        return list(nx.lexicographical_topological_sort(g, key=lambda n: index[n]))

    def ref_base(self, ref, models) -> str | None:
        nodes = self.data["nodes"]
        if ref in models or ref in nodes:
            return ref
        # an explicit variant (onnx-int4 -> onnx); the longest matching base wins
        for base in sorted(nodes, key=len, reverse=True):
            if ref.startswith(base + "-"):
                return base
        return None

    # -- nodes ------------------------------------------------------------------
    def expand(self, base, n, expanded, models, datasets, defaults) -> list[NodeSpec]:
        where = ("nodes", base)
        refs = [n["input"]] if isinstance(n.get("input"), str) else list(n.get("input") or [])
        inputs_broken = any(self.ref_base(r, models) in self.broken - set(models) for r in refs)
        if base in self.broken:
            expanded[base] = []
            return []
        kind = n.get("kind", "olive")
        allowed = COMMON_FIELDS | KINDS_FIELDS[kind]
        for k in n:
            if k not in allowed:
                owner = next((kk for kk, f in KINDS_FIELDS.items() if k in f), None)
                self.problem(where + (k,), f"'{k}' does not apply to a node of kind '{kind}'",
                             f"'{k}' belongs to kind '{owner}' nodes" if owner else "")
        device = n.get("device", defaults.get("device", "cpu"))
        provider = n.get("provider", defaults.get("provider") if "device" not in n else None) or EXECUTION_PROVIDERS[device]
        if provider not in KNOWN_PROVIDERS:
            close = difflib.get_close_matches(provider, sorted(KNOWN_PROVIDERS), n=1)
            self.problem(where + ("provider",), f"unknown execution provider '{provider}'",
                         f"did you mean '{close[0]}'?" if close else "", value=True)
        pass_type = alias = None
        if kind == "olive":
            alias = n.get("pass")
            if alias is None:
                self.problem(where, f"node '{base}' has no `pass`", "e.g. `pass: lora` (or set `kind: generate|register`)")
                return []
            pass_type = self.catalog.resolve(alias)
            if pass_type is None:
                sugg = self.catalog.suggest(alias)
                self.problem(where + ("pass",), f"unknown pass '{alias}' (Olive {self.catalog.olive_version})",
                             f"did you mean {' or '.join(repr(s) for s in sugg)}?" if sugg else
                             "use an alias (lora, awq, gptq, rtn, model-builder, ...) or an Olive pass type", value=True)
                return []
            if isinstance(n.get("input"), list) and len(n["input"]) > 1:
                self.problem(where + ("input",), f"an Olive pass reads one model; '{base}' lists {len(n['input'])}",
                             "fan in with a `generate` or `register` node, or split into one node per input", value=True)
            data = n.get("data")
            if data is not None and data not in datasets:
                close = difflib.get_close_matches(data, list(datasets), n=1, cutoff=0.6)
                self.problem(where + ("data",), f"unknown dataset '{data}'",
                             f"did you mean '{close[0]}'?" if close else f"known datasets: {', '.join(datasets) or 'none'}", value=True)
            if data is not None and self.catalog.data_param(pass_type) is None:
                self.problem(where + ("data",), f"{pass_type} takes no data", "remove `data:`", value=True)
            if data is None and self.catalog.requires_data(pass_type):
                self.problem(where, f"{pass_type} needs data", "add `data: <dataset>`")
        elif kind == "generate" and "prompts" not in n:
            self.problem(where, "a generate node needs `prompts`", "e.g. `prompts: [\"what is the best thing to see in chicago\"]`")
        elif kind == "register":
            for k in ("name", "version"):
                if k not in n:
                    self.problem(where, f"a register node needs `{k}`", "e.g. `name: ft-for-travel` and `version: 1`")
        if kind == "generate" and isinstance(n.get("adapters"), list):
            for i, a in enumerate(n["adapters"]):  # read from the input model's folder: never outside it
                if isinstance(a, str) and (Path(a).is_absolute() or ".." in Path(a).parts):
                    self.problem(where + ("adapters", i), f"adapter '{a}' is outside the input model's folder",
                                 "name adapter files relative to that folder, e.g. adapter_weights.onnx_adapter", value=True)
        if inputs_broken:
            # upstream problems are reported already; still check this node's own params
            if pass_type:
                self.finish(NodeSpec(name=base, base=base, kind=kind, inputs=(), pass_type=pass_type, alias=alias,
                                     params={**(n.get("params") or {})}), where)
            return []
        # each input contributes its expanded variants; a node fans out along them
        choices = []
        for ref in refs:
            if ref in expanded:
                choices.append(expanded[ref])
            else:  # explicit variant name
                hits = [(v, nm) for v, nm in expanded.get(self.ref_base(ref, models), []) if nm == ref]
                if not hits:
                    self.problem(where + ("input",), f"no matrix variant named '{ref}'",
                                 f"variants: {', '.join(nm for _, nm in expanded.get(self.ref_base(ref, models), []))}", value=True)
                    return []
                choices.append([({}, ref)])  # a variant named explicitly adds no fan-out
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
        if kind == "olive" and pass_type and matrix:
            spec = self.catalog.params(pass_type)
            for k in matrix:
                if k in (n.get("params") or {}):
                    self.problem(where + ("matrix", k), f"'{k}' is set in both matrix and params", "keep it in one place")
                if k not in spec and not (k in self.catalog.training_args):
                    self.problem(where + ("matrix", k), f"matrix key '{k}' is not a parameter of {pass_type}", "matrix keys are pass parameters")
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
                suffix = variant_suffix(list(variant.values()))
                name = f"{base}-{suffix}" if variant else base
                params = dict(n.get("params") or {})
                params.update(mine)
                spec = NodeSpec(name=name, base=base, kind=kind, inputs=tuple(nm for _, nm in combo), pass_type=pass_type,
                                alias=alias, data=n.get("data"), params=params, device=device, provider=provider,
                                variant=variant, options={k: n[k] for k in KINDS_FIELDS[kind] - {"pass", "data", "params", "rehearse"} if k in n},
                                rehearse=n.get("rehearse"), description=n.get("description", ""))
                out.append(self.finish(spec, where))
        expanded[base] = [(s.variant, s.name) for s in out]
        return out

    def finish(self, spec: NodeSpec, where) -> NodeSpec:
        if spec.kind != "olive" or spec.pass_type is None:
            return spec
        params = self.catalog.normalize(spec.alias, spec.pass_type, spec.params)
        for issue in self.catalog.check(spec.pass_type, params):
            at = where + ("params",) + issue.path
            if issue.path and issue.path[0] in (spec.variant or {}):
                at = where + ("matrix", issue.path[0])
            elif issue.path and issue.path[0] == "training_args" and issue.path[1:] and issue.path[1] in self.data["nodes"][spec.base].get("params", {}):
                at = where + ("params", issue.path[1])
            self.problem(at, issue.message, issue.hint)
        if spec.rehearse and spec.rehearse.get("pass"):
            if self.catalog.resolve(spec.rehearse["pass"]) is None:
                self.problem(where + ("rehearse", "pass"), f"unknown pass '{spec.rehearse['pass']}'", "", value=True)
        return NodeSpec(**{**spec.__dict__, "params": params})


def _guess_arch(hf_id: str) -> str | None:
    low = hf_id.lower()
    for key, arch in (("phi-3", "phi3"), ("phi3", "phi3"), ("llama", "llama"), ("mistral", "llama")):
        if key in low:
            return arch
    return None
