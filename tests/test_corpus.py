"""Bad input corpus (issue 5): every broken workflow in tests/corpus/bad gets exit 2, a
file:line:col location, the expected message, no traceback, and nothing written anywhere.

Each corpus file starts with `# expect: <fragment of the message or hint>` and `# at: LINE:COL`
(where the matching problem must point). One `olivepipe validate` process checks them all;
generated cases (too big, zero bytes, too many values) live in a temporary folder.
"""
import json
import re
from pathlib import Path

import pytest

from conftest import cli

CORPUS = Path(__file__).parent / "corpus" / "bad"
FILES = sorted(p.name for p in CORPUS.glob("*.yaml"))
GENERATED = {  # name -> (content, expected fragment, LINE:COL)
    "huge.yaml": (b"olivepipe: 1\nname: huge\ndescription: " + b"x" * (1 << 20) + b"\n", "workflow files are limited to", "1:1"),
    "zero-bytes.yaml": (b"", "file is empty", "1:1"),
    "bom-only.yaml": (b"\xef\xbb\xbf", "file is empty", "1:1"),
    "many-values.yaml": (b"olivepipe: 1\nname: many\nnodes: {}\nx: [" + b"1," * 150_000 + b"1]\n",
                         "holds more than 100,000 YAML values", "4:4"),
    # 79 nodes of 256 variants: the 79th takes the workflow past 20,000 expanded nodes
    "too-many-nodes.yaml": (b"olivepipe: 1\nname: many\nmodels:\n  m: {tiny: {arch: phi3}}\nnodes:\n" + b"".join(
        b"  x%d: {pass: rtn, input: m, matrix: {group_size: [%s]}}\n" % (i, b", ".join(b"%d" % v for v in range(1, 257)))
        for i in range(79)), "the workflow expands to more than 20,000 nodes (node 'x78' brings it to 20,224)", "84:3"),
}


def expectation(raw: bytes) -> tuple[str, str]:
    m = re.match(rb"# expect: (.+)\n# at: (\d+:\d+)\n", raw)
    assert m, "corpus files start with '# expect: ...' and '# at: LINE:COL'"
    return m.group(1).decode(), m.group(2).decode()


def snapshot(*dirs) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for d in dirs for p in sorted(Path(d).rglob("*"))}


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    gen = tmp_path_factory.mktemp("generated")
    for name, (content, _, _) in GENERATED.items():
        (gen / name).write_bytes(content)
    before = snapshot(CORPUS, gen)
    args = [*FILES, *(str(gen / n) for n in GENERATED)]
    as_json = cli("validate", "--json", *args, cwd=CORPUS, timeout=120)
    as_text = cli("validate", *args, cwd=CORPUS, timeout=120)
    after = snapshot(CORPUS, gen)
    return {"json": as_json, "text": as_text, "gen": gen, "changed": before != after,
            "files": {f["file"]: f for f in json.loads(as_json.stdout)["files"]}}


def test_corpus_is_big_enough():
    assert len(FILES) + len(GENERATED) >= 40


def test_one_run_for_all_exits_2_without_traceback_or_writes(validated):
    for r in (validated["json"], validated["text"]):
        assert r.returncode == 2, r.stderr[-2000:]
        assert "Traceback" not in r.stdout + r.stderr
        assert "internal error" not in r.stdout + r.stderr
    assert not validated["changed"], "validate wrote, changed or deleted something next to the files"
    assert not list(CORPUS.rglob("PWNED")) and not (CORPUS / ".olivepipe").exists()


def _check(validated, shown: str, expect: str, at: str):
    entry = validated["files"][shown]
    assert entry["ok"] is False
    hits = [p for p in entry["problems"] if expect in p["message"] + "\n" + p["hint"]]
    assert hits, f"{shown}: no problem mentions {expect!r}: {[p['message'] for p in entry['problems']]}"
    assert f"{hits[0]['line']}:{hits[0]['col']}" == at, (shown, hits[0])
    # the human output names the same place as file:line:col
    text = validated["text"].stderr
    assert re.search(rf"^{re.escape(shown)}:{at}: ", text, re.M), f"{shown}:{at}: not in the text output"
    mine = [ln for ln in text.splitlines() if ln.startswith(shown + ":")]
    assert all(re.match(rf"{re.escape(shown)}:\d+:\d+: ", ln) or ln.startswith(f"{shown}: ") for ln in mine)


@pytest.mark.parametrize("name", FILES)
def test_corpus_file(validated, name):
    expect, at = expectation((CORPUS / name).read_bytes())
    _check(validated, name, expect, at)


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_file(validated, name):
    _, expect, at = GENERATED[name]
    _check(validated, str(validated["gen"] / name), expect, at)


def test_python_tag_alone_is_rejected_and_runs_nothing(tmp_path):
    """The most dangerous file on its own: a tag that would run a command under an unsafe loader."""
    wf = tmp_path / "workflow.yaml"
    wf.write_bytes((CORPUS / "python-object-apply.yaml").read_bytes())
    for cmd in (("validate", wf), ("plan", wf), ("apply", wf), ("compile", wf)):
        r = cli(*cmd, cwd=tmp_path, timeout=120)
        assert r.returncode == 2 and "'!!python/object/apply:os.system' is not allowed" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["workflow.yaml"]
