"""A node kind that exists only in tests, registered like any plugin (never in olivepipe/).

`kind: sleep` waits `seconds`, optionally fails, and writes a small result naming what it read,
so the scheduler, executors and store can be tested without Olive."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from olivepipe.kinds.base import Needs, NodeKind


class Sleep(NodeKind):
    name = "sleep"
    fields = {"seconds": {"type": "number", "minimum": 0}, "fail": {"type": "boolean"},
              "note": {"type": "string"}, "cuda": {"type": "boolean"}, "data": {"type": "string"},
              "wait_for": {"type": "string"}, "import_s": {"type": "number", "minimum": 0},
              "mark": {"type": "string"}}
    option_fields = ("seconds", "fail", "note", "cuda", "wait_for", "import_s", "mark")

    def needs(self, step):
        return Needs(cuda=bool(step.node.options.get("cuda")))

    def check(self, ctx, base, raw, where):
        if raw.get("seconds", 0) > 3600:
            ctx.problem(where + ("seconds",), "too long for a test", "at most 3600", value=True)
        return {"data": raw.get("data")}

    def record(self, step):
        rec = {"options": dict(step.node.options)}
        if step.dataset:
            rec["data"] = step.dataset_record()
        return rec

    def job(self, step, inputs):
        refs = step.data_refs() if step.dataset else {}
        return {"options": dict(step.node.options), "inputs": inputs, "node": step.node.name, "data": sorted(refs),
                "refs": refs}

    def run(self, spec, io):
        opts = spec["options"]
        if opts.get("mark"):  # tells a test which process runs the node, once it runs
            Path(opts["mark"]).write_text(str(os.getpid()))
        if opts.get("wait_for"):  # a test releases the node when it has done its mischief
            while not Path(opts["wait_for"]).exists():
                time.sleep(0.02)
        time.sleep(opts.get("seconds", 0))
        data = [Path(p).read_text() for p in spec.get("data", [])]
        if opts.get("fail"):
            raise RuntimeError(f"{spec['node']} was told to fail")
        io.out.mkdir(parents=True, exist_ok=True)
        (io.out / "result.json").write_text(json.dumps({"node": spec["node"], "note": opts.get("note"),
                                                        "read": [i["path"] for i in spec["inputs"]],
                                                        "data": data}))
        out = {"model": {"type": "hfmodel", "config": {"model_path": "$OUT"}}}
        if opts.get("import_s") is not None:  # as a pass reports its worker's first import of Olive
            out["import_s"] = opts["import_s"]
        return out


KIND = Sleep()
