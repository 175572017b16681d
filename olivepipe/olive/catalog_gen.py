"""Generate the pass catalog from the installed Olive (run: python -m olivepipe.olive.catalog_gen).

The catalog lets `validate` check pass names and params against Olive's own pass
configs without importing Olive (4+ s). It is generated per Olive version; a test
regenerates it and compares, so a drift between Olive and the shipped file fails CI.
"""
from __future__ import annotations

import enum
import json
import sys
import typing
from pathlib import Path


def _kind(tp) -> dict:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or str(origin) == "types.UnionType":
        names = {getattr(a, "__name__", str(a)) for a in args}
        if "DataConfig" in names:
            return {"type": "data_config"}
        non_none = [a for a in args if a is not type(None)]
        if {getattr(a, "__name__", "") for a in non_none} <= {"Path", "str"} and any(
                getattr(a, "__name__", "") == "Path" for a in non_none):
            return {"type": "path"}
        if len(non_none) == 1:
            return {**_kind(non_none[0]), "nullable": True}
        kinds = [_kind(a)["type"] for a in non_none]
        if "object" in kinds:  # Union[SomeConfig, dict]
            return {"type": "object"}
        return {"type": "any"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"type": "enum", "choices": [m.value for m in tp]}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if tp is list or origin is list:
        return {"type": "array"}
    if tp is dict or origin is dict:
        return {"type": "object"}
    if getattr(tp, "__name__", "") == "Path":
        return {"type": "path"}
    return {"type": "any"}


def _json_default(v):
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, Path):
        return str(v)
    try:
        json.dumps(v)
        return v
    except TypeError:
        return repr(v)


def generate() -> dict:
    from olive.hardware.accelerator import AcceleratorSpec, Device
    from olive.package_config import OlivePackageConfig
    from olive.passes.pytorch.lora import HFTrainingArguments
    from importlib.metadata import version

    pc = OlivePackageConfig.load_default_config()
    spec = AcceleratorSpec(accelerator_type=Device.CPU, execution_provider="CPUExecutionProvider")
    passes = {}
    for mc in pc.passes.values():
        name = mc.module_path.rsplit(".", 1)[1]
        cls = pc.import_pass_module(name)
        params = {}
        for pname, p in cls._default_config(spec).items():
            entry = _kind(p.type_)
            entry["required"] = bool(p.required)
            if not p.required:
                entry["default"] = _json_default(p.default_value)
            desc = (p.description or "").strip().split("\n")[0]
            if desc:
                entry["description"] = desc[:200]
            params[pname] = entry
        passes[name] = {
            "module": mc.module_path,
            "accelerators": sorted(mc.supported_accelerators),
            "providers": sorted(mc.supported_providers),
            "precisions": sorted(mc.supported_precisions),
            "extras": sorted(mc.extra_dependencies),
            "dataset": str(getattr(mc.dataset, "value", mc.dataset)),
            "params": params,
        }
    training_fields = {}
    for fname, f in HFTrainingArguments.model_fields.items():
        training_fields[fname] = {**_kind(f.annotation), "default": _json_default(f.default)}
    # Olive forwards unknown training_args to transformers.TrainingArguments: list those too.
    import dataclasses
    from transformers import TrainingArguments
    for f in dataclasses.fields(TrainingArguments):
        if f.init and f.name not in training_fields:
            training_fields[f.name] = {"type": "any", "hf": True}
    return {"olive_version": version("olive-ai"), "transformers_version": version("transformers"),
            "passes": passes, "training_args": training_fields}


def catalog_path(olive_version: str) -> Path:
    return Path(__file__).with_name(f"catalog-olive-{olive_version}.json")


if __name__ == "__main__":
    data = generate()
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else catalog_path(data["olive_version"])
    out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(out, len(data["passes"]), "passes")
