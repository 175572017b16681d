"""Per-pass facts about this Olive stack, in one table: what a pass needs from the
machine, which package versions shape its result, what model type it outputs, and
which pass pairs are known to break. Read by the olive node kind; nothing else."""
from __future__ import annotations

from dataclasses import dataclass

EXECUTION_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "npu": "QNNExecutionProvider",
}
KNOWN_PROVIDERS = {
    "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider", "DmlExecutionProvider",
    "ROCMExecutionProvider", "MIGraphXExecutionProvider", "OpenVINOExecutionProvider", "QNNExecutionProvider",
    "VitisAIExecutionProvider", "WebGpuExecutionProvider", "NvTensorRTRTXExecutionProvider", "JsExecutionProvider",
}

# Passes whose training hyper-parameters may be written flat in params (max_steps: 100)
TRAINING_PASSES = {"LoRA", "QLoRA", "DoRA", "LoftQ", "LoHa", "LoKr"}
# Params that name where a pass writes: olivepipe decides where results go (the node's
# staging folder), so a workflow may not point them anywhere else (validation refuses them,
# the importer reports them).
OUTPUT_LOCATION_PARAMS = {("output_dir",), ("training_args", "output_dir"), ("training_args", "logging_dir"),
                          ("extra_options", "filename")}

# Packages whose version can change any Olive pass's result.
BASE_PACKAGES = ("olive-ai", "torch", "transformers", "onnxruntime", "onnx")


@dataclass(frozen=True)
class PassInfo:
    cuda: bool = False  # runs only on a CUDA GPU
    needs: tuple[str, ...] = ()  # packages that must be importable where it runs
    shapes: tuple[str, ...] = ()  # packages (beyond BASE_PACKAGES) whose versions go into the key
    note: str = ""  # why it needs what it needs


_TRAIN = ("peft", "datasets", "accelerate")
PASSES = {
    "LoRA": PassInfo(needs=("peft", "datasets"), shapes=_TRAIN),
    "DoRA": PassInfo(needs=("peft", "datasets"), shapes=_TRAIN),
    "QLoRA": PassInfo(cuda=True, needs=("bitsandbytes",), shapes=_TRAIN + ("bitsandbytes",),
                      note="bitsandbytes 4-bit training needs CUDA"),
    "LoftQ": PassInfo(cuda=True, needs=("bitsandbytes",), shapes=_TRAIN + ("bitsandbytes",)),
    "AutoAWQQuantizer": PassInfo(cuda=True, needs=("autoawq",), shapes=("autoawq", "datasets"),
                                 note="autoawq kernels run on CUDA only"),
    "Gptq": PassInfo(shapes=("datasets",)),
    "GptqQuantizer": PassInfo(cuda=True, needs=("auto-gptq",), shapes=("auto-gptq", "datasets")),
    "GptqModel": PassInfo(cuda=True, needs=("gptqmodel",)),
    "ModelBuilder": PassInfo(needs=("onnxruntime-genai",), shapes=("onnxruntime-genai",)),
    "OnnxConversion": PassInfo(needs=("onnx", "onnxscript"), shapes=("onnxscript",)),
    "OrtTransformersOptimization": PassInfo(shapes=("onnxscript",)),
    "ExtractAdapters": PassInfo(shapes=("onnxruntime-genai",)),
}
NONE = PassInfo()

# Passes whose output is an ONNX model (the rest keep a Hugging Face folder).
_ONNX_OUTPUT = {"ModelBuilder", "ExtractAdapters", "OrtTransformersOptimization"}

# Known breakages of this stack (olive-ai 0.13, transformers 5): (upstream pass, pass) -> why.
_AWQ_LORA = ("LoRA on an AWQ checkpoint needs gptqmodel: transformers 5 loads AWQ only through it "
             "(ImportError: Loading an AWQ quantized model requires gptqmodel). gptqmodel is source-only on PyPI; "
             "7.x needs torch>=2.14.1 and transformers>=5.20.2, 6.0.3 works with torch 2.11 / transformers 5.17 "
             "(pure-Python build) through olivepipe's runtime fixes (olivepipe/olive/gptq_shim.py). Install it, or "
             "take a working route: LoRA on the base model then model-builder int4 (docs/gpu.md)")
INCOMPATIBLE = {
    ("AutoAWQQuantizer", "LoRA"): _AWQ_LORA,
    ("AutoAWQQuantizer", "DoRA"): "peft's AWQ layer has no DoRA (AwqLoraLinear: 'does not support DoRA yet'); "
    "use LoRA on the AWQ checkpoint (needs gptqmodel), or DoRA on the base model",
    ("AutoAWQQuantizer", "QLoRA"): "Olive's QLoRA quantizes its input with bitsandbytes and refuses a quantized one "
    "(ValueError: Model is already quantized); use LoRA on the AWQ checkpoint (needs gptqmodel)",
    ("Rtn", "LoRA"): "Olive's Rtn output has QuantLinear layers, which peft cannot wrap with LoRA",
    ("Gptq", "LoRA"): "Olive's Gptq output has QuantLinear layers, which peft cannot wrap with LoRA",
}
for _t in ("LoHa", "LoKr"):
    INCOMPATIBLE[("AutoAWQQuantizer", _t)] = (f"peft has no {_t} layer for gptqmodel's AWQ linears (TypeError: "
                                              "Target module of type AwqTorchQuantLinear not supported); "
                                              "use LoRA on the AWQ checkpoint (needs gptqmodel)")
for _q in ("Rtn", "Gptq"):
    for _t in ("DoRA", "QLoRA", "LoHa", "LoKr"):
        INCOMPATIBLE.setdefault((_q, _t), INCOMPATIBLE[(_q, "LoRA")])

# Pairs above that work once these packages are installed where the pass runs: then the
# pass needs them (its `needs` on such an input) and the pair is no longer a warning.
RESOLVED_BY = {("AutoAWQQuantizer", "LoRA"): ("gptqmodel",)}

# Breakages two hops long: (pass two up, upstream pass, pass) -> why. LoRA on an AWQ
# checkpoint trains (with gptqmodel), but onnxruntime-genai cannot build it with its adapter.
INCOMPATIBLE_CHAIN = {
    ("AutoAWQQuantizer", "LoRA", "ModelBuilder"):
        "onnxruntime-genai's builder (0.14.1; 0.15.2 and 0.18.0 the same) loads an AWQ folder into its own "
        "AWQModel (not a torch module) and then wraps it in peft's PeftModel for the adapter: AttributeError: "
        "'AWQModel' object has no attribute 'named_modules'. Put a `kind: dequantize` node between the LoRA node "
        "and model-builder: it writes the AWQ model's own weights in float with the adapter beside them "
        "(workflows/phi35-travel.yaml, docs/gpu.md)",
}


def incompatibility(upstream: str | None, pass_type: str | None, installed=None) -> str | None:
    """Why ``upstream -> pass_type`` is known to break here, or None. A pair that
    RESOLVED_BY packages fix is no breakage where ``installed(pkg)`` holds for all of them
    (``installed``: a predicate; default: olivepipe.core.versions.version(pkg) is not None)."""
    why = INCOMPATIBLE.get((upstream, pass_type))
    fix = RESOLVED_BY.get((upstream, pass_type))
    if why and fix:
        if installed is None:
            from ..core.versions import version

            def installed(pkg):
                return version(pkg) is not None
        if all(installed(p) for p in fix):
            return None
    return why


def input_needs(upstream: str | None, pass_type: str | None) -> tuple[str, ...]:
    """Packages a pass needs because of what its input is (LoRA on AWQ: gptqmodel)."""
    return RESOLVED_BY.get((upstream, pass_type), ())


def chain_incompatibility(grand: str | None, upstream: str | None, pass_type: str | None) -> str | None:
    return INCOMPATIBLE_CHAIN.get((grand, upstream, pass_type))


# What a CPU-incapable pass becomes under --rehearse. "bypass": its consumers read
# its input. Olive's CPU quantizers (rtn, gptq) produce QuantLinear layers that LoRA
# cannot train on, so a quantizer in front of LoRA is bypassed rather than swapped.
STAND_INS = {
    "AutoAWQQuantizer": {"bypass": True, "why": "AWQ kernels need CUDA; the int4 step downstream still runs"},
    "GptqQuantizer": {"bypass": True, "why": "auto-gptq needs CUDA"},
    "QLoRA": {"pass": "LoRA", "why": "bitsandbytes 4-bit training needs CUDA; LoRA trains the same adapter shape"},
}

# Olive's AWQ pass hands autoawq only a dataset name, split and text column: its data
# must be a local folder with a `text` column (see olivepipe/core/datasets.py).
TEXT_FOLDER_DATA = {"AutoAWQQuantizer"}


# Ranges Olive's pass configs do not check (an int or float of any value passes them): LoRA
# rank, scaling and dropout, and the HF TrainingArguments that count steps, sizes and rates.
# (low, high, what); None: unbounded on that side. max_steps keeps HF's "-1: no limit".
NUMBER_RANGES = {
    "r": (1, 65536, "the LoRA rank: a whole number from 1 to 65536"),
    "lora_alpha": (1e-12, 1e6, "LoRA's scaling: a positive number"),
    "lora_dropout": (0, 0.999, "a dropout probability: at least 0, below 1"),
    "learning_rate": (1e-12, 10, "a positive learning rate (e.g. 2e-4)"),
    "max_steps": (-1, 1e9, "a positive step count (or -1: train by epochs)"),
    "num_train_epochs": (1e-9, 1e6, "a positive number of epochs"),
    "per_device_train_batch_size": (1, 1e6, "a batch size of at least 1"),
    "per_device_eval_batch_size": (1, 1e6, "a batch size of at least 1"),
    "gradient_accumulation_steps": (1, 1e6, "at least 1"),
    "warmup_steps": (0, 1e9, "zero or more steps"),
    "warmup_ratio": (0, 1, "a fraction from 0 to 1"),
    "weight_decay": (0, 1e3, "zero or more"),
    "max_grad_norm": (0, 1e9, "zero or more"),
    "logging_steps": (1e-9, 1e9, "a positive number"),
    "save_steps": (1e-9, 1e9, "a positive number"),
    "eval_steps": (1e-9, 1e9, "a positive number"),
    "seed": (0, 2**32 - 1, "0 to 4294967295"),
}
# HF TrainingArguments that read or write files, or send things to a hub: olivepipe decides where a
# node writes and what it reads (its inputs), and a node never uploads anywhere.
OUTSIDE_TRAINING_ARGS = {
    "deepspeed": "reads a DeepSpeed config file from anywhere",
    "resume_from_checkpoint": "reads a checkpoint from anywhere",
    "hub_token": "is a secret, and olivepipe never pushes to a hub",
    "push_to_hub": "uploads the model to a hub",
    "hub_model_id": "names a hub repository to upload to",
    "hub_strategy": "is about uploading to a hub",
    "hub_private_repo": "is about uploading to a hub",
    "fsdp_config": "can name a config file",
    "accelerator_config": "can name a config file",
}
# any training argument named like these names a place on disk
OUTSIDE_SUFFIXES = ("_dir", "_path", "_file", "_folder")


def number_range_problem(key: str, value):
    """(why, hint) if ``value`` is out of range for the parameter ``key`` (None: fine or unknown)."""
    rng = NUMBER_RANGES.get(key)
    if rng is None or isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
            or value in (float("inf"), float("-inf")):
        return None  # not a number, or not finite: the finiteness check says so once
    low, high, what = rng
    if key == "max_steps" and value == -1:
        return None
    if key == "max_steps" and value <= 0 or not (low <= value <= high):
        return f"{key}: {value!r} is out of range", what
    if key == "r" and value != int(value):
        return f"r: {value!r} is not a whole number", what
    return None


# Values Olive 0.13 accepts in its pass config but fails on when the pass runs.
REFUSED_VALUES = {
    ("ModelBuilder", "precision", "int8"): ("Olive 0.13's ModelBuilder has no int8 mapping (KeyError: Precision.INT8)",
                                            "use precision int4, fp16, bf16 or fp32; for int8 ONNX use onnx-dynamic-quant"),
}

# Passes that fail on this stack for some architectures (what `plan` would otherwise promise).
BROKEN_FOR_ARCH = {
    "OnnxConversion": ({"phi3", "llama"},
                       "OnnxConversion fails on phi3 and llama with transformers 5 (TorchScript: DynamicCache; "
                       "dynamo: export error)",
                       "use `pass: model-builder` (onnxruntime-genai's builder), the route the lab takes"),
}


def info(pass_type: str | None) -> PassInfo:
    return PASSES.get(pass_type or "", NONE)


def shaping_packages(pass_type: str | None) -> tuple[str, ...]:
    return tuple(sorted(set(BASE_PACKAGES + info(pass_type).shapes)))


def output_format(pass_type: str | None) -> str:
    if pass_type and (pass_type.startswith("Onnx") or pass_type in _ONNX_OUTPUT):
        return "onnx"
    return "hf"


# Memory a pass needs, per billion parameters of the model it reads: (host RAM GiB low, high),
# GPU GiB, and where the numbers come from. Measured at Phi-3.5-mini's shape (3.82 B parameters)
# on one H100/H200 (docs/gpu.md, bench/gpu-lab-*.json); they scale with the parameter count.
# A pass missing here has no estimate (plan says nothing rather than guess).
MEMORY = {
    # the builder loads the whole model in float32 and keeps its int4 graph beside it
    "ModelBuilder": ((8.7, 9.7), 0.0, "model-builder int4 at 3.82 B: 33.3-36.9 GiB host RAM"),
    "AutoAWQQuantizer": ((1.0, 1.3), 1.4, "AWQ at 3.82 B: 4.6 GiB host RAM, 5.4 GB GPU (layer by layer)"),
    "LoRA": ((1.0, 2.2), 3.6, "LoRA 100 steps, seq 1024, bf16 at 3.82 B: 14.6 GB GPU"),
}
# LoRA on an AWQ checkpoint trains over the packed weights (gptqmodel's kernels)
MEMORY_ON_INPUT = {("AutoAWQQuantizer", "LoRA"): ((1.0, 2.2), 1.2, "LoRA on the AWQ checkpoint at 3.82 B: 4.5 GB GPU")}


def memory(pass_type: str | None, upstream: str | None = None):
    """((host GiB low, high), GPU GiB, source) per billion parameters, or None."""
    return MEMORY_ON_INPUT.get((upstream, pass_type)) or MEMORY.get(pass_type or "")
