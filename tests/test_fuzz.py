"""Property-based fuzzing of the loader and validator (issue 5).

Whatever the input, ``parse_workflow`` either returns a Workflow or raises SpecError whose
problems all carry a line and column. Any other exception is a bug. What loads must also be
plain data that the key and lock code can serialize.
"""
import json
import os
import re
import signal
from contextlib import contextmanager

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import EXAMPLE, MINIMAL
from olivepipe.core.errors import SpecError
from olivepipe.core.hashing import canonical
from olivepipe.spec.workflow import parse_workflow

# CI: a fixed 300 examples per property (derandomized: a red build is reproducible). For a deeper
# hunt: OLIVEPIPE_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz.py (random seeds).
_DEEP = int(os.environ.get("OLIVEPIPE_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=_DEEP or 300, deadline=None, derandomize=not _DEEP, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SAFE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
VALID = [MINIMAL, (EXAMPLE / "workflow.yaml").read_text()]
# words the schema and builder react to, so random documents get past the first check
VOCAB = ["olivepipe", "name", "nodes", "models", "datasets", "defaults", "pass", "input", "data", "params",
         "matrix", "kind", "device", "provider", "tiny", "hf", "path", "files", "text_template", "prompts",
         "adapters", "training_args", "max_steps", "r", "precision", "lora", "rtn", "model-builder", "generate",
         "register", "base", "finetune", "onnx", "travel", "rehearse", "revision", "trust_remote_code", "version"]
YAML_BITS = [":", " ", "\n", "  ", "\t", "{", "}", "[", "]", ",", "-", "&a", "*a", "<<", "!!", "!!python/object:os.system",
             "#", "'", '"', "|", ">", "?", "~", "null", "1", "-1", "1e9", ".nan", "yes", "2001-02-30", "\x00", "\ufeff",
             "%YAML 1.2", "---", "...", "\\", "{{", "}}", "../", "/etc/passwd", "9" * 5000]

# values that once broke the loader, each fits where a scalar goes: digits past Python's int
# limit, impossible dates, failing explicit tags, a self-containing alias, an alias bomb in one line
HOSTILE = ["9" * 5000, "2001-02-30", "!!int 12x", "!!float x", "!!bool maybe", "!!timestamp x", "&r [*r]",
           "&m {k: *m}", "[" * 300 + "]" * 300, "!!python/object/apply:os.system [true]", "!!binary aGk=",
           "[&a [x,x,x,x,x,x,x,x,x,x], " + ", ".join(f"&{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in
                                                      zip("abcdefg", "bcdefgh")) + "]",
           # a name with a trailing newline (jsonschema's `$`), a NUL in a path, a value too long for a
           # variant name or a file name
           '"onnx\\n"', '"data/\\0x.jsonl"', "[int4, " + "v" * 300 + "]", "x" * 5000 + ".jsonl"]


@contextmanager
def time_limit(seconds=20):
    """A hang (alias bomb, matrix explosion) fails the test instead of stalling CI."""
    def too_slow(*_):
        raise AssertionError(f"parse_workflow took over {seconds} s")

    old = signal.signal(signal.SIGALRM, too_slow)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check(text, tmp_path):
    """The property: SpecError with located problems, or a workflow made of plain data."""
    with time_limit():
        _check(text, tmp_path)


def _check(text, tmp_path):
    try:
        wf = parse_workflow(text, "f.yaml", base=tmp_path, check_files=False)
    except SpecError as e:
        assert e.problems, "SpecError without problems"
        for p in e.problems:
            assert p.line >= 1 and p.col >= 1, p
            assert p.message and p.file == "f.yaml", p
        return
    for node in wf.nodes.values():  # what keys.py and lock.py will serialize
        canonical({"params": node.params, "options": node.options, "variant": node.variant})
    json.dumps(wf.raw, allow_nan=True)
    # names become path components (outputs/<workflow>/<node>, logs): never a separator or '..'
    for name in [wf.name, *wf.nodes, *wf.models, *wf.datasets]:
        assert SAFE_NAME.fullmatch(name), name
    for path in [m.path for m in wf.models.values() if m.path] + [f for d in wf.datasets.values() for f in d.files]:
        path.relative_to(wf.root)  # raises if a model or data path left the workspace


@FUZZ
@given(st.text(max_size=400))
def test_arbitrary_text(tmp_path, text):
    check(text, tmp_path)


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(tmp_path, raw):
    check(raw, tmp_path)


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "insert", "replace_value", "hostile_value", "dup_line", "drop_line"]))
        i = draw(st.integers(0, len(text)))
        if op == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 12)):]
        elif op == "insert":
            bit = draw(st.one_of(st.sampled_from(YAML_BITS + VOCAB), st.text(max_size=6)))
            text = text[:i] + bit + text[i:]
        elif op in ("replace_value", "hostile_value"):  # the text after some ': ' up to the end of its line
            j = text.find(": ", i)
            if j != -1:
                end = text.find("\n", j)
                end = len(text) if end == -1 else end
                value = draw(st.sampled_from(HOSTILE) if op == "hostile_value" else yaml_snippet())
                text = text[:j + 2] + value + text[end:]
        else:
            lines = text.split("\n")
            k = draw(st.integers(0, len(lines) - 1))
            lines[k:k + 1] = [lines[k], lines[k]] if op == "dup_line" else []
            text = "\n".join(lines)
    return text


def scalars():
    return st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                     st.sampled_from(VOCAB), st.text(max_size=12))


def structures():
    return st.recursive(scalars(), lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(VOCAB), st.text(max_size=8)), inner, max_size=5)), max_leaves=25)


def yaml_snippet():
    return st.one_of(st.sampled_from(YAML_BITS + VOCAB),
                     structures().map(lambda v: yaml.safe_dump(v, default_flow_style=True, width=10 ** 6).strip()))


@FUZZ
@given(mutated())
def test_mutated_valid_workflows(tmp_path, text):
    check(text, tmp_path)


@FUZZ
@given(structures())
def test_random_structures(tmp_path, value):
    check(yaml.safe_dump(value, allow_unicode=True), tmp_path)


@st.composite
def near_valid(draw):
    """A valid skeleton whose sections are filled with random structures: reaches the semantic checks."""
    doc = yaml.safe_load(draw(st.sampled_from(VALID)))
    for section in draw(st.lists(st.sampled_from(["models", "datasets", "nodes", "defaults"]), min_size=1, max_size=3)):
        body = doc.get(section)
        if isinstance(body, dict) and body and draw(st.booleans()):
            name = draw(st.sampled_from(sorted(body)))
            entry = body[name]
            params = entry.get("params") if isinstance(entry, dict) else None
            if isinstance(params, dict) and draw(st.booleans()):  # one pass parameter gone wrong
                params[draw(st.sampled_from(sorted(params) + VOCAB))] = draw(structures())
            elif isinstance(entry, dict) and entry and draw(st.booleans()):
                entry[draw(st.sampled_from(sorted(entry) + VOCAB))] = draw(structures())
            else:
                body[name] = draw(structures())
        else:
            doc[section] = draw(structures())
    return yaml.safe_dump(doc, allow_unicode=True)


@FUZZ
@given(near_valid())
def test_near_valid_documents(tmp_path, text):
    check(text, tmp_path)


@pytest.mark.parametrize("text", [
    "a: " + "[" * 5000 + "]" * 5000,  # deeper than any recursive consumer could follow
    "a: &a [1]\nb: &b [*a, *a]\n" + "".join(f"c{i}: &c{i} [{', '.join([f'*c{i - 1}' if i else '*b'] * 9)}]\n"
                                            for i in range(9)),
    "olivepipe: 1\nname: x\nnodes: &n {a: {input: *n}}\n",
    "olivepipe: 1\nname: x\nmodels: {m: {tiny: {}}}\ndatasets: {d: {files: a.json}}\n"
    "nodes: {a: {pass: lora, input: m, data: d, params: {training_args: 5, max_steps: 3}}}\n",
])
def test_regressions(tmp_path, text):
    """Inputs that once escaped as RecursionError, hung, or raised TypeError."""
    with time_limit(), pytest.raises(SpecError):
        parse_workflow(text, "f.yaml", base=tmp_path, check_files=False)
