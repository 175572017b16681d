"""A workflow opened for work: its resolved steps (steps.py), graph, store, executor, stat
cache, lock and folders: wiring and paths. A step's key record is steps.record_of, its job
Workspace.job; the kind-specific parts come from the step's kind through its StepView.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import kinds
from ..core import lock as lockfile
from ..spec.graph import Graph, build_graph
from ..core.hashing import StatCache, tree_digest
from ..core.job import Job, ModelFolder, StoredResult
from ..core.datasets import dataset_record
from ..spec.workflow import ModelSpec, Workflow, gc_paused, load_workflow
from ..spec.steps import Step, build_steps, record_of


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

    @property
    def catalog(self):
        return _catalog()

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

    def __post_init__(self):
        # every step resolved once, here: plan, scheduler and kinds read these, never names
        self.by_name: dict[str, Step] = build_steps(self.workflow, self.graph.order, rehearse=self.rehearse,
                                                    digest=self.stats.digest, catalog_of=_catalog)

    def step(self, name: str) -> Step:
        return self.by_name[name]

    def steps(self) -> list[str]:
        """Everything that produces a result, in order: tiny models, then nodes."""
        return list(self.by_name)

    def step_inputs(self, name: str) -> tuple[str, ...]:
        return self.by_name[name].inputs

    def produces(self, name: str) -> bool:
        """Whether ``name`` is a step with a stored result (vs. a hub or local model)."""
        return name in self.by_name

    def kind(self, name: str) -> str:
        return self.by_name[name].kind.name

    def spec_of(self, name: str):
        """The NodeSpec (or, for a tiny model, its ModelSpec) behind a step."""
        return self.by_name[name].spec

    def kind_of(self, name: str) -> kinds.NodeKind:
        return self.by_name[name].kind

    def device(self, name: str) -> str:
        return self.by_name[name].device

    def source_model(self, name: str) -> ModelSpec | None:
        """The `models:` entry a step descends from (first inputs up to a model)."""
        return self.by_name[name].view.source

    def label(self, name: str) -> str:
        return self.by_name[name].label

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
        return dataset_record(self.workflow.datasets[name], self._rel, self.stats.digest)

    def _rel(self, p: Path) -> str:
        return p.relative_to(self.workflow.root).as_posix()

    def placement(self, name: str) -> dict | None:
        """Where a step runs: None for this machine, else its `executor:` mapping."""
        return self.by_name[name].placement

    def environment(self, name: str) -> dict:
        """The environment identity that goes into a step's key: package versions where it runs
        (local and remote results never share a key by accident)."""
        step = self.by_name[name]
        return self.executor.environment(step.kind.package_names(step.view), step.placement)

    def record(self, name: str, input_digests: dict[str, str | None]) -> tuple[dict, bool]:
        """(record, complete). Incomplete when an upstream result is not known yet."""
        return record_of(self.by_name[name], input_digests, self.environment(name), self.source_input)

    # -- jobs ------------------------------------------------------------------------
    def job_inputs(self, name: str, results: dict) -> tuple[list[dict], dict]:
        """Inputs of a step as job data: ([{"name", "ref", "model"}], refs).

        Paths are placeholders ($IN0 for a stored result, $SRC0 for a local model folder),
        resolved where the job runs."""
        from ..olive.compile import model_source_config

        inputs, refs = [], {}
        for i, (inp, read) in enumerate(zip(self.step_inputs(name), self.by_name[name].reads)):
            if not isinstance(read, Step):  # a `models:` entry read directly
                m = read
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
        from ..core.errors import StoreError
        from ..olive.runtime import UntrustedModel, reader_model_config

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
        step = self.by_name[name]
        inputs, refs = self.job_inputs(name, results)
        spec = step.kind.job(step.view, inputs)
        refs.update(spec.pop("refs", {}))
        return Job(step=name, kind=step.kind.name, module=kinds.module_of(step.kind.name), device=step.device,
                   spec=spec, refs=refs, timeout_s=step.timeout_s, placement=step.placement, key=key, record=record,
                   replace=replace, offline=offline)

    def lock_nodes(self) -> dict:
        return lockfile.nodes(self.lock_path, self.lock_name)


def _catalog():
    """The Olive pass catalog, loaded on first use: a cached no-op never compiles, so never needs it.
    A function of no workspace: the steps' views hold it, and a lambda over the workspace would make
    every step part of a reference cycle only the cyclic GC frees."""
    from ..olive.catalog import load_catalog

    return load_catalog()


def default_cache_dir(workflow: Workflow) -> Path:
    env = os.environ.get("OLIVEPIPE_CACHE_DIR")
    return Path(env) if env else workflow.file.parent / ".olivepipe" / "cache"


@gc_paused
def open_workspace(path: str | Path, *, cache_dir: Path | None = None, rehearse: bool = False,
                   workflow: Workflow | None = None, executor=None, store=None,
                   read_only: bool = False, overrides=()) -> Workspace:
    """Open a workflow for plan/apply. ``read_only`` (plan, status, graph): nothing is written,
    not even the stat cache. ``executor``/``store`` default to the local ones. ``overrides``
    (`-S PATH=VALUE`, parsed by variants.parse): a variant of the file, its own lock section."""
    from ..run.executors.router import default_router
    from ..stores import open_store

    variant = None
    if overrides and workflow is None:
        from . import variants

        workflow, variant = variants.load(Path(path), overrides)
    # the executors first (building them reads nothing): rehearsal asks them what can run here
    folder = workflow.file.parent if workflow is not None else Path(os.path.realpath(os.fspath(path))).parent
    executor = executor or default_router(folder)
    wf = workflow or load_workflow(path, remember=not read_only)
    substitutions = {}
    if rehearse:
        from ..spec.rehearse import rehearsal

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
