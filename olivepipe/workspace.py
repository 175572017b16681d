"""A workflow opened for work: its graph, store, stat cache, lock and folders.

Also the one place that turns a node plus its inputs' digests into a canonical
record (see keys.py), and a node plus its inputs' results into a worker job.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import lock as lockfile
from .graph import Graph, build_graph
from .hashing import StatCache, tree_digest
from .keys import RECORD_FORMAT
from .olive import compile as olive_compile
from .olive.catalog import Catalog, load_catalog
from .olive.runtime import packages_for, resolve_model_config
from .spec import ModelSpec, Workflow, load_workflow
from .store import Entry, Store

TINY_DEFAULTS = {"arch": "phi3", "layers": 2, "hidden": 64, "heads": 4, "vocab_size": 512, "seed": 0}
TINY_GENERATOR = 2  # bump when tinymodel.py changes what it builds


@dataclass
class Workspace:
    workflow: Workflow
    graph: Graph
    store: Store
    stats: StatCache
    dir: Path  # .olivepipe next to the workflow
    rehearse: bool = False
    substitutions: dict = field(default_factory=dict)  # rehearsal stand-ins: name -> what was replaced

    @property
    def catalog(self) -> Catalog:
        return load_catalog()  # lazily: a cached no-op never compiles, so never needs it

    @property
    def lock_path(self) -> Path:
        # rehearsals are private runs: their records never land in the committed lock
        if self.rehearse:
            return self.dir / "rehearsal.lock"
        return self.workflow.file.parent / "olivepipe.lock"

    @property
    def lock_name(self) -> str:
        """Section of the lock file; rehearsals never touch the real pipeline's records."""
        return self.workflow.name + ("@rehearsal" if self.rehearse else "")

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
        return "tiny-model" if name in self.workflow.models else self.workflow.nodes[name].kind

    # -- records -------------------------------------------------------------------
    def source_input(self, model: ModelSpec) -> dict:
        if model.source == "hf":
            return {"hf": model.hf, "revision": model.revision, "trust_remote_code": model.trust_remote_code}
        files = self.stats.tree(model.path)
        return {"local": True, "digest": tree_digest(files), "trust_remote_code": model.trust_remote_code}

    def dataset_record(self, name: str) -> dict:
        ds = self.workflow.datasets[name]
        rec = {k: v for k, v in ds.__dict__.items() if k not in ("name", "files") and v is not None}
        if ds.files:
            rec["files"] = {p.relative_to(self.workflow.root).as_posix(): self.stats.digest(p) for p in ds.files}
        return rec

    def record(self, name: str, input_digests: dict[str, str | None]) -> tuple[dict, bool]:
        """(record, complete). Incomplete when an upstream result is not known yet."""
        wf = self.workflow
        if name in wf.models:
            spec = wf.models[name]
            args = {**TINY_DEFAULTS, **(spec.tiny or {})}
            return {"format": RECORD_FORMAT, "kind": "tiny-model", "generator": TINY_GENERATOR, "args": args,
                    "packages": packages_for("tiny-model", None)}, True
        node = wf.nodes[name]
        inputs, complete = [], True
        for inp in node.inputs:
            if inp in wf.models and wf.models[inp].source != "tiny":
                inputs.append(self.source_input(wf.models[inp]))
            else:
                d = input_digests.get(inp)
                complete &= d is not None
                inputs.append({"digest": d})
        rec = {"format": RECORD_FORMAT, "kind": node.kind, "inputs": inputs, "device": node.device,
               "provider": node.provider, "packages": packages_for(node.kind, node.pass_type)}
        if node.kind == "olive":
            rec["pass"] = node.pass_type
            rec["params"] = node.params
            if node.data:
                rec["data"] = self.dataset_record(node.data)
        else:
            rec["options"] = {k: v for k, v in node.options.items()}
        return rec, complete

    # -- jobs ------------------------------------------------------------------------
    def input_model(self, name: str, results: dict[str, Entry]) -> dict:
        wf = self.workflow
        if name in wf.models and wf.models[name].source != "tiny":
            return olive_compile.model_source_config(wf.models[name])
        entry = results[name]
        cfg = resolve_model_config(entry.model, entry.tree)
        # Olive writes `"load_kwargs": null` and then crashes reading it back with a dataset
        cfg["config"] = {k: v for k, v in cfg.get("config", {}).items() if v is not None}
        return cfg

    def job(self, name: str, results: dict[str, Entry], output_dir: Path, scratch: Path) -> dict:
        """The worker job for a step; ``results`` holds the entries of its inputs."""
        log = str(self.log_path(name))
        if name in self.workflow.models:
            spec = self.workflow.models[name]
            return {"kind": "tiny-model", "log": log, "output_dir": str(output_dir),
                    "args": {**TINY_DEFAULTS, **(spec.tiny or {})}}
        node = self.workflow.nodes[name]
        if node.kind == "olive":
            return {"kind": "olive", "log": log, "config": self.compile(name, results, output_dir, scratch)}
        inputs = [{"name": i, "model": self.input_model(i, results),
                   "path": str(results[i].tree) if i in results else None} for i in node.inputs]
        return {"kind": node.kind, "log": log, "output_dir": str(output_dir), "inputs": inputs,
                "options": node.options, "node": name, "rehearse": self.rehearse}

    def compile(self, name: str, results: dict[str, Entry], output_dir: Path, scratch: Path) -> dict:
        node = self.workflow.nodes[name]
        (inp,) = node.inputs[:1] or (None,)
        dataset = self.workflow.datasets[node.data] if node.data else None
        calib = None
        if dataset is not None and node.pass_type == "AutoAWQQuantizer":
            from .datasets import materialize_text_dataset

            calib = materialize_text_dataset(self, node.data)
        return olive_compile.compile_node(node, self.input_model(inp, results), self.catalog, dataset=dataset,
                                          output_dir=str(output_dir), cache_dir=str(scratch / "olive-cache"),
                                          calibration_folder=calib)

    def lock_nodes(self) -> dict:
        return lockfile.nodes(self.lock_path, self.lock_name)


def default_cache_dir(workflow: Workflow) -> Path:
    env = os.environ.get("OLIVEPIPE_CACHE_DIR")
    return Path(env) if env else workflow.file.parent / ".olivepipe" / "cache"


def open_workspace(path: str | Path, *, cache_dir: Path | None = None, rehearse: bool = False,
                   workflow: Workflow | None = None) -> Workspace:
    wf = workflow or load_workflow(path)
    substitutions = {}
    if rehearse:
        from .rehearse import rehearsal

        wf, substitutions = rehearsal(wf)
    d = wf.file.parent / ".olivepipe"
    store = Store(Path(cache_dir) if cache_dir else default_cache_dir(wf))
    stats = StatCache(d / "state.db" if os.access(wf.file.parent, os.W_OK) else None)
    return Workspace(wf, build_graph(wf), store, stats, d, rehearse, substitutions)



