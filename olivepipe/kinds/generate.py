"""Node kind `generate`: a chat smoke test with onnxruntime-genai (olivepipe/models/genai.py),
over one or more input models, adapters included."""
from __future__ import annotations

from pathlib import Path

from .base import NodeKind

_str = {"type": "string", "minLength": 1}


class Generate(NodeKind):
    name = "generate"
    fields = {
        "prompts": {"type": "array", "items": _str, "minItems": 1},
        "max_new_tokens": {"type": "integer", "minimum": 1, "maximum": 4096},
        "adapters": {"oneOf": [{"enum": ["auto", "none"]}, {"type": "array", "items": _str}]},
        "chat_template": _str,
    }
    option_fields = ("prompts", "max_new_tokens", "adapters", "chat_template")
    packages = ("onnxruntime-genai", "onnxruntime")
    makes_model = False

    def check(self, ctx, base, n, where):
        if "prompts" not in n:
            ctx.problem(where, "a generate node needs `prompts`",
                        "e.g. `prompts: [\"what is the best thing to see in chicago\"]`")
        if isinstance(n.get("adapters"), list):
            for i, a in enumerate(n["adapters"]):  # read from the input model's folder: never outside it
                if isinstance(a, str) and (Path(a).is_absolute() or ".." in Path(a).parts):
                    ctx.problem(where + ("adapters", i), f"adapter '{a}' is outside the input model's folder",
                                "name adapter files relative to that folder, e.g. adapter_weights.onnx_adapter",
                                value=True)
        return {}

    def needs(self, step):
        from .base import Needs

        return Needs(packages=("onnxruntime-genai",))

    def run(self, spec, io):
        from ..models.genai import run_generate

        return run_generate(spec, io.out)


KIND = Generate()
