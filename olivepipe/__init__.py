"""olivepipe: declarative, cached workflows for Microsoft Olive.

Library first: everything the CLI does is reachable from here.

    from olivepipe import open_workspace, make_plan, apply
    ws = open_workspace("workflow.yaml")
    plan = make_plan(ws)
    result = apply(ws, plan)
"""
__version__ = "0.1.0"

import os as _os

if _os.environ.get("OLIVEPIPE_NETWORK_AUDIT"):  # opt-in: prove an apply stays off the network
    from .core.netaudit import install_from_env as _audit

    _audit()


def __getattr__(name):  # lazy: `olivepipe --help` should not import networkx, rich, ...
    from importlib import import_module

    where = {
        "load_workflow": "spec", "Workflow": "spec", "SpecError": "errors", "OlivepipeError": "errors",
        "build_graph": "graph", "open_workspace": "workspace", "Workspace": "workspace",
        "make_plan": "plan", "Plan": "plan", "apply": "executor", "ApplyResult": "executor",
    }
    if name in where:
        return getattr(import_module(f".{where[name]}", __name__), name)
    raise AttributeError(name)
