"""The DAG of a validated workflow: networkx underneath, stable order on top.

Validation already rejected cycles and unknown references, so building the graph
cannot fail; everything downstream trusts it.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from .spec import Workflow


@dataclass
class Graph:
    workflow: Workflow
    g: nx.DiGraph  # nodes: model names and node names; attribute kind=model|node

    @property
    def order(self) -> list[str]:
        """Workflow nodes (not models) in a deterministic topological order."""
        return [n for n in self._topo() if self.g.nodes[n]["kind"] == "node"]

    def _topo(self) -> list[str]:
        index = {n: i for i, n in enumerate(list(self.workflow.models) + list(self.workflow.nodes))}
        return list(nx.lexicographical_topological_sort(self.g, key=lambda n: index[n]))

    def parents(self, name: str) -> list[str]:
        return list(self.workflow.nodes[name].inputs)

    def upstream(self, names) -> set[str]:
        """The given nodes and every node they need (models excluded)."""
        out = set()
        for n in names:
            out.add(n)
            out.update(a for a in nx.ancestors(self.g, n) if self.g.nodes[a]["kind"] == "node")
        return out

    def downstream(self, names) -> set[str]:
        out = set()
        for n in names:
            out.add(n)
            out.update(nx.descendants(self.g, n))
        return out

    def mermaid(self, marks: dict[str, str] | None = None) -> str:
        """Mermaid flowchart; ``marks`` maps node -> css class (run, cached, blocked...)."""
        marks = marks or {}
        ids = {n: f"n{i}" for i, n in enumerate(self._topo())}
        lines = ["flowchart TD"]
        for n in self._topo():
            label = self._label(n)
            shape = f'[("{label}")]' if self.g.nodes[n]["kind"] == "model" else f'["{label}"]'
            lines.append(f"  {ids[n]}{shape}")
        for a, b in sorted(self.g.edges, key=lambda e: (ids[e[0]], ids[e[1]])):
            lines.append(f"  {ids[a]} --> {ids[b]}")
        styles = {"run": "fill:#ffe9a8,stroke:#c90", "cached": "fill:#d8f5d0,stroke:#393",
                  "blocked": "fill:#f8d0d0,stroke:#c33", "skip": "fill:#eee,stroke:#999"}
        used = sorted(set(marks.values()) & set(styles))
        for cls in used:
            lines.append(f"  classDef {cls} {styles[cls]}")
        for n, cls in sorted(marks.items()):
            if n in ids and cls in styles:
                lines.append(f"  class {ids[n]} {cls}")
        return "\n".join(lines) + "\n"

    def dot(self) -> str:
        lines = [f'digraph "{self.workflow.name}" {{', "  rankdir=TB;", '  node [fontname="Helvetica"];']
        for n in self._topo():
            shape = "cylinder" if self.g.nodes[n]["kind"] == "model" else "box"
            label = self._label(n).replace('"', r'\"').replace("<br/>", r"\n")
            lines.append(f'  "{n}" [shape={shape}, label="{label}"];')
        for a, b in sorted(self.g.edges):
            lines.append(f'  "{a}" -> "{b}";')
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _label(self, n: str) -> str:
        wf = self.workflow
        if n in wf.models:
            m = wf.models[n]
            what = m.hf or (f"tiny {m.tiny.get('arch', 'phi3')}" if m.tiny is not None else (m.path.name if m.path else ""))
            return f"{n}<br/>{what}"
        node = wf.nodes[n]
        what = node.alias or node.kind
        return f"{n}<br/>{what} @ {node.device}"


def build_graph(workflow: Workflow) -> Graph:
    g = nx.DiGraph()
    for m in workflow.models:
        g.add_node(m, kind="model")
    for name in workflow.nodes:
        g.add_node(name, kind="node")
    for name, node in workflow.nodes.items():
        for inp in node.inputs:
            g.add_edge(inp, name)
    return Graph(workflow, g)
