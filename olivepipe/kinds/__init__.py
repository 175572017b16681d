"""The one table of node kinds. Adding a kind: write its module, add one line here
(or call ``register`` from a plugin or a test)."""
from __future__ import annotations

from importlib import import_module

from .base import JobIO, Needs, NodeKind, Rehearsal

# name -> module defining KIND; imported on first use so a cached no-op never pays for it
BUILTIN = {
    "olive": "olivepipe.kinds.olive_pass",
    "generate": "olivepipe.kinds.generate",
    "register": "olivepipe.kinds.register_model",
    "tiny-model": "olivepipe.kinds.tiny_model",
    "evaluate": "olivepipe.kinds.evaluate",
    "adapters": "olivepipe.kinds.multi_adapter",
    "dequantize": "olivepipe.kinds.dequantize",
    "select": "olivepipe.kinds.select",
}
#: kinds a workflow node may name in `kind:` (tiny-model is a `models:` source, not a node kind)
_NODE_KINDS = ["olive", "generate", "register", "evaluate", "adapters", "dequantize", "select"]
_modules = dict(BUILTIN)
_loaded: dict[str, NodeKind] = {}


def get(name: str) -> NodeKind:
    kind = _loaded.get(name)
    if kind is None:
        if name not in _modules:
            raise KeyError(f"unknown node kind {name!r}")
        kind = _loaded[name] = import_module(_modules[name]).KIND
    return kind


def module_of(name: str) -> str:
    """Where a worker finds the kind (jobs carry it, so plugin kinds run in workers too)."""
    return _modules[name]


def node_kinds() -> list[str]:
    return list(_NODE_KINDS)


def all_kinds() -> list[NodeKind]:
    return [get(n) for n in _NODE_KINDS]


def register(kind: NodeKind, module: str) -> None:
    """Add a node kind defined as ``KIND`` in ``module`` (importable by workers too)."""
    _modules[kind.name] = module
    _loaded[kind.name] = kind
    if kind.name not in _NODE_KINDS:
        _NODE_KINDS.append(kind.name)


def unregister(name: str) -> None:
    if name in BUILTIN:
        raise ValueError(f"{name!r} is built in")
    _modules.pop(name, None)
    _loaded.pop(name, None)
    if name in _NODE_KINDS:
        _NODE_KINDS.remove(name)


def load_in_worker(name: str, module: str) -> NodeKind:
    """Worker side: the job names the module, so a kind registered by a plugin is found."""
    if name not in _loaded:
        _modules[name] = module
        _loaded[name] = import_module(module).KIND
    return _loaded[name]


__all__ = ["get", "register", "unregister", "node_kinds", "all_kinds", "module_of", "load_in_worker",
           "NodeKind", "Needs", "Rehearsal", "JobIO"]
