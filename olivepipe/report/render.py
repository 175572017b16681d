"""Graph output formats; png/svg go through Graphviz's `dot` when it is installed."""
from __future__ import annotations

import shutil
import subprocess

from ..core.errors import OlivepipeError
from ..spec.graph import Graph


def render_graph(g: Graph, fmt: str, marks: dict | None = None) -> str | bytes:
    if fmt == "mermaid":
        return g.mermaid(marks)
    if fmt == "dot":
        return g.dot()
    dot = shutil.which("dot")
    if dot is None:
        raise OlivepipeError(f"{fmt} output needs Graphviz, which is not installed",
                             "install it (apt-get install graphviz / brew install graphviz) or use --format dot|mermaid")
    proc = subprocess.run([dot, f"-T{fmt}"], input=g.dot().encode(), capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise OlivepipeError(f"Graphviz failed: {proc.stderr.decode(errors='replace').strip()[:300]}", "")
    return proc.stdout
