"""The DAG of a validated workflow, as a small frozen structure.

Validation (workflow.py) builds the one networkx graph: it rejects cycles and stores
the topological order on the Workflow (``Workflow.order``, kept in the validation
memo). What remains at run time is plain parent/child maps and that order, so a
fully cached apply never imports networkx.
"""
from __future__ import annotations

from dataclasses import dataclass

from .workflow import Workflow, topological_order


@dataclass
class Graph:
    workflow: Workflow
    kinds: dict[str, str]  # name -> "model" | "node"
    parents: dict[str, tuple[str, ...]]
    children: dict[str, tuple[str, ...]]
    topo: tuple[str, ...]  # models and nodes, deterministic topological order

    @property
    def order(self) -> list[str]:
        """Workflow nodes (not models) in topological order, ties broken by file position."""
        return [n for n in self.topo if self.kinds[n] == "node"]

    def out_degree(self, name: str) -> int:
        return len(self.children[name])

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(p, c) for c in self.topo for p in self.parents[c]]

    def _closure(self, names, step) -> set[str]:
        seen, todo = set(), list(names)
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(step[n])
        return seen

    def upstream(self, names) -> set[str]:
        """The given nodes and every node they need (models excluded)."""
        return {n for n in self._closure(names, self.parents) if self.kinds[n] == "node"}

    def downstream(self, names) -> set[str]:
        return self._closure(names, self.children)

    def mermaid(self, marks: dict[str, str] | None = None) -> str:
        """Mermaid flowchart; ``marks`` maps node -> class (run, cached, blocked, skip)."""
        marks = marks or {}
        ids = {n: f"n{i}" for i, n in enumerate(self.topo)}
        lines = ["flowchart TD"]
        for n in self.topo:
            label = self._label(n)
            lines.append(f'  {ids[n]}[("{label}")]' if self.kinds[n] == "model" else f'  {ids[n]}["{label}"]')
        for a, b in sorted(self.edges, key=lambda e: (ids[e[0]], ids[e[1]])):
            lines.append(f"  {ids[a]} --> {ids[b]}")
        for i, (d, readers) in enumerate(self.data_edges().items()):  # datasets: what each node trains on
            files = ", ".join(p.name for p in self.workflow.datasets[d].files) or self.workflow.datasets[d].hf or ""
            lines.append(f'  d{i}[/"{d}<br/>{files}"/]')
            for r in readers:
                lines.append(f"  d{i} -.-> {ids[r]}")
        styles = {"run": "fill:#ffe9a8,stroke:#c90", "cached": "fill:#d8f5d0,stroke:#393",
                  "blocked": "fill:#f8d0d0,stroke:#c33", "skip": "fill:#eee,stroke:#999"}
        for cls in sorted(set(marks.values()) & set(styles)):
            lines.append(f"  classDef {cls} {styles[cls]}")
        for n, cls in sorted(marks.items()):
            if n in ids and cls in styles:
                lines.append(f"  class {ids[n]} {cls}")
        return "\n".join(lines) + "\n"

    def dot(self) -> str:
        lines = [f'digraph "{self.workflow.name}" {{', "  rankdir=TB;", '  node [fontname="Helvetica"];']
        for n in self.topo:
            shape = "cylinder" if self.kinds[n] == "model" else "box"
            label = self._label(n).replace('"', r'\"').replace("<br/>", r"\n")
            lines.append(f'  "{n}" [shape={shape}, label="{label}"];')
        for a, b in sorted(self.edges):
            lines.append(f'  "{a}" -> "{b}";')
        for d, readers in self.data_edges().items():
            lines.append(f'  "dataset:{d}" [shape=parallelogram, label="{d}"];')
            for r in readers:
                lines.append(f'  "dataset:{d}" -> "{r}" [style=dashed];')
        lines.append("}")
        return "\n".join(lines) + "\n"

    def data_edges(self) -> dict[str, list[str]]:
        """{dataset: nodes that read it}, in order."""
        out: dict[str, list[str]] = {}
        for n in self.topo:
            node = self.workflow.nodes.get(n)
            if node is not None and node.data:
                out.setdefault(node.data, []).append(n)
        return out

    def _label(self, n: str) -> str:
        wf = self.workflow
        if n in wf.models:
            m = wf.models[n]
            what = m.hf or (f"tiny {m.tiny.get('arch', 'phi3')}" if m.tiny is not None else (m.path.name if m.path else ""))
            return f"{n}<br/>{what}"
        node = wf.nodes[n]
        return f"{n}<br/>{node.alias or node.kind} @ {node.device}"


def build_graph(workflow: Workflow) -> Graph:
    kinds = {m: "model" for m in workflow.models}
    kinds.update({n: "node" for n in workflow.nodes})
    parents = {m: () for m in workflow.models}
    # `after`: ordering-only dependencies (an evaluate goal's baseline), never inputs
    parents.update({n: tuple(dict.fromkeys((*node.inputs, *node.after))) for n, node in
                    workflow.nodes.items()})
    children: dict[str, list[str]] = {n: [] for n in kinds}
    for n, ps in parents.items():
        for p in ps:
            children[p].append(n)
    topo = _stored_order(workflow, kinds, parents) or _ordered(kinds, children)
    return Graph(workflow, kinds, parents, {k: tuple(v) for k, v in children.items()}, topo)


def _stored_order(workflow: Workflow, kinds, parents) -> tuple[str, ...] | None:
    """Models in file order, then the order validation computed, if it still fits.

    A linear check, not a sort: a rehearsal drops bypassed nodes (their consumers read
    earlier names, so the order stays valid); a Workflow built by hand has none.
    """
    topo = [*workflow.models, *(n for n in workflow.order if n in workflow.nodes)]
    if len(topo) != len(kinds):
        return None
    seen: set[str] = set()
    for n in topo:
        if n in seen or any(p not in seen for p in parents[n]):
            return None
        seen.add(n)
    return tuple(topo)


def _ordered(kinds, children) -> tuple[str, ...]:
    """Fallback for workflows without a stored order, in the order validation uses:
    generation by generation, each sorted by file position."""
    topo = topological_order(children, {n: i for i, n in enumerate(kinds)})
    if topo is None:
        raise ValueError("the workflow's nodes form a cycle")  # validated workflows never do
    return tuple(topo)
