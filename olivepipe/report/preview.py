"""`olivepipe compile`: the exact Olive JSON of nodes, runnable with `olive run`.

Built from the same job apply runs, with its placeholders resolved to readable places:
cached inputs to their store entries, inputs not built yet to where apply will expose
them (outputs/<workflow>/<node>), and the output to a private folder under
.olivepipe/compiled/ — never outputs/<node>, which links into the store (an `olive run`
there would write into a published entry).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from ..core.errors import OlivepipeError
from ..core.job import DataFile, Job, ModelFolder, StoredResult, TextDataset
from ..core.job import substitute
from ..flow.plan import make_plan
from ..flow.status import CACHED
from ..core.safefs import confined_dir, write_atomic
from ..flow.workspace import Workspace


@dataclass(frozen=True)
class _Pending:
    """Stands in for a result not built yet."""

    key: str | None
    model: dict | None
    digest: str | None = None


def compile_preview(ws: Workspace, nodes: list[str], *, check: bool = False) -> dict:
    wf = ws.workflow
    olive_nodes = [n for n in wf.nodes if ws.step(n).kind.compiles_to_olive]
    for n in nodes:
        if n not in wf.nodes:
            raise OlivepipeError(f"unknown node '{n}'", f"nodes: {', '.join(wf.nodes)}")
        if n not in olive_nodes:
            raise OlivepipeError(f"node '{n}' is a {wf.nodes[n].kind} node, not an Olive pass", "")
    plan = make_plan(ws)
    entries: dict = {}
    for s in plan.steps:
        entry = ws.store.peek(s.key) if s.status == CACHED and s.key else None
        if entry is None:
            fmt = ws.step(s.name).kind.output_format(ws.step(s.name).spec)
            entry = _Pending(None, {"type": "onnxmodel" if fmt == "onnx" else "hfmodel",
                                    "config": {"model_path": "$OUT"}})
        entries[s.name] = entry
    out = {}
    for n in nodes or olive_nodes:
        job = ws.job(n, entries)
        paths = _paths(ws, n, job, entries)
        config = substitute(job.spec["config"], paths)
        if check:
            validate_with_olive(config)
        out[n] = config
    return out


def _paths(ws: Workspace, name: str, job: Job, entries: dict) -> dict:
    base = ws.workflow.file.parent
    here = confined_dir(base, ".olivepipe", "compiled", name)
    paths = {"$OUT": str(here / "output"), "$SCRATCH": str(here / "scratch")}
    inputs = ws.step(name).inputs
    for ph, ref in job.refs.items():
        if isinstance(ref, StoredResult):
            i = int(ph[len("$IN"):])
            entry = entries[inputs[i]]
            found = ws.store.peek(entry.key) if entry.key else None
            paths[ph] = str(ws.store.fetch(found)) if found else str(ws.outputs / inputs[i])
        elif isinstance(ref, DataFile):
            paths[ph] = str(ws.workflow.root / ref.file)
        elif isinstance(ref, ModelFolder):
            paths[ph] = str(ws.workflow.root / ref.tree)
    for ph, ref in job.refs.items():
        if isinstance(ref, TextDataset):  # Olive's AWQ pass reads a folder with a `text` column
            from ..core.datasets import read_rows, render

            ds = ws.workflow.datasets[ref.fields["name"]]
            folder = confined_dir(here, "calibration")
            rows = [json.dumps({"text": t}, ensure_ascii=False) + "\n"
                    for f in ds.files for t in render(ds, read_rows(f, ds.format))]
            write_atomic(folder / "data.jsonl", "".join(rows))
            paths[ph] = str(folder)
    return paths


def validate_with_olive(config: dict) -> None:
    """Olive's own RunConfig validation; its messages reach the user unchanged."""
    import copy

    from olive.workflows.run.config import RunConfig

    try:
        RunConfig.model_validate(copy.deepcopy(config))  # Olive's validators mutate their input
    except Exception as e:  # pydantic ValidationError or Olive's own checks
        raise OlivepipeError(f"Olive rejects the compiled config: {e}", "this is a bug in olivepipe's compiler or an "
                             "Olive version mismatch; please report it") from None


__all__ = ["compile_preview", "validate_with_olive"]
