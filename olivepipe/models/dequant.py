"""Quantized checkpoint -> float Hugging Face folder with the same effective weights.

Formats (``quantization_config.quant_method`` in config.json):

* ``awq`` (autoawq's GEMM format, what Olive's AWQ pass writes): int4 values packed 8 per int32
  along the output dim in AWQ's order, zero points packed the same way, fp16 scales per group of
  input rows. autoawq's own ``dequantize_gemm`` does the unpacking where autoawq is installed;
  without it the same documented layout is unpacked here (tests/test_dequantize.py checks the two
  agree, bit for bit).
* ``gptq`` (the GPTQ format of gptqmodel / auto-gptq, ``checkpoint_format`` gptq or gptq_v2):
  int4 packed 8 per int32 along the *input* dim, zero points along the output dim (stored minus
  one in the v1 format), a group index per input row.
* ``olive`` (what Olive's own gptq and rtn passes write): unpacked by Olive's own QuantLinear
  (olivepipe/olive/quant.py).

AWQ folds its activation scales into the preceding weights, so the dequantized folder *is*
the AWQ model in float. Shards are read and written one at a time; on a GPU the unpacking runs
there (the arithmetic is exact integer work and one multiply, identical on either device).
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path

DTYPES = ("float16", "bfloat16", "float32")
FORMATS = ("awq", "gptq", "olive")
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # AWQ GEMM: output column j of a pack sits in nibble AWQ_ORDER.index(j)
_QUANT_SUFFIXES = (".qweight", ".qzeros", ".scales", ".g_idx")


class NotQuantized(ValueError):
    pass


def quant_config(folder: Path) -> dict | None:
    cfg = json.loads((Path(folder) / "config.json").read_text())
    return cfg.get("quantization_config") or None


def _autoawq_packing():
    """autoawq's packing_utils module, loaded from its file: ``import awq`` runs the package's
    __init__, which imports its model classes (and transformers internals) we do not need."""
    spec = importlib.util.find_spec("awq")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "utils" / "packing_utils.py"
    if not path.is_file():
        return None
    mod_spec = importlib.util.spec_from_file_location("olivepipe_awq_packing_utils", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod


# -- AWQ GEMM -------------------------------------------------------------------------------
def awq_unpack(packed, bits: int = 4):
    """[rows, cols*bits/32] int32 in AWQ order -> [rows, cols] int32 values (the documented layout)."""
    import torch

    per = 32 // bits
    shifts = torch.arange(0, 32, bits, dtype=torch.int32, device=packed.device)
    vals = (packed.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)  # nibble i at bits i*bits
    order = AWQ_ORDER if bits == 4 else tuple(range(per))
    vals = vals[..., [order.index(j) for j in range(per)]]
    return vals.reshape(packed.shape[0], -1)


def awq_pack(values, bits: int = 4):
    """Inverse of awq_unpack: [rows, cols] ints 0..15 -> [rows, cols/8] int32 in AWQ order
    (how autoawq's WQLinear_GEMM.from_linear packs; used to make test checkpoints)."""
    import torch

    per = 32 // bits
    v = values.to(torch.int64).reshape(values.shape[0], -1, per)
    order = AWQ_ORDER if bits == 4 else tuple(range(per))
    packed = torch.zeros(v.shape[:2], dtype=torch.int64, device=values.device)
    for i in range(per):
        packed |= v[..., order[i]] << (bits * i)
    return (packed - (packed >> 31 << 32)).to(torch.int32)  # two's complement into int32


def awq_dequantize(qweight, qzeros, scales, group_size: int, bits: int = 4, packing=None):
    """AWQ GEMM tensors -> nn.Linear weight [out, in] in the scales' dtype."""
    if packing is not None:  # autoawq's own code: [in, out]
        w = packing.dequantize_gemm(qweight, qzeros, scales, bits, group_size)
        return w.t().contiguous()
    w = awq_unpack(qweight, bits)
    z = awq_unpack(qzeros, bits).repeat_interleave(group_size, dim=0)[: w.shape[0]]
    s = scales.repeat_interleave(group_size, dim=0)[: w.shape[0]]
    return ((w - z).to(s.dtype) * s).t().contiguous()


# -- GPTQ (gptqmodel / auto-gptq) ---------------------------------------------------------------
def gptq_dequantize(qweight, qzeros, scales, g_idx, bits: int = 4, v1: bool = True):
    """GPTQ tensors -> [out, in]. qweight [in*bits/32, out] (input rows packed low bits first),
    qzeros [groups, out*bits/32], scales [groups, out], g_idx [in]; v1 stores zero - 1."""
    import torch

    per = 32 // bits
    mask = (1 << bits) - 1
    shifts = torch.arange(0, 32, bits, dtype=torch.int32, device=qweight.device)
    w = ((qweight.unsqueeze(1) >> shifts.view(1, per, 1)) & mask).reshape(-1, qweight.shape[1])  # [in, out]
    z = ((qzeros.unsqueeze(-1) >> shifts) & mask).reshape(qzeros.shape[0], -1)  # [groups, out]
    if v1:
        z = z + 1
    g = g_idx.long()
    return ((w - z[g]).to(scales.dtype) * scales[g]).t().contiguous()


# -- the folder -----------------------------------------------------------------------------------
def convert(src: Path, dst: Path, *, dtype: str = "float16", device: str = "cpu", log=print) -> dict:
    """Write ``src`` (a quantized HF folder) into ``dst`` as a float folder. An unquantized
    input raises NotQuantized (nothing to do is a mistake in a workflow, not a copy)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    cfg = json.loads((src / "config.json").read_text())
    q = cfg.get("quantization_config") or {}
    method = q.get("quant_method")
    if not method:
        raise NotQuantized(f"{src.name}: config.json has no quantization_config: nothing to dequantize")
    if method not in FORMATS:
        raise ValueError(f"quantization method {method!r} is not supported (supported: {', '.join(FORMATS)})")
    bits = int(q.get("bits", 4))
    if method == "awq" and (str(q.get("version", "gemm")).lower() != "gemm" or bits != 4):
        raise ValueError(f"AWQ {q.get('version')} {bits}-bit: only the 4-bit GEMM format is supported")
    if method == "gptq" and bits not in (2, 4, 8):
        raise ValueError(f"GPTQ {bits}-bit: only 2, 4 and 8 bits are packed 32/bits per int32")
    shards = sorted(src.glob("*.safetensors"))
    if not shards:
        raise ValueError(f"{src.name}: no *.safetensors files (only safetensors checkpoints are read)")
    tdtype = getattr(torch, dtype)
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    packing = _autoawq_packing() if method == "awq" else None
    olive = None
    if method == "olive":
        from ..olive.quant import OliveUnpacker

        olive = OliveUnpacker(q)
    unpacker = {"awq": "autoawq packing_utils.dequantize_gemm" if packing else "olivepipe (AWQ GEMM layout)",
                "gptq": f"olivepipe (GPTQ {q.get('checkpoint_format', 'gptq')} layout)",
                "olive": "Olive QuantLinear.unpack_and_dequantize"}[method]
    log(f"dequantize: {method} {bits}-bit, group {q.get('group_size')}, {len(shards)} shard(s) -> {dtype} on {dev} "
        f"({unpacker})")
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and not f.name.endswith(".safetensors") and f.name not in ("config.json", "model.safetensors.index.json"):
            shutil.copy2(f, dst / f.name)
    index, n, t_unpack, t_io = {}, 0, 0.0, 0.0
    for shard in shards:
        t0 = time.perf_counter()
        out = {}
        with safe_open(str(shard), framework="pt") as fh:
            keys = set(fh.keys())
            get = fh.get_tensor
            bases = sorted(k[: -len(".qweight")] for k in keys if k.endswith(".qweight"))
            t_io += time.perf_counter() - t0
            for base in bases:
                t1 = time.perf_counter()
                t = {s: get(base + s).to(dev) for s in _QUANT_SUFFIXES if base + s in keys}
                t_io += time.perf_counter() - t1
                t1 = time.perf_counter()
                if method == "awq":
                    w = awq_dequantize(t[".qweight"], t[".qzeros"], t[".scales"], int(q.get("group_size", 128)),
                                       bits, packing)
                elif method == "gptq":
                    w = gptq_dequantize(t[".qweight"], t[".qzeros"], t[".scales"], t[".g_idx"] if ".g_idx" in t else
                                        _sequential_groups(t[".qweight"].shape[0] * 32 // bits, int(q.get("group_size", 128)), dev),
                                        bits, v1=q.get("checkpoint_format", "gptq") != "gptq_v2")
                else:
                    w = olive.dequantize(base, t[".qweight"], t[".scales"], t.get(".qzeros"))
                name = base + ".weight"
                out[name] = w.to(tdtype).cpu()
                t_unpack += time.perf_counter() - t1
                n += 1
            skip = {b + s for b in bases for s in _QUANT_SUFFIXES}
            t1 = time.perf_counter()
            for k in sorted(keys - skip):
                v = get(k)
                out[k] = v.to(tdtype) if v.is_floating_point() else v
            t_io += time.perf_counter() - t1
        t1 = time.perf_counter()
        save_file(out, str(dst / shard.name), metadata={"format": "pt"})
        t_io += time.perf_counter() - t1
        index.update({k: shard.name for k in out})
        del out
    if len(shards) > 1:
        (dst / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}, indent=2))
    cfg.pop("quantization_config", None)
    cfg["torch_dtype"] = dtype
    cfg["dtype"] = dtype
    (dst / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    summary = {"format": method, "bits": bits, "group_size": q.get("group_size"), "dequantized_linears": n,
               "shards": len(shards), "dtype": dtype, "device": str(dev), "unpacker": unpacker,
               "unpack_s": round(t_unpack, 2), "read_write_s": round(t_io, 2)}
    log(f"dequantize: {n} linears; unpack {t_unpack:.1f} s, read+write {t_io:.1f} s")
    return summary


def _sequential_groups(rows: int, group_size: int, dev):
    import torch

    return torch.arange(rows, device=dev) // group_size


def effective_params(folder: Path) -> int | None:
    """Parameters of the model a checkpoint stands for (packed ints counted unpacked), from the
    safetensors headers alone: plan reads a few KB, never the weights."""
    import struct

    shards = sorted(Path(folder).glob("*.safetensors"))
    if not shards:
        return None
    q = {}
    try:
        q = quant_config(folder) or {}
    except (OSError, ValueError):
        pass
    bits = int(q.get("bits", 4)) if q else 0
    total = 0
    for shard in shards:
        try:
            with open(shard, "rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                if size > 100_000_000:
                    return None
                header = json.loads(f.read(size))
        except (OSError, ValueError, struct.error):
            return None
        for name, t in header.items():
            if name == "__metadata__" or not isinstance(t, dict):
                continue
            numel = 1
            for d in t.get("shape", []):
                numel *= d
            if name.endswith((".qzeros", ".scales", ".g_idx")) and q:
                continue
            if name.endswith(".qweight") and q:
                width = {"I32": 32, "U8": 8, "I8": 8}.get(t.get("dtype"), 32)
                numel *= width // bits
            total += numel
    return total
