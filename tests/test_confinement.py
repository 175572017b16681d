"""olivepipe writes only inside the workspace and its cache, and read-only commands write nothing
(issue: a cache you can trust, cases 4, 5, 6 and 8)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import MINIMAL, cli, tree_snapshot, write




@pytest.fixture
def ws(tmp_path) -> Path:
    wf = write(tmp_path / "ws" / "workflow.yaml", MINIMAL)
    write(tmp_path / "ws" / "travel.jsonl", '{"prompt": "a", "response": "b"}\n' * 8)
    (tmp_path / "outside").mkdir()
    return wf


@pytest.mark.parametrize("link", [".olivepipe", "outputs"])
def test_a_committed_symlink_never_gets_written_through(ws, link):
    outside = ws.parent.parent / "outside"
    os.symlink(outside, ws.parent / link)
    for args in (["validate", ws], ["plan", ws], ["status", ws], ["graph", ws], ["compile", ws]):
        cli(*args)
    r = cli("apply", ws)
    # a linked .olivepipe is refused when its config would be read, a linked outputs/ when written
    assert r.returncode == 1 and "refusing to" in r.stderr and "Traceback" not in r.stderr
    assert list(outside.iterdir()) == []  # nothing landed outside the workspace
    assert not (ws.parent / "olivepipe.lock").exists()  # and nothing ran


def test_read_only_commands_write_nothing(ws):
    # state from an earlier validate/plan must exist for this to mean anything: make some by planning
    # a workflow with a broken node name, so nothing runs, then the real one
    before = tree_snapshot(ws.parent)
    for args in (["validate", ws], ["plan", ws], ["plan", "--json", ws], ["status", ws], ["graph", ws],
                 ["show", ws, "finetune"]):
        r = cli(*args)
        assert r.returncode in (0, 2), (args, r.stderr)
    assert tree_snapshot(ws.parent) == before


def test_compiled_configs_never_write_into_outputs_or_the_cache(ws):
    r = cli("compile", ws, "--node", "onnx")
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    out = Path(cfg["output_dir"]).resolve()
    assert out.is_relative_to((ws.parent / ".olivepipe" / "compiled").resolve())
    assert not out.is_relative_to((ws.parent / "outputs").resolve())
    assert not out.is_relative_to((ws.parent / ".olivepipe" / "cache").resolve())


@pytest.mark.parametrize("params, where", [
    ("{r: 4, max_steps: 2, output_dir: /tmp/elsewhere}", "training_args.output_dir"),  # lifted, like max_steps
    ("{r: 4, training_args: {max_steps: 2, output_dir: ../../x}}", "training_args.output_dir"),
])
def test_pass_params_that_name_output_locations_are_refused(ws, params, where):
    ws.write_text(MINIMAL.replace("params: {r: 4, max_steps: 2, torch_dtype: float32}", f"params: {params}"))
    r = cli("validate", ws)
    assert r.returncode == 2 and f"'{where}' names where LoRA writes" in r.stderr


def test_model_builder_output_filename_is_refused(ws):
    ws.write_text(MINIMAL.replace("params: {precision: int4}", "params: {precision: int4, extra_options: {filename: /etc/x.onnx}}"))
    r = cli("validate", ws)
    assert r.returncode == 2 and "'extra_options.filename' names where ModelBuilder writes" in r.stderr
