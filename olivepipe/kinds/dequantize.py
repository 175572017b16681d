"""Node kind `dequantize`: a quantized checkpoint (AWQ, GPTQ, Olive's own) in, a float Hugging
Face folder out, with the input's LoRA adapter carried through.

    dequantize: {kind: dequantize, input: finetune, device: gpu, dtype: float16}

The lab's route to an int4 ONNX model with its adapter: LoRA trains on the AWQ checkpoint, and
onnxruntime-genai's builder cannot build an AWQ checkpoint with an adapter (docs/gpu.md), so this
node writes the AWQ model's own weights in float, the adapter beside them, and model-builder
builds that. The adapter is part of this node's result (`adapter/`), so it reaches model-builder
as a keyed input: a new adapter is a new input digest, hence a new key downstream. The unpacking
is the quantization library's own where it is installed (olivepipe/models/dequant.py).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

from ..models import dequant
from .base import Needs, NodeKind, Rehearsal

GIB = 1024 ** 3
# bytes per parameter of the float output
_DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}

# Keys of the input's Olive model config that describe the quantized load, not the float model.
_DROP = ("type", "model_path", "adapter_path", "model_attributes", "io_config", "dummy_inputs_func")


class Dequantize(NodeKind):
    name = "dequantize"
    fields = {
        "dtype": {"enum": list(dequant.DTYPES), "default": "float16",
                  "description": "Float type of the output weights (scales are fp16 in AWQ and GPTQ checkpoints)."},
    }
    option_fields = ("dtype",)
    packages = ("torch", "safetensors")

    def check(self, ctx, base, n, where):
        if isinstance(n.get("input"), list) and len(n["input"]) > 1:
            ctx.problem(where + ("input",), f"a dequantize node reads one model; '{base}' lists {len(n['input'])}",
                        "one node per quantized model", value=True)
        if n.get("device") == "npu":
            ctx.problem(where + ("device",), "dequantize runs on cpu or gpu", "use `device: gpu` or `device: cpu`",
                        value=True)
        return {}

    def record(self, step):
        return {"options": {"dtype": step.node.options.get("dtype", "float16")}, "format": 1}

    def package_names(self, step):
        # autoawq's unpacking is used where it is installed; the values are exact either way,
        # but its version is what ran, so it is part of what the result is made from
        return self.packages + ("autoawq",)

    def needs(self, step):
        if step.node.device == "gpu":
            return Needs(cuda=True, packages=self.packages, note="unpacking on the GPU (use `device: cpu` to run it on the CPU)")
        return Needs(packages=self.packages)

    def warnings(self, step):
        from .resources import estimate_warnings

        return estimate_warnings(step)

    def preflight(self, step, *, deep):
        from .resources import memory_problem

        return memory_problem(step)

    def rehearse(self, node, catalog, can_run):
        from ..olive.catalog import EXECUTION_PROVIDERS

        note = "dequantize: an input that is not quantized under --rehearse (AWQ bypassed) is written in float as it is"
        if node.device == "gpu" and not can_run(node, "gpu"):
            return Rehearsal(replace(node, device="cpu", provider=EXECUTION_PROVIDERS["cpu"]),
                             note=f"{node.alias or node.name} runs on cpu instead of gpu; {note}")
        return Rehearsal(node=node, note=note)

    def memory(self, step, params):
        # one shard's float output plus the packed input on the host; one layer's tensors at a time on a GPU
        node = step.node
        dtype = node.options.get("dtype", "float16")
        per = _DTYPE_BYTES.get(dtype, 2) + 0.6
        lo = per * params / GIB
        gpu = 0.5 * per * params / GIB / 32 if node.device == "gpu" else 0.0
        return {"host_gib": (lo, lo * 1.25), "gpu_gib": gpu, "source": f"float output ({dtype}) plus the packed input"}

    def output_format(self, node):
        return "hf"

    # -- execution ------------------------------------------------------------------
    def job(self, step, inputs):
        node = step.node
        return {"inputs": inputs, "dtype": node.options.get("dtype", "float16"), "device": node.device,
                "node": node.name, "rehearse": bool(step.rehearse)}

    def run(self, spec, io):
        from pathlib import Path

        model = spec["inputs"][0]["model"]
        cfg = model.get("config", model)
        src = Path(cfg["model_path"])
        adapter = cfg.get("adapter_path")
        out_model = io.out / "model"
        try:
            summary = dequant.convert(src, out_model, dtype=spec["dtype"], device=spec["device"])
        except dequant.NotQuantized:
            if not spec.get("rehearse"):
                raise
            # a rehearsal bypasses the quantizer: the float input is written in the asked dtype
            summary = _cast(src, out_model, spec["dtype"])
        new = {k: v for k, v in cfg.items() if k not in _DROP}
        load = {k: v for k, v in (new.get("load_kwargs") or {}).items()
                if k not in ("quantization_method", "quantization_config")}
        if load:
            new["load_kwargs"] = load
        else:
            new.pop("load_kwargs", None)
        new["model_path"] = "$OUT/model"
        if adapter:
            shutil.copytree(adapter, io.out / "adapter")
            new["adapter_path"] = "$OUT/adapter"
            summary["adapter"] = "adapter"
        (io.out / "dequantize.json").write_text(json.dumps(summary, indent=2) + "\n")
        return {"model": {"type": model.get("type", "HfModel"), "config": new}, "summary": summary}


def _cast(src, dst, dtype: str) -> dict:
    import torch
    from safetensors.torch import load_file, save_file

    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and not f.name.endswith(".safetensors"):
            shutil.copy2(f, dst / f.name)
    t = getattr(torch, dtype)
    for shard in sorted(src.glob("*.safetensors")):
        tensors = {k: v.to(t) if v.is_floating_point() else v for k, v in load_file(str(shard)).items()}
        save_file(tensors, str(dst / shard.name), metadata={"format": "pt"})
    cfg = json.loads((dst / "config.json").read_text())
    cfg["torch_dtype"] = cfg["dtype"] = dtype
    (dst / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    print(f"dequantize: input not quantized (rehearsal): weights written as {dtype}", flush=True)
    return {"format": None, "dtype": dtype, "rehearsal_cast": True}


KIND = Dequantize()
