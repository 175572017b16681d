"""PEFT LoRA adapter -> onnxruntime-genai `.onnx_adapter` for a base that ModelBuilder + ExtractAdapters built.

The base (ModelBuilder with a LoRA, then ExtractAdapters) takes its adapter weights as graph
inputs, named after ModelBuilder's graph (`model.layers.0.attn.q_proj.lora_A.MatMul.weight`,
`..._Q4` / `..._scales` once int4 quantized). Olive's `convert-adapters` (olive/cli/convert_adapters.py)
does the PEFT part: LoraConfig scaling (rslora included), transposition, lora_B scaled, DoRA
refused; it names weights after the PEFT modules. Here its output is keyed to the base's inputs
(attention is `attn` in ModelBuilder's graph, and the packed Phi-3 projections are split the way
ModelBuilder splits them), quantized with Olive's own adapter int4 quantizer
(ConvertAdaptersCommand.int4_block_quant) where the base's weight is int4, and checked exactly
against the base's inputs. Nothing here imports numpy, onnx or Olive at module level: the
spec-time helpers run on every validate.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

#: passes whose result is a PEFT LoRA adapter that Olive's convert-adapters reads (DoRA it refuses)
LORA_PASSES = ("LoRA", "QLoRA", "LoftQ")
#: part of an adapters node's key: bump it when the mapping below changes what it writes
CONVERTER = 1

# ModelBuilder builds these packed Hugging Face projections as separate MatMuls, in this order
# (onnxruntime_genai/models/builders/base.py make_attention_unpacked_lora, make_mlp_unpacked_lora):
# lora_A is shared, lora_B's output columns are split.
PACKED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}
# a convert-adapters weight name: model.layers.0.self_attn.qkv_proj.lora_A.weight
_PEFT_NAME = re.compile(r"^(?P<module>.+)\.(?P<proj>[^.]+)\.(?P<ab>lora_[AB])\.weight$")
_NBITS_ROLES = {1: "q", 2: "scales", 3: "zero_points"}  # MatMulNBits input index -> what it holds
_DTYPES = {"float32": "float32", "float16": "float16"}  # numpy dtype -> convert-adapters --dtype


class AdapterMismatch(ValueError):
    """An adapter does not fit the base; the message names the first weight that does not."""


# -- spec time (no heavy imports) -------------------------------------------------------

def base_layout_problem(builder_params: dict) -> str | None:
    """Why adapters converted here could not have the layout of a base ModelBuilder built with
    these params (None when they can)."""
    opts = {**builder_params, **(builder_params.get("extra_options") or {})}
    if opts.get("use_qdq"):
        return "use_qdq: true, which stores int4 weights as DequantizeLinear inputs; the conversion writes MatMulNBits blocks"
    algo = opts.get("int4_algo_config")
    if algo not in (None, "default"):
        return (f"int4_algo_config: {algo}, which quantizes weights unlike Olive's adapter quantizer "
                "(block-wise, as ModelBuilder's default)")
    if opts.get("precision") == "bf16":
        return "precision: bf16, which keeps adapter weights in bfloat16; Olive's convert-adapters writes float32 or float16"
    return None


def extract_problem(extract_params: dict) -> str | None:
    """Why an ExtractAdapters node with these params gives no base adapters can be swapped into."""
    if extract_params.get("make_inputs") is False:
        return "make_inputs: false keeps the adapter weights as initializers; onnxruntime-genai swaps only adapter inputs"
    if extract_params.get("save_format", "onnx_adapter") != "onnx_adapter":
        return f"save_format: {extract_params['save_format']} is not an .onnx_adapter file"
    if extract_params.get("adapter_type", "lora") != "lora":
        return f"adapter_type: {extract_params['adapter_type']}: only LoRA adapters convert"
    return None


def rank_fixed(builder_params: dict, extract_params: dict) -> bool:
    """Whether the base fixes the LoRA rank. int4 weights go to MatMulNBits nodes, whose K and N
    are attributes; float adapter inputs take any r (ExtractAdapters' dynamic_lora_r) unless
    it was turned off."""
    if extract_params.get("dynamic_lora_r") is False:
        return True
    opts = {**builder_params, **(builder_params.get("extra_options") or {})}
    ops = opts.get("int4_op_types_to_quantize")
    excluded = any("lora" in str(n) for n in opts.get("int4_nodes_to_exclude") or [])
    return opts.get("precision") == "int4" and (ops is None or "MatMul" in ops) and not excluded


# -- run time ---------------------------------------------------------------------------

@dataclass(frozen=True)
class BaseInput:
    """One adapter input of the base graph."""

    name: str
    dtype: str  # numpy dtype name
    dims: tuple  # ints, or strings for symbolic dimensions
    weight: str  # the float weight it stands for (the name without _Q4 / _scales / _zero_points)
    role: str  # float | q | scales | zero_points
    nbits: tuple | None = None  # (K, N, bits, block_size) of the MatMulNBits that reads it

    def expected(self) -> list:
        """The shape an adapter's tensor must have (None: any size). A MatMulNBits input is fixed
        by the node's K and N even where ExtractAdapters named a dimension symbolic."""
        if self.nbits is None:
            return [d if isinstance(d, int) else None for d in self.dims]
        return nbits_shape(self.role, *self.nbits, rank=len(self.dims))

    def shown(self) -> str:
        """The expected shape for people: fixed sizes, else the graph's dimension names."""
        return _fmt([e if e is not None else d for e, d in zip(self.expected(), self.dims)])


def nbits_shape(role: str, k: int, n: int, bits: int, block: int, *, rank: int) -> list:
    """MatMulNBits' layout (onnxruntime contrib op): B [N, k_blocks, blob], scales and zero points
    per block, as the base's input of that role stores them (2-D or flat)."""
    kb = -(-k // block)
    if role == "q":
        return [n, kb, block * bits // 8]
    per_row = kb if role == "scales" else -(-kb * bits // 8)
    return [n, per_row] if rank == 2 else [n * per_row]


@dataclass(frozen=True)
class Base:
    onnx: Path
    inputs: dict  # name -> BaseInput, in graph order
    weights: dict  # float weight name -> [BaseInput, ...]

    def conversion_dtype(self) -> str:
        found = {i.dtype for i in self.inputs.values() if i.role in ("float", "scales")}
        if len(found) != 1 or next(iter(found)) not in _DTYPES:
            raise ValueError(f"base {self.onnx.name} stores adapter weights as {', '.join(sorted(found)) or 'nothing'}; "
                             "Olive's convert-adapters writes float32 or float16")
        return next(iter(found))

    def out_features(self, weight: str) -> int:
        first = self.weights[weight][0]
        if first.nbits is not None:
            return first.nbits[1]
        if len(first.dims) == 2 and isinstance(first.dims[1], int):
            return first.dims[1]
        raise ValueError(f"base input {first.name} {_fmt(first.dims)} has no fixed output size")


def model_files(model_cfg: dict) -> tuple[Path, str]:
    """(folder, onnx file name) of an Olive ONNX model config."""
    cfg = model_cfg.get("config", model_cfg)
    path = Path(cfg["model_path"])
    if path.suffix == ".onnx":
        return path.parent, path.name
    return path, cfg.get("onnx_file_name") or "model.onnx"


def extracted_adapter(model_cfg: dict) -> Path:
    """The adapter ExtractAdapters wrote beside the base (its constant inputs)."""
    folder, _ = model_files(model_cfg)
    name = model_cfg.get("config", model_cfg).get("constant_inputs_file_name")
    if not name or not (folder / name).is_file():
        raise ValueError("the base has no extracted adapter file (constant_inputs_file_name): "
                         "is its node an extract-adapters with make_inputs: true?")
    return folder / name


def adapter_dir(model_cfg: dict | None, name: str) -> Path:
    """Where a LoRA node's (or a model's `adapter:`) PEFT adapter folder is."""
    cfg = model_cfg or {}
    path = cfg.get("config", {}).get("adapter_path") or cfg.get("adapter_path")
    if not path:
        raise ValueError(f"input '{name}' carries no PEFT adapter (no adapter_path in its model)")
    return Path(path)


def read_base(folder: Path, onnx_file: str) -> Base:
    """The base's adapter inputs: its graph inputs that onnxruntime-genai does not feed itself
    (genai_config.json names those), with what reads each of them. Only the graph is read."""
    import onnx
    from onnx.helper import get_attribute_value, tensor_dtype_to_np_dtype

    path = folder / onnx_file
    genai = folder / "genai_config.json"
    if not genai.is_file():
        raise ValueError(f"{folder.name} has no genai_config.json: not an onnxruntime-genai model folder")
    fed = [re.compile(re.escape(v).replace("%d", r"\d+")) for v in
           json.loads(genai.read_text())["model"]["decoder"].get("inputs", {}).values() if isinstance(v, str)]
    graph = onnx.load(str(path), load_external_data=False).graph
    raw = {}
    for i in graph.input:  # ExtractAdapters lists its inputs twice; the first says the shape
        if i.name not in raw and not any(p.fullmatch(i.name) for p in fed):
            raw[i.name] = i
    if not raw:
        raise ValueError(f"{onnx_file} has no adapter inputs: was extract-adapters run on a model with a LoRA adapter?")
    readers: dict[str, tuple] = {}
    for node in graph.node:
        for idx, name in enumerate(node.input):
            if name in raw and name not in readers:
                readers[name] = (node, idx)
    inputs, weights = {}, {}
    for name, vi in raw.items():
        t = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim)
        dtype = str(tensor_dtype_to_np_dtype(t.elem_type))
        node, idx = readers.get(name, (None, None))
        if node is not None and node.op_type == "MatMul" and idx == 1:
            inp = BaseInput(name, dtype, dims, name, "float")
        elif node is not None and node.op_type == "MatMulNBits" and idx in _NBITS_ROLES:
            a = {x.name: get_attribute_value(x) for x in node.attribute}
            q = node.input[1]
            suffix = f"_Q{a['bits']}"
            if not q.endswith(suffix):
                raise ValueError(f"base input {q} does not follow ModelBuilder's int4 naming (<weight>{suffix})")
            inp = BaseInput(name, dtype, dims, q[: -len(suffix)], _NBITS_ROLES[idx],
                            (a["K"], a["N"], a["bits"], a.get("block_size", 32)))
        else:
            what = f"{node.op_type} input {idx}" if node is not None else "nothing"
            raise ValueError(f"base input {name} is read by {what}: not ModelBuilder's LoRA layout "
                             "(MatMul or MatMulNBits weights)")
        inputs[name] = inp
        weights.setdefault(inp.weight, []).append(inp)
    return Base(path, inputs, weights)


def convert_peft(adapter: Path, dtype: str, scratch: Path) -> dict:
    """Olive's `convert-adapters` on a PEFT adapter folder: {PEFT-style name: [in, out] float array}.
    Run through its own argument parser, so its defaults and checks (DoRA refused) apply."""
    from argparse import ArgumentParser

    from olive.cli.convert_adapters import ConvertAdaptersCommand
    from olive.common.utils import load_weights

    parser = ArgumentParser("olive")
    ConvertAdaptersCommand.register_subcommand(parser.add_subparsers())
    out = Path(scratch) / "converted"
    args = parser.parse_args(["convert-adapters", "--adapter_path", str(adapter), "--output_path", str(out),
                              "--adapter_format", "numpy", "--dtype", _DTYPES[dtype]])
    ConvertAdaptersCommand(parser, args).run()
    return load_weights(f"{out}.npz")


def to_base(converted: dict, base: Base, name: str) -> tuple[dict, dict]:
    """convert-adapters' weights keyed, split and encoded as the base's inputs.
    Returns (tensors by base input name, float shape of each base weight)."""
    import numpy as np

    tensors, shapes = {}, {}
    for key in sorted(converted):
        w = converted[key]
        m = _PEFT_NAME.match(key)
        if m is None:
            raise AdapterMismatch(f"adapter '{name}': {key} is not a LoRA A or B matrix; the base takes only those")
        module = m["module"].replace(".self_attn", ".attn")  # ModelBuilder's graph calls attention `attn`
        direct = f"{module}.{m['proj']}.{m['ab']}.MatMul.weight"
        if direct in base.weights:
            parts, pieces = [direct], [w]
        else:
            parts = [f"{module}.{p}.{m['ab']}.MatMul.weight" for p in PACKED.get(m["proj"], ())]
            if not parts or any(p not in base.weights for p in parts):
                raise AdapterMismatch(f"adapter '{name}': {key} has no input in the base (looked for {direct}): "
                                      "it adapts modules the base's adapter does not")
            if m["ab"] == "lora_A":
                pieces = [w] * len(parts)
            else:
                widths = [base.out_features(p) for p in parts]
                if w.ndim != 2 or w.shape[1] != sum(widths):
                    raise AdapterMismatch(f"adapter '{name}' does not fit the base: {key} is {_fmt(w.shape)}, the base's "
                                          f"{'/'.join(PACKED[m['proj']])} take {'+'.join(map(str, widths))} columns")
                pieces = np.split(w, np.cumsum(widths)[:-1], axis=1)
        for part, piece in zip(parts, pieces):
            piece = np.ascontiguousarray(piece)
            shapes[part] = piece.shape
            tensors.update(_encode(part, piece, base))
    return tensors, shapes


def _encode(weight: str, w, base: Base) -> dict:
    """A float [in, out] weight as the base stores it: as is, or int4 blocks through Olive's
    adapter quantizer (the kernel ModelBuilder's MatMulNBitsQuantizer uses too)."""
    from olive.cli.convert_adapters import ConvertAdaptersCommand

    inputs = base.weights[weight]
    if inputs[0].role == "float":
        return {inputs[0].name: w.astype(inputs[0].dtype)}
    _, _, bits, block = inputs[0].nbits
    if bits != 4:
        raise ValueError(f"base weight {weight} is {bits}-bit; Olive's adapter quantizer writes 4 bits")
    symmetric = not any(i.role == "zero_points" for i in inputs)
    packed, scales, zero_points = ConvertAdaptersCommand.int4_block_quant(w, block, symmetric)
    made = {"q": packed, "scales": scales, "zero_points": zero_points}
    k, n = w.shape
    return {i.name: made[i.role].reshape(nbits_shape(i.role, k, n, bits, block, rank=len(i.dims))) for i in inputs}


def check_fits(tensors: dict, base: Base, name: str, shapes: dict | None = None) -> None:
    """Every base adapter input gets a tensor of its dtype and shape, and nothing else comes:
    raises AdapterMismatch naming the first input (graph order) that does not."""
    for inp in base.inputs.values():
        if inp.name not in tensors:
            raise AdapterMismatch(f"adapter '{name}' has no weight for the base's input {inp.name} {inp.shown()}: "
                                  "it adapts other modules than the base's adapter (target_modules)")
        t = tensors[inp.name]
        want = inp.expected()
        if str(t.dtype) != inp.dtype or len(t.shape) != len(want) or any(e is not None and e != s
                                                                          for e, s in zip(want, t.shape)):
            why = ""
            if inp.nbits is not None and shapes and inp.weight in shapes:
                k, n = inp.nbits[:2]
                why = (f" (int4 blocks of a {_fmt(shapes[inp.weight])} weight; the base's MatMulNBits is "
                       f"K={k} x N={n}: LoRA r differs)")
            raise AdapterMismatch(f"adapter '{name}' does not fit the base: {inp.name} is {_fmt(t.shape)} {t.dtype} "
                                  f"in the adapter, the base takes {inp.shown()} {inp.dtype}{why}")
    extra = sorted(set(tensors) - set(base.inputs))
    if extra:
        raise AdapterMismatch(f"adapter '{name}' has {extra[0]}, which is no input of the base")


def convert_adapter(adapter: Path, base: Base, scratch: Path, name: str) -> dict:
    """A PEFT adapter folder -> the base's adapter tensors, checked to fit it exactly."""
    tensors, shapes = to_base(convert_peft(adapter, base.conversion_dtype(), scratch), base, name)
    check_fits(tensors, base, name, shapes)
    return tensors


def first_difference(expected: dict, got: dict) -> str | None:
    """Where two adapters' tensors differ beyond rounding (None: they agree). int4 values may
    be one step apart and scales 1% (float16 bases round before or after scaling), never more:
    a wrong split, order or scaling shows at once."""
    import numpy as np

    for k, a in expected.items():
        if k not in got:
            return f"{k} is missing"
        b = got[k]
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"{k} is {_fmt(b.shape)} {b.dtype}, expected {_fmt(a.shape)} {a.dtype}"
        if a.dtype == np.uint8:  # packed 4-bit values: compare nibble by nibble
            steps = max(np.abs((a & 15).astype(int) - (b & 15)).max(initial=0),
                        np.abs((a >> 4).astype(int) - (b >> 4)).max(initial=0))
            if steps > 1:
                return f"{k} differs by {steps} int4 steps"
        else:
            a32, b32 = a.astype(np.float32), b.astype(np.float32)
            tol = 1e-2 * float(np.abs(a32).max(initial=0.0)) + 1e-12
            if not np.allclose(a32, b32, rtol=1e-2, atol=tol):
                return f"{k} differs by up to {float(np.abs(a32 - b32).max()):.3g}"
    extra = sorted(set(got) - set(expected))
    return f"{extra[0]} is not in the base's adapter" if extra else None


def load_adapter(path: Path) -> dict:
    from olive.common.utils import load_weights

    return load_weights(str(path))


def save_adapter(tensors: dict, path: Path) -> Path:
    from olive.common.utils import WeightsFileFormat, save_weights

    return save_weights(tensors, path, WeightsFileFormat.ONNX_ADAPTER)


def output_model_config(base_cfg: dict, base_folder: Path, own_file: str, files: list[str], active: str) -> dict:
    """The base's Olive model config for the adapters node's folder ($OUT): the extracted adapter
    replaced by the named ones, ``active`` being the one Olive feeds when it runs the model."""
    def rebase(v):
        if isinstance(v, str):
            return "$OUT" + v[len(str(base_folder)):] if v == str(base_folder) or v.startswith(f"{base_folder}/") else v
        if isinstance(v, dict):
            return {k: rebase(x) for k, x in v.items()}
        if isinstance(v, list):
            return [rebase(x) for x in v]
        return v

    cfg = rebase(base_cfg)
    inner = cfg.setdefault("config", {})
    inner["constant_inputs_file_name"] = active
    attrs = inner.get("model_attributes")
    if isinstance(attrs, dict) and isinstance(attrs.get("additional_files"), list):
        kept = [f for f in attrs["additional_files"] if Path(f).name != own_file]
        attrs["additional_files"] = sorted(kept + [f"$OUT/{f}" for f in files])
    return cfg


def _fmt(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"
