"""The node-kind seam: one protocol every kind satisfies, one module per kind.

A kind owns everything that differs between node kinds: the fields it adds to a
node (a JSON Schema fragment), its checks (with positions), the kind-specific part of
its key record, what it needs from the machine, the plain-data job it becomes, the
worker-side run of that job, and its rehearsal stand-in. The rest of olivepipe
(spec, plan, scheduler, executors, store) asks the kind and never branches on its name.

A kind sees two declared views and nothing else: ``CheckContext`` while a workflow is
validated, ``StepView`` (its node, inputs, dataset, source model, folders, digests) when
it is keyed, planned and turned into a job. Both are frozen and slotted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class Needs:
    """What a node needs from the place it runs; checked by the executor's preflight."""

    cuda: bool = False
    packages: tuple[str, ...] = ()
    note: str = ""  # why, shown when something is missing


@dataclass(frozen=True)
class Rehearsal:
    """What a node becomes under --rehearse: itself, a replacement, or bypassed."""

    node: Any = None  # the NodeSpec to run instead (None with bypass)
    bypass: bool = False
    note: str = ""  # said loudly in the plan


@dataclass(frozen=True, slots=True)
class StepView:
    """Everything a kind may read about its step: built once when the workflow opens
    (steps.py), handed to ``record``, ``needs``, ``package_names``, ``warnings``, ``preflight``
    and ``job``. Frozen and slotted, so a kind that reaches for anything else fails at once;
    kinds never see the Workspace."""

    node: Any  # the NodeSpec (a tiny model's ModelSpec)
    upstream: tuple = ()  # per input: its NodeSpec, or None for a `models:` entry
    lineage: tuple = ()  # the NodeSpecs up the first inputs, nearest first (at most two; none past a model)
    dataset: Any = None  # the DatasetSpec the node's `data:` names
    source: Any = None  # the `models:` entry it descends from (first inputs up to a model)
    rehearse: bool = False
    folder: Path | None = None  # the workflow file's folder (relative names in options are read from it)
    root: Path | None = None  # the workspace root: paths in jobs are relative to it
    digest: Callable[[Path], str] | None = field(default=None, compare=False)  # a file's content digest
    catalog_of: Callable[[], Any] | None = field(default=None, compare=False)  # the Olive pass catalog
    placement: dict | None = None  # where it runs: its `executor:` mapping (None: this machine)

    @property
    def catalog(self):
        return self.catalog_of()

    def rel(self, path: Path) -> str:
        """A workspace path as jobs and records name it: relative to the root."""
        return Path(path).relative_to(self.root).as_posix()

    def dataset_record(self) -> dict:
        """The dataset's part of a key record: its definition and its files' digests."""
        from ..core.datasets import dataset_record

        return dataset_record(self.dataset, self.rel, self.digest)

    def dataset_fields(self) -> dict:
        """The dataset's definition as plain data (for jobs: no paths)."""
        from ..core.datasets import dataset_fields

        return dataset_fields(self.dataset)

    def data_refs(self) -> dict:
        """Placeholders for the dataset's files: {"$DATA0": DataFile(rel, digest), ...}."""
        from ..core.job import DataFile

        return {f"$DATA{i}": DataFile(self.rel(p), self.digest(p)) for i, p in enumerate(self.dataset.files)}

    @classmethod
    def bare(cls, node) -> "StepView":
        """A node on its own, before the workflow around it is known (rehearsal planning)."""
        return cls(node)


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What a kind may use while a workflow is validated (spec/workflow.py builds it per node)."""

    problem: Callable  # (path, message, hint="", *, value=False): report a located problem
    catalog: Any  # the Olive pass catalog
    datasets: dict  # name -> DatasetSpec
    models: dict  # name -> ModelSpec
    built: dict  # node name -> NodeSpec, the nodes built so far (inputs come first)
    arch_of: Callable  # name -> the architecture a model or node holds (None if unknown)
    raw_nodes: dict  # the file's `nodes:` mapping as written
    ref_base: Callable  # (ref, models) -> the node or model a reference names (a variant's base), or None


@dataclass
class JobIO:
    """Where a job's placeholders landed on the machine that runs it (worker side)."""

    out: Path  # write the result here
    scratch: Path  # private temporary space
    log: Path
    refs: dict[str, Path] = field(default_factory=dict)  # placeholder -> local path


class NodeKind:
    """Base class with the defaults most kinds want; override what differs."""

    name: str = ""
    #: JSON Schema properties this kind adds to a node mapping
    fields: dict = {}
    #: fields copied verbatim into NodeSpec.options (and so into the key record)
    option_fields: tuple[str, ...] = ()
    #: packages whose versions shape the result (they go into the key record)
    packages: tuple[str, ...] = ()
    #: whether a node of this kind can be an input of another node (has a model)
    makes_model: bool = True
    #: whether its job carries an Olive workflow JSON (`spec["config"]`) that `olivepipe compile` shows
    compiles_to_olive: bool = False
    #: whether a node reads every variant of a matrix input at once (fan-in) instead of fanning out
    gathers: bool = False

    # -- spec time ------------------------------------------------------------------
    def check(self, ctx: CheckContext, base: str, raw: dict, where: tuple) -> dict | None:
        """Report problems through ``ctx.problem(path, message, hint, value=...)``.
        Returns NodeSpec field overrides (e.g. pass_type), or None if the node is unusable."""
        return {}

    def check_matrix(self, ctx: CheckContext, spec_fields: dict, raw: dict, where: tuple) -> None:
        matrix = raw.get("matrix") or {}
        if matrix:
            ctx.problem(where + ("matrix",), f"kind '{self.name}' nodes take no matrix", "remove `matrix:`")

    def refs(self, raw: dict) -> list[tuple[tuple, str]]:
        """Nodes this node names besides `input` that must finish before it, as (path in the
        node, name): ordering only (NodeSpec.after), never part of its key."""
        return []

    def options(self, raw: dict, description: str = "") -> dict:
        return {k: raw[k] for k in self.option_fields if k in raw}

    def finish(self, ctx: CheckContext, spec, where: tuple):
        """Normalize a built NodeSpec (e.g. drop params equal to defaults)."""
        return spec

    def label(self, node) -> str:
        return node.alias or self.name

    # -- records and plan (``step`` is the StepView: ``step.node`` is the node) ----
    def record(self, step: StepView) -> dict:
        """The kind-specific part of the key record (merged into the common fields)."""
        return {"options": dict(step.node.options)}

    def needs(self, step: StepView) -> Needs:
        """What it needs where it runs."""
        return Needs(packages=self.packages)

    def package_names(self, step: StepView) -> tuple[str, ...]:
        return self.packages

    def warnings(self, step: StepView) -> list[str]:
        return []

    def preflight(self, step: StepView, *, deep: bool) -> str | None:
        """A reason this node cannot run from here beyond packages and CUDA (None if fine).
        ``deep`` is False for plan (no network, no subprocess) and True right before apply."""
        return None

    def rehearse(self, node, catalog, can_run) -> Rehearsal:
        return Rehearsal(node=node)

    # -- execution ------------------------------------------------------------------
    def job(self, step: StepView, inputs: list[dict]) -> dict:
        """Plain, path-free job spec. ``inputs`` are {"name", "ref", "model"} with model configs
        whose paths start with the input's placeholder ref ($IN0, $SRC0, ...); typed references
        of its own (job.DataFile, job.TextDataset) go under "refs"."""
        return {"options": dict(step.node.options), "inputs": inputs, "node": step.node.name}

    def run(self, spec: dict, io: JobIO) -> dict:
        """Worker side: do the work, write into io.out, return {"model": cfg-or-None, ...}."""
        raise NotImplementedError

    def verdict(self, node, tree: Path, after: dict[str, Path]) -> str | None:
        """Orchestrator side, whenever a result is there (run or cached): why the node fails
        although its result exists (a missed goal), or None. ``after``: the result folders of
        ``node.after``. Judged on every apply, so changing a goal never re-runs the node."""
        return None

    def history(self, node, tree: Path) -> dict | None:
        """A record of a fresh result worth keeping after its cache entry is replaced
        (``--force``): an evaluation's numbers. None: nothing to keep."""
        return None

    def describe(self, result: dict | None) -> str | None:
        """One line for plan about a stored result's `result` metadata (a select node's winner)."""
        return None

    def output_format(self, node) -> str | None:
        """'onnx', 'hf' or None: what model type the result is, before it exists."""
        return None

    def memory(self, step: StepView, params: int) -> dict | None:
        """What the node needs in memory for a source model of ``params`` parameters:
        {"host_gib": (low, high), "gpu_gib": g, "source": why}, or None when unknown
        (olivepipe/kinds/resources.py turns it into plan's warning or block)."""
        return None
