"""A workflow opened for work: its graph, store, executor, stat cache, lock and folders.

Also the one place that turns a step plus its inputs' digests into a canonical record
(see keys.py), and a step into a plain-data job (see kinds/). The kind-specific parts of
both come from the step's kind; this module never branches on a kind's name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import kinds
from . import lock as lockfile
from .graph import Graph, build_graph
from .hashing import StatCache, tree_digest
from .job import DataFile, Job, ModelFolder, StoredResult
from .keys import RECORD_FORMAT
from .spec import ModelSpec, Workflow, load_workflow

TINY_KIND = "tiny-model"


@dataclass
class Workspace:
    workflow: Workflow
    graph: Graph
    store: object  # a stores.base.Store
    stats: StatCache
    dir: Path  # .olivepipe next to the workflow
    rehearse: bool = False
    substitutions: dict = field(default_factory=dict)  # rehearsal stand-ins: name -> what was replaced
    executor: object = None  # an executors.base.Executor; the local one unless told otherwise
    read_only: bool = False  # plan/status/graph: nothing may be written
    variant: object = None  # a variants.Variant: the committed file with -S overrides
    _sources: dict = field(default_factory=dict, repr=False, compare=False)  # source_model's memo

    @property
    def catalog(self):
        from .olive.catalog import load_catalog  # lazily: a cached no-op never compiles, so never needs it

        return load_catalog()

    @property
    def lock_path(self) -> Path:
        # rehearsals are private runs: their records never land in the committed lock
        if self.rehearse:
            return self.dir / "rehearsal.lock"
        if self.variant is not None:  # beside the committed lock, never in it
            return self.dir / "variants.lock"
        return self.workflow.file.parent / "olivepipe.lock"

    @property
    def lock_name(self) -> str:
        """Section of the lock file; rehearsals and variants never touch the real pipeline's records."""
        return (self.workflow.name + (f"@{self.variant.name}" if self.variant is not None else "")
                + ("@rehearsal" if self.rehearse else ""))

    @property
    def outputs(self) -> Path:
        return self.workflow.file.parent / "outputs" / self.lock_name

    @property
    def logs(self) -> Path:
        return self.dir / "logs" / self.lock_name

    def log_path(self, step: str) -> Path:
        return self.logs / f"{step}.log"

    def steps(self) -> list[str]:
        """Everything that produces a result, in order: tiny models, then nodes."""
        tiny = [m for m, spec in self.workflow.models.items() if spec.source == "tiny" and self.graph.out_degree(m)]
        return tiny + self.graph.order

    def step_inputs(self, name: str) -> tuple[str, ...]:
        return () if name in self.workflow.models else self.workflow.nodes[name].inputs

    def produces(self, name: str) -> bool:
        """Whether ``name`` is a step with a stored result (vs. a hub or local model)."""
        return name in self.workflow.nodes or self.workflow.models[name].source == "tiny"

    def kind(self, name: str) -> str:
        return TINY_KIND if name in self.workflow.models else self.workflow.nodes[name].kind

    def spec_of(self, name: str):
        """The NodeSpec (or, for a tiny model, its ModelSpec) behind a step."""
        return self.workflow.models[name] if name in self.workflow.models else self.workflow.nodes[name]

    def kind_of(self, name: str) -> kinds.NodeKind:
        return kinds.get(self.kind(name))

    def device(self, name: str) -> str:
        return "cpu" if name in self.workflow.models else self.workflow.nodes[name].device

    def source_model(self, name: str) -> ModelSpec | None:
        """The `models:` entry a step descends from (first inputs up to a model). Remembered for
        every step on the way: plan asks it of every node, and a chain of n nodes would
        otherwise cost n²/2 steps (500 s at 10,000 nodes)."""
        wf, seen, found = self.workflow, [], None
        for _ in range(len(wf.nodes) + 1):
            if name in self._sources:
                found = self._sources[name]
                break
            if name in wf.models:
                found = wf.models[name]
                break
            seen.append(name)
            node = wf.nodes.get(name)
            if node is None or not node.inputs:
                break
            name = node.inputs[0]
        for n in seen:
            self._sources[n] = found
        return found

    def label(self, name: str) -> str:
        return self.kind_of(name).label(self.spec_of(name))

    # -- records -------------------------------------------------------------------
    def source_input(self, model: ModelSpec) -> dict:
        if model.source == "hf":
            rec = {"hf": model.hf, "revision": model.revision, "trust_remote_code": model.trust_remote_code}
        else:
            files = self.stats.tree(model.path)
            rec = {"local": True, "digest": tree_digest(files), "trust_remote_code": model.trust_remote_code}
        if model.load_kwargs:
            rec["load_kwargs"] = model.load_kwargs
        if model.adapter is not None:  # the adapter's content, like the model's
            rec["adapter"] = tree_digest(self.stats.tree(model.adapter))
        return rec

    def dataset_record(self, name: str) -> dict:
        ds = self.workflow.datasets[name]
        rec = {k: v for k, v in ds.__dict__.items() if k not in ("name", "files") and v is not None}
        if ds.files:
            rec["files"] = {self._rel(p): self.stats.digest(p) for p in ds.files}
        return rec

    def dataset_fields(self, name: str) -> dict:
        """A dataset's definition as plain data (for jobs: no paths)."""
        ds = self.workflow.datasets[name]
        return {k: v for k, v in ds.__dict__.items() if k != "files"}

    def data_refs(self, name: str) -> dict:
        """Placeholders for a dataset's files: {"$DATA0": DataFile(rel, digest), ...}."""
        ds = self.workflow.datasets[name]
        return {f"$DATA{i}": DataFile(self._rel(p), self.stats.digest(p)) for i, p in enumerate(ds.files)}

    def _rel(self, p: Path) -> str:
        return p.relative_to(self.workflow.root).as_posix()

    def placement(self, name: str) -> dict | None:
        """Where a step runs: None for this machine, else its `executor:` mapping."""
        return getattr(self.spec_of(name), "executor", None)

    def environment(self, name: str) -> dict:
        """The environment identity that goes into a step's key: package versions where it runs
        (local and remote results never share a key by accident)."""
        kind, where = self.kind_of(name), self.placement(name)
        packages = kind.package_names(self.spec_of(name), self)
        return self.executor.environment(packages, where)

    def preflight(self, name: str):
        """Can this step run where it is placed? (executor's check of the kind's needs)"""
        kind, where, spec = self.kind_of(name), self.placement(name), self.spec_of(name)
        needs, device = kind.needs(spec, self), self.device(name)
        return self.executor.preflight(needs, device, where)

    def record(self, name: str, input_digests: dict[str, str | None]) -> tuple[dict, bool]:
        """(record, complete). Incomplete when an upstream result is not known yet."""
        wf = self.workflow
        kind = self.kind_of(name)
        spec = self.spec_of(name)
        if name in wf.models:
            rec = {"format": RECORD_FORMAT, "kind": kind.name, **kind.record(self, spec),
                   "packages": self.environment(name)}
            return rec, True
        inputs, complete = [], True
        for inp in spec.inputs:
            if inp in wf.models and wf.models[inp].source != "tiny":
                inputs.append(self.source_input(wf.models[inp]))
            else:
                d = input_digests.get(inp)
                complete &= d is not None
                inputs.append({"digest": d})
        rec = {"format": RECORD_FORMAT, "kind": kind.name, "inputs": inputs, "device": spec.device,
               "provider": spec.provider, "packages": self.environment(name), **kind.record(self, spec)}
        return rec, complete

    # -- jobs ------------------------------------------------------------------------
    def job_inputs(self, name: str, results: dict) -> tuple[list[dict], dict]:
        """Inputs of a step as job data: ([{"name", "ref", "model"}], refs).

        Paths are placeholders ($IN0 for a stored result, $SRC0 for a local model folder),
        resolved where the job runs."""
        from .olive.compile import model_source_config

        wf = self.workflow
        inputs, refs = [], {}
        for i, inp in enumerate(self.step_inputs(name)):
            if inp in wf.models and wf.models[inp].source != "tiny":
                m = wf.models[inp]
                adapter = None
                if m.adapter is not None:
                    adapter = f"$ADP{i}"
                    refs[adapter] = ModelFolder(self._rel(m.adapter), tree_digest(self.stats.tree(m.adapter)))
                if m.source == "path":
                    ph = f"$SRC{i}"
                    refs[ph] = ModelFolder(self._rel(m.path), tree_digest(self.stats.tree(m.path)))
                    model = model_source_config(m, placeholder=ph, adapter=adapter)
                else:
                    ph, model = None, model_source_config(m, adapter=adapter)
                inputs.append({"name": inp, "ref": ph, "model": model, "path": ph})
                continue
            entry = results[inp]
            ph = f"$IN{i}"
            refs[ph] = StoredResult(entry.key)
            model = self.reader_model(inp, entry, ph)
            inputs.append({"name": inp, "ref": ph, "model": model, "path": ph})
        return inputs, refs

    def reader_model(self, name: str, entry, placeholder: str) -> dict | None:
        """How a job reads the stored result of step ``name``: the entry's files, loaded the way
        this workflow says (its model's trust_remote_code and load_kwargs), never the way the
        entry's manifest says (another machine may have written it)."""
        from .errors import StoreError
        from .olive.runtime import UntrustedModel, reader_model_config

        if not entry.model:
            return None
        try:
            return reader_model_config(entry.model, placeholder, self.source_model(name))
        except UntrustedModel as e:
            raise StoreError(f"the cached result of '{name}' ({entry.key[:12]}) is not used: its model config {e}",
                             "a shared-cache writer published it; `olivepipe cache verify` lists such entries, "
                             f"`olivepipe apply --force {name}` rebuilds it") from None

    def job(self, name: str, results: dict, *, key: str = "", record: dict | None = None, replace: bool = False,
            offline: bool = True) -> Job:
        """The typed job for a step; ``results`` maps its produced inputs to store entries.

        No local paths: the node runtime resolves $OUT, $SCRATCH, $IN*, $SRC*, $DATA* and $CALIB
        where the job runs."""
        kind = self.kind_of(name)
        inputs, refs = self.job_inputs(name, results)
        spec = kind.job(self, self.spec_of(name), inputs)
        refs.update(spec.pop("refs", {}))
        return Job(step=name, kind=kind.name, module=kinds.module_of(kind.name), device=self.device(name), spec=spec,
                   refs=refs, timeout_s=getattr(self.spec_of(name), "timeout_s", None),
                   placement=self.placement(name), key=key, record=record, replace=replace, offline=offline)

    def lock_nodes(self) -> dict:
        return lockfile.nodes(self.lock_path, self.lock_name)

    def reference_nodes(self) -> dict:
        """What plan compares with: a variant's own last results, else the committed file's
        (so its plan says what the overrides change)."""
        own = self.lock_nodes()
        if self.variant is None or self.rehearse:
            return own
        return {**lockfile.nodes(self.workflow.file.parent / "olivepipe.lock", self.workflow.name), **own}


def _azureml_executor(folder: Path | None = None):
    """The Azure ML executor, when its module and azure-ai-ml are installed (the `azure` extra).
    ``folder``: the workflow's folder: its `.olivepipe/config.yaml` names the remote cache jobs
    publish into, and an Azure ML config.json is searched from there (as the register node does)."""
    try:
        from .executors.azureml import AzureMLExecutor
    except ImportError:
        return None
    return AzureMLExecutor(workspace_dir=folder, start_dir=folder)


def _ray_executor(folder: Path | None = None):
    """The Ray executor (its module needs no Ray; preflight says when ray is not installed).
    ``folder``: the workflow's folder, whose `.olivepipe/config.yaml` may name the shared cache."""
    from .executors.raycluster import RayExecutor

    return RayExecutor(workspace_dir=folder)


def default_cache_dir(workflow: Workflow) -> Path:
    env = os.environ.get("OLIVEPIPE_CACHE_DIR")
    return Path(env) if env else workflow.file.parent / ".olivepipe" / "cache"


def open_workspace(path: str | Path, *, cache_dir: Path | None = None, rehearse: bool = False,
                   workflow: Workflow | None = None, executor=None, store=None,
                   read_only: bool = False, overrides=()) -> Workspace:
    """Open a workflow for plan/apply. ``read_only`` (plan, status, graph): nothing is written,
    not even the stat cache. ``executor``/``store`` default to the local ones. ``overrides``
    (`-S PATH=VALUE`, parsed by variants.parse): a variant of the file, its own lock section."""
    from .executors.local import LocalExecutor
    from .executors.router import Router
    from .stores import open_store

    variant = None
    if overrides and workflow is None:
        from . import variants

        workflow, variant = variants.load(Path(path), overrides)
    wf = workflow or load_workflow(path, remember=not read_only)
    executor = executor or Router(LocalExecutor(), {"azureml": lambda: _azureml_executor(wf.file.parent),
                                                     "ray": lambda: _ray_executor(wf.file.parent)})
    substitutions = {}
    if rehearse:
        from .rehearse import rehearsal

        wf, substitutions = rehearsal(wf, executor.can_run)
    d = wf.file.parent / ".olivepipe"
    # relative paths are resolved here: workers run in other folders
    root = Path(os.path.abspath(cache_dir or default_cache_dir(wf)))
    # the default cache sits in the workspace: created confined, so a committed link is refused
    inside = root.is_relative_to(wf.file.parent)
    store = store or open_store(root, base=wf.file.parent if inside else None, workspace=wf.file.parent)
    writable = not read_only and os.access(wf.file.parent, os.W_OK)
    stats = StatCache(d / "state.db", read_only=not writable, base=wf.file.parent)
    return Workspace(wf, build_graph(wf), store, stats, d, rehearse, substitutions, executor, read_only,
                     variant=variant)
