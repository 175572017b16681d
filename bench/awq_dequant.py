"""AWQ (GEMM format) checkpoint -> plain fp16 Hugging Face folder with the same effective weights.

The nearest working route to `model-builder` on "AWQ checkpoint + LoRA adapter" (which
onnxruntime-genai 0.14.1 cannot build: it loads an AWQ folder into its own AWQModel, not a
torch module, and then fails wrapping it in peft's PeftModel). AWQ's activation scales are
already folded into the preceding norms/linears, so the dequantized weights ARE the AWQ
model; model-builder int4 with `int4_block_size: 128, int4_is_symmetric: false` then puts
them back on a 4-bit grid of AWQ's group size, and takes the adapter through
`extra_options.adapter_path` like any unquantized model.

    python bench/awq_dequant.py AWQ_FOLDER OUT_FOLDER

Pure torch + safetensors; runs on a CPU. Shards are read one at a time.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

# AWQ GEMM packs 8 int4 values per int32 along the output dim in this order.
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def unpack_int4(packed):
    """[rows, cols/8] int32 (AWQ order) -> [rows, cols] int32 values 0..15."""
    import torch

    shifts = torch.arange(0, 32, 4, dtype=torch.int32, device=packed.device)
    vals = (packed.unsqueeze(-1) >> shifts) & 0xF  # [rows, cols/8, 8], nibble i at bits 4i
    inverse = [AWQ_ORDER.index(i) for i in range(8)]  # output column j of a pack sits in nibble AWQ_ORDER.index(j)
    vals = vals[..., inverse]
    return vals.reshape(packed.shape[0], -1)


def dequantize(qweight, qzeros, scales, group_size: int):
    """AWQ GEMM tensors -> nn.Linear weight [out, in] (scales' dtype)."""
    w = unpack_int4(qweight)  # [in, out]
    z = unpack_int4(qzeros)  # [in/g, out]
    z = z.repeat_interleave(group_size, dim=0)[: w.shape[0]]
    s = scales.repeat_interleave(group_size, dim=0)[: w.shape[0]]
    return ((w - z).to(s.dtype) * s).t().contiguous()


def convert(src: Path, dst: Path, dtype: str = "float16") -> dict:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    cfg = json.loads((src / "config.json").read_text())
    q = cfg.get("quantization_config") or {}
    if q.get("quant_method") != "awq" or q.get("version", "gemm") != "gemm" or q.get("bits", 4) != 4:
        raise SystemExit(f"{src}: not a 4-bit AWQ GEMM checkpoint (quantization_config={q})")
    g = int(q.get("group_size", 128))
    tdtype = getattr(torch, dtype)
    dst.mkdir(parents=True, exist_ok=False)
    for f in src.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors") and f.name not in ("config.json", "model.safetensors.index.json"):
            shutil.copy2(f, dst / f.name)
    shards = sorted(src.glob("*.safetensors"))
    index = {}
    n = 0
    for shard in shards:
        out = {}
        with safe_open(str(shard), framework="pt") as fh:
            keys = set(fh.keys())
            for k in sorted(keys):
                if k.endswith(".qweight"):
                    base = k[: -len(".qweight")]
                    out[base + ".weight"] = dequantize(fh.get_tensor(k), fh.get_tensor(base + ".qzeros"),
                                                       fh.get_tensor(base + ".scales"), g).to(tdtype)
                    n += 1
                elif k.endswith((".qzeros", ".scales")) and k.rsplit(".", 1)[0] + ".qweight" in keys:
                    continue
                else:
                    t = fh.get_tensor(k)
                    out[k] = t.to(tdtype) if t.is_floating_point() else t
        save_file(out, str(dst / shard.name), metadata={"format": "pt"})
        index.update({k: shard.name for k in out})
    if len(shards) > 1:
        (dst / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}, indent=2))
    cfg.pop("quantization_config", None)
    cfg["torch_dtype"] = dtype
    cfg["dtype"] = dtype
    (dst / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return {"dequantized_linears": n, "group_size": g, "shards": len(shards), "dtype": dtype}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    print(json.dumps(convert(Path(sys.argv[1]), Path(sys.argv[2]))))
