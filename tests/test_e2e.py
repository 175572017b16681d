"""End to end with real Olive on the tiny model: apply, no-op re-apply, exact incremental re-runs."""
import json
import shutil

import pytest

from conftest import cli, apply_result
from olivepipe.flow.scheduler import apply
from olivepipe.flow.plan import make_plan
from olivepipe.flow.workspace import open_workspace

pytestmark = pytest.mark.e2e


def run(wf, **kw):
    ws = open_workspace(wf)
    plan = make_plan(ws, **kw)
    return plan, apply(ws, plan)


def test_example_end_to_end_then_incremental(example):
    plan, res = run(example)
    assert res.ok, {n: o.error for n, o in res.outcomes.items()}
    assert res.ran == ["phi3-tiny", "finetune", "base", "onnx", "fp32", "eval-int4-base", "adapters",
                       "eval-fp32-lora", "eval-int4-lora", "best", "chat"]
    assert res.outcomes["best"].status == "ran"  # the select node chose the chat model (int4: smallest in 5%)
    out = example.parent / "outputs" / "travel-tiny"
    assert (out / "adapters" / "model.onnx").exists() and (out / "adapters" / "adapter_weights.onnx_adapter").exists()
    report = json.loads((out / "chat" / "report.json").read_text())
    assert report["adapters"] == ["adapter"] and report["runs"][0]["new_tokens"] > 0
    assert report["runs"][0]["prompt"] == "what is the best thing to see in chicago"
    lock1 = (example.parent / "olivepipe.lock").read_text()

    # second apply: nothing runs, the lock is untouched
    plan, res = run(example)
    assert res.ok and res.ran == [] and not plan.has_changes
    assert (example.parent / "olivepipe.lock").read_text() == lock1

    # a leaf param change re-runs that node only
    example.write_text(example.read_text().replace("max_new_tokens: 16", "max_new_tokens: 8"))
    plan, res = run(example)
    assert [s.name for s in plan.to_run] == ["chat"] and res.ran == ["chat"]

    # editing the data file in place re-runs its reader and the dependents, nothing else
    data = example.parent / "data" / "travel.jsonl"
    data.write_text(data.read_text().replace("Chicago", "Chicago, IL"))
    plan, res = run(example)
    rerun = ["finetune", "onnx", "fp32", "eval-int4-base", "adapters", "eval-fp32-lora", "eval-int4-lora", "best",
             "chat"]
    assert [s.name for s in plan.to_run] == rerun
    assert res.ok and res.ran == rerun
    assert "data file" in plan.by_name()["finetune"].reasons[0]


def test_olive_cache_serves_stale_results_olivepipe_does_not(example, tmp_path):
    """Olive keys data by path: an in-place edit of the JSONL returns its cached model."""
    plan, res = run(example, targets=("finetune",))
    assert res.ok
    from olivepipe.report.preview import compile_preview

    cfg = compile_preview(open_workspace(example), ["finetune"])["finetune"]  # its input is cached
    cfg["cache_dir"] = str(tmp_path / "shared-olive-cache")  # Olive's own cache, reused across runs
    runs = []
    for i in range(2):
        if i == 1:  # edit the data in place, as a user would
            data = example.parent / "data" / "travel.jsonl"
            data.write_text(data.read_text().replace("Chicago", "Springfield"))
        c = json.loads(json.dumps(cfg))
        c["output_dir"] = str(tmp_path / f"olive-out{i}")
        (tmp_path / f"cfg{i}.json").write_text(json.dumps(c))
        r = cli_olive(tmp_path / f"cfg{i}.json")
        assert r.returncode == 0, r.stderr[-2000:]
        runs.append((tmp_path / f"olive-out{i}" / "adapter" / "adapter_model.safetensors").read_bytes())
    assert runs[0] == runs[1], "Olive re-trained: its cache no longer keys data by path"
    # olivepipe notices the edit and re-trains
    plan = make_plan(open_workspace(example), targets=("finetune",))
    assert [s.name for s in plan.to_run] == ["finetune"]


def cli_olive(config):
    import os
    import subprocess
    import sys

    from olivepipe.olive.runtime import worker_env

    return subprocess.run([sys.executable, "-m", "olive", "run", "--config", str(config)], capture_output=True,
                          text=True, env=worker_env(dict(os.environ)), timeout=600)


def test_failure_keeps_independent_branches_and_is_detected(example):
    # a pass that fails inside Olive: "olive run" would exit 0 with no output model
    text = example.read_text() + """
  broken:
    pass: onnx-int4
    input: finetune
"""
    example.write_text(text)
    plan, res = run(example)
    assert not res.ok
    assert res.outcomes["broken"].status == "failed"
    assert "no output model" in res.outcomes["broken"].error.lower() or "Error" in res.outcomes["broken"].error
    assert res.outcomes["chat"].status == "ran"  # the independent branch finished
    r = cli("apply", example)
    assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout
    assert "resume" in r.stdout


def test_cli_apply_json_and_second_run_fast(example):
    r = cli("apply", "--json", example)
    assert r.returncode == 0, r.stderr
    first = apply_result(r.stdout)
    assert first["ok"] and {s["status"] for s in first["steps"]} == {"ran"}
    r = cli("apply", "--json", example)
    second = apply_result(r.stdout)
    assert {s["status"] for s in second["steps"]} == {"cached"}
    assert second["seconds"] < 1.0  # orchestration only; the budget itself is tracked in bench/
    r = cli("plan", "--detailed-exitcode", example)
    assert r.returncode == 0
    shutil.rmtree(example.parent / ".olivepipe" / "cache")
    r = cli("plan", "--detailed-exitcode", example)
    assert r.returncode == 2 and "missing from the cache" in r.stdout


def test_detailed_exitcode_reports_bad_input_as_error(tmp_path):
    bad = tmp_path / "workflow.yaml"
    bad.write_text("olivepipe: 1\nname: x\nnodes: {a: {pass: nope, input: m}}\n")
    r = cli("plan", "--detailed-exitcode", bad)
    assert r.returncode == 1 and "unknown" in r.stderr
