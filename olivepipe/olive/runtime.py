"""How Olive runs under olivepipe: its workers' environment and the model configs it writes and reads."""
from __future__ import annotations

import os
from pathlib import Path

from ..core.job import OUT, map_strings, substitute


def worker_env(base: dict | None = None, *, offline: bool = True) -> dict:
    """Environment for worker processes: no telemetry, no heartbeat stall, no surprise downloads."""
    env = dict(os.environ if base is None else base)
    env.update({
        "OLIVE_DISABLE_TELEMETRY": "1",
        # Olive still sends a heartbeat (a ~10 s stall offline) unless it believes it runs
        # in CI; its own switch only stops later events.
        "CI": env.get("CI") or "1",
        "ORT_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
        "WANDB_DISABLED": "true",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        # one iteration order of str sets in every worker: PEFT writes a LoRA's target_modules from a
        # set, so the same node would otherwise write a different adapter_config.json per process
        "PYTHONHASHSEED": "0",
    })
    if offline:
        env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    return env




def normalize_model_config(cfg: dict, output_dir: Path) -> dict:
    """Olive's model_config.json with paths under ``output_dir`` made relative ($OUT/...)."""
    prefix = str(Path(output_dir).resolve())

    def rel(v: str) -> str:
        if v == prefix or v.startswith(prefix + os.sep):
            r = os.path.relpath(v, prefix)
            return OUT if r == "." else f"{OUT}/{Path(r).as_posix()}"
        return v

    return map_strings(cfg, rel)




# What a reader takes from a stored model config (written by whoever published the entry):
# the model's type and its files inside the entry, nothing about how to load it. Load settings
# (load_kwargs, trust_remote_code, inference_settings with their custom-op libraries) come
# from the reader's own workflow; anything else is dropped. Paths must stay inside the entry.
_MODEL_TYPES = {"hfmodel": "HfModel", "onnxmodel": "ONNXModel", "compositemodel": "CompositeModel"}
_PATH_KEYS = {"model_path", "adapter_path"}  # $OUT or $OUT/<inside> (a hub id for an HfModel's model_path)
_FILE_KEYS = {"onnx_file_name", "external_initializers_file_name", "constant_inputs_file_name"}  # relative names
_FLAG_KEYS = {"generative", "use_ort_extensions"}
_PLAIN_KEYS = {"task", "io_config", "model_component_names"}  # data; every path in them checked
# Olive's HfLoadKwargs fields that only say how weights are placed or typed; `extra_args` go to
# from_pretrained as they are, so only the attention choice passes from there
_SAFE_LOAD_KWARGS = {"torch_dtype": (str,), "attn_implementation": (str,), "low_cpu_mem_usage": (bool,),
                     "device_map": (str, dict), "max_memory": (dict,), "quantization_method": (str,),
                     "quantization_config": (dict,)}
_SAFE_EXTRA_ARGS = {"attn_implementation": (str,)}
# transformers' own attention implementations; anything else (e.g. "org/kernel-repo") would be a
# kernel fetched from the hub and run
_ATTENTION = {"eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention"}
_WORD = __import__("re").compile(r"^[A-Za-z0-9_.:-]{1,40}$")  # float16, auto, cuda:0, bitsandbytes


def _load_setting_ok(name: str, value) -> bool:
    if name == "attn_implementation":
        return value in _ATTENTION
    return not isinstance(value, str) or bool(_WORD.match(value))
_HUB_ID = __import__("re").compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")


class UntrustedModel(ValueError):
    """A stored model config a reader will not act on (why, for messages)."""


def _inside(v) -> bool:
    if not isinstance(v, str):
        return False
    if v == OUT:
        return True
    rest = v[len(OUT) + 1:] if v.startswith(OUT + "/") else None
    return bool(rest) and "\\" not in rest and "\0" not in rest and all(
        p not in ("", ".", "..") for p in rest.split("/"))


def _relative_name(v) -> bool:
    return isinstance(v, str) and bool(v) and not v.startswith(("/", "$")) and "\\" not in v and "\0" not in v \
        and all(p not in ("", ".", "..") for p in v.split("/"))


def _check_plain(v, where: str, depth: int = 0) -> None:
    """Plain data whose strings never name a place outside the entry (Olive copies
    `model_attributes.additional_files` into the next result: a path out would leak a file)."""
    if depth > 8:
        raise UntrustedModel(f"{where} is nested too deeply")
    if isinstance(v, dict):
        for k, x in v.items():
            _check_plain(x, f"{where}.{k}", depth + 1)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            _check_plain(x, f"{where}[{i}]", depth + 1)
    elif isinstance(v, str):
        if v.startswith(("/", "$", "~")) or ".." in v.split("/") or "\\" in v:
            if not _inside(v):
                raise UntrustedModel(f"{where} names a path outside the result ({v[:80]!r})")
    elif not (v is None or isinstance(v, (bool, int, float))):
        raise UntrustedModel(f"{where} is not plain data")


def _model_attributes(v) -> dict:
    """Olive keeps the model's HF config here, plus `additional_files` it copies into the next
    result: those must be inside the entry. Descriptive strings naming the writer's folders
    (`_name_or_path`) mean nothing on the reader's machine and are dropped."""
    if not isinstance(v, dict):
        raise UntrustedModel("model_attributes is not a mapping")
    out = {}
    for k, x in v.items():
        if k == "additional_files":
            if not isinstance(x, list) or not all(_inside(f) for f in x):
                raise UntrustedModel("model_attributes.additional_files names a file outside the result")
            out[k] = x
            continue
        try:
            _check_plain(x, f"model_attributes.{k}")
        except UntrustedModel:
            if isinstance(x, str):
                continue  # a path of the writer's machine, e.g. _name_or_path
            raise
        out[k] = x
    return out


def model_config_problems(cfg) -> list[str]:
    """Why a stored model config is not one a reader acts on (empty: it is)."""
    try:
        _reader_config(cfg, None, None, depth=0)
    except UntrustedModel as e:
        return [str(e)]
    return []


def ignored_load_settings(cfg) -> list[str]:
    """The load settings a stored config asks for that readers ignore (for `cache verify`)."""
    out = []
    inner = cfg.get("config") if isinstance(cfg, dict) else None
    if not isinstance(inner, dict):
        return out
    lk = inner.get("load_kwargs")
    lk = lk if isinstance(lk, dict) else {}
    extra = lk.get("extra_args") if isinstance(lk.get("extra_args"), dict) else {}
    if inner.get("trust_remote_code") or lk.get("trust_remote_code") or extra.get("trust_remote_code"):
        out.append("trust_remote_code")
    # Olive writes its defaults (None, false, {}); the reader's own revision replaces any
    out += [f"load_kwargs.{k}" for k in sorted(lk)
            if k not in _SAFE_LOAD_KWARGS and k not in ("trust_remote_code", "revision", "extra_args") and lk[k]]
    out += [f"load_kwargs.extra_args.{k}" for k in sorted(extra)
            if k not in _SAFE_EXTRA_ARGS and k != "trust_remote_code" and extra[k]]
    out += sorted(k for k in inner if k in ("inference_settings", "hf_config", "model_loading_args") and inner[k])
    for comp in inner.get("model_components") or () if isinstance(inner.get("model_components"), list) else ():
        out += ignored_load_settings(comp)
    return out


def reader_model_config(cfg: dict, placeholder: str, source=None) -> dict:
    """The input-model config a job reads a stored result with, at ``placeholder``.

    Built by the reader: the type and the entry's own files come from the stored config
    (checked to stay inside the entry); how to load it comes from ``source``, the reader's
    `models:` entry the result descends from (its trust_remote_code, load_kwargs, revision).
    Raises UntrustedModel for a config no reader acts on. Drops None values too: Olive writes
    `"load_kwargs": null` and then crashes reading it back with a dataset."""
    return substitute(_reader_config(cfg, placeholder, source, depth=0), {OUT: placeholder})


def _reader_config(cfg, placeholder, source, depth: int) -> dict:
    if depth > 2:
        raise UntrustedModel("model components are nested too deeply")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("type"), str):
        raise UntrustedModel("the model config has no type")
    kind = _MODEL_TYPES.get(cfg["type"].lower())
    if kind is None:
        raise UntrustedModel(f"model type {cfg['type'][:40]!r} is not one olivepipe reads back")
    inner = cfg.get("config") or {}
    if not isinstance(inner, dict):
        raise UntrustedModel("the model config's `config` is not a mapping")
    out: dict = {}
    for k, v in inner.items():
        if v is None:
            continue
        if k in _PATH_KEYS:
            if _inside(v):
                out[k] = v
            elif k == "model_path" and kind == "HfModel" and isinstance(v, str) and _HUB_ID.match(v):
                # a result that keeps its base on the hub: it must be the reader's own base model
                if placeholder is not None and getattr(source, "hf", None) != v:
                    raise UntrustedModel(f"model_path {v!r} is not this workflow's model "
                                         f"({getattr(source, 'hf', None) or 'a local model'})")
                out[k] = v
            else:
                raise UntrustedModel(f"{k} names a path outside the result ({str(v)[:80]!r})")
        elif k in _FILE_KEYS:
            if not _relative_name(v):
                raise UntrustedModel(f"{k} is not a file name inside the result ({str(v)[:80]!r})")
            out[k] = v
        elif k in _FLAG_KEYS:
            if not isinstance(v, bool):
                raise UntrustedModel(f"{k} is not true or false")
            out[k] = v
        elif k in _PLAIN_KEYS:
            if k == "io_config" and not isinstance(v, dict):  # a string names a function in a user script
                raise UntrustedModel("io_config is not a mapping")
            _check_plain(v, k)
            out[k] = v
        elif k == "model_attributes":
            out[k] = _model_attributes(v)
        elif k == "load_kwargs":
            if not isinstance(v, dict):
                raise UntrustedModel("load_kwargs is not a mapping")
            kept = {n: x for n, x in v.items() if isinstance(x, _SAFE_LOAD_KWARGS.get(n, ())) and _load_setting_ok(n, x)}
            for n in ("device_map", "max_memory", "quantization_config"):
                if isinstance(kept.get(n), dict):
                    _check_plain(kept[n], f"load_kwargs.{n}")
            extra = v.get("extra_args")
            extra = {n: x for n, x in extra.items()
                     if isinstance(x, _SAFE_EXTRA_ARGS.get(n, ())) and _load_setting_ok(n, x)} \
                if isinstance(extra, dict) else {}
            if extra:
                kept["extra_args"] = extra
            if kept:
                out[k] = kept
        elif k == "model_components":
            if not isinstance(v, list) or len(v) > 64:
                raise UntrustedModel("model_components is not a list of models")
            out[k] = [_reader_config(c, placeholder, source, depth + 1) for c in v]
        # anything else (trust_remote_code, inference_settings, hf_config, ...) is not the writer's to say
    if kind == "HfModel" and placeholder is not None:
        own = {"trust_remote_code": bool(getattr(source, "trust_remote_code", False)),
               **(getattr(source, "load_kwargs", None) or {})}
        if getattr(source, "revision", None) and out.get("model_path") == getattr(source, "hf", None):
            own["revision"] = source.revision
        out["load_kwargs"] = {**out.get("load_kwargs", {}), **own}
    return {"type": kind, "config": out}


def resolve_model_config(cfg: dict, tree: Path) -> dict:
    """Inverse of normalize: $OUT/... -> absolute paths inside a store entry."""
    return substitute(cfg, {OUT: str(tree)})
