"""A test-only node kind whose result depends only on what it read, never on where it ran:
it lists its input model's files and copies its data files' text. Worker processes and
remote jobs import it by module name, like a plugin's kind."""
from __future__ import annotations

import json
import os
from pathlib import Path

from fakekinds import Sleep


class Echo(Sleep):  # Sleep's checks and record; its own job and run
    name = "echo"
    fields = {"data": {"type": "string"}, "note": {"type": "string"}}
    option_fields = ("note",)

    def job(self, step, inputs):
        refs = step.data_refs() if step.dataset else {}
        return {"options": dict(step.node.options), "inputs": [i["path"] for i in inputs], "data": sorted(refs),
                "refs": refs}

    def run(self, spec, io):
        listing = []
        for p in spec["inputs"]:
            for d, _, fs in sorted(os.walk(p)):
                listing += sorted(Path(d, f).relative_to(p).as_posix() for f in fs)
        io.out.mkdir(parents=True, exist_ok=True)
        (io.out / "echo.json").write_text(json.dumps({"note": spec["options"].get("note"), "files": listing,
                                                      "data": [Path(f).read_text() for f in spec["data"]]}))
        return {"model": None, "summary": {"files": len(listing)}}


KIND = Echo()
