"""Rehearsal: the same DAG on a CPU in minutes, before spending GPU hours.

Every hub model becomes a tiny random model of the same architecture. A node that
cannot run on this machine (AWQ without CUDA) gets its documented stand-in: the
node's own `rehearse:` block if it has one, else the table below. A bypassed node
does not run: its consumers read its input instead, and the plan says so loudly.
"""
from __future__ import annotations

from dataclasses import replace

from .. import kinds
from ..kinds.base import StepView
from ..core.errors import OlivepipeError
from ..olive.catalog import load_catalog
from .workflow import ModelSpec, NodeSpec, Workflow

# Tiny stand-in for hub models: big enough that AWQ's 128-wide groups divide every
# projection (hidden 256, intermediate 512), small enough for CPU seconds.
REHEARSAL_SEQ_LEN = 128
TINY_FOR_HUB = {"layers": 2, "hidden": 256, "heads": 4, "intermediate": 512, "vocab_size": 512, "seed": 0}


def rehearsal(wf: Workflow, preflight) -> tuple[Workflow, dict[str, str]]:
    """``preflight(needs, device)``: the executor's check of whether this machine can run such a node."""
    notes: dict[str, str] = {}
    models = {}
    for name, m in wf.models.items():
        if m.source == "tiny":
            models[name] = m
            continue
        arch = (m.rehearse or {}).get("arch") or m.arch
        if not arch:
            raise OlivepipeError(f"model '{name}' has no architecture for its tiny stand-in",
                                 f"add `arch: phi3` (or llama) to models.{name}")
        tiny = {**TINY_FOR_HUB, **(m.rehearse or {}), "arch": arch}
        models[name] = ModelSpec(name, "tiny", tiny=tiny, arch=arch)
        notes[name] = f"{m.hf or m.path} replaced by a tiny random {arch} model" + \
            (f"; its adapter {m.adapter.name} does not fit it and is left out" if m.adapter else "")
    catalog = load_catalog()
    nodes: dict[str, NodeSpec] = {}
    bypass: dict[str, tuple[str, ...]] = {}

    def can_run(node, device) -> bool:  # by this machine's own capabilities
        return preflight(kinds.get(node.kind).needs(StepView.bare(node)), device).ok

    for name, n in wf.nodes.items():
        n = replace(n, inputs=tuple(i for inp in n.inputs for i in bypass.get(inp, (inp,))))
        if n.executor:  # a rehearsal is this machine's: nothing is sent to a remote compute
            notes[f"{name} placement"] = f"runs here instead of {next(iter(n.executor))}"
            n = replace(n, executor=None)
        r = kinds.get(n.kind).rehearse(n, catalog, can_run)
        if r.bypass:
            bypass[name] = n.inputs
        else:
            nodes[name] = r.node
        if r.note:
            notes[name] = r.note
    datasets = {}
    for name, ds in wf.datasets.items():  # sequence length dominates CPU training time
        if ds.max_seq_len and ds.max_seq_len > REHEARSAL_SEQ_LEN:
            datasets[name] = replace(ds, max_seq_len=REHEARSAL_SEQ_LEN)
            notes[f"dataset {name}"] = f"sequences cut to {REHEARSAL_SEQ_LEN} tokens (was {ds.max_seq_len})"
        else:
            datasets[name] = ds
    return replace(wf, models=models, nodes=nodes, datasets=datasets), notes
