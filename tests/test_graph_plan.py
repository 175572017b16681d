"""Graph order and rendering; keys, lock records and plan reasons (no Olive run needed)."""
import json
import shutil

from conftest import MINIMAL, write
from olivepipe.core import lock as lockfile
from olivepipe.spec.graph import build_graph
from olivepipe.core.keys import key_of, record_changes
from olivepipe.flow.planned import Reason, Why, change_reason
from olivepipe.flow.status import Status
from olivepipe.flow.plan import make_plan
from olivepipe.spec.workflow import parse_workflow
from olivepipe.flow.workspace import open_workspace


def test_order_is_stable_and_mermaid_dot_render(tmp_path):
    text = MINIMAL.replace("params: {precision: int4}", "matrix: {precision: [int4, fp32]}")
    g = build_graph(parse_workflow(text, "w.yaml", base=tmp_path, check_files=False))
    assert g.order == ["finetune", "onnx-int4", "onnx-fp32", "adapters-int4", "adapters-fp32"]
    m = g.mermaid({"onnx-int4": "run"})
    assert m.startswith("flowchart TD") and "class n2 run" in m and "n1 --> n2" in m
    assert '"finetune" -> "onnx-fp32";' in g.dot()
    assert g.upstream(["adapters-fp32"]) == {"finetune", "onnx-fp32", "adapters-fp32"}


def test_key_ignores_names_and_descriptions(mini):
    ws = open_workspace(mini)
    rec, complete = ws.record("finetune", {"base": "d" * 64})
    assert complete
    renamed = mini.read_text().replace("finetune", "train").replace("  onnx:", "  # a comment\n  onnx:")
    mini.write_text(renamed.replace("olivepipe: 1", "olivepipe: 1\ndescription: hello"))
    ws2 = open_workspace(mini)
    rec2, _ = ws2.record("train", {"base": "d" * 64})
    assert key_of(rec) == key_of(rec2)


def test_record_changes_are_typed_and_said_as_plan_says_them():
    a = {"params": {"r": 4}, "packages": {"torch": "2.12"}, "inputs": [{"digest": "a" * 64}],
         "data": {"files": {"rows.jsonl": "b" * 64}}}
    b = {"params": {"r": 8}, "packages": {"torch": "2.13"}, "inputs": [{"digest": "c" * 64}],
         "data": {"files": {"rows.jsonl": "d" * 64, "more.jsonl": "e" * 64}}}
    changes = record_changes(a, b)
    assert [(c.path, c.kind) for c in changes] == [
        (("data", "files", "more.jsonl"), "added"), (("data", "files", "rows.jsonl"), "changed"),
        (("inputs", 0, "digest"), "changed"), (("packages", "torch"), "changed"), (("params", "r"), "changed")]
    reasons = [change_reason(c, {0: "finetune"}) for c in changes]
    assert [r.why for r in reasons] == [Why.DATA_FILE, Why.DATA_FILE, Why.INPUT_CHANGED, Why.FIELD, Why.FIELD]
    assert [str(r) for r in reasons] == [
        "data file more.jsonl added", f"data file rows.jsonl changed ({'b' * 12}… -> {'d' * 12}…)",
        f"input finetune changed ({'a' * 12}… -> {'c' * 12}…)", "packages.torch: 2.12 -> 2.13", "params.r: 4 -> 8"]
    assert str(Reason(Why.INPUT_BLOCKED, ("a", "b"))) == "input a, b is blocked"
    assert json.dumps({Status.RUN: [Status.CACHED]}) == '{"run": ["cached"]}' and f"{Status.SKIP}" == "skip"


def _fake_results(ws, steps=None):
    """Publish placeholder results for steps so plan logic can be tested without Olive."""
    digests, entries = {}, {}
    for name in steps or ws.steps():
        rec, complete = ws.record(name, digests)
        assert complete
        out = ws.store.staging(name) / "out"
        write(out / "result.txt", name)
        e = ws.store.publish(key_of(rec), out, {"model": {"type": "hfmodel", "config": {"model_path": "$OUT"}}})
        shutil.rmtree(out.parent)
        digests[name] = e.digest
        lockfile.update(ws.lock_path, ws.lock_name, {name: {"key": e.key, "record": rec, "duration_s": 1.5}})
    return digests


def test_plan_statuses_and_reasons(mini):
    ws = open_workspace(mini)
    assert [s.status for s in make_plan(ws).steps] == ["run"] * 4
    _fake_results(ws)
    plan = make_plan(open_workspace(mini))
    assert [s.status for s in plan.steps] == ["cached"] * 4 and not plan.has_changes

    # a leaf param change re-runs exactly that node
    mini.write_text(mini.read_text() + "    \n")
    text = mini.read_text().replace("pass: extract-adapters, input: onnx", "pass: extract-adapters, input: onnx, params: {dynamic_lora_r: false}")
    mini.write_text(text)
    plan = make_plan(open_workspace(mini))
    steps = plan.by_name()
    assert [s.name for s in plan.to_run] == ["adapters"]
    assert steps["adapters"].reasons == ("params.dynamic_lora_r added: False",)
    assert steps["adapters"].estimate_s == 1.5

    # editing the data file re-runs the node that reads it and its dependents
    (mini.parent / "travel.jsonl").write_text('{"prompt": "c", "response": "d"}\n' * 8)
    plan = make_plan(open_workspace(mini))
    steps = plan.by_name()
    assert [s.name for s in plan.to_run] == ["finetune", "onnx", "adapters"]
    assert steps["finetune"].reasons[0].startswith("data file travel.jsonl changed")
    assert steps["onnx"].reasons == ("input finetune will be rebuilt first",)


def test_plan_target_and_force(mini):
    ws = open_workspace(mini)
    _fake_results(ws)
    plan = make_plan(ws, targets=("finetune",), force=("finetune",))
    st = {s.name: s.status for s in plan.steps}
    assert st == {"base": "cached", "finetune": "run", "onnx": "skip", "adapters": "skip"}


def test_plan_blocks_awq_without_cuda(mini, monkeypatch):
    monkeypatch.setenv("OLIVEPIPE_ASSUME_NO_CUDA", "1")
    from olivepipe.run.executors import local

    local.cuda_devices.cache_clear()
    mini.write_text(mini.read_text() + "  awq: {pass: awq, input: base, data: travel}\n  after: {pass: model-builder, input: awq, params: {precision: int4}}\n")
    plan = make_plan(open_workspace(mini))
    st = plan.by_name()
    assert st["awq"].status == "blocked" and "CUDA GPU" in st["awq"].reasons[0]
    assert st["after"].status == "blocked" and "input awq is blocked" in st["after"].reasons[0]
    assert st["finetune"].status == "run"
    local.cuda_devices.cache_clear()


def test_lock_is_deterministic(mini):
    ws = open_workspace(mini)
    _fake_results(ws)
    first = ws.lock_path.read_text()
    _fake_results(open_workspace(mini))
    assert ws.lock_path.read_text() == first
    assert first.startswith("# olivepipe.lock") and "format: 1" in first
