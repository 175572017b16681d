"""A test-only node kind (registered like a plugin): `kind: hf-config` loads each input's config
the way Olive's HfModel does (transformers' AutoConfig with the input model config's
load_kwargs) and writes what it saw. A load that fails is noted, not fatal."""
from __future__ import annotations

import json

from olivepipe.kinds.base import NodeKind


class HfConfigLoad(NodeKind):
    """`kind: hf-config`: loads each input's config the way Olive's HfModel does
    (transformers' AutoConfig with the input model config's load_kwargs) and writes what it saw.
    A load that fails (e.g. a config that needs remote code it may not run) is noted, not fatal."""

    name = "hf-config"
    fields = {}
    option_fields = ()

    def record(self, step):
        return {}

    def job(self, step, inputs):
        return {"inputs": inputs}

    def run(self, spec, io):
        from transformers import AutoConfig

        seen = []
        for inp in spec["inputs"]:
            cfg = (inp.get("model") or {}).get("config") or {}
            kwargs = cfg.get("load_kwargs") or {}
            try:
                AutoConfig.from_pretrained(cfg["model_path"], **kwargs)
                seen.append({"loaded": True, "load_kwargs": kwargs})
            except Exception as e:  # noqa: BLE001 - what happened is the result
                seen.append({"loaded": False, "error": f"{type(e).__name__}", "load_kwargs": kwargs})
        io.out.mkdir(parents=True, exist_ok=True)
        (io.out / "seen.json").write_text(json.dumps(seen))
        return {}


KIND = HfConfigLoad()
