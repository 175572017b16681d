"""Node kind `olive`: one Olive pass, run through Olive itself as a one-pass workflow JSON.

Everything Olive-specific (pass catalog, config shape, runner, stack quirks) lives in
olivepipe/olive/; this module adapts it to the node-kind protocol.
"""
from __future__ import annotations

import difflib
import functools
from dataclasses import replace

from ..olive import passes
from ..olive.passes import OUTPUT_LOCATION_PARAMS
from .resources import estimate_warnings, memory_problem
from .base import Needs, NodeKind, Rehearsal

_str = {"type": "string", "minLength": 1}
_ref = {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"}  # as schema.NAME

REHEARSAL_STEPS = 4  # training steps under --rehearse

_OUTPUT_LOCATIONS = tuple(sorted(OUTPUT_LOCATION_PARAMS))  # the order problems are reported in


class OlivePass(NodeKind):
    name = "olive"
    compiles_to_olive = True
    fields = {
        "pass": {**_str, "description": "Olive pass type (e.g. LoRA) or alias (lora, awq, gptq, rtn, model-builder, ...)."},
        "data": _ref,
        "params": {"type": "object", "description": "Pass parameters, checked against Olive's own pass config."},
        "rehearse": {"type": "object", "additionalProperties": False,
                     "properties": {"pass": _str, "params": {"type": "object"}, "device": {"enum": ["cpu", "gpu", "npu"]},
                                    "bypass": {"type": "boolean"}, "why": {"type": "string"}},
                     "description": "Stand-in used by --rehearse when this node cannot run on a CPU."},
    }

    # -- spec time ------------------------------------------------------------------
    def check(self, ctx, base, n, where):
        alias = n.get("pass")
        if alias is None:
            ctx.problem(where, f"node '{base}' has no `pass`", "e.g. `pass: lora` (or set `kind: generate|register`)")
            return None
        catalog = ctx.catalog
        pass_type = catalog.resolve(alias)
        if pass_type is None:
            sugg = catalog.suggest(alias)
            ctx.problem(where + ("pass",), f"unknown pass '{alias}' (Olive {catalog.olive_version})",
                        f"did you mean {' or '.join(repr(s) for s in sugg)}?" if sugg else
                        "use an alias (lora, awq, gptq, rtn, model-builder, ...) or an Olive pass type", value=True)
            return None
        if isinstance(n.get("input"), list) and len(n["input"]) > 1:
            ctx.problem(where + ("input",), f"an Olive pass reads one model; '{base}' lists {len(n['input'])}",
                        "fan in with a `generate` or `register` node, or split into one node per input", value=True)
        data = n.get("data")
        datasets = ctx.datasets
        if data is not None and data not in datasets:
            # capped: a file of thousands of bad references must not make validation quadratic
            close = difflib.get_close_matches(data, list(datasets), n=1, cutoff=0.6) if len(datasets) <= 200 else []
            ctx.problem(where + ("data",), f"unknown dataset '{data}'",
                        f"did you mean '{close[0]}'?" if close else
                        f"known datasets: {', '.join(list(datasets)[:10]) or 'none'}", value=True)
        if data is not None and catalog.data_param(pass_type) is None:
            ctx.problem(where + ("data",), f"{pass_type} takes no data", "remove `data:`", value=True)
        if data is None and catalog.requires_data(pass_type):
            ctx.problem(where, f"{pass_type} needs data", "add `data: <dataset>`")
        return {"pass_type": pass_type, "alias": alias, "data": data}

    def check_matrix(self, ctx, fields, n, where):
        matrix = n.get("matrix") or {}
        pass_type = fields.get("pass_type")
        if not (pass_type and matrix):
            return
        spec = ctx.catalog.params(pass_type)
        for k in matrix:
            if k in (n.get("params") or {}):
                ctx.problem(where + ("matrix", k), f"'{k}' is set in both matrix and params", "keep it in one place")
            if k not in spec and k not in ctx.catalog.training_args:
                ctx.problem(where + ("matrix", k), f"matrix key '{k}' is not a parameter of {pass_type}",
                            "matrix keys are pass parameters")

    def options(self, raw, description=""):
        return {}

    def finish(self, ctx, spec, where):
        if spec.pass_type is None:
            return spec
        catalog = ctx.catalog
        params = catalog.normalize(spec.alias, spec.pass_type, spec.params, spec.device)
        own = ctx.raw_nodes[spec.base].get("params") or {}
        for issue in catalog.check(spec.pass_type, params):
            at = where + ("params",) + issue.path
            if issue.path and issue.path[0] in (spec.variant or {}):
                at = where + ("matrix", issue.path[0])
            elif issue.path and issue.path[0] == "training_args" and issue.path[1:] and issue.path[1] in own:
                at = where + ("params", issue.path[1])
            ctx.problem(at, issue.message, issue.hint)
        for path in _OUTPUT_LOCATIONS:
            if _dig(params, path) is not None:
                at = where + ("params",) + ((path[-1],) if path[-1] in own else path)
                ctx.problem(at, f"'{'.'.join(path)}' names where {spec.pass_type} writes; olivepipe decides that",
                            "remove it: results go to the node's own folder in the cache (see `olivepipe show`)")
        for path, value in _numbers_and_keys(params):
            key = path[-1]
            at = where + ("params",) + ((key,) if key in own else path)
            if key in (spec.variant or {}):
                at = where + ("matrix", key)
            bad = passes.number_range_problem(key, value)
            if bad:
                ctx.problem(at, bad[0], bad[1], value=True)
            if path[0] == "training_args" and len(path) == 2 and value not in (None, False, "", [], {}) and (
                    key in passes.OUTSIDE_TRAINING_ARGS or key.endswith(passes.OUTSIDE_SUFFIXES)) \
                    and path not in OUTPUT_LOCATION_PARAMS:
                why = passes.OUTSIDE_TRAINING_ARGS.get(key, "names a place on disk")
                ctx.problem(at, f"training argument '{key}' {why}; olivepipe decides what a node reads and writes",
                            "remove it: a node reads only its inputs and writes only its own result")
        if _dig(params, ("extra_options", "adapter_path")) is not None:
            at = where + ("params", "extra_options", "adapter_path") if "extra_options" in own else where + ("params",)
            ctx.problem(at, "an adapter given as a path in params is outside the node's key (a new adapter would "
                        "not rebuild it)", "take it from the input: read a LoRA node's result, a `kind: dequantize` "
                        "node that carries it, or a model with `adapter:`")
        for (pt, key, value), (why, hint) in passes.REFUSED_VALUES.items():
            if pt == spec.pass_type and params.get(key) == value:
                at = where + (("matrix", key) if key in (spec.variant or {}) else ("params", key))
                ctx.problem(at, f"{key}: {value} validates in Olive but fails when {pt} runs: {why}", hint)
        broken = passes.BROKEN_FOR_ARCH.get(spec.pass_type)
        arch = ctx.arch_of(spec.inputs[0]) if broken and spec.inputs else None
        if broken and arch in broken[0]:
            ctx.problem(where + ("pass",), f"{broken[1]}; this node reads a {arch} model", broken[2])
        if spec.rehearse and spec.rehearse.get("pass") and catalog.resolve(spec.rehearse["pass"]) is None:
            ctx.problem(where + ("rehearse", "pass"), f"unknown pass '{spec.rehearse['pass']}'", "", value=True)
        # most nodes' params are already canonical: a copy of the NodeSpec (dataclasses.replace is slow)
        # only when normalizing changed them
        return spec if params == spec.params else replace(spec, params=params)

    # -- records and plan -----------------------------------------------------------
    def record(self, step):
        from ..olive.compile import preprocess_options

        node = step.node
        rec = {"pass": node.pass_type, "params": node.params}
        if node.data:
            rec["data"] = {**step.dataset_record(), "preprocess": preprocess_options(step.dataset)}
        if node.pass_type in passes.TRAINING_PASSES:
            rec["load_kwargs"] = self._load_kwargs(step)
        return rec

    @staticmethod
    def _load_kwargs(step) -> dict:
        from ..olive.compile import train_load_kwargs

        return train_load_kwargs(step.source)

    def needs(self, step):
        return _needs(step.node.pass_type, self._upstream_pass(step))

    def package_names(self, step):
        return _package_names(step.node.pass_type, self._upstream_pass(step))

    @staticmethod
    def _upstream_pass(step, hops: int = 1) -> str | None:
        """The pass type of the node ``hops`` first inputs up (None at a model)."""
        up = step.lineage[hops - 1] if len(step.lineage) >= hops else None
        return up.pass_type if up is not None else None

    def warnings(self, step):
        node = step.node
        out = []
        for up in step.upstream:
            # a pair that installed packages resolve is a need (blocked until installed), not a warning
            why = up and (up.pass_type, node.pass_type) not in passes.RESOLVED_BY \
                and passes.incompatibility(up.pass_type, node.pass_type)
            if why:
                out.append(f"KNOWN INCOMPATIBILITY: {up.alias} -> {node.alias}: {why}")
        grand = self._upstream_pass(step, hops=2)
        why = passes.chain_incompatibility(grand, self._upstream_pass(step), node.pass_type)
        if why:
            out.append(f"KNOWN INCOMPATIBILITY: {node.alias} on LoRA on AWQ: {why}")
        for k in ("user_script", "script_dir"):
            if k in node.params:
                out.append(f"USER_SCRIPT: runs {node.params[k]}")
        return out + estimate_warnings(step)

    def preflight(self, step, *, deep):
        return memory_problem(step)

    def rehearse(self, node, catalog, can_run):
        r = self._stand_in(node, catalog, can_run)
        if r.node is None or r.node.pass_type not in passes.TRAINING_PASSES or r.node.device != "cpu":
            return r
        # a rehearsal checks the pipeline, not the model: train a few float32 steps
        # (bfloat16 on a CPU without bf16 instructions is 10-30x slower)
        params = dict(r.node.params)
        targs = dict(params.get("training_args") or {})
        steps = targs.get("max_steps")
        targs["max_steps"] = min(steps, REHEARSAL_STEPS) if isinstance(steps, int) and steps > 0 else REHEARSAL_STEPS
        params["training_args"] = targs
        params["torch_dtype"] = "float32"
        params = catalog.normalize(r.node.alias, r.node.pass_type, params)
        what = f"{r.node.alias} trains {targs['max_steps']} float32 steps (was {steps or 'the default'})"
        return Rehearsal(replace(r.node, params=params), note="; ".join(x for x in (r.note, what) if x))

    def _stand_in(self, node, catalog, can_run):
        from ..olive.catalog import EXECUTION_PROVIDERS

        if can_run(node, node.device):
            return Rehearsal(node=node)
        if not node.rehearse and can_run(node, "cpu"):
            return Rehearsal(replace(node, device="cpu", provider=EXECUTION_PROVIDERS["cpu"]),
                             note=f"{node.alias} runs on cpu instead of {node.device}")
        stand = dict(node.rehearse or passes.STAND_INS.get(node.pass_type) or {})
        device = stand.get("device", "cpu")
        if stand.get("bypass"):
            return Rehearsal(bypass=True, note=f"{node.alias} is bypassed ({stand.get('why', 'cannot run here')}): "
                                               f"its consumers read {', '.join(node.inputs)}")
        if not stand.get("pass"):
            return Rehearsal(node=node)  # no stand-in: the plan shows it blocked, with what is missing
        pass_type = catalog.resolve(stand["pass"])
        # a stand-in's params merge over the node's own (the lab keeps its data and LoRA shape)
        merged = {**node.params, **stand.get("params", {})}
        params = catalog.normalize(stand["pass"], pass_type, merged, device)
        params = {k: v for k, v in params.items() if k in catalog.params(pass_type)}
        return Rehearsal(replace(node, pass_type=pass_type, alias=stand["pass"], params=params, device=device,
                                 provider=EXECUTION_PROVIDERS[device]),
                         note=f"{node.alias} runs as {stand['pass']} on {device} ({stand.get('why', 'stand-in')})")

    # -- execution ------------------------------------------------------------------
    def job(self, step, inputs):
        from ..core.job import TextDataset
        from ..olive.compile import compile_node

        node, dataset = step.node, step.dataset
        refs, data_files, calib = {}, None, None
        if dataset is not None:
            refs = step.data_refs()
            data_files = sorted(refs)
            if node.pass_type in passes.TEXT_FOLDER_DATA:
                calib = "$CALIB"
                refs["$CALIB"] = TextDataset(step.dataset_fields(), tuple(data_files))
        config = compile_node(node, inputs[0]["model"] if inputs else None, step.catalog, dataset=dataset,
                              output_dir="$OUT", cache_dir="$SCRATCH/olive-cache", data_files=data_files,
                              calibration_folder=calib,
                              load_kwargs=self._load_kwargs(step) if node.pass_type in passes.TRAINING_PASSES else None)
        return {"config": config, "refs": refs}

    def run(self, spec, io):
        from ..olive.runner import run_olive

        return run_olive(spec["config"], io.log)

    def memory(self, step, params):
        node = step.node
        up = step.upstream[0] if step.upstream else None
        m = passes.memory(node.pass_type, up.pass_type if up is not None else None)
        if m is None:
            return None
        (lo, hi), gpu, source = m
        b = params / 1e9  # the measured figures are per billion parameters
        return {"host_gib": (lo * b, hi * b), "gpu_gib": gpu * b if node.device == "gpu" else 0.0, "source": source}

    def output_format(self, node):
        return passes.output_format(node.pass_type)


# A pass's needs and the packages that shape its result follow from its type and its input's alone
# (tables in olive/passes.py): worked out once per pair, not once per node of a 10,000-node plan.
@functools.lru_cache(maxsize=None)
def _needs(pass_type: str | None, up: str | None) -> Needs:
    i = passes.info(pass_type)
    extra = passes.input_needs(up, pass_type)
    note = i.note if i.cuda else ""
    if extra:  # a pair that works once these are installed: say why they are needed
        note = "; ".join(x for x in (note, f"{up} -> {pass_type} needs {', '.join(extra)} (docs/gpu.md)") if x)
    return Needs(cuda=i.cuda, packages=i.needs + extra, note=note)


@functools.lru_cache(maxsize=None)
def _package_names(pass_type: str | None, up: str | None) -> tuple[str, ...]:
    # what the input makes a pass need shapes its result too (gptqmodel picks LoRA-on-AWQ's kernel)
    return tuple(sorted(set(passes.shaping_packages(pass_type) + passes.input_needs(up, pass_type))))


def _dig(d, path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


KIND = OlivePass()


def _numbers_and_keys(params: dict):
    """(path, value) of every top-level parameter and every training argument."""
    for k, v in params.items():
        if k == "training_args" and isinstance(v, dict):
            for tk, tv in v.items():
                yield ("training_args", tk), tv
        else:
            yield (k,), v
