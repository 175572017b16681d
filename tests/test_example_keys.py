"""The keys of the committed example workflows are a contract: a refactor must not change them.

tests/example_keys.json was recorded from main before the typed-step refactor (issue 20) by
``python tests/test_example_keys.py --record``. Each step's record is computed with made-up
digests for its produced inputs (an upstream result's digest is only known once it ran) and an
environment identity that names the key-shaping packages without reading installed versions, so
the fixture is the same on every machine. Re-record only for a deliberate, documented key change.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).with_name("example_keys.json")
WORKFLOWS = {  # fixture name -> (workflow file, rehearse)
    "travel-tiny": ("examples/travel-tiny/workflow.yaml", False),
    "phi35-travel": ("workflows/phi35-travel.yaml", False),
    "phi35-travel@rehearsal": ("workflows/phi35-travel.yaml", True),
}


class PinnedEnvironment:
    """An executor that answers like the local one, minus the machine: every package at a fixed
    version, no CUDA (so a rehearsal bypasses what needs it, as on CI)."""

    name = "pinned"

    def preflight(self, needs, device, placement=None):
        from olivepipe.run.executors.base import Check

        missing = ("a CUDA GPU",) if needs.cuda or device == "gpu" else ()
        return Check(not missing, missing, missing)

    def environment(self, packages, placement=None):
        return {"where": self.where(placement), **{p: "pinned" for p in sorted(set(packages))}}

    def where(self, placement=None):
        from olivepipe.run.executors.base import placement_key

        return placement_key(placement)


def fake_digest(name: str) -> str:
    return hashlib.sha256(f"result of {name}".encode()).hexdigest()


# The lab reads its own data file (workflows/data/data_sample_travel.jsonl), which the repository
# does not hold: the fixture keys it with the example's rows in that place, the same on every machine.
LAB_DATA = ("workflows/data/data_sample_travel.jsonl", "examples/travel-tiny/data/travel.jsonl")


def _checkout(rel: str, where: Path) -> Path:
    """The workflow in a copy of the repository layout, with the data files it expects."""
    import shutil

    if not (REPO / LAB_DATA[0]).exists() and rel.startswith("workflows/"):
        (where / ".git").mkdir(parents=True, exist_ok=True)
        (where / LAB_DATA[0]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / LAB_DATA[1], where / LAB_DATA[0])
        return Path(shutil.copy(REPO / rel, where / rel))
    return REPO / rel


def example_records(rel: str, rehearse: bool, cache: Path) -> dict:
    """{step: {"key", "record"}} for every step of a workflow, as apply would key it."""
    from olivepipe.core.keys import key_of
    from olivepipe.flow.workspace import open_workspace

    ws = open_workspace(_checkout(rel, cache / "checkout"), cache_dir=cache, rehearse=rehearse,
                        executor=PinnedEnvironment(), read_only=True)
    out = {}
    for name in ws.steps():
        record, complete = ws.record(name, {n: fake_digest(n) for n in ws.steps()})
        assert complete, name
        out[name] = {"key": key_of(record), "record": record}
    return out


def _all(cache: Path) -> dict:
    return {label: example_records(rel, rehearse, cache / label) for label, (rel, rehearse) in WORKFLOWS.items()}


@pytest.mark.parametrize("label", sorted(WORKFLOWS))
def test_example_keys_are_unchanged(label, tmp_path):
    rel, rehearse = WORKFLOWS[label]
    want = json.loads(FIXTURE.read_text(encoding="utf-8"))[label]
    got = json.loads(json.dumps(example_records(rel, rehearse, tmp_path)))  # tuples as lists, like the fixture
    assert sorted(got) == sorted(want), "the workflow's steps changed"
    for name in want:
        assert got[name]["record"] == want[name]["record"], f"{label}: {name}: the key record drifted"
        assert got[name]["key"] == want[name]["key"], f"{label}: {name}: the key drifted"


def test_fake_digests_reach_the_keys(tmp_path):
    """The fixture would prove nothing if inputs' digests did not reach their consumers' keys."""
    recs = example_records(*WORKFLOWS["travel-tiny"], tmp_path)
    assert {"digest": fake_digest("finetune")} in recs["onnx"]["record"]["inputs"]


if __name__ == "__main__" and sys.argv[1:2] == ["--record"]:
    # `--record LABEL...` re-records only those workflows (a deliberate change to one of them)
    import tempfile

    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory() as d:
        fixture = json.loads(FIXTURE.read_text(encoding="utf-8")) if sys.argv[2:] else {}
        for label in sys.argv[2:] or WORKFLOWS:
            fixture[label] = example_records(*WORKFLOWS[label], Path(d) / label)
        FIXTURE.write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"recorded {FIXTURE}")
