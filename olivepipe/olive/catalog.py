"""What olivepipe knows about Olive's passes: names, aliases, params, needs.

The per-pass parameter tables come from Olive itself (see catalog_gen.py) and are
shipped per Olive version, so validation needs no Olive import.
"""
from __future__ import annotations

import difflib
import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .catalog_gen import catalog_path

# Friendly names for the passes a Phi-3-style pipeline uses; any Olive pass type works too.
ALIASES = {
    "awq": "AutoAWQQuantizer",
    "gptq": "Gptq",
    "rtn": "Rtn",
    "lora": "LoRA",
    "qlora": "QLoRA",
    "dora": "DoRA",
    "loftq": "LoftQ",
    "onnx-capture": "OnnxConversion",
    "model-builder": "ModelBuilder",
    "fusion": "OrtTransformersOptimization",
    "extract-adapters": "ExtractAdapters",
    "merge-adapters": "MergeAdapterWeights",
    "onnx-int4": "OnnxBlockWiseRtnQuantization",
    "onnx-dynamic-quant": "OnnxDynamicQuantization",
    "onnx-fp16": "OnnxFloatToFloat16",
}

# Params an alias sets unless the user does: the choices that ran on this stack.
ALIAS_DEFAULTS = {
    # TorchScript export breaks on transformers 5 (DynamicCache); the dynamo exporter works.
    "onnx-capture": {"use_dynamo_exporter": True},
    # Without this exclusion onnxruntime-genai loses the `logits` output.
    "onnx-int4": {"nodes_to_exclude": ["/lm_head/MatMul"]},
}

from .passes import TRAINING_PASSES  # noqa: E402  (re-exported)


from .passes import EXECUTION_PROVIDERS, KNOWN_PROVIDERS  # noqa: E402,F401  (re-exported)


@dataclass(frozen=True)
class ParamIssue:
    path: tuple  # relative to params
    message: str
    hint: str = ""


@dataclass
class Catalog:
    olive_version: str
    passes: dict
    training_args: dict
    source: str = "shipped"
    _lower: dict = field(default_factory=dict)

    def __post_init__(self):
        self._lower = {n.lower(): n for n in self.passes}

    def resolve(self, name: str) -> str | None:
        """Alias or Olive pass name (any case) -> Olive pass type."""
        if name in ALIASES:
            return ALIASES[name]
        return self._lower.get(name.lower())

    def suggest(self, name: str) -> list[str]:
        pool = list(ALIASES) + list(self.passes)
        lowered = {p.lower(): p for p in pool}
        return [lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)]

    def params(self, pass_type: str) -> dict:
        return self.passes[pass_type]["params"]

    def data_param(self, pass_type: str) -> str | None:
        """Which param receives the node's `data:` (train_data_config for trainers, else data_config)."""
        params = self.params(pass_type)
        for candidate in ("train_data_config", "data_config"):
            if candidate in params:
                return candidate
        return next((k for k, v in params.items() if v["type"] == "data_config"), None)

    def requires_data(self, pass_type: str) -> bool:
        p = self.params(pass_type)
        return any(v["type"] == "data_config" and v["required"] for v in p.values())

    def normalize(self, alias: str, pass_type: str, params: dict, device: str = "cpu") -> dict:
        """User params -> canonical params: alias defaults applied, flat training args
        nested, values equal to Olive's defaults dropped (so writing a default re-runs nothing).

        The shipped defaults are Olive's for a CPU accelerator; some differ on a GPU (fusion's
        use_gpu), so on other devices explicit values are kept as written."""
        spec = self.params(pass_type)
        out = {**ALIAS_DEFAULTS.get(alias, {}), **params}
        # a non-mapping training_args is reported by check(); lifting into it would crash
        if pass_type in TRAINING_PASSES and isinstance(out.get("training_args") or {}, dict):
            lifted = {k: out.pop(k) for k in list(out) if k not in spec and k in self.training_args}
            if lifted:
                out["training_args"] = {**lifted, **(out.get("training_args") or {})}
        for k in list(out):
            if device == "cpu" and k in spec and not spec[k]["required"] and "default" in spec[k] \
                    and out[k] == spec[k]["default"]:
                del out[k]
        return out

    def check(self, pass_type: str, params: dict) -> list[ParamIssue]:
        """Check canonical params against Olive's pass config."""
        spec = self.params(pass_type)
        issues: list[ParamIssue] = []
        for k, v in params.items():
            if k not in spec:
                # a trainer takes transformers' training arguments flat in params too: search both
                targs = list(self.training_args) if pass_type in TRAINING_PASSES else []
                close = difflib.get_close_matches(k, list(spec) + targs, n=1, cutoff=0.6)
                hint = (f"did you mean '{close[0]}'" + (" (a training argument)?" if close[0] not in spec else "?")
                        if close else f"{pass_type} accepts: {', '.join(sorted(spec))}"
                        + (" and transformers' training arguments (e.g. max_steps)" if targs else ""))
                issues.append(ParamIssue((k,), f"unknown parameter '{k}' for {pass_type}", hint))
                continue
            if spec[k]["type"] == "data_config":
                issues.append(ParamIssue((k,), f"'{k}' is set by olivepipe from the node's `data:`",
                                         "name a dataset with `data: <dataset>` instead"))
                continue
            msg = _type_error(spec[k], v)
            if msg:
                issues.append(ParamIssue((k,), f"{pass_type}.{k}: {msg}", spec[k].get("description", "")))
            if k == "training_args" and isinstance(v, dict):
                for tk in v:
                    if tk not in self.training_args:
                        close = difflib.get_close_matches(tk, list(self.training_args), n=1, cutoff=0.6)
                        issues.append(ParamIssue((k, tk), f"unknown training argument '{tk}'",
                                                 f"did you mean '{close[0]}'?" if close else
                                                 "see transformers.TrainingArguments"))
        for k, s in spec.items():
            if s["required"] and k not in params and s["type"] != "data_config":
                issues.append(ParamIssue((), f"{pass_type} requires parameter '{k}'", s.get("description", "")))
        return issues


def _type_error(spec: dict, v) -> str | None:
    if v is None:
        return None if spec.get("nullable") or spec.get("default") is None else "must not be null"
    t = spec["type"]
    ok = {
        "boolean": lambda: isinstance(v, bool),
        "integer": lambda: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda: isinstance(v, (int, float)) and not isinstance(v, bool),
        "string": lambda: isinstance(v, str),
        "path": lambda: isinstance(v, str),
        "array": lambda: isinstance(v, list),
        "object": lambda: isinstance(v, dict),
        "enum": lambda: v in spec["choices"],
    }.get(t, lambda: True)()
    if ok:
        return None
    if t == "enum":
        return f"{v!r} is not one of {spec['choices']}"
    want = {"boolean": "true or false", "integer": "an integer", "number": "a number", "string": "a string",
            "path": "a path string", "array": "a list", "object": "a mapping"}[t]
    return f"expected {want}, got {type(v).__name__} {v!r}"


def installed_version(dist: str) -> str | None:
    from ..core.versions import version

    return version(dist)


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "olivepipe"


@functools.lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The catalog for the installed Olive; generated once (and cached) for an unshipped version."""
    version = installed_version("olive-ai")
    candidates = []
    if version:
        candidates = [catalog_path(version), _cache_home() / f"catalog-olive-{version}.json"]
    for path in candidates:
        if path.exists():
            data = json.loads(path.read_text())
            return Catalog(data["olive_version"], data["passes"], data["training_args"], source=str(path))
    if version:
        out = candidates[1]
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        subprocess.run([sys.executable, "-m", "olivepipe.olive.catalog_gen", str(tmp)], check=True,
                       stdout=subprocess.DEVNULL, env={**os.environ, "CI": "1"})
        os.replace(tmp, out)
        return load_catalog.__wrapped__()
    # No Olive installed: validate against the newest shipped catalog.
    shipped = sorted(Path(__file__).parent.glob("catalog-olive-*.json"))
    data = json.loads(shipped[-1].read_text())
    return Catalog(data["olive_version"], data["passes"], data["training_args"], source=str(shipped[-1]) + " (Olive not installed)")
