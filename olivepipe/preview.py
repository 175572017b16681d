"""`olivepipe compile`: the Olive JSON of nodes, using cached inputs where they exist."""
from __future__ import annotations



from .errors import OlivepipeError
from .plan import CACHED, make_plan
from .workspace import Workspace


def compile_preview(ws: Workspace, nodes: list[str], *, check: bool = False) -> dict:
    wf = ws.workflow
    olive_nodes = [n for n in wf.nodes if wf.nodes[n].kind == "olive"]
    for n in nodes:
        if n not in wf.nodes:
            raise OlivepipeError(f"unknown node '{n}'", f"nodes: {', '.join(wf.nodes)}")
        if wf.nodes[n].kind != "olive":
            raise OlivepipeError(f"node '{n}' is a {wf.nodes[n].kind} node, not an Olive pass", "")
    plan = make_plan(ws)
    steps = plan.by_name()
    entries: dict = {}
    for name, s in steps.items():
        if s.status == CACHED and s.key:
            entries[name] = ws.store.get(s.key)
        else:  # not built yet: show where its result will be read from
            cfg = {"type": "onnxmodel" if _is_onnx(ws, name) else "hfmodel", "config": {"model_path": "$OUT"}}
            entries[name] = _Pending(ws.outputs / name, cfg)
    out = {}
    for n in nodes or olive_nodes:
        pending_out = ws.outputs / n
        config = ws.compile(n, entries, pending_out, ws.dir / "scratch" / n)
        if check:
            validate_with_olive(config)
        out[n] = config
    return out


class _Pending:
    """Stands in for a result not built yet: its future output location."""

    def __init__(self, tree, model):
        self.tree, self.model, self.digest = tree, model, None


def _is_onnx(ws: Workspace, name: str) -> bool:
    node = ws.workflow.nodes.get(name)
    return bool(node and node.pass_type and (node.pass_type.startswith("Onnx") or node.pass_type in
                                             ("ModelBuilder", "ExtractAdapters", "OrtTransformersOptimization")))


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
