"""Evaluation through Olive's own evaluators: which metrics this stack can measure, the
Olive workflow JSON that measures them (``evaluators`` + ``evaluate_input_model``, no
passes), and reading Olive's result back as plain numbers with units.

Olive 0.13 facts this module encodes (olive/evaluator/*.py, olive/workflows/run/):

- ``OnnxEvaluator`` runs ONNX models with ONNX Runtime on the accelerator's execution
  provider and feeds a model's ``constant_inputs`` (ExtractAdapters' adapter weights)
  into every run, so an int4 genai model is evaluated *with* its adapter.
- latency and throughput time one forward pass over ``TransformersPromptDummyDataContainer``
  inputs (random token ids, an empty KV cache for ONNX); shapes come from the model
  folder's ``config.json``, which ModelBuilder writes next to the genai model.
- perplexity is Olive's ``accuracy``/``perplexity`` (torchmetrics, shifted labels) over a
  ``HuggingfaceContainer`` text-generation split. A genai ONNX model takes past key/value
  inputs that this data lacks: the data loader wraps batches in Olive's own
  ``LLMAugmentedDataLoader`` (empty KV cache), registered from this file, which Olive
  loads as the data config's ``user_script``.
- an evaluator without ``type`` crashes Olive's resource scan (``None is not a valid
  ResourceType``): the type is always named.
- a failing metric is logged as a warning and the run "succeeds" with no
  ``input_model_metrics.json``: that is a failure here.

This file is also loaded by Olive as a standalone module (user_script): its top level
imports the standard library only, and registers the data loader only then.
"""
from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

#: Olive's own latency defaults (olive/evaluator/metric_config.py WARMUP_NUM, REPEAT_TEST_NUM)
#: and its prompt dummy data's defaults (transformers_prompt_dummy_dataset: seq_len 8)
LATENCY_DEFAULTS = {"warmup": 10, "repeat": 20, "batch_size": 1, "seq_len": 8}

# user-facing metric -> how Olive measures it; keys of the results are "<metric>_<sub>"
# (or the metric's name when it has one sub-type). Order = evaluation order.
METRICS = {
    "perplexity": {"type": "accuracy", "subs": ("perplexity",), "unit": "", "higher_is_better": False,
                   "data": True, "doc": "exp of the mean next-token cross-entropy over `data` (Olive/torchmetrics)"},
    "size": {"type": "size_on_disk", "subs": ("bytes",), "unit": "bytes", "higher_is_better": False,
             "data": False, "doc": "the serialized model (Olive's size_on_disk; adapter files not included)"},
    "throughput": {"type": "throughput", "subs": ("avg",), "unit": "sequences/s", "higher_is_better": True,
                   "data": False, "doc": "batch_size / mean forward-pass latency (Olive's throughput: sequences, "
                                         "not tokens, per second)"},
    "latency": {"type": "latency", "subs": ("avg", "p50", "p90"), "unit": "ms",
                "higher_is_better": False, "data": False,
                "doc": "one forward pass (prefill) of batch_size x seq_len tokens, an empty KV cache"},
}

# Metrics Olive knows that cannot work for a causal language model in this stack -> (why, use instead)
_CLASSIFY = ("Olive's {m} compares the logits cast to integers with the same position's label "
             "(no next-token shift, no argmax) on text-generation data: meaningless for a causal LM")
REFUSED = {
    **{m: (_CLASSIFY.format(m=m), "use `perplexity` (next-token quality) on a held-out `data` split")
       for m in ("accuracy", "accuracy_score", "f1_score", "precision", "recall", "auroc")},
    **{m: (f"Olive's {m} is a speech-recognition metric (genai whisper/nemotron models only)",
           "use `perplexity` for a text model") for m in ("wer", "rtfx")},
    **{m: (f"Olive's {m} is a vision-language metric (genai vision models only)", "use `perplexity` for a text model")
       for m in ("exact_match", "relaxed_accuracy", "word_sort_ratio")},
    **{m: (("Olive's LMEvaluator needs lm-eval (not installed in this stack) and downloads its benchmark "
            "tasks from the Hugging Face hub at run time"), "use `perplexity` on a local held-out `data` split")
       for m in ("lm-eval", "lm_eval", "mmlu", "hellaswag", "arc_easy", "arc_challenge", "wikitext", "gsm8k",
                 "winogrande", "piqa", "boolq")},
    "mteb": ("Olive's MTEBEvaluator scores embedding models on hub tasks (mteb is not installed)",
             "use `perplexity` for a text-generation model"),
}

KV_DATALOADER = "olivepipe_llm_dataloader"  # registered with Olive by this file (user_script)
EVALUATOR_NAME = "olivepipe"
LATENCY_DATA = "olivepipe_latency"
QUALITY_DATA = "olivepipe_eval_data"
RESULT_FILE = "input_model_metrics.json"  # what Olive writes with evaluate_input_model
_NO_SEQUENCES = "expected a non-empty list of Tensors"  # torch.cat in OnnxEvaluator/PyTorchEvaluator._inference


class EvaluationFailed(RuntimeError):
    """Olive's evaluation produced no (or no usable) result."""


def result_keys(metric: str) -> list[str]:
    subs = METRICS[metric]["subs"]
    return [metric] if len(subs) == 1 else [f"{metric}_{s}" for s in subs]


def all_result_keys(metrics) -> list[str]:
    return [k for m in ordered(metrics) for k in result_keys(m)]


def ordered(metrics) -> list[str]:
    """Requested metrics in evaluation order (the set matters, not the order written)."""
    return [m for m in METRICS if m in set(metrics)]


def model_type(model_cfg: dict | None) -> str | None:
    """'onnx' or 'hf' for an Olive input-model config ({type, config} or flat)."""
    t = str((model_cfg or {}).get("type", "")).lower()
    return {"onnxmodel": "onnx", "hfmodel": "hf"}.get(t)


def model_files(model_cfg: dict) -> tuple[str, str | None]:
    """(folder with config.json and the tokenizer, onnx file or None) of an input model config."""
    inner = model_cfg.get("config") or model_cfg
    path = inner.get("model_path")
    if model_type(model_cfg) == "onnx":
        name = inner.get("onnx_file_name")
        if name:
            return path, f"{path}/{name}"
        return path, path  # a bare .onnx file (a `path:` model): run() takes its folder
    return path, None


def split_for(split: str, limit: int | None, rows: str | None) -> str:
    """A datasets split string selecting the evaluation rows: `rows` (START:STOP, row numbers
    or percentages) inside the dataset's own `limit` (its first N rows)."""
    if not rows:
        return f"{split}[:{limit}]" if limit else split
    start, _, stop = rows.partition(":")
    if limit and not start.endswith("%") and not stop.endswith("%"):
        stop = str(min(int(stop), limit)) if stop else str(limit)
    return f"{split}[{start}:{stop}]"


def build_config(input_model: dict, metrics, *, device: str, provider: str, latency: dict | None = None,
                 dataset=None, data_files: list[str] | None = None, rows: str | None = None,
                 output_dir: str, cache_dir: str, user_script: str, trust_remote_code: bool = False) -> dict:
    """The Olive run config that evaluates ``input_model``: evaluators, no passes.

    ``input_model``: the job's model config (placeholders for paths); ``dataset``: the
    DatasetSpec perplexity reads, from ``data_files`` (placeholders) restricted to ``rows``."""
    from .compile import data_config  # olivepipe-relative imports stay inside functions (see module doc)

    kind = model_type(input_model)
    if kind is None:
        raise ValueError(f"cannot evaluate a {input_model.get('type')!r} model")
    folder, onnx_file = model_files(input_model)
    lat = {**LATENCY_DEFAULTS, **(latency or {})}
    data_configs, olive_metrics = [], []
    wanted = ordered(metrics)
    if {"latency", "throughput"} & set(wanted):
        load = {"model_name": folder, "seq_len": lat["seq_len"], "max_samples": lat["batch_size"],
                "model_framework": "ONNX" if kind == "onnx" else "PyTorch",  # olive.constants.Framework values
                # a torch model builds its own cache: no past key/value inputs
                "generative": kind == "hf"}
        if trust_remote_code:
            load["trust_remote_code"] = True
        data_configs.append({"name": LATENCY_DATA, "type": "TransformersPromptDummyDataContainer",
                             "load_dataset_config": load, "dataloader_config": {"batch_size": lat["batch_size"]}})
    if "perplexity" in wanted:
        if dataset is None:
            raise ValueError("perplexity needs a dataset")
        dc = data_config(dataset, QUALITY_DATA, data_files=data_files)
        dc["load_dataset_config"]["split"] = split_for(dataset.split if not dataset.files else "train",
                                                       dataset.limit, rows)
        # named explicitly: Olive would otherwise fill in model_attributes._name_or_path, the
        # folder the model was built from on whichever machine built it
        dc["pre_process_data_config"].update({"task": "text-generation", "model_name": folder,
                                              **({"trust_remote_code": True} if trust_remote_code else {})})
        if kind == "onnx":
            dc["user_script"] = user_script
            dc["dataloader_config"] = {"type": KV_DATALOADER, "params": {"batch_size": 1, "model_path": onnx_file}}
        data_configs.append(dc)
    for i, m in enumerate(wanted):
        spec = METRICS[m]
        subs = []
        for j, s in enumerate(spec["subs"]):
            sub = {"name": s, "priority": 1 if i == 0 and j == 0 else -1}
            if spec["type"] in ("latency", "throughput"):
                sub["metric_config"] = {"warmup_num": lat["warmup"], "repeat_test_num": lat["repeat"], "sleep_num": 0}
            if spec["type"] == "accuracy":
                sub["higher_is_better"] = spec["higher_is_better"]  # Olive's accuracy default is True
            subs.append(sub)
        om = {"name": m, "type": spec["type"], "sub_types": subs}
        if spec["type"] in ("latency", "throughput"):
            om["data_config"] = LATENCY_DATA
        elif spec["type"] == "accuracy":
            om["data_config"] = QUALITY_DATA
        olive_metrics.append(om)
    config = {
        "input_model": input_model,
        "systems": {"local_system": {"type": "LocalSystem", "accelerators": [
            {"device": device, "execution_providers": [provider]}]}},
        "evaluators": {EVALUATOR_NAME: {"type": "OnnxEvaluator" if kind == "onnx" else "PyTorchEvaluator",
                                        "metrics": olive_metrics}},
        "evaluator": EVALUATOR_NAME,
        "evaluate_input_model": True,
        "host": "local_system",
        "target": "local_system",
        "output_dir": output_dir,
        # a fresh Olive cache per run: Olive caches evaluations by model id, not by content
        "cache_dir": cache_dir,
        # no `no_artifacts`: it would also skip input_model_metrics.json, the result
        "log_severity_level": 1,
    }
    if data_configs:
        config["data_configs"] = data_configs
    return config


def point_user_script(config: dict, path: str) -> dict:
    """The config with the data loader's user_script at ``path`` (the worker's own copy of
    this file, wherever olivepipe is installed there)."""
    for dc in config.get("data_configs") or []:
        if dc.get("user_script"):
            dc["user_script"] = path
    return config


def fix_bare_onnx_folder(config: dict) -> dict:
    """A `path: model.onnx` input names the file itself: tokenizer and config.json are
    looked up in its folder. Paths are local here (worker side)."""
    for dc in config.get("data_configs") or []:
        for part in ("load_dataset_config", "pre_process_data_config"):
            p = (dc.get(part) or {}).get("model_name")
            if isinstance(p, str) and p.endswith(".onnx") and Path(p).is_file():
                dc[part]["model_name"] = str(Path(p).parent)
    return config


def run_evaluation(config: dict, log_path: Path | None = None) -> dict:
    """Run the config with Olive (worker side) and return Olive's raw result mapping."""
    from olive.workflows import run as olive_run  # heavy: paid once per worker

    from .runner import _last_error

    out = Path(config["output_dir"])
    quality = next((dc for dc in config.get("data_configs") or [] if dc.get("name") == QUALITY_DATA), None)
    seq = (quality or {}).get("pre_process_data_config", {}).get("max_seq_len")
    try:
        olive_run(copy.deepcopy(config))  # Olive's config validators rewrite what they are given
    except Exception as e:
        if quality and _NO_SEQUENCES in str(e):  # Olive's perplexity concatenates no batch at all
            raise EvaluationFailed(f"perplexity: the data rows hold no window of max_seq_len ({seq}) tokens "
                                   "(Olive joins the rows and cuts them into max_seq_len-token sequences); "
                                   "select more rows or lower the dataset's max_seq_len") from e
        raise
    produced = out / RESULT_FILE
    if not produced.is_file():
        raise EvaluationFailed("Olive evaluated nothing" + (_last_error(log_path) or
                                                            " (see the node log: olivepipe logs WORKFLOW NODE)"))
    return json.loads(produced.read_text())


def read_results(raw: dict, metrics) -> dict:
    """Olive's {"<metric>-<sub>": {"value", ...}} as {key: {"value", "unit", "higher_is_better"}}.
    Every requested number must be there and finite."""
    out = {}
    for m in ordered(metrics):
        spec = METRICS[m]
        for s, key in zip(spec["subs"], result_keys(m)):
            got = raw.get(f"{m}-{s}")
            value = got.get("value") if isinstance(got, dict) else None
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise EvaluationFailed(f"Olive returned no {m} {s} (got {sorted(raw)})")
            if not math.isfinite(value):
                hint = (": no sequence of max_seq_len tokens in the data rows; use more rows or a smaller "
                        "max_seq_len" if m == "perplexity" else "")
                raise EvaluationFailed(f"{key} is {value}{hint}")
            out[key] = {"value": value, "unit": spec["unit"], "higher_is_better": spec["higher_is_better"]}
    return out


_ROWS = re.compile(r"^(?:(\d+%?))?:(?:(\d+%?))?$")


def parse_rows(rows: str) -> tuple[str | None, str | None] | None:
    """START:STOP (row numbers or percentages, either may be empty) -> (start, stop), or None."""
    m = _ROWS.match(rows or "")
    return (m.group(1), m.group(2)) if m else None


# -- loaded by Olive as the perplexity data config's user_script -------------------------

def _llm_dataloader(dataset, batch_size: int = 1, model_path: str | None = None, **kwargs):
    """Olive's default data loader, wrapped in Olive's LLMAugmentedDataLoader for a model
    with past key/value inputs (it adds an empty cache; other models pass through)."""
    from olive.common.onnx_io import get_io_config
    from olive.data.component.dataloader import LLMAugmentedDataLoader, default_dataloader

    loader = default_dataloader(dataset, batch_size=batch_size, **kwargs)
    return LLMAugmentedDataLoader(loader, model_path, get_io_config(model_path)) if model_path else loader


if not __package__:  # imported by Olive from its path (import_user_module), never by olivepipe
    from olive.data.registry import Registry

    Registry.register_dataloader(KV_DATALOADER)(_llm_dataloader)
