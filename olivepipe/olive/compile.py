"""Node -> the exact Olive workflow JSON that runs it. The only place that knows Olive's config shape."""
from __future__ import annotations

import re
from pathlib import Path

from ..spec import DatasetSpec, ModelSpec, NodeSpec
from .catalog import Catalog

# Olive resolves a data-config name that is also an existing path (e.g. a `data/` folder
# in the cwd) as a file: use a name no user folder will have.
DATA_NAME = "olivepipe_data"


def model_source_config(model: ModelSpec, tiny_tree: Path | None = None, *, placeholder: str | None = None) -> dict:
    """Olive input-model config for a model named in `models:` (a local one at ``placeholder``
    when given: jobs carry no paths)."""
    if model.source == "hf":
        load_kwargs = {"trust_remote_code": model.trust_remote_code}
        if model.revision:
            load_kwargs["revision"] = model.revision
        return {"type": "HfModel", "model_path": model.hf, "load_kwargs": load_kwargs}
    path = tiny_tree if model.source == "tiny" else model.path
    shown = placeholder or str(path)
    if path is not None and Path(path).suffix == ".onnx":
        return {"type": "ONNXModel", "model_path": shown}
    cfg = {"type": "HfModel", "model_path": shown}
    if model.trust_remote_code:
        cfg["load_kwargs"] = {"trust_remote_code": True}
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
        load = {"data_name": ds.format or "json", "data_files": files, "split": "train"}
        pre = {}
    else:
        load = {"data_name": ds.hf, "split": ds.split}
        if ds.subset:
            load["subset"] = ds.subset
        pre = {}
    if text_column_folder is None:
        if ds.text_template:
            pre["text_template"] = ds.text_template
        elif ds.text_field:
            pre["text_cols"] = [ds.text_field]
    if ds.max_seq_len:
        pre["max_seq_len"] = ds.max_seq_len
    if ds.limit:
        pre["max_samples"] = ds.limit
    return {"name": name, "type": "HuggingfaceContainer", "load_dataset_config": load, "pre_process_data_config": pre}


def pass_name(node: NodeSpec) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", node.name)


def compile_node(node: NodeSpec, input_model: dict, catalog: Catalog, *, dataset: DatasetSpec | None,
                 output_dir: str, cache_dir: str, data_files: list[str] | None = None,
                 calibration_folder: str | None = None) -> dict:
    """The Olive run config for one node: one pass, one accelerator, no search, no evaluation."""
    pass_cfg = {"type": node.pass_type, **node.params}
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
