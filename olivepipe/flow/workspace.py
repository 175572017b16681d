"""A workflow opened for work: its resolved steps (steps.py), graph, store, executor, stat
cache, lock and folders: wiring and paths. A step's key record and its job are pure functions
of the step (``spec/steps.record_of``, ``job_of``); the workspace hands them what it wires in
(the executor's environment identity, the stat cache, the workspace root).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core import lock as lockfile
from ..spec.graph import Graph, build_graph
from ..core.hashing import StatCache, tree_digest
from ..core.job import Job
from ..core.datasets import dataset_record
from ..spec.workflow import ModelSpec, Workflow, gc_paused, load_workflow
from ..spec.steps import Step, build_steps, job_of, record_of


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

    def environment(self, name: str) -> dict:
        """The environment identity that goes into a step's key: package versions where it runs
        (local and remote results never share a key by accident)."""
        step = self.by_name[name]
        return self.executor.environment(step.kind.package_names(step.view), step.placement)

    def record(self, name: str, input_digests: dict[str, str | None]) -> tuple[dict, bool]:
        """(record, complete). Incomplete when an upstream result is not known yet."""
        return record_of(self.by_name[name], input_digests, self.environment(name), self.source_input)

    # -- jobs ------------------------------------------------------------------------
    def job(self, name: str, results: dict, *, key: str = "", record: dict | None = None, replace: bool = False,
            offline: bool = True) -> Job:
        """The typed job for a step (``spec/steps.job_of``); ``results`` maps its produced inputs
        to store entries."""
        return job_of(self.by_name[name], results, tree=self.stats.tree, rel=self._rel, key=key, record=record,
                      replace=replace, offline=offline)

    def lock_nodes(self) -> dict:
        return lockfile.nodes(self.lock_path, self.lock_name)


def _catalog():
    """The Olive pass catalog, loaded on first use: a cached no-op never compiles, so never needs it.
    A function of no workspace: the steps' views hold it, and a lambda over the workspace would make
    every step part of a reference cycle only the cyclic GC frees."""
    from ..olive.catalog import load_catalog

    return load_catalog()


def _folder_of(path) -> Path | None:
    """The folder of the workflow file at ``path`` as load_workflow resolves it; None for a path
    no file can have (a NUL byte), which load_workflow then reports."""
    try:
        return Path(os.path.realpath(os.fsdecode(os.fspath(path)))).parent
    except ValueError:
        return None


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
    folder = workflow.file.parent if workflow is not None else _folder_of(path)
    executor = executor or default_router(folder)
    wf = workflow or load_workflow(path, remember=not read_only)
    substitutions = {}
    if rehearse:
        from ..spec.rehearse import rehearsal

        wf, substitutions = rehearsal(wf, executor.preflight)
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
