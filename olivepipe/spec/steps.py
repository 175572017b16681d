"""The resolved, typed steps of an opened workflow: built once, handed to plan, scheduler and kinds.

A ``Step`` is everything that produces a stored result (every node, and each tiny model a node
reads), resolved when the workflow opens: its kind, its inputs (other steps, or the `models:`
entries it reads directly), device, placement and the ``StepView`` its kind may read. Nothing
downstream asks a name whether it is a model or a node again.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import kinds
from ..core.keys import RECORD_FORMAT
from ..kinds.base import NodeKind, StepView

TINY_KIND = "tiny-model"
LINEAGE = 2  # how many first inputs up a StepView's lineage reaches (an Olive pass looks two up)


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    kind: NodeKind
    spec: Any  # the NodeSpec, or a tiny model's ModelSpec
    inputs: tuple[str, ...]  # input names, in order
    reads: tuple[Any, ...]  # per input: its Step, or the ModelSpec of a `models:` entry read directly
    device: str
    placement: dict | None  # the node's `executor:` mapping (None: this machine)
    view: StepView
    is_node: bool  # a workflow node (a tiny model is a step, not a node)
    timeout_s: float | None = None  # the node's `timeout:`
    gpu_memory_gb: Any = None  # the node's `gpu_memory_gb:` as written (the scheduler parses it)
    after: tuple[str, ...] = ()  # the node's `after:`: steps it waits for without reading them

    @property
    def produced(self) -> tuple[str, ...]:
        """The inputs that are steps (have stored results), in order."""
        return tuple(r.name for r in self.reads if isinstance(r, Step))

    @property
    def label(self) -> str:
        return self.kind.label(self.spec)



def build_steps(workflow, order, *, rehearse: bool, digest: Callable[[Path], str],
                catalog_of: Callable[[], Any]) -> dict[str, Step]:
    """{name: Step} in run order: the tiny models some node reads, then the nodes (``order``)."""
    wf = workflow
    folder, root = wf.file.parent, wf.root
    read = {i for n in wf.nodes.values() for i in n.inputs}
    tiny = [m for m, spec in wf.models.items() if spec.source == "tiny" and m in read]
    steps: dict[str, Step] = {}

    def view(node, upstream=(), lineage=(), dataset=None, source=None, placement=None) -> StepView:
        return StepView(node, upstream, lineage, dataset, source, rehearse, folder, root, digest, catalog_of,
                        placement)

    for m in tiny:
        spec = wf.models[m]
        steps[m] = Step(m, kinds.get(TINY_KIND), spec, (), (), "cpu", None, view(spec, source=spec), False)
    for name in order:
        node = wf.nodes[name]
        reads = tuple(steps[i] if i in steps else wf.models[i] for i in node.inputs)
        # the first input's step is built already (run order): its source and lineage carry over,
        # so a chain of n nodes costs n, not n²
        first = node.inputs[0] if node.inputs else None
        if first is None:
            lineage, source = (), None
        elif first in wf.models:
            lineage, source = (), wf.models[first]
        else:
            up = steps[first]
            lineage, source = (up.spec,) + up.view.lineage[:LINEAGE - 1], up.view.source
        upstream = tuple(wf.nodes.get(i) for i in node.inputs)
        dataset = wf.datasets.get(node.data) if node.data else None
        steps[name] = Step(name, kinds.get(node.kind), node, node.inputs, reads, node.device, node.executor,
                           view(node, upstream, lineage, dataset, source, node.executor), True, node.timeout_s,
                           node.gpu_memory_gb, node.after)
    return steps


def warnings_of(step: Step) -> tuple[str, ...]:
    """What plan says to look at before running a node: models that run their own code or are
    not pinned to a revision, and its kind's own warnings."""
    if not step.is_node:
        return ()
    out = []
    for inp, m in zip(step.inputs, step.reads):
        if isinstance(m, Step):
            continue
        if m.trust_remote_code:
            out.append(f"TRUST_REMOTE_CODE: model '{inp}' runs its repository's own Python code")
        if m.source == "hf" and not m.revision:
            out.append(f"model '{inp}' ({m.hf}) is not pinned to a revision: the hub can change it under the cache")
    return (*out, *step.kind.warnings(step.view))


def record_of(step: Step, input_digests: dict, environment: dict, source_input: Callable[[Any], dict]) -> tuple[dict, bool]:
    """(record, complete): a step's canonical key record from its inputs' result digests, the
    environment identity where it runs and ``source_input(model)`` for the `models:` entries it
    reads directly. Incomplete when an upstream result is not known yet."""
    kind = step.kind
    if not step.is_node:
        return {"format": RECORD_FORMAT, "kind": kind.name, **kind.record(step.view), "packages": environment}, True
    inputs, complete = [], True
    for name, read in zip(step.inputs, step.reads):
        if isinstance(read, Step):
            d = input_digests.get(name)
            complete &= d is not None
            inputs.append({"digest": d})
        else:
            inputs.append(source_input(read))
    spec = step.spec
    rec = {"format": RECORD_FORMAT, "kind": kind.name, "inputs": inputs, "device": spec.device,
           "provider": spec.provider, "packages": environment, **kind.record(step.view)}
    return rec, complete


def job_of(step: Step, results: dict, *, tree: Callable[[Path], Any], rel: Callable[[Path], str], key: str = "",
           record: dict | None = None, replace: bool = False, offline: bool = True):
    """The typed job (``core/job.Job``) for a step; ``results`` maps its produced inputs to store
    entries, ``tree(folder)`` lists a local model folder's files with digests (the stat cache)
    and ``rel(path)`` names a path from the workspace root.

    No local paths: the node runtime resolves $OUT, $SCRATCH, $IN*, $SRC*, $DATA* and $CALIB
    where the job runs."""
    from ..core.job import Job

    inputs, refs = _job_inputs(step, results, tree, rel)
    spec = step.kind.job(step.view, inputs)
    refs.update(spec.pop("refs", {}))
    return Job(step=step.name, kind=step.kind.name, module=kinds.module_of(step.kind.name), device=step.device,
               spec=spec, refs=refs, timeout_s=step.timeout_s, placement=step.placement, key=key, record=record,
               replace=replace, offline=offline)


def _job_inputs(step: Step, results: dict, tree, rel) -> tuple[list[dict], dict]:
    """A step's inputs as job data: ([{"name", "ref", "model", "path"}], refs). Paths are
    placeholders ($IN0 for a stored result, $SRC0 for a local model folder, $ADP0 for an adapter)."""
    from ..core.hashing import tree_digest
    from ..core.job import ModelFolder, StoredResult
    from ..olive.compile import model_source_config

    inputs, refs = [], {}
    for i, (inp, read) in enumerate(zip(step.inputs, step.reads)):
        if not isinstance(read, Step):  # a `models:` entry read directly
            m = read
            adapter = None
            if m.adapter is not None:
                adapter = f"$ADP{i}"
                refs[adapter] = ModelFolder(rel(m.adapter), tree_digest(tree(m.adapter)))
            if m.source == "path":
                ph = f"$SRC{i}"
                refs[ph] = ModelFolder(rel(m.path), tree_digest(tree(m.path)))
                model = model_source_config(m, placeholder=ph, adapter=adapter)
            else:
                ph, model = None, model_source_config(m, adapter=adapter)
            inputs.append({"name": inp, "ref": ph, "model": model, "path": ph})
            continue
        entry = results[inp]
        ph = f"$IN{i}"
        refs[ph] = StoredResult(entry.key)
        inputs.append({"name": inp, "ref": ph, "model": _reader_model(read, entry, ph), "path": ph})
    return inputs, refs


def _reader_model(upstream: Step, entry, placeholder: str) -> dict | None:
    """How a job reads the stored result of the step ``upstream``: the entry's files, loaded the
    way this workflow says (the model that step descends from: its trust_remote_code and
    load_kwargs), never the way the entry's manifest says (another machine may have written it)."""
    from ..core.errors import StoreError
    from ..olive.runtime import UntrustedModel, reader_model_config

    if not entry.model:
        return None
    try:
        return reader_model_config(entry.model, placeholder, upstream.view.source)
    except UntrustedModel as e:
        raise StoreError(f"the cached result of '{upstream.name}' ({entry.key[:12]}) is not used: its model config {e}",
                         "a shared-cache writer published it; `olivepipe cache verify` lists such entries, "
                         f"`olivepipe apply --force {upstream.name}` rebuilds it") from None
