"""Rehearsal: the same DAG on a CPU in minutes, before spending GPU hours.

Every hub model becomes a tiny random model of the same architecture. A node that
cannot run on this machine (AWQ without CUDA) gets its documented stand-in: the
node's own `rehearse:` block if it has one, else the table below. A bypassed node
does not run: its consumers read its input instead, and the plan says so loudly.
"""
from __future__ import annotations

from dataclasses import replace

from .envcheck import check_node
from .errors import OlivepipeError
from .olive.catalog import EXECUTION_PROVIDERS, load_catalog
from .spec import ModelSpec, NodeSpec, Workflow

# Tiny stand-in for hub models: big enough that AWQ's 128-wide groups divide every
# projection (hidden 256, intermediate 512), small enough for CPU seconds.
TINY_FOR_HUB = {"layers": 2, "hidden": 256, "heads": 4, "intermediate": 512, "vocab_size": 512, "seed": 0}

# What a CPU-incapable pass becomes under --rehearse. "bypass": its consumers read
# its input. Olive's CPU quantizers (rtn, gptq) produce QuantLinear layers that LoRA
# cannot train on, so a quantizer in front of LoRA is bypassed rather than swapped.
STAND_INS = {
    "AutoAWQQuantizer": {"bypass": True, "why": "AWQ kernels need CUDA; the int4 step downstream still runs"},
    "GptqQuantizer": {"bypass": True, "why": "auto-gptq needs CUDA"},
    "QLoRA": {"pass": "LoRA", "why": "bitsandbytes 4-bit training needs CUDA; LoRA trains the same adapter shape"},
}


def rehearsal(wf: Workflow) -> tuple[Workflow, dict[str, str]]:
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
        notes[name] = f"{m.hf or m.path} replaced by a tiny random {arch} model"
    catalog = load_catalog()
    nodes: dict[str, NodeSpec] = {}
    bypass: dict[str, tuple[str, ...]] = {}
    for name, n in wf.nodes.items():
        n = replace(n, inputs=tuple(i for inp in n.inputs for i in bypass.get(inp, (inp,))))
        if n.kind != "olive" or check_node(n.kind, n.pass_type, n.device).ok:
            nodes[name] = n
            continue
        if not n.rehearse and check_node(n.kind, n.pass_type, "cpu").ok:
            nodes[name] = replace(n, device="cpu", provider=EXECUTION_PROVIDERS["cpu"])
            notes[name] = f"{n.alias} runs on cpu instead of {n.device}"
            continue
        stand = dict(n.rehearse or STAND_INS.get(n.pass_type) or {})
        device = stand.get("device", "cpu")
        if stand.get("bypass"):
            bypass[name] = n.inputs
            notes[name] = f"{n.alias} is bypassed ({stand.get('why', 'cannot run here')}): its consumers read {', '.join(n.inputs)}"
            continue
        if not stand.get("pass"):
            # no stand-in: the plan shows it blocked, with what this machine lacks
            nodes[name] = n
            continue
        pass_type = catalog.resolve(stand["pass"])
        params = catalog.normalize(stand["pass"], pass_type, {**n.params, **stand.get("params", {})}) \
            if "params" not in stand else catalog.normalize(stand["pass"], pass_type, stand["params"])
        params = {k: v for k, v in params.items() if k in catalog.params(pass_type)}
        nodes[name] = replace(n, pass_type=pass_type, alias=stand["pass"], params=params, device=device,
                              provider=EXECUTION_PROVIDERS[device])
        notes[name] = f"{n.alias} runs as {stand['pass']} on {device} ({stand.get('why', 'stand-in')})"
    for name, n in nodes.items():
        if n.kind == "register":
            notes.setdefault(name, "nothing is sent to Azure: an offline registration record is written")
    return replace(wf, models=models, nodes=nodes), notes
