"""Validation cost against workflow size: full validation (no memo) and graph build.

    .venv/bin/python bench/spec_scale.py [--sizes 100,1000,10000] [--repeat 1]

Prints JSON: per shape and expanded size, seconds (median of --repeat) for
parse_workflow (schema + semantic checks + ordering) and graph.build_graph, plus the
ratio of each size's time to the previous size's. Linear work shows ratios near the
size ratio (10); quadratic work would show ~100.
Shapes: chain (each node reads the previous), wide (all read one model), matrix
(nodes of 250 variants each), fanout (one 100-variant node, a chain inheriting it),
and cycle (12 nodes all reading each other: one located error, not n! cycles).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from olivepipe.core.errors import SpecError  # noqa: E402
from olivepipe.spec.graph import build_graph  # noqa: E402
from olivepipe.spec.workflow import parse_workflow  # noqa: E402

HEAD = "olivepipe: 1\nname: scale\nmodels:\n  m: {tiny: {arch: phi3}}\nnodes:\n"


def chain(n: int) -> str:
    return HEAD + "".join(f"  c{i}: {{pass: rtn, input: {'m' if i == 0 else f'c{i - 1}'}}}\n" for i in range(n))


def wide(n: int) -> str:
    return HEAD + "".join(f"  w{i}: {{pass: rtn, input: m}}\n" for i in range(n))


def matrix(n: int) -> str:
    per = min(n, 250)
    vals = ", ".join(str(v) for v in range(1, per + 1))
    return HEAD + "".join(f"  x{i}: {{pass: rtn, input: m, matrix: {{group_size: [{vals}]}}}}\n" for i in range(n // per))


def fanout(n: int) -> str:
    per = min(n, 100)
    vals = ", ".join(str(v) for v in range(1, per + 1))
    lines = [f"  q: {{pass: rtn, input: m, matrix: {{group_size: [{vals}]}}}}\n"]
    lines += [f"  f{i}: {{pass: rtn, input: {'q' if i == 0 else f'f{i - 1}'}}}\n" for i in range(n // per - 1)]
    return HEAD + "".join(lines)


def cycle(n: int = 12) -> str:
    names = [f"n{i}" for i in range(n)]
    return HEAD + "".join(f"  {a}: {{kind: generate, prompts: [hi], input: [{', '.join(b for b in names if b != a)}]}}\n"
                          for a in names)


def measure(text: str, repeat: int) -> dict:
    val, gra, count, problems = [], [], 0, 0
    for _ in range(repeat):
        t = time.perf_counter()
        try:
            wf = parse_workflow(text, "scale.yaml", base=Path("/tmp"), check_files=False)
        except SpecError as e:
            val.append(time.perf_counter() - t)
            problems = len(e.problems)
            continue
        val.append(time.perf_counter() - t)
        t = time.perf_counter()
        g = build_graph(wf)
        gra.append(time.perf_counter() - t)
        count = len(g.order)
    out = {"nodes": count, "validate_s": round(statistics.median(val), 4)}
    if gra:
        out["graph_s"] = round(statistics.median(gra), 5)
    if problems:
        out["problems"] = problems
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    parse_workflow(chain(3), "warm.yaml", base=Path("/tmp"), check_files=False)  # imports, catalog load
    result: dict = {"sizes": sizes}
    for shape in (chain, wide, matrix, fanout):
        rows = {}
        prev = None
        for n in sizes:
            row = measure(shape(n), args.repeat)
            if prev:
                row["ratio_to_previous"] = round(row["validate_s"] / prev, 1)
            prev = row["validate_s"]
            rows[str(n)] = row
        result[shape.__name__] = rows
    result["cycle12"] = measure(cycle(), args.repeat)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
