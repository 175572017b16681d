"""The JSON Schema of workflow format v1 (the published file is generated from this).

`schemas/workflow.schema.json` is written by `python -m olivepipe.spec.schema` and a test
keeps it identical to ``SCHEMA``, so editors and olivepipe never disagree.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
SCHEMA_ID = "https://olivepipe.dev/schemas/workflow-v1.json"

_str = {"type": "string", "minLength": 1}
# a git revision (commit, tag, branch like refs/pr/1): never a path out (`..`, a leading /) or shell text
_revision = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^(?!.*\.\.)[A-Za-z0-9_][A-Za-z0-9._/-]*$"}
# an Azure ML resource name: letters, digits, '-' and '_' (no shell or path characters)
_aml_name = {"type": "string", "minLength": 2, "maxLength": 64, "pattern": r"^[A-Za-z][A-Za-z0-9_-]*$"}
_ref = {"type": "string", "pattern": NAME}

_tiny = {
    "type": "object",
    "description": "A deterministic tiny random model built locally (no hub).",
    "additionalProperties": False,
    "properties": {
        "arch": {"enum": ["phi3", "llama"], "default": "phi3"},
        "layers": {"type": "integer", "minimum": 1, "maximum": 8},
        "hidden": {"type": "integer", "minimum": 16, "maximum": 1024, "multipleOf": 16},
        "heads": {"type": "integer", "minimum": 1, "maximum": 32,
                  "description": "hidden / heads must be a multiple of 16 (onnxruntime's CPU attention)."},
        "kv_heads": {"type": "integer", "minimum": 1, "maximum": 32},
        "intermediate": {"type": "integer", "minimum": 16, "maximum": 8192, "multipleOf": 16},
        "vocab_size": {"type": "integer", "minimum": 320, "maximum": 32768,
                       "description": "Byte-level BPE needs 256 byte symbols plus the chat tokens."},
        "seed": {"type": "integer", "minimum": 0},
    },
}

_model = {
    "type": "object",
    "additionalProperties": False,
    "description": "Exactly one of hf, path or tiny.",
    "properties": {
        "hf": {**_str, "description": "Hugging Face model id, e.g. microsoft/Phi-3.5-mini-instruct",
               "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$"},
        "revision": {**_revision, "description": "Commit, tag or branch; pin a commit for reproducible caching."},
        "path": {**_str, "description": "Local model folder (or .onnx file), relative to the workflow file."},
        "tiny": _tiny,
        "adapter": {**_str, "description": "A PEFT adapter folder the model carries (as `olive ... --adapter_path`), "
                                           "relative to the workflow file."},
        "arch": {"enum": ["phi3", "llama"], "description": "Architecture, used by --rehearse to pick the tiny stand-in."},
        "rehearse": {**_tiny, "description": "Tiny model used for this model under --rehearse."},
        "trust_remote_code": {"type": "boolean", "default": False,
                              "description": "Run the model repository's own Python code. Never implied."},
        "load_kwargs": {"type": "object", "additionalProperties": False,
                        "description": "How transformers loads the model (training passes default to eager "
                                       "attention, as `olive finetune` does).",
                        "properties": {"attn_implementation": {"enum": ["eager", "sdpa", "flash_attention_2"]},
                                       "torch_dtype": {"enum": ["auto", "float32", "float16", "bfloat16"],
                                                       "description": "The dtype transformers loads the weights "
                                                                      "in (Olive's load_kwargs.torch_dtype)."}}},
        "description": {"type": "string"},
    },
    "oneOf": [{"required": ["hf"]}, {"required": ["path"]}, {"required": ["tiny"]}],
}

_dataset = {
    "type": "object",
    "additionalProperties": False,
    "description": "Exactly one of files or hf.",
    "properties": {
        "files": {"oneOf": [_str, {"type": "array", "items": _str, "minItems": 1}],
                  "description": "Local JSON/JSONL/CSV/parquet file(s), relative to the workflow file."},
        "format": {"enum": ["json", "jsonl", "csv", "parquet"]},
        "hf": {**_str, "description": "Hugging Face dataset id."},
        "subset": _str,
        "revision": _revision,
        "split": {**_str, "default": "train"},
        "text_template": {**_str, "description": "Python format string over the row's columns."},
        "text_field": {**_str, "description": "Column holding ready text (instead of text_template)."},
        "limit": {"type": "integer", "minimum": 1, "description": "Use only the first N rows."},
        "max_seq_len": {"type": "integer", "minimum": 8, "maximum": 131072,
                        "description": "Tokens per sequence (default 1024, as the Olive CLI)."},
        "add_special_tokens": {"type": "boolean",
                               "description": "Let the tokenizer add BOS/EOS around each row (default false, "
                                              "as the Olive CLI: the template carries its own tokens)."},
        "max_samples": {"type": "integer", "minimum": 1,
                        "description": "Sequences to use after tokenization (default 256, as the Olive CLI)."},
        "description": {"type": "string"},
        "source": {**_str, "description": "Where the data files come from (a URL, a command): "
                                          "said when one is missing."},
    },
    "oneOf": [{"required": ["files"]}, {"required": ["hf"]}],
}

_inputs = {"oneOf": [_ref, {"type": "array", "items": _ref, "minItems": 1, "uniqueItems": True}]}

_DURATION = {"oneOf": [{"type": "number", "exclusiveMinimum": 0},
                       {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?[smh]$"}]}


def _remote(name: str, options: dict, required: tuple[str, ...] = ()) -> dict:
    """A remote placement, `{<name>: {...}}`: a mapping with that one key, holding only ``options``."""
    body = {"type": "object", "additionalProperties": False, "properties": options}
    if required:
        body["required"] = list(required)
    return {"type": "object", "additionalProperties": False, "required": [name], "properties": {name: body}}


_executor = {
    "description": "Where the node runs: `local` (default), an Azure ML compute target or a Ray cluster.",
    "oneOf": [
        {"enum": ["local"]},
        _remote("azureml", {
            "compute": {**_aml_name, "description": "Azure ML compute target, e.g. gpu-cluster."},
            "environment": {"type": "string", "maxLength": 300,
                            "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]*(:[A-Za-z0-9._-]+|@latest)?$",
                            "description": "Named Azure ML environment `name:version` (default: "
                                           "one olivepipe generates with the pinned Olive stack)."},
            "instance_type": {**_aml_name, "description": "VM size, e.g. Standard_NC24ads_A100_v4 (required "
                                                         "with `compute: serverless`)."},
            "datastore": {**_aml_name, "description": "Azure ML datastore over the shared cache's container: "
                                                      "results are bound as job outputs, the job needs no token."},
            "identity": {"enum": ["user", "managed"],
                         "description": "The job's identity: `user` (yours, on-behalf-of) or `managed` (the "
                                        "compute's); default Azure ML's job token. Unneeded with `datastore:`."},
            "queue_timeout": {**_DURATION, "description": "Cancel and fail the node when its job waits "
                                                            "this long in the queue (e.g. 30m)."},
            "prepare_timeout": {**_DURATION, "description": "Cancel and fail the node when its environment "
                                                              "image takes this long to build (e.g. 45m)."},
        }, required=("compute",)),
        _remote("ray", {
            "address": {**_str, "description": "The Ray cluster's GCS address <host>:<port> "
                                               "(default: RAY_ADDRESS)."},
            "num_cpus": {"type": "number", "exclusiveMinimum": 0, "description": "CPUs the task asks "
                                                                                 "Ray for (default 1)."},
            "num_gpus": {"type": "number", "minimum": 0, "description": "GPUs the task asks Ray for "
                                                                       "(default: 1 for a GPU node, else 0; "
                                                                       "a fraction packs nodes on one GPU)."},
            "memory_gb": {"type": "number", "exclusiveMinimum": 0,
                          "description": "Host memory the task asks Ray for."},
        }),
    ],
}

_COMMON_NODE = {
    "executor": _executor,
    "kind": {"default": "olive"},  # enum filled from the kind registry
    "input": _inputs,
    "device": {"enum": ["cpu", "gpu", "npu"], "default": "cpu"},
    "provider": {**_str, "description": "ONNX Runtime execution provider, e.g. CPUExecutionProvider."},
    "matrix": {"type": "object", "minProperties": 1,
               "additionalProperties": {"type": "array", "minItems": 1,
                                        "items": {"type": ["string", "number", "boolean"]}},
               "description": "Expand into one node per combination; values go into params."},
    "description": {"type": "string"},
    "timeout": {"oneOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 31_536_000},  # a year at most
                          {"type": "string", "maxLength": 12, "pattern": r"^[0-9]+(\.[0-9]+)?[smh]$"}],
                "description": "Stop the node after this long (seconds, or e.g. 90m, 2h); it fails, nothing is published."},
    "gpu_memory_gb": {"type": "number", "exclusiveMinimum": 0, "maximum": 65536,
                      "description": "GPU memory the node needs; nodes with estimates share a GPU while they fit."},
}


def node_schema() -> dict:
    """A node mapping: the common fields plus every registered kind's own (olivepipe/kinds/)."""
    from .. import kinds

    props = dict(_COMMON_NODE)
    props["kind"] = {"enum": kinds.node_kinds(), "default": "olive"}
    for k in kinds.all_kinds():
        for name, frag in k.fields.items():
            props.setdefault(name, frag)
    return {"type": "object", "additionalProperties": False, "properties": props, "required": ["input"]}


def build_schema() -> dict:
    return {
        **_TOP,
        "properties": {**_TOP["properties"],
                       "nodes": {"type": "object", "minProperties": 1, "propertyNames": {"pattern": NAME},
                                 "additionalProperties": node_schema()}},
    }


_TOP = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "olivepipe workflow (format v1)",
    "type": "object",
    "additionalProperties": False,
    "required": ["olivepipe", "name", "nodes"],
    "properties": {
        "olivepipe": {"const": 1, "description": "Format version."},
        "name": {"type": "string", "pattern": NAME},
        "description": {"type": "string"},
        "defaults": {"type": "object", "additionalProperties": False,
                     "properties": {"device": {"enum": ["cpu", "gpu", "npu"]}, "provider": _str,
                                    "executor": _executor}},
        "models": {"type": "object", "propertyNames": {"pattern": NAME}, "additionalProperties": _model},
        "datasets": {"type": "object", "propertyNames": {"pattern": NAME}, "additionalProperties": _dataset},
    },
}
SCHEMA = build_schema()  # the built-in kinds; workflow.py rebuilds it when a kind is registered


def dumps() -> str:
    return json.dumps(SCHEMA, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # python -m olivepipe.spec.schema [OUT]
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "schemas" / "workflow.schema.json"
    out.write_text(dumps())
    print(out)
