"""Node -> the exact Olive workflow JSON that runs it. The only place that knows Olive's config shape."""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from .catalog import Catalog

if TYPE_CHECKING:  # the validated workflow's nodes come in as arguments; olive/ imports nothing of spec/
    from ..spec.workflow import DatasetSpec, ModelSpec, NodeSpec

# Olive resolves a data-config name that is also an existing path (e.g. a `data/` folder
# in the cwd) as a file: use a name no user folder will have.
DATA_NAME = "olivepipe_data"

# What the Olive CLI (`olive finetune`, `olive quantize`: olive/cli/base.py add_dataset_options)
# uses unless told otherwise. Olive's own data-config defaults differ (special tokens added,
# every sample kept), so a workflow would otherwise train on other tokens than the lab's CLI run.
CLI_PREPROCESS = {"max_seq_len": 1024, "add_special_tokens": False, "max_samples": 256}
# ... and how the CLI loads a model it trains (olive/cli/base.py _get_hf_input_model)
CLI_TRAIN_LOAD_KWARGS = {"attn_implementation": "eager"}


def preprocess_options(ds: DatasetSpec) -> dict:
    """The effective preprocessing of a dataset: its own settings over the CLI's defaults."""
    own = {"max_seq_len": ds.max_seq_len, "add_special_tokens": ds.add_special_tokens, "max_samples": ds.max_samples}
    return {k: own[k] if own[k] is not None else v for k, v in CLI_PREPROCESS.items()}


def train_load_kwargs(model: ModelSpec | None) -> dict:
    """load_kwargs a training pass loads its input with (the model's own over the CLI's)."""
    return {**CLI_TRAIN_LOAD_KWARGS, **((model.load_kwargs if model else None) or {})}


def with_load_kwargs(model_cfg: dict, extra: dict) -> dict:
    """An input-model config (flat or {type, config}) with more load_kwargs."""
    cfg = dict(model_cfg)
    if "config" in cfg:
        inner = dict(cfg["config"])
        inner["load_kwargs"] = {**(inner.get("load_kwargs") or {}), **extra}
        cfg["config"] = inner
    else:
        cfg["load_kwargs"] = {**(cfg.get("load_kwargs") or {}), **extra}
    return cfg


def model_source_config(model: ModelSpec, tiny_tree: Path | None = None, *, placeholder: str | None = None,
                        adapter: str | None = None) -> dict:
    """Olive input-model config for a model named in `models:` (a local one at ``placeholder``,
    its PEFT adapter at ``adapter``, when given: jobs carry no paths)."""
    cfg = _source_config(model, tiny_tree, placeholder)
    if model.adapter is not None and cfg["type"] == "HfModel":
        cfg["adapter_path"] = adapter or str(model.adapter)
    return cfg


def _source_config(model: ModelSpec, tiny_tree: Path | None, placeholder: str | None) -> dict:
    if model.source == "hf":
        load_kwargs = {"trust_remote_code": model.trust_remote_code, **(model.load_kwargs or {})}
        if model.revision:
            load_kwargs["revision"] = model.revision
        return {"type": "HfModel", "model_path": model.hf, "load_kwargs": load_kwargs}
    path = tiny_tree if model.source == "tiny" else model.path
    shown = placeholder or str(path)
    if path is not None and Path(path).suffix == ".onnx":
        return {"type": "ONNXModel", "model_path": shown}
    cfg = {"type": "HfModel", "model_path": shown}
    load_kwargs = {**({"trust_remote_code": True} if model.trust_remote_code else {}), **(model.load_kwargs or {})}
    if load_kwargs:
        cfg["load_kwargs"] = load_kwargs
    return cfg


def data_config(ds: DatasetSpec, name: str = DATA_NAME, *, text_column_folder: str | None = None,
                data_files: list[str] | None = None) -> dict:
    """Olive HuggingfaceContainer config for a dataset (``data_files``: where its files are read
    from, placeholders in a job; the spec's paths by default)."""
    if text_column_folder is not None:
        # a materialized folder with a `text` column: the only shape autoawq accepts through Olive
        load = {"data_name": text_column_folder, "split": "train"}
        pre = {"input_cols": "text"}  # Olive's AWQ pass hands autoawq exactly this key as text_column
    elif ds.files:
        files = data_files if data_files is not None else [str(f) for f in ds.files]
        load = {"data_name": ds.format or "json", "data_files": files, "split": _rows("train", ds.limit)}
        pre = {}
    else:
        load = {"data_name": ds.hf, "split": _rows(ds.split, ds.limit)}
        if ds.subset:
            load["subset"] = ds.subset
        if ds.revision:  # huggingface_dataset passes extra keys to datasets.load_dataset
            load["revision"] = ds.revision
        pre = {}
    if text_column_folder is None:
        if ds.text_template:
            pre["text_template"] = ds.text_template
        elif ds.text_field:
            pre["text_cols"] = [ds.text_field]
        pre.update(preprocess_options(ds))
    return {"name": name, "type": "HuggingfaceContainer", "load_dataset_config": load, "pre_process_data_config": pre}


def _rows(split: str, limit: int | None) -> str:
    """`limit` is rows of the file: a split slice, before tokenization (max_samples counts sequences)."""
    return f"{split}[:{limit}]" if limit else split


def pass_name(node: NodeSpec) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", node.name)


def compile_node(node: NodeSpec, input_model: dict, catalog: Catalog, *, dataset: DatasetSpec | None,
                 output_dir: str, cache_dir: str, data_files: list[str] | None = None,
                 calibration_folder: str | None = None, load_kwargs: dict | None = None) -> dict:
    """The Olive run config for one node: one pass, one accelerator, no search, no evaluation.
    ``load_kwargs``: added to the input model's (a training pass loads with eager attention)."""
    pass_cfg = {"type": node.pass_type, **node.params}
    if input_model is not None and load_kwargs:
        input_model = with_load_kwargs(input_model, load_kwargs)
    config = {
        "input_model": input_model,
        "systems": {"local_system": {"type": "LocalSystem", "accelerators": [
            {"device": node.device, "execution_providers": [node.provider]}]}},
        "passes": {pass_name(node): pass_cfg},
        "host": "local_system",
        "target": "local_system",
        "evaluate_input_model": False,
        "output_dir": output_dir,
        # Olive's own cache keys data by path, not content; olivepipe caches by content and
        # gives every run a fresh Olive cache so a stale Olive result can never come back.
        "cache_dir": cache_dir,
        "no_artifacts": True,
        "log_severity_level": 1,
    }
    if dataset is not None:
        config["data_configs"] = [data_config(dataset, text_column_folder=calibration_folder, data_files=data_files)]
        pass_cfg[catalog.data_param(node.pass_type)] = DATA_NAME
    return config
