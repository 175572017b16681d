"""Olive workflow config (JSON) -> olivepipe workflow file: the inverse of compile.py.

One node per pass, chained in the order Olive runs them; the input model becomes a
`models:` entry, each data config a pass reads becomes a `datasets:` entry, the target
system's accelerator gives `device`/`provider`. What olivepipe cannot express is never
dropped silently: every such item is an ``Untranslated`` in the report, which the CLI
prints and writes as comments at the top of the file.

Reads the shapes Olive 0.13 itself accepts (flat, or nested under `config` / `params` /
`engine`). Knows Olive's defaults where they differ from olivepipe's (a dataset's split,
add_special_tokens, max_samples), so the imported workflow runs what the config ran.
Imports no Olive: the pass catalog and the tables below are enough. Validating and laying out
the result is spec's part (spec/importing.py), so nothing here reaches up into spec.
"""
from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..core.errors import OlivepipeError, Problem
from .catalog import (
    ALIAS_DEFAULTS,
    ALIASES,
    EXECUTION_PROVIDERS,
    TRAINING_PASSES,
    Catalog,
    load_catalog,
)
from .passes import OUTPUT_LOCATION_PARAMS  # the same table validation refuses

# RunConfig's own fields (olive/workflows/run/config.py); every other top-level key is an
# engine option (RunConfig gathers them into `engine`, as NestedConfig does)
RUN_CONFIG_KEYS = ("workflow_id", "input_model", "systems", "data_configs", "evaluators", "engine", "passes")

# Engine options that cannot change the model a pass produces, whatever their value
ENGINE_IGNORED = {
    "no_artifacts",  # Olive's run history and footprints only; olivepipe sets it itself
    "evaluate_input_model",  # acts only through an evaluator, which is reported
    "clean_cache", "clean_evaluation_cache",  # olivepipe gives every Olive run a fresh cache anyway
}
# Engine options that do nothing at these values (Olive's defaults)
ENGINE_NOOP_VALUES = {"search_strategy": (None, False), "log_severity_level": (1,),  # compile.py runs Olive at 1
                      "evaluator": (None,), "packaging_config": (None, []),
                      "enable_shared_cache": (False,), "plot_pareto_frontier": (False,), "log_to_file": (False,)}
_LOGS = "olivepipe runs Olive at INFO level into each node's log (`olivepipe logs FILE NODE`)"
ENGINE_WHY = {
    "output_dir": "olivepipe writes each node's result to outputs/<workflow>/<node>, a link into its store",
    "cache_dir": "olivepipe caches results by content and gives every Olive run a fresh cache of its own",
    "cache_config": "olivepipe's store replaces Olive's (shared) cache (`olivepipe cache`, --cache-dir)",
    "enable_shared_cache": "olivepipe's store replaces Olive's shared cache (--cache-dir can be shared)",
    "packaging_config": "olivepipe does not package outputs; `olivepipe show FILE NODE --export DIR` copies a result",
    "search_strategy": "olivepipe runs each pass once with the params written: no search",
    "evaluator": "the evaluator it names has no metric olivepipe can measure (see its entry): nothing is evaluated",
    "log_severity_level": _LOGS, "ort_log_severity_level": _LOGS, "ort_py_log_severity_level": _LOGS,
    "log_to_file": _LOGS,
    "plot_pareto_frontier": "there is no search, so no pareto frontier",
}

# Olive's TextGenParams defaults (olive/data/component/text_generation.py, olive-ai 0.13;
# tests/test_import.py checks them against the installed Olive). olivepipe's own defaults
# follow the Olive CLI instead (compile.CLI_PREPROCESS), so the importer writes Olive's.
TEXT_GEN_DEFAULTS = {
    "user_script": None, "script_dir": None, "max_samples": None, "max_seq_len": 1024, "pad_to_max_len": True,
    "padding_side": "right", "drop_short_sequences": False, "use_attention_mask": True, "chat_template": None,
    "message_col": "messages", "add_special_tokens": True, "text_formatting_func": None, "text_template": None,
    "text_cols": ["text"], "strategy": "join", "stride": None, "joiner": "\n\n", "processing_batch_size": 1024,
    "random_seed": None, "random_retries": 10,
}
# Filled in by Olive from the input model when absent (RunConfig.validate_data_configs_with_hf_model)
FROM_INPUT_MODEL = ("model_name", "task", "trust_remote_code")
DEFAULT_HF_TASK = "text-generation-with-past"  # olive/common/constants.py
TEXT_GEN_TASKS = ("text-generation", "text-generation-with-past")
# Olive's load_dataset default split (olive/data/component/load_dataset.py huggingface_dataset)
OLIVE_DEFAULT_SPLIT = "validation"
# Component types Olive picks for a HuggingfaceContainer of a text-generation model
DEFAULT_COMPONENTS = {
    "load_dataset_config": (None, "huggingface_dataset"),
    "pre_process_data_config": (None, "text_generation_huggingface_pre_process", "huggingface_pre_process"),
    "post_process_data_config": (None, "text_generation_post_process", "default_post_process_data"),
    "dataloader_config": (None, "default_dataloader"),
}
DATALOADER_DEFAULTS = {"batch_size": 1}  # olive/data/component/dataloader.py default_dataloader
FILE_FORMATS = ("json", "jsonl", "csv", "parquet")  # olivepipe's `files:` formats (spec.DATA_FORMATS)

# An execution provider -> the one device Olive infers for it when an accelerator names
# none (olive/hardware/accelerator.py infer_single_device_from_execution_providers); Dml
# and OpenVINO map to several devices, where Olive refuses and asks for the device.
EP_DEVICE = {
    "CPUExecutionProvider": "cpu", "QNNExecutionProvider": "npu", "VitisAIExecutionProvider": "npu",
    "CUDAExecutionProvider": "gpu", "ROCMExecutionProvider": "gpu", "MIGraphXExecutionProvider": "gpu",
    "TensorrtExecutionProvider": "gpu", "NvTensorRTRTXExecutionProvider": "gpu", "JsExecutionProvider": "gpu",
    "WebGpuExecutionProvider": "gpu",
}
DEVICES = ("cpu", "gpu", "npu")  # what a node's `device:` takes
TORCH_DTYPES = ("auto", "float32", "float16", "bfloat16")  # a model's load_kwargs.torch_dtype (schema.py)

_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")  # as schema._model.hf
_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]+")
_SPLIT_HEAD = re.compile(r"train\[:(\d+)\]")


class ImportConfigError(OlivepipeError):
    """The file is not an Olive workflow config olivepipe can import at all."""

    exit_code = 2


@dataclass(frozen=True)
class Untranslated:
    """One thing in the Olive config the olivepipe workflow does not carry as written."""

    path: str  # where in the Olive config, e.g. passes.f.training_args.output_dir
    message: str  # what happens instead, and why

    def format(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Translation:
    doc: dict  # the workflow document (plain data, keys in fmt's canonical order)
    report: list[Untranslated] = field(default_factory=list)


# -- reading ---------------------------------------------------------------------------

MAX_CONFIG_BYTES = 16 << 20


def read_config(path: Path) -> dict:
    """An Olive workflow config from a JSON (or YAML, which `olive run` also reads) file."""
    from ..core import boundedjson, yamlpos
    from ..core.safefs import read_regular

    path = Path(path)
    try:
        raw = read_regular(path)  # a FIFO or a device fails at once instead of hanging
        if len(raw) > MAX_CONFIG_BYTES:
            raise ImportConfigError(f"{path}: {len(raw):,} bytes; an Olive workflow config is a few kilobytes",
                                    "give the Olive workflow config (JSON)")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ImportConfigError(f"{path}: no such file", "give the Olive workflow config (JSON)") from None
    except IsADirectoryError:
        raise ImportConfigError(f"{path}: is a directory", "give the Olive workflow config (JSON)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ImportConfigError(f"{path}: cannot read: {e}") from None
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    try:
        if is_yaml:  # the workflow loader's bounds: alias bombs, nesting, plain data only
            data, _, problems = yamlpos.load(text.removeprefix("\ufeff"), str(path))
            if problems:
                p = problems[0]
                raise ValueError(f"line {p.line}:{p.col}: {p.message}")
        else:
            data = boundedjson.loads(text, max_depth=64)
    except ValueError as e:  # JSONDecodeError is one
        raise ImportConfigError(f"{path}: not valid {'YAML' if is_yaml else 'JSON'}: {e}",
                                "an Olive workflow config is a JSON object") from None
    if not isinstance(data, dict) or not isinstance(data.get("passes"), dict) or "input_model" not in data:
        raise ImportConfigError(f"{path}: not an Olive workflow config (it needs `input_model` and `passes`)",
                                "olivepipe imports the JSON that `olive run --config` runs")
    return data


def _nested(obj, key: str) -> dict:
    """Olive's NestedConfig: {type, config: {...}} and the flat form mean the same; the outer keys win."""
    if not isinstance(obj, dict):
        return {}
    inner = obj.get(key)
    out = dict(inner) if isinstance(inner, dict) else {}
    out.update({k: v for k, v in obj.items() if k != key})
    return out


def engine_options(cfg: dict) -> dict:
    """Engine options, written under `engine` or (Olive 0.13's usual form) at the top level."""
    return {**(cfg.get("engine") if isinstance(cfg.get("engine"), dict) else {}),
            **{k: v for k, v in cfg.items() if k not in RUN_CONFIG_KEYS}}


def name_of(raw: str, fallback: str) -> str:
    """An olivepipe name (letters, digits, - and _, a letter first, at most 64) from an Olive name."""
    n = _NAME_BAD.sub("-", str(raw)).strip("-")
    if not n:
        return fallback
    if not n[0].isalpha():
        n = f"{fallback}-{n}"
    return n[:64].rstrip("-_") or fallback


# -- translation -------------------------------------------------------------------------

def translate(cfg: dict, *, source_dir: Path, out_dir: Path, name: str | None = None,
              default_name: str = "imported", catalog: Catalog | None = None) -> Translation:
    """An Olive workflow config -> an olivepipe workflow document and what it leaves out.

    Relative paths in the config are read against ``source_dir`` (where `olive run` would
    be started) and written relative to ``out_dir`` (the workflow file's folder)."""
    return _Importer(cfg, Path(source_dir), Path(out_dir), catalog or load_catalog()).run(name, default_name)


class _Importer:
    def __init__(self, cfg: dict, source_dir: Path, out_dir: Path, catalog: Catalog):
        self.cfg, self.src, self.out, self.catalog = cfg, source_dir, out_dir, catalog
        self.report: list[Untranslated] = []
        self.data_configs: dict[str, dict] = {}
        self.datasets: dict[str, dict] = {}  # olivepipe name -> entry
        self.dataset_of: dict[str, str | None] = {}  # Olive data config name -> olivepipe name (None: not importable)
        self.used_data: set[str] = set()
        self.search = self.searched = self.evaluated = False

    def skip(self, path: str, message: str) -> None:
        self.report.append(Untranslated(path, message))

    def rel(self, p: str) -> str:
        """A path as Olive reads it (against the folder `olive run` starts in) -> relative to the workflow."""
        full = Path(p) if os.path.isabs(p) else self.src / p
        return Path(os.path.relpath(os.path.abspath(full), os.path.abspath(self.out))).as_posix()

    def run(self, name: str | None, default_name: str) -> Translation:
        cfg = self.cfg
        if name and name_of(name, "imported") != name:
            raise ImportConfigError(f"--name {name!r} is not a workflow name",
                                    "letters, digits, - and _, starting with a letter (at most 64)")
        engine = engine_options(cfg)
        model_name, model = self.model(cfg["input_model"])
        device, provider = self.system(cfg.get("systems") or {}, engine)
        for i, dc in enumerate(cfg.get("data_configs") or []):
            if isinstance(dc, dict) and isinstance(dc.get("name"), str):
                self.data_configs[dc["name"]] = dc
            else:
                self.skip(f"data_configs[{i}]", "a data config without a name: nothing can use it")
        self.search = bool(engine.get("search_strategy"))  # Olive searches only with a strategy
        nodes = self.passes(cfg["passes"], model_name)
        if model_name in nodes:  # a pass named like the model: the model gets another name
            model_name = next(n for n in (f"{model_name[:58]}-model", *(f"base-{i}" for i in range(len(nodes) + 1)))
                              if n not in nodes)
            first = next(iter(nodes.values()), None)
            if first is not None:
                first["input"] = model_name
        nodes.update(self.evaluation(engine, nodes, model_name))
        for dc in self.data_configs:
            if dc not in self.used_data:
                self.skip(f"data_configs[{dc}]", "nothing imported reads it (passes' and perplexity's data configs "
                                                 "become datasets)")
        self.engine(engine)
        doc: dict = {"olivepipe": 1, "name": name_of(name or cfg.get("workflow_id") or default_name, "imported")}
        defaults = {}
        if device != "cpu":
            defaults["device"] = device
        if provider and provider != EXECUTION_PROVIDERS.get(device):
            defaults["provider"] = provider
        if defaults:
            doc["defaults"] = defaults
        doc["models"] = {model_name: model}
        if self.datasets:
            doc["datasets"] = self.datasets
        doc["nodes"] = nodes
        return Translation(doc, self.report)

    # -- input model -------------------------------------------------------------------
    def model(self, raw) -> tuple[str, dict]:
        m = _nested(raw, "config")
        mtype = str(m.get("type", "")).lower()
        path = m.get("model_path")
        if mtype not in ("hfmodel", "onnxmodel"):
            hint = ("hf_config is the old PyTorchModel form; Olive 0.13 reads {\"type\": \"HfModel\", \"model_path\": ...}"
                    if m.get("hf_config") else "olivepipe imports HfModel and ONNXModel inputs")
            raise ImportConfigError(f"input_model: type {m.get('type')!r} cannot be imported", hint)
        if not isinstance(path, str) or not path:
            raise ImportConfigError("input_model: model_path must be a Hugging Face id or a local path",
                                    "an Azure ML or other resource path cannot be imported")
        local = (Path(path) if os.path.isabs(path) else self.src / path).exists()
        if mtype == "onnxmodel" and not path.endswith(".onnx"):
            raise ImportConfigError("input_model: an ONNX model folder cannot be imported",
                                    "olivepipe reads an ONNX input model as one .onnx file: point model_path at it")
        entry: dict
        if mtype == "hfmodel" and not local and _HUB_ID.fullmatch(path):
            entry = {"hf": path}
        else:
            entry = {"path": self.rel(path)}
        handled = {"type", "model_path"}
        if mtype == "hfmodel":
            handled |= {"load_kwargs", "task"}
            task = m.get("task", DEFAULT_HF_TASK)
            if task not in TEXT_GEN_TASKS:  # e.g. BERT's text-classification: a workflow would load another model
                raise ImportConfigError(f"input_model.task {task!r}: olivepipe's models are causal language models "
                                        f"(task {DEFAULT_HF_TASK!r}); imported without it, every node would load "
                                        "this model for text generation instead",
                                        "olivepipe imports text-generation workflows; run this one with `olive run`")
            if task != DEFAULT_HF_TASK:
                self.skip("input_model.task", f"olivepipe loads models for Olive's default task {DEFAULT_HF_TASK!r}, "
                                              f"not {task!r}")
            lk = m.get("load_kwargs") or {}
            if not isinstance(lk, dict):
                lk = {}
                self.skip("input_model.load_kwargs", "not a mapping")
            if lk.get("revision") is not None:
                if "hf" in entry:
                    entry["revision"] = str(lk["revision"])
                else:
                    self.skip("input_model.load_kwargs.revision", "a local model has no hub revision")
            if lk.get("trust_remote_code"):
                entry["trust_remote_code"] = True
            attn = lk.get("attn_implementation")
            if attn in ("eager", "sdpa", "flash_attention_2"):
                entry.setdefault("load_kwargs", {})["attn_implementation"] = attn
            elif attn is not None:
                raise ImportConfigError(f"input_model.load_kwargs.attn_implementation {attn!r}: olivepipe takes eager, "
                                        "sdpa or flash_attention_2, and another would load the model differently",
                                        "change it in the config, or run it with `olive run`")
            if lk.get("torch_dtype") is not None:
                if lk["torch_dtype"] not in TORCH_DTYPES:
                    raise ImportConfigError(f"input_model.load_kwargs.torch_dtype {lk['torch_dtype']!r}: olivepipe takes "
                                            f"{', '.join(TORCH_DTYPES)}", "change it in the config")
                entry.setdefault("load_kwargs", {})["torch_dtype"] = lk["torch_dtype"]
            other = [k for k in lk if k not in ("revision", "trust_remote_code", "attn_implementation", "torch_dtype")]
            if other:  # how the model loads shapes every result: kept, or not imported at all
                raise ImportConfigError(f"input_model.load_kwargs: {', '.join(other)}: olivepipe loads models with "
                                        "revision, trust_remote_code, attn_implementation and torch_dtype only; "
                                        "dropping the rest would load another model",
                                        "remove them from the config if they are not needed, or run it with `olive run`")
            if attn is None and any(self.catalog.resolve(str(_nested(p, "config").get("type", ""))) in TRAINING_PASSES
                                    for p in _pass_entries(self.cfg["passes"])):
                self.skip("input_model.load_kwargs.attn_implementation",
                          "not given: olivepipe's training passes load the model with eager attention, as `olive "
                          "finetune` does; write `load_kwargs: {attn_implementation: sdpa}` on the model to change it")
        for k, v in m.items():
            if k not in handled and v not in (None, {}, []):
                self.skip(f"input_model.{k}", "olivepipe's model entries have no such setting")
        base = path.rstrip("/").rsplit("/", 1)[-1]
        base = base.removesuffix(".onnx")
        return name_of(base.lower(), "base"), entry

    # -- systems -----------------------------------------------------------------------
    def system(self, systems: dict, engine: dict) -> tuple[str, str | None]:
        """The device and provider of the target system (Olive takes accelerators from it)."""
        picked = {}
        for role in ("target", "host"):
            ref = engine.get(role)
            if ref is None:
                continue
            where = role
            if isinstance(ref, str):
                if ref not in systems:
                    self.skip(role, f"names no system in `systems` ({ref!r}): imported for the local CPU")
                    continue
                where, ref = f"systems.{ref}", systems[ref]
            picked[role] = (where, _nested(ref, "config"))
        named = {v for v in (engine.get("target"), engine.get("host")) if isinstance(v, str)}
        for s in systems:
            if s not in named:
                self.skip(f"systems.{s}", "no host or target uses it")
        for role, (where, s) in picked.items():
            if str(s.get("type", "LocalSystem")).lower() != "localsystem":
                self.skip(f"{where}.type", f"{s.get('type')}: olivepipe runs nodes on this machine "
                                          "(or Azure ML through a node's `executor:`)")
            for k, v in s.items():
                if k not in ("type", "accelerators") and v not in (None, {}, [], False):
                    self.skip(f"{where}.{k}", "olivepipe runs Olive in its own worker processes; no such system setting")
        if "target" not in picked and "host" not in picked:
            return "cpu", None  # Olive's default: the local system, CPU
        where, s = picked.get("target") or picked["host"]
        if "target" in picked and "host" in picked and picked["host"][1].get("accelerators") \
                and picked["host"][1].get("accelerators") != s.get("accelerators"):
            self.skip(f"{picked['host'][0]}.accelerators", "the target system's accelerator is imported; "
                                                          "olivepipe runs a node on one device")
        accs = s.get("accelerators") or []
        if not isinstance(accs, list) or not accs:
            return "cpu", None
        if len(accs) > 1:
            self.skip(f"{where}.accelerators", f"{len(accs)} accelerators: olivepipe runs a node on one device; "
                                               "the first is imported (a matrix or one node per device gives the others)")
        acc = accs[0]
        if isinstance(acc, str):  # pre-0.6 Olive wrote accelerators as device names
            acc = {"device": acc}
        acc = acc if isinstance(acc, dict) else {}
        eps = acc.get("execution_providers") or []
        eps = [eps] if isinstance(eps, str) else list(eps)
        if len(eps) > 1:
            self.skip(f"{where}.accelerators[0].execution_providers",
                      f"{len(eps)} execution providers: olivepipe gives a node one provider; the first ({eps[0]}) is imported")
        provider = eps[0] if eps else None
        device = str(acc["device"]).lower() if acc.get("device") else None
        if device is None:
            device = EP_DEVICE.get(provider) if provider else "cpu"
            if device is None:
                self.skip(f"{where}.accelerators[0].device", f"not given and {provider} runs on several devices "
                                                             "(Olive asks for the device too): imported as cpu")
                device = "cpu"
        if device not in DEVICES:
            self.skip(f"{where}.accelerators[0].device", f"{device!r}: olivepipe's devices are {', '.join(DEVICES)}; "
                                                         "imported as cpu")
            device = "cpu"
        if provider is None and device != "cpu":
            self.skip(f"{where}.accelerators[0].execution_providers",
                      f"not given: Olive picks one from the installed onnxruntime; olivepipe uses {EXECUTION_PROVIDERS[device]}")
        for k, v in acc.items():
            if k not in ("device", "execution_providers") and v not in (None, {}, []):
                self.skip(f"{where}.accelerators[0].{k}", "olivepipe's nodes have no such device setting")
        return device, provider

    # -- engine ------------------------------------------------------------------------
    def engine(self, engine: dict) -> None:
        for k, v in engine.items():
            if k in ("host", "target") or k in ENGINE_IGNORED:  # host/target: read by system()
                continue
            if k == "evaluator" and self.evaluated:
                continue  # its metrics became evaluate nodes (evaluation())
            if k == "search_strategy" and self.searched:
                self.search_options(v)
                continue
            if k == "cache_config" and isinstance(v, dict) and not any(x not in (None, False, "") for x in v.values()):
                continue  # the CLI writes {account_name: null, container_name: null}: no shared cache
            if k in ENGINE_NOOP_VALUES and v in ENGINE_NOOP_VALUES[k]:
                continue
            where = k if k in self.cfg else f"engine.{k}"
            if k == "evaluator" and isinstance(v, str):
                self.skip(where, f"{v!r}: {ENGINE_WHY[k]}")
            elif k in ENGINE_WHY:
                self.skip(where, ENGINE_WHY[k])
            else:
                self.skip(where, "not an Olive 0.13 workflow option olivepipe knows")

    # -- passes ------------------------------------------------------------------------
    def passes(self, passes: dict, model_name: str) -> dict:
        nodes: dict = {}
        prev = model_name
        for pname, raw in passes.items():
            where = f"passes.{pname}"
            if isinstance(raw, list):  # Olive 0.13: a list of configs for one pass name
                if not raw:
                    self.skip(where, "an empty list of configs: nothing to run")
                    continue
                if len(raw) > 1:
                    grid = _alternatives_grid(raw) if self.search else None
                    if grid is None:
                        self.skip(where, f"{len(raw)} alternative configs: olivepipe runs one; the first is imported"
                                         + ("" if self.search else " (Olive too, without a search_strategy)"))
                    else:  # every alternative is one matrix variant
                        raw = {**raw[0], **{k: {"olive_parameter_type": "SearchParameter", "type": "Categorical",
                                                "support": vals} for k, vals in grid.items()}}
                raw = raw[0] if isinstance(raw, list) else raw
            p = _nested(raw, "config")
            if not isinstance(raw, dict) or "type" not in p:
                self.skip(where, "a pass without a type")
                continue
            node_name = name_of(pname, "pass")
            i = 2
            while node_name in nodes:
                node_name, i = f"{name_of(pname, 'pass')[:60]}-{i}", i + 1
            nodes[node_name] = self.node(where, p, prev)
            prev = node_name
        return nodes

    def node(self, where: str, p: dict, prev: str) -> dict:
        written = str(p["type"])
        pass_type = self.catalog.resolve(written)
        spec = self.catalog.params(pass_type) if pass_type else {}
        data_param = self.catalog.data_param(pass_type) if pass_type else None
        params: dict = {}
        matrix: dict = {}
        dataset = None
        for k, v in p.items():
            at = f"{where}.{k}"
            if k == "type":
                continue
            if k in ("host", "evaluator"):  # RunPassConfig's own fields, not pass params
                if v is not None:
                    self.skip(at, "olivepipe runs every node on its own device and evaluates nothing")
                continue
            if v == "DEFAULT_VALUE":  # Olive's spelling of "the default": writing nothing says the same
                continue
            if v == "SEARCHABLE_VALUES" or isinstance(v, dict) and v.get("olive_parameter_type") == "SearchParameter":
                support = v.get("support") if isinstance(v, dict) and v.get("type") == "Categorical" else None
                if not self.search:
                    self.skip(at, "a search space without a search_strategy: Olive runs the pass once with its "
                                  "default, and so does olivepipe")
                elif isinstance(support, list) and support and all(isinstance(x, (str, int, float, bool))
                                                                   for x in support):
                    matrix[k] = list(support)  # every value is built; a select node chooses (evaluation())
                else:
                    self.skip(at, "a search space other than Categorical values (SEARCHABLE_VALUES, conditional "
                                  "or ranges): olivepipe runs the pass with Olive's default")
                continue
            if (spec.get(k) or {}).get("type") == "data_config" or not pass_type and k in ("data_config", "train_data_config"):
                if k == data_param or not pass_type:
                    dataset = self.dataset_ref(at, v)
                else:
                    self.skip(at, f"olivepipe gives a node one dataset, its `data:` ({data_param or 'none'} here)")
                    if isinstance(v, str):
                        self.used_data.add(v)
                continue
            if k in ("user_script", "script_dir") and isinstance(v, str):
                full = Path(v) if os.path.isabs(v) else self.src / v
                if not full.exists():
                    self.skip(at, f"{v!r} does not exist next to the config: left out")
                    continue
                # Olive resolves it against its working folder, and olivepipe's workers run elsewhere
                params[k] = os.path.abspath(full)
                continue
            params[k] = v
        for path in sorted(OUTPUT_LOCATION_PARAMS):
            holder = params
            for part in path[:-1]:
                holder = holder.get(part) if isinstance(holder, dict) else None
            if isinstance(holder, dict) and path[-1] in holder:
                del holder[path[-1]]
                self.skip(f"{where}.{'.'.join(path)}", "olivepipe decides where a node writes (its own folder in the store)")
        if params.get("training_args") == {}:
            del params["training_args"]  # emptied by the line above: Olive's default is no training args
        node: dict = {"pass": self.pass_name(written, pass_type, params), "input": prev}
        if dataset:
            node["data"] = dataset
        if matrix:
            node["matrix"] = matrix
            self.searched = True
        if params:
            node["params"] = params
        return node

    def pass_name(self, written: str, pass_type: str | None, params: dict) -> str:
        """The alias when there is one and it means the same, else the Olive type as the catalog spells it."""
        if pass_type is None:
            return written  # unknown to this Olive: validate says so, with suggestions
        alias = next((a for a, t in ALIASES.items() if t == pass_type), None)
        # an alias that would set params the config leaves to Olive's defaults would change the pass
        if alias and not set(ALIAS_DEFAULTS.get(alias, {})) - set(params):
            return alias
        return pass_type

    # -- evaluation and search ------------------------------------------------------------
    def evaluation(self, engine: dict, nodes: dict, model_name: str) -> dict:
        """The engine's evaluator -> an evaluate node on the last pass's result (with goals), one
        on the input model when Olive evaluates it (or a relative goal needs it as baseline), and,
        with a search space, a select node choosing the variant by the objective, the goals
        becoming its constraints."""
        evs = self.cfg.get("evaluators") or {}
        used = engine.get("evaluator")
        for name in evs:
            if name != used:
                self.skip(f"evaluators.{name}", "no `evaluator` names it: Olive runs it nowhere")
        if used is None:
            if self.searched:
                self.skip("search_strategy", "no evaluator: every variant is built and nothing selects among them")
            return {}
        if isinstance(used, str):
            if used not in evs:
                self.skip("evaluator", f"names no evaluator ({used!r})")
                return {}
            ev, where = evs[used], f"evaluators.{used}"
        else:
            ev, where = used, "evaluator"
        got = self.metrics(_nested(ev, "config") if isinstance(ev, dict) else {}, where)
        if got is None:
            return {}
        metrics, goals, objective, extra = got
        self.evaluated = True
        taken = set(nodes) | {model_name}

        def fresh(n):
            n, i = n[:64], 2
            while n in taken:
                n, i = f"{n[:60]}-{i}", i + 1
            taken.add(n)
            return n

        out: dict = {}
        relative = any(g["type"] != "threshold" for g in goals.values())
        baseline = None
        if engine.get("evaluate_input_model", True) is not False or relative:
            # Olive measures the input model too (and resolves relative goals against it)
            baseline = fresh(name_of(f"eval-{model_name}", "eval-input"))
            out[baseline] = copy.deepcopy({"kind": "evaluate", "input": model_name, "metrics": metrics, **extra})
        for g in goals.values():
            if g["type"] != "threshold":
                g["baseline"] = baseline
        last = list(nodes)[-1] if nodes else model_name
        ev_name = fresh("eval")
        out[ev_name] = copy.deepcopy({"kind": "evaluate", "input": last, "metrics": metrics, **extra})
        if self.searched:
            hib, key = objective
            out[fresh("best")] = {"kind": "select", "input": ev_name, ("maximize" if hib else "minimize"): key,
                                  **({"constraints": goals} if goals else {})}
        elif goals:
            out[ev_name]["goals"] = goals
        return out

    def metrics(self, ev: dict, where: str):
        """(metrics, goals, (higher_is_better, objective key), node fields) of an Olive evaluator,
        or None when none of its metrics can be measured here (each one reported)."""
        from .evaluate import METRICS, REFUSED, result_keys

        etype = str(ev.get("type") or "OliveEvaluator")
        if etype != "OliveEvaluator":
            lm = etype == "LMEvaluator"
            self.skip(where, f"{etype}: " + (REFUSED["lm-eval"][0] if lm else "olivepipe measures with Olive's own "
                                             "OliveEvaluator metrics (latency, throughput, perplexity, size)"))
            return None
        for k, v in ev.items():
            if k not in ("type", "metrics") and v not in (None, {}, []):
                self.skip(f"{where}.{k}", "not an evaluator setting olivepipe knows")
        names, goals, extra, ranked = [], {}, {}, []
        data = None
        for i, m in enumerate(ev.get("metrics") or []):
            m = m if isinstance(m, dict) else {}
            at = f"{where}.metrics[{m.get('name', i)}]"
            mtype = str(m.get("type", ""))
            subs = [x if isinstance(x, dict) else {"name": x} for x in (m.get("sub_types") or [])]
            ours = {"latency": "latency", "throughput": "throughput", "size_on_disk": "size"}.get(mtype)
            if mtype == "accuracy":
                if [x.get("name") for x in subs] == ["perplexity"]:
                    ours = "perplexity"
                else:
                    bad = [str(x.get("name")) for x in subs if x.get("name") != "perplexity"]
                    why = REFUSED.get(bad[0].lower(), ("not a metric of a causal language model here",))[0] if bad else ""
                    self.skip(at, f"accuracy {', '.join(bad)}: {why}")
                    continue
            if ours is None:
                self.skip(at, f"type {mtype!r}: olivepipe measures latency, throughput, size_on_disk and "
                              "accuracy/perplexity" + (" (a custom metric runs a user script)" if mtype == "custom" else ""))
                continue
            if ours in names:
                self.skip(at, f"{ours} is measured once per evaluate node")
                continue
            keys = dict(zip(METRICS[ours]["subs"], result_keys(ours)))
            kept = 0
            for x in subs:
                sub, sat = x.get("name"), f"{at}.sub_types[{x.get('name')}]"
                if sub not in keys:
                    self.skip(sat, f"olivepipe measures {ours} as {', '.join(keys)}")
                    continue
                kept += 1
                hib = x.get("higher_is_better", METRICS[ours]["higher_is_better"])
                if hib != METRICS[ours]["higher_is_better"]:
                    self.skip(f"{sat}.higher_is_better", f"{ours} {sub} is "
                                                          f"{'higher' if METRICS[ours]['higher_is_better'] else 'lower'}"
                                                          " is better in Olive's metric: the goal keeps that direction")
                goal = x.get("goal")
                if isinstance(goal, dict) and goal.get("type") is not None:
                    goals[keys[sub]] = {"type": goal["type"], "value": goal.get("value")}
                # the objective: Olive's first priority (unranked sub-types after, in the order written)
                rank = x.get("priority") if isinstance(x.get("priority"), int) and x["priority"] > 0 else 10 ** 9
                ranked.append((rank, len(ranked), METRICS[ours]["higher_is_better"], keys[sub]))
                for k in x:
                    if k not in ("name", "goal", "priority", "higher_is_better") and x[k] not in (None, {}, []):
                        self.skip(f"{sat}.{k}", "not a sub-type setting olivepipe knows")
            if not kept:
                continue
            names.append(ours)
            uc = m.get("user_config") if isinstance(m.get("user_config"), dict) else {}
            for k, v in uc.items():
                if ours in ("latency", "throughput") and k in ("warmup_num", "repeat_test_num"):
                    extra.setdefault("latency", {})["warmup" if k == "warmup_num" else "repeat"] = v
                elif v not in (None, {}, [], False):
                    self.skip(f"{at}.user_config.{k}", "olivepipe sets warmup_num and repeat_test_num only "
                                                        "(latency: warmup, repeat)")
            dc = m.get("data_config")
            if ours == "perplexity":
                ref = self.dataset_ref(f"{at}.data_config", dc) if dc is not None else None
                if dc is None:
                    self.skip(f"{at}.data_config", "perplexity needs data: none given")
                if data is not None and ref != data:
                    self.skip(f"{at}.data_config", "olivepipe gives an evaluate node one dataset")
                data = data or ref
            elif dc is not None:
                self.skip(f"{at}.data_config", f"olivepipe times {ours} on random tokens (latency: batch_size, seq_len)")
                if isinstance(dc, str):
                    self.used_data.add(dc)
            for k, v in m.items():
                if k not in ("name", "type", "sub_types", "user_config", "data_config") and v not in (None, {}, []) \
                        and not (k == "backend" and v == "torchmetrics"):
                    self.skip(f"{at}.{k}", "not a metric setting olivepipe knows")
        if "perplexity" in names and data is None:
            names.remove("perplexity")
            goals.pop("perplexity", None)
        if not names:
            return None
        measured = [k for n in names for k in result_keys(n)]
        ranked = [r for r in ranked if r[3] in measured]
        _, _, hib, key = min(ranked) if ranked else (0, 0, METRICS[names[0]]["higher_is_better"], measured[0])
        if data:
            extra["data"] = data
        return names, {k: g for k, g in goals.items() if k in measured}, (hib, key), extra

    def search_options(self, v) -> None:
        """What of a search_strategy the matrix + select translation does not do as Olive would."""
        if not isinstance(v, dict):
            return  # `true`: Olive's defaults, joint and exhaustive
        for k, x in v.items():
            if k == "execution_order" and x in ("joint", None):
                continue
            if k == "sampler" and x in ("sequential", None):
                continue
            if x in (None, False) or k in ("seed",):
                continue
            self.skip(f"search_strategy.{k}", "olivepipe builds every combination of the search space and "
                                              "selects once (joint, exhaustive)")

    # -- data ----------------------------------------------------------------------------
    def dataset_ref(self, at: str, ref) -> str | None:
        if ref is None:
            return None
        if not isinstance(ref, str):
            self.skip(at, "an inline data config (Olive 0.13 refuses them too): name one from data_configs")
            return None
        if ref not in self.data_configs:
            self.skip(at, f"names no data config ({ref!r})")
            return None
        self.used_data.add(ref)
        if ref not in self.dataset_of:
            name = name_of(ref, "data")
            while name in self.datasets:
                name = f"{name}-2"
            entry = self.dataset(ref, self.data_configs[ref])
            self.dataset_of[ref] = name if entry is not None else None
            if entry is not None:
                self.datasets[name] = entry
        if self.dataset_of[ref] is None:
            self.skip(at, f"data config {ref!r} cannot be imported (see its entries): the node has no data")
        return self.dataset_of[ref]

    def dataset(self, name: str, dc: dict) -> dict | None:
        """A HuggingfaceContainer data config -> a `datasets:` entry; None when olivepipe cannot express it."""
        where = f"data_configs[{name}]"
        ok = True
        if dc.get("type", "HuggingfaceContainer") != "HuggingfaceContainer":
            self.skip(f"{where}.type", f"{dc.get('type')}: olivepipe datasets are Hugging Face datasets (HuggingfaceContainer)")
            return None
        for k in ("user_script", "script_dir"):
            if dc.get(k):
                self.skip(f"{where}.{k}", "olivepipe datasets run no user scripts (custom components)")
        for k in dc:
            if k not in ("name", "type", "user_script", "script_dir", *DEFAULT_COMPONENTS):
                self.skip(f"{where}.{k}", "not a data config field olivepipe knows")
        comps = {k: _nested(dc.get(k), "params") for k in DEFAULT_COMPONENTS}
        for k, c in comps.items():
            if c.get("type") not in DEFAULT_COMPONENTS[k]:
                self.skip(f"{where}.{k}.type", f"{c.get('type')!r}: olivepipe uses Olive's default component")
                ok = False
        load, pre = comps["load_dataset_config"], comps["pre_process_data_config"]
        entry: dict = {}
        files = load.get("data_files")
        split = load.get("split")
        data_name = load.get("data_name")
        if not isinstance(data_name, str) or not data_name:
            self.skip(f"{where}.load_dataset_config.data_name", "missing: no dataset to load")
            return None
        if files is not None:
            if isinstance(files, str):
                files = [files]
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files) or not files:
                self.skip(f"{where}.load_dataset_config.data_files", "olivepipe reads a file or a list of files "
                                                                     "(not a split mapping or a remote store)")
                return None
            if data_name.lower() not in FILE_FORMATS:
                self.skip(f"{where}.load_dataset_config.data_name", f"{data_name!r}: olivepipe reads local files as "
                                                                    f"{', '.join(FILE_FORMATS)}")
                return None
            rel = [self.rel(f) for f in files]
            entry["files"] = rel[0] if len(rel) == 1 else rel
            fmt = {"jsonl": "json"}.get(data_name.lower(), data_name.lower())
            suffix = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
            if any(suffix.get(Path(f).suffix.lower()) != fmt for f in rel):
                entry["format"] = fmt
            m = _SPLIT_HEAD.fullmatch(str(split)) if split is not None else None
            if m:
                entry["limit"] = int(m.group(1))
            elif split is None:
                self.skip(f"{where}.load_dataset_config.split", f"not given: Olive loads split "
                                                                f"{OLIVE_DEFAULT_SPLIT!r}; olivepipe reads the files' train split")
            elif split != "train":
                self.skip(f"{where}.load_dataset_config.split", f"{split!r}: olivepipe reads all of the files' "
                                                                "train split, or its first N rows (train[:N])")
        else:
            entry["hf"] = data_name
            if load.get("subset") is not None:
                entry["subset"] = str(load["subset"])
            # olivepipe's default split is train, Olive's is validation: always say which
            entry["split"] = str(split) if split is not None else OLIVE_DEFAULT_SPLIT
            if load.get("revision") is not None:
                entry["revision"] = str(load["revision"])
        handled = ("type", "data_name", "data_files", "split") + (() if files is not None else ("subset", "revision"))
        for k, v in load.items():
            if k in handled or k == "trust_remote_code" and not v:
                continue
            self.skip(f"{where}.load_dataset_config.{k}", "olivepipe loads datasets by name, subset, split and "
                                                          "files only" + (" (a filter: put the rows in a file)"
                                                                          if k == "col_filters" else ""))
        self.preprocess(where, pre, entry)
        post, loader = comps["post_process_data_config"], comps["dataloader_config"]
        for k, v in post.items():
            if k not in ("type", *FROM_INPUT_MODEL):
                self.skip(f"{where}.post_process_data_config.{k}", "olivepipe uses Olive's default post-processing")
        for k, v in loader.items():
            if k != "type" and DATALOADER_DEFAULTS.get(k, object()) != v:
                self.skip(f"{where}.dataloader_config.{k}", "olivepipe uses Olive's default data loader (batch size 1)")
        return entry if ok else None

    def preprocess(self, where: str, pre: dict, entry: dict) -> None:
        at = f"{where}.pre_process_data_config"
        template, cols = pre.get("text_template"), pre.get("text_cols")
        if template:
            entry["text_template"] = str(template)
            if cols is not None:
                self.skip(f"{at}.text_cols", "Olive uses text_template over text_cols: left out")
        elif cols is not None:
            cols = [cols] if isinstance(cols, str) else cols
            if isinstance(cols, list) and len(cols) == 1 and isinstance(cols[0], str):
                if cols != TEXT_GEN_DEFAULTS["text_cols"]:
                    entry["text_field"] = cols[0]
            else:
                self.skip(f"{at}.text_cols", f"{cols!r}: olivepipe takes one text column (text_field) or a "
                                             "text_template; write the columns into a template")
        for k in ("max_seq_len", "max_samples"):
            if pre.get(k) is not None:
                entry[k] = pre[k]
        # olivepipe's default is the CLI's (false); Olive's data config default is true
        entry["add_special_tokens"] = bool(pre.get("add_special_tokens", TEXT_GEN_DEFAULTS["add_special_tokens"]))
        if pre.get("max_samples") is None:
            self.skip(f"{at}.max_samples", "not given: Olive uses every sequence; olivepipe at most 256 "
                                           "(set `max_samples` on the dataset)")
        for k, v in pre.items():
            if k in ("type", "text_template", "text_cols", "max_seq_len", "max_samples", "add_special_tokens"):
                continue
            if k in FROM_INPUT_MODEL:
                if self._model_fact(k, v):
                    continue
                self.skip(f"{at}.{k}", f"{v!r}: olivepipe pre-processes with the node's input model ({k} from it)")
                continue
            if k == "chat_template" and not v:  # Olive tests its truth: false is its default, None
                continue
            if k in TEXT_GEN_DEFAULTS and TEXT_GEN_DEFAULTS[k] == v:
                continue
            self.skip(f"{at}.{k}", "olivepipe pre-processes with Olive's defaults but for text_template/text_field, "
                                   "max_seq_len, max_samples and add_special_tokens")

    def _model_fact(self, key: str, value) -> bool:
        """Whether a pre-process value is what Olive would fill in from the input model anyway."""
        m = _nested(self.cfg["input_model"], "config")
        if key == "model_name":
            return value == m.get("model_path")
        if key == "task":
            return value in (m.get("task", DEFAULT_HF_TASK), DEFAULT_HF_TASK.replace("-with-past", ""))
        return bool(value) == bool((m.get("load_kwargs") or {}).get("trust_remote_code"))


def _alternatives_grid(configs: list) -> dict | None:
    """Alternative configs of one pass as a matrix {param: values}, when they differ only in
    scalar values and are exactly every combination of them; else None."""
    import itertools

    if not all(isinstance(c, dict) for c in configs):
        return None
    flat_cfgs = [_nested(c, "config") for c in configs]
    keys = set().union(*flat_cfgs)
    if any(set(c) != keys for c in flat_cfgs):
        return None
    varying = sorted(k for k in keys if len({json.dumps(c[k], sort_keys=True) for c in flat_cfgs}) > 1)
    if not varying or "type" in varying or any(not isinstance(c[k], (str, int, float, bool)) for c in flat_cfgs
                                               for k in varying):
        return None
    values = {k: list(dict.fromkeys(c[k] for c in flat_cfgs)) for k in varying}
    combos = {tuple(c[k] for k in varying) for c in flat_cfgs}
    if len(combos) != len(flat_cfgs) or combos != set(itertools.product(*values.values())):
        return None
    return values


def _pass_entries(passes) -> list:
    out = []
    for raw in (passes or {}).values():
        out.extend(raw[:1] if isinstance(raw, list) else [raw])
    return out


# -- the file --------------------------------------------------------------------------

class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper, s: str):
    # a multi-line text_template reads best (and diffs on one line) double-quoted with \n escapes
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style='"' if "\n" in s else None)


_Dumper.add_representer(str, _str)


def _comment(text: str) -> str:
    return " ".join(str(text).split())  # one line: a newline would end the comment


def header(source: str, report: list[Untranslated], problems: list[Problem] = ()) -> str:
    from .catalog import installed_version

    lines = [f"# Imported from {_comment(source)} by `olivepipe import` (olive-ai {installed_version('olive-ai') or 'not installed'})."]
    if report:
        lines.append(f"# Not translated ({len(report)}):")
        lines += [f"#   - {_comment(u.format())}" for u in report]
    else:
        lines.append("# Everything in the Olive config is translated.")
    if problems:
        lines.append(f"# Does not validate ({len(problems)} problem{'s' if len(problems) != 1 else ''}); written with --force:")
        lines += [f"#   - {_comment(p.message)}" + (f" ({_comment(p.path)})" if p.path else "") for p in problems]
    return "\n".join(lines) + "\n\n"


def render(doc: dict) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1 << 16)


__all__ = ["ImportConfigError", "Translation", "Untranslated", "header", "read_config", "render", "translate"]
