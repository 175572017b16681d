"""Step kind `tiny-model`: a deterministic tiny random model built locally (`models: {x: {tiny: ...}}`).

Not a node kind a workflow names: tiny models are a model source, but they are built
and cached like any node result, so they go through the same protocol."""
from __future__ import annotations

from .base import NodeKind

TINY_DEFAULTS = {"arch": "phi3", "layers": 2, "hidden": 64, "heads": 4, "vocab_size": 512, "seed": 0}
TINY_GENERATOR = 2  # bump when tinymodel.py changes what it builds


class TinyModel(NodeKind):
    name = "tiny-model"
    packages = ("torch", "transformers", "tokenizers", "safetensors")

    def args(self, model) -> dict:
        return {**TINY_DEFAULTS, **(model.tiny or {})}

    def label(self, node):
        return "tiny-model"

    def record(self, step):
        return {"generator": TINY_GENERATOR, "args": self.args(step.node)}

    def job(self, step, inputs):
        return {"args": self.args(step.node)}

    def run(self, spec, io):
        from ..models.tinymodel import build_tiny_model

        info = build_tiny_model(io.out, **spec["args"])
        return {"model": {"type": "hfmodel", "config": {"model_path": "$OUT"}}, "info": info}

    def output_format(self, node):
        return "hf"


KIND = TinyModel()
