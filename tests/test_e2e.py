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


def test_example_end_to_end_then_incremental(example, tmp_path):
    """One workspace, applied once from scratch (the full pipeline through real Olive is the
    expensive part), then every incremental case on top of it: a no-op through the API and the
    CLI, a leaf change, an in-place data edit (which Olive's own cache does not notice), a pass
    failing inside Olive, and a lost cache."""
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

    # second apply: nothing runs, the lock is untouched; the same through the CLI's JSON
    plan, res = run(example)
    assert res.ok and res.ran == [] and not plan.has_changes
    assert (example.parent / "olivepipe.lock").read_text() == lock1
    r = cli("apply", "--json", example)
    assert r.returncode == 0, r.stderr[-3000:]
    second = apply_result(r.stdout)
    assert second["ok"] and len(second["steps"]) == 11 and {s["status"] for s in second["steps"]} == {"cached"}
    assert (example.parent / "olivepipe.lock").read_text() == lock1
    r = cli("plan", "--detailed-exitcode", example)
    assert r.returncode == 0, r.stdout + r.stderr

    # a leaf param change re-runs that node only
    example.write_text(example.read_text().replace("max_new_tokens: 16", "max_new_tokens: 8"))
    plan, res = run(example)
    assert [s.name for s in plan.to_run] == ["chat"] and res.ran == ["chat"]

    # Olive's own cache keys data by path: the fine-tune's exact Olive config, run by `olive run`
    # before and after an in-place edit of the JSONL, returns the same (stale) adapter
    from olivepipe.report.preview import compile_preview

    cfg = compile_preview(open_workspace(example), ["finetune"])["finetune"]  # its input is cached
    cfg["cache_dir"] = str(tmp_path / "shared-olive-cache")  # Olive's own cache, reused across runs
    adapter_before = olive_adapter(cfg, tmp_path / "olive0")

    # editing the data file in place re-runs its reader and the dependents, nothing else; a new
    # node whose pass fails inside Olive ("olive run" would exit 0 with no output model) fails
    # alone: the independent branches finish
    data = example.parent / "data" / "travel.jsonl"
    data.write_text(data.read_text().replace("Chicago", "Chicago, IL"))
    assert olive_adapter(cfg, tmp_path / "olive1") == adapter_before, \
        "Olive re-trained: its cache no longer keys data by path"
    example.write_text(example.read_text() + """
  broken:
    pass: onnx-int4
    input: finetune
""")
    plan, res = run(example)
    rerun = ["finetune", "onnx", "fp32", "eval-int4-base", "adapters", "eval-fp32-lora", "eval-int4-lora", "best",
             "chat"]
    assert [s.name for s in plan.to_run if s.name != "broken"] == rerun and "broken" in plan.by_name()
    assert "data file" in plan.by_name()["finetune"].reasons[0]
    assert not res.ok and res.ran == rerun
    assert res.outcomes["broken"].status == "failed"
    assert "no output model" in res.outcomes["broken"].error.lower() or "Error" in res.outcomes["broken"].error
    r = cli("apply", example)
    assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout
    assert "resume" in r.stdout

    # a lost cache: the plan says what is missing, and that there are changes
    shutil.rmtree(example.parent / ".olivepipe" / "cache")
    r = cli("plan", "--detailed-exitcode", example)
    assert r.returncode == 2 and "missing from the cache" in r.stdout


def olive_adapter(cfg: dict, out) -> bytes:
    """The adapter `olive run` writes for ``cfg`` into ``out`` (a fresh output folder)."""
    import os
    import subprocess
    import sys

    from olivepipe.olive.runtime import worker_env

    c = json.loads(json.dumps(cfg))
    c["output_dir"] = str(out)
    config = out.parent / f"{out.name}.json"
    config.write_text(json.dumps(c))
    r = subprocess.run([sys.executable, "-m", "olive", "run", "--config", str(config)], capture_output=True,
                       text=True, env=worker_env(dict(os.environ)), timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    return (out / "adapter" / "adapter_model.safetensors").read_bytes()


def test_detailed_exitcode_reports_bad_input_as_error(tmp_path):
    bad = tmp_path / "workflow.yaml"
    bad.write_text("olivepipe: 1\nname: x\nnodes: {a: {pass: nope, input: m}}\n")
    r = cli("plan", "--detailed-exitcode", bad)
    assert r.returncode == 1 and "unknown" in r.stderr
