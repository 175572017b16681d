"""Validation at scale: big generated workflows validate, in a topological order computed once.

Correctness only (no timings here): `bench/spec_scale.py` measures the cost per size.
"""
from dataclasses import replace

import pytest

from olivepipe.core.errors import SpecError
from olivepipe.spec.graph import build_graph
from olivepipe.spec.workflow import MAX_EXPANDED, parse_workflow

HEAD = "olivepipe: 1\nname: scale\nmodels:\n  m: {tiny: {arch: phi3}}\nnodes:\n"


def chain(n: int) -> str:
    return HEAD + "".join(f"  c{i}: {{pass: rtn, input: {'m' if i == 0 else f'c{i - 1}'}}}\n" for i in range(n))


def matrix(n: int, per: int = 250) -> str:
    per = min(n, per)
    vals = ", ".join(str(v) for v in range(1, per + 1))
    return HEAD + "".join(f"  x{i}: {{pass: rtn, input: m, matrix: {{group_size: [{vals}]}}}}\n" for i in range(n // per))


def fanout(n: int) -> str:
    """One 100-variant node, then a chain that inherits its variants: n // 100 nodes as written."""
    vals = ", ".join(str(v) for v in range(1, 101))
    return HEAD + f"  q: {{pass: rtn, input: m, matrix: {{group_size: [{vals}]}}}}\n" + "".join(
        f"  f{i}: {{pass: rtn, input: {'q' if i == 0 else f'f{i - 1}'}}}\n" for i in range(n // 100 - 1))


def validate(text):
    return parse_workflow(text, "scale.yaml", base=__import__("pathlib").Path("/nonexistent"), check_files=False)


def assert_topological(wf):
    assert sorted(wf.order) == sorted(wf.nodes)
    seen = set(wf.models)
    for name in wf.order:
        assert all(i in seen for i in wf.nodes[name].inputs), name
        seen.add(name)
    assert build_graph(wf).order == list(wf.order)


@pytest.mark.parametrize("n", [100, 1000, 10_000])
def test_chains_validate_in_order(n):
    wf = validate(chain(n))
    assert list(wf.order) == list(wf.nodes) == [f"c{i}" for i in range(n)]
    assert wf.nodes[f"c{n - 1}"].inputs == (f"c{n - 2}",)
    assert_topological(wf)


@pytest.mark.parametrize("n", [100, 1000, 10_000])
def test_matrices_validate_in_file_order(n):
    wf = validate(matrix(n))
    assert len(wf.nodes) == n
    # one generation: file position, then expansion order inside each node
    assert list(wf.order) == list(wf.nodes) == [f"x{i}-{v}" for i in range(n // min(n, 250)) for v in range(1, min(n, 250) + 1)]
    assert_topological(wf)


def test_inherited_variants_at_10k():
    wf = validate(fanout(10_000))
    assert len(wf.nodes) == 10_000
    assert wf.nodes["f98-57"].inputs == ("f97-57",) and wf.nodes["f0-1"].inputs == ("q-1",)
    assert wf.order[:100] == tuple(f"q-{v}" for v in range(1, 101))
    assert_topological(wf)


def test_order_is_by_generation_then_file_position():
    text = HEAD + ("  a: {pass: rtn, input: m}\n  b: {pass: rtn, input: a}\n"
                   "  c: {pass: rtn, input: m}\n  d: {kind: generate, prompts: [hi], input: [b, c]}\n")
    wf = validate(text)
    assert list(wf.nodes) == ["a", "b", "c", "d"]  # display: file order
    assert wf.order == ("a", "c", "b", "d")  # running: generation by generation
    assert build_graph(wf).order == ["a", "c", "b", "d"]
    # build_graph uses the stored order (another valid one is kept as is), and only falls back
    # to computing one when the stored order does not fit the nodes
    assert build_graph(replace(wf, order=("a", "b", "c", "d"))).order == ["a", "b", "c", "d"]
    assert build_graph(replace(wf, order=("d", "c", "b", "a"))).order == ["a", "c", "b", "d"]
    assert build_graph(replace(wf, order=())).order == ["a", "c", "b", "d"]


def test_expanded_size_is_bounded_with_a_located_message():
    per = 256
    n = MAX_EXPANDED // per + 1  # the last node crosses the bound
    with pytest.raises(SpecError) as e:
        validate(matrix(n * per, per=per))
    (p,) = e.value.problems
    assert p.message == (f"the workflow expands to more than {MAX_EXPANDED:,} nodes "
                         f"(node 'x{n - 1}' brings it to {n * per:,})")
    assert (p.line, p.col, p.path) == (5 + n, 3, f"nodes.x{n - 1}")
    assert len(validate(matrix((n - 1) * per, per=per)).nodes) == (n - 1) * per  # just below: fine


def test_many_unknown_references_stay_cheap_and_located():
    # each hint used to scan every name with difflib: 5,000 bad references x 5,000 names
    text = HEAD + "".join(f"  u{i}: {{pass: rtn, input: nope{i}}}\n" for i in range(5000))
    with pytest.raises(SpecError) as e:
        validate(text)
    ps = e.value.problems
    assert len(ps) == 5000 and all(p.message.startswith("node 'u") and p.line >= 6 for p in ps)
    assert max(len(p.hint) for p in ps) < 200  # the list of known names is cut short
