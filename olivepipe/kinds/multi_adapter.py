"""Node kind `adapters`: several LoRA adapters for one base ONNX model (multi-LoRA).

`input: [extracted, travel, support]`: the first input is the base, an extract-adapters node
(ModelBuilder built it from one LoRA, ExtractAdapters made the adapter weights graph inputs);
the others are LoRA nodes (or models with `adapter:`) trained on the same model. The result is
the base's files plus one `<input>.onnx_adapter` per adapter, named after its node, which
`generate` loads and activates in turn from one loaded model. The adapter the base was built
with is published as ExtractAdapters wrote it; every other one is converted through Olive
(olivepipe/olive/adapters.py). What can be known from the workflow is checked at validate
(same LoRA r where the base fixes it, same target modules, same trained model); the rest at
run time, exactly, against the base graph's adapter inputs, before anything is written.
"""
from __future__ import annotations

import shutil
from dataclasses import replace

from ..olive import adapters as olive_adapters
from .base import Needs, NodeKind

_EXAMPLE = "e.g. `input: [extracted, travel, support]`: the extract-adapters node first, then the LoRA nodes"


class Adapters(NodeKind):
    name = "adapters"
    packages = ("olive-ai", "onnx", "onnxruntime", "peft", "torch")

    # -- spec time ------------------------------------------------------------------
    def check(self, ctx, base, n, where):
        inputs = n.get("input")
        if not isinstance(inputs, list) or len(inputs) < 2:
            ctx.problem(where + ("input",), f"an adapters node reads a base and its adapters; '{base}' reads "
                        f"{len(inputs) if isinstance(inputs, list) else 1}", _EXAMPLE, value=True)
            return None
        return {}

    def finish(self, ctx, spec, where):
        if len(spec.inputs) < 2:  # upstream problems; they are reported already
            return spec
        ext_name, names = spec.inputs[0], list(spec.inputs[1:])
        ext = ctx.built.get(ext_name)
        if ext is None or ext.pass_type != "ExtractAdapters":
            what = "a model" if ext is None else f"a {ext.alias or ext.kind} node"
            ctx.problem(where + ("input", 0), f"the first input of '{spec.name}' is its base, an extract-adapters node; "
                        f"'{ext_name}' is {what}", _EXAMPLE, value=True)
            return spec
        why = olive_adapters.extract_problem(ext.params)
        if why:
            ctx.problem(where + ("input", 0), f"base '{ext_name}' cannot take other adapters: {why}",
                        f"remove that parameter from '{ext.base}'", value=True)
        builder = self._builder(ctx, ext)
        if builder is None:
            ctx.problem(where + ("input", 0), f"base '{ext_name}' does not come from model-builder; the conversion "
                        "writes adapters for ModelBuilder's graph", "build the base with `pass: model-builder` "
                        "on the first LoRA, then extract-adapters", value=True)
            return spec
        why = olive_adapters.base_layout_problem(builder.params)
        if why:
            ctx.problem(where + ("input", 0), f"base '{ext_name}' was built by '{builder.name}' with {why}",
                        "use ModelBuilder's default int4 layout (or fp16/fp32)", value=True)
        own = builder.inputs[0] if builder.inputs else None
        own_kind = self._source(ctx, own)
        if own_kind is None:
            ctx.problem(where + ("input", 0), f"base '{ext_name}' was built from '{own}', which carries no LoRA adapter",
                        f"let '{builder.base}' read the LoRA node the base is for", value=True)
            return spec
        fixed = olive_adapters.rank_fixed(builder.params, ext.params)
        for i, name in enumerate(names, 1):
            at = where + ("input", i)
            if name in names[: i - 1]:
                ctx.problem(at, f"'{name}' is listed twice", "list each adapter once", value=True)
                continue
            kind = self._source(ctx, name)
            if kind is None:
                node = ctx.built.get(name)
                what = f"a {node.alias or node.kind} node" if node else "a model without `adapter:`"
                hint = ("Olive's convert-adapters refuses DoRA adapters" if node and node.pass_type == "DoRA" else
                        "list LoRA, QLoRA or LoftQ nodes (or models with `adapter:`) after the base")
                ctx.problem(at, f"'{name}' is not a LoRA adapter: it is {what}", hint, value=True)
            elif kind == "lora" and own_kind == "lora" and name != own:
                self._compare(ctx, at, ctx.built[name], ctx.built[own], fixed, ext_name)
        if own not in names:
            ctx.problem(where + ("input",), f"'{own}', the adapter base '{ext_name}' was built with, is not listed",
                        f"add '{own}' after '{ext_name}': its adapter is published as extracted, and converting it "
                        "checks the conversion against it", value=True)
        return replace(spec, options={"adapters": names, "base_adapter": own})

    @staticmethod
    def _builder(ctx, ext):
        """The ModelBuilder node up the base's chain of first inputs (None if there is none)."""
        node = ext
        while node is not None:
            if node.pass_type == "ModelBuilder":
                return node
            node = ctx.built.get(node.inputs[0]) if node.inputs else None
        return None

    @staticmethod
    def _source(ctx, name):
        """'lora' (a LoRA-family node), 'model' (a model with `adapter:`) or None (no adapter)."""
        node = ctx.built.get(name)
        if node is not None:
            return "lora" if node.pass_type in olive_adapters.LORA_PASSES else None
        model = ctx.models.get(name)
        return "model" if model is not None and model.adapter is not None else None

    @staticmethod
    def _compare(ctx, at, lora, own, fixed_rank, ext_name):
        """Static fit of one LoRA node against the one the base was built with."""
        if lora.inputs[:1] != own.inputs[:1]:
            ctx.problem(at, f"adapter '{lora.name}' is trained on '{lora.inputs[0]}', base '{ext_name}' on "
                        f"'{own.inputs[0]}'", f"train '{lora.base}' on '{own.inputs[0]}'", value=True)
        r, r_own = (n.params.get("r", ctx.catalog.params(n.pass_type).get("r", {}).get("default")) for n in (lora, own))
        if fixed_rank and r != r_own:
            ctx.problem(at, f"adapter '{lora.name}' has LoRA r={r}, but base '{ext_name}' fixes r={r_own}: its "
                        f"int4 adapter weights (from '{own.name}') have static shapes",
                        f"train '{lora.base}' with r: {r_own}, or build a base of its own", value=True)
        tm, tm_own = lora.params.get("target_modules"), own.params.get("target_modules")
        if tm is not None and tm_own is not None and sorted(tm) != sorted(tm_own):
            ctx.problem(at, f"adapter '{lora.name}' targets {', '.join(sorted(tm))}; base '{ext_name}' takes "
                        f"adapters for {', '.join(sorted(tm_own))} (from '{own.name}')",
                        f"give '{lora.base}' target_modules: [{', '.join(sorted(tm_own))}]", value=True)

    # -- records and plan -----------------------------------------------------------
    def record(self, step):
        # the adapter names are file names in the result, so they are part of its key
        return {"options": dict(step.node.options), "converter": olive_adapters.CONVERTER}

    def needs(self, step):
        return Needs(packages=("olive-ai", "onnx", "onnxruntime", "peft"))

    def output_format(self, node):
        return "onnx"

    # -- execution ------------------------------------------------------------------
    def job(self, step, inputs):
        node = step.node
        return {"inputs": inputs, "adapters": node.options["adapters"], "base_adapter": node.options["base_adapter"],
                "node": node.name}

    def run(self, spec, io):
        A = olive_adapters
        base_cfg = spec["inputs"][0]["model"]
        folder, onnx_file = A.model_files(base_cfg)
        base = A.read_base(folder, onnx_file)
        own_file, own = A.extracted_adapter(base_cfg), spec["base_adapter"]
        print(f"base {onnx_file}: {len(base.inputs)} adapter inputs; adapters {', '.join(spec['adapters'])}", flush=True)
        made = {}
        for inp, name in zip(spec["inputs"][1:], spec["adapters"]):
            tensors = A.convert_adapter(A.adapter_dir(inp["model"], name), base, io.scratch / name, name)
            if name == own:  # the base's own adapter is the reference the conversion must reproduce
                diff = A.first_difference(A.load_adapter(own_file), tensors)
                if diff:
                    raise A.AdapterMismatch(f"converting '{name}', the adapter the base was built with, does not "
                                            f"reproduce the base's {own_file.name}: {diff}; the conversion does "
                                            "not know this model's layout")
            made[name] = tensors
            print(f"{name}: {len(tensors)} tensors fit the base", flush=True)
        # every adapter fits: only now is anything written, so a mismatch leaves nothing behind
        io.out.mkdir(parents=True, exist_ok=True)
        for p in sorted(folder.rglob("*")):
            if p.is_file() and p != own_file:
                dest = io.out / p.relative_to(folder)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, dest)
        files = []
        for name, tensors in made.items():
            dest = io.out / f"{name}.onnx_adapter"
            if name == own:
                shutil.copyfile(own_file, dest)  # byte for byte what ExtractAdapters wrote
            else:
                A.save_adapter(tensors, dest)
            files.append(dest.name)
        model = A.output_model_config(base_cfg, folder, own_file.name, files, f"{own}.onnx_adapter")
        return {"model": model, "summary": {"adapters": files}}


KIND = Adapters()
