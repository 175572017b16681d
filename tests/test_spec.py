"""Spec loading: valid files load, every kind of bad input gets a located message."""
import pytest

from conftest import EXAMPLE, MINIMAL, cli, write
from olivepipe.errors import SpecError
from olivepipe.spec import load_workflow, parse_workflow


def problems(text, tmp_path, files=("travel.jsonl",)):
    for f in files:
        write(tmp_path / f, '{"prompt": "a", "response": "b"}\n')
    wf = write(tmp_path / "workflow.yaml", text)
    with pytest.raises(SpecError) as e:
        load_workflow(wf)
    return e.value.problems


def test_example_loads():
    wf = load_workflow(EXAMPLE / "workflow.yaml")
    assert list(wf.nodes) == ["finetune", "onnx", "adapters", "chat"]
    ft = wf.nodes["finetune"]
    assert ft.pass_type == "LoRA"
    # flat training args are nested where Olive expects them
    assert ft.params["training_args"] == {"max_steps": 4, "per_device_train_batch_size": 2}
    assert wf.nodes["chat"].kind == "generate"


def test_defaults_are_dropped_so_writing_them_changes_nothing(tmp_path):
    a = parse_workflow(MINIMAL, "a.yaml", base=tmp_path, check_files=False)
    b = parse_workflow(MINIMAL.replace("r: 4,", "r: 4, lora_dropout: 0.05,"), "b.yaml", base=tmp_path, check_files=False)
    assert a.nodes["finetune"].params == b.nodes["finetune"].params


def test_unknown_pass_with_suggestion_and_position(tmp_path):
    (p,) = problems(MINIMAL.replace("pass: model-builder", "pass: model-buildr"), tmp_path)
    assert "unknown pass 'model-buildr'" in p.message
    assert "model-builder" in p.hint
    assert (p.line, p.col) == (9, 16)


def test_unknown_and_ill_typed_params(tmp_path):
    ps = problems(MINIMAL.replace("r: 4,", "rr: 4, alpha: fast,"), tmp_path)
    msgs = " | ".join(p.message for p in ps)
    assert "unknown parameter 'rr' for LoRA" in msgs
    assert "LoRA.alpha: expected a number" in msgs
    assert any(p.hint == "did you mean 'r'?" for p in ps)
    assert all(p.line == 8 for p in ps)


def test_enum_param_choices(tmp_path):
    (p,) = problems(MINIMAL.replace("precision: int4", "precision: int3"), tmp_path)
    assert "'int3' is not one of" in p.message and "int4" in p.message


def test_unknown_reference_and_dataset(tmp_path):
    ps = problems(MINIMAL.replace("input: finetune", "input: finetun").replace("data: travel", "data: travl"), tmp_path)
    msgs = {p.message: p.hint for p in ps}
    assert msgs["node 'onnx' reads unknown input 'finetun'"] == "did you mean 'finetune'?"
    assert msgs["unknown dataset 'travl'"] == "did you mean 'travel'?"


def test_cycle_prints_its_path(tmp_path):
    text = MINIMAL.replace("input: base, data", "input: adapters, data")
    (p,) = problems(text, tmp_path)
    assert p.message == "cycle: finetune -> onnx -> adapters -> finetune"


def test_all_problems_reported_at_once(tmp_path):
    text = MINIMAL.replace("name: mini", "name: mini\nbogus: 1").replace("pass: lora", "pass: lorra") \
        .replace("precision: int4", "precision: 9")
    ps = problems(text, tmp_path)
    assert len(ps) >= 3


@pytest.mark.parametrize("text,expect", [
    ("", "file is empty"),
    ("olivepipe: 1\nname: x\nnodes:\n\ta: 1\n", "YAML syntax error"),
    ("olivepipe: 1\nolivepipe: 1\nname: x\nnodes: {a: {pass: lora, input: m}}\n", "duplicate key 'olivepipe'"),
    ("olivepipe: 2\nname: x\nnodes: {a: {pass: rtn, input: m}}\nmodels: {m: {tiny: {}}}\n", "unsupported format version 2"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("olivepipe: 1\nname: x\nmodels: {m: {path: ../../etc}}\nnodes: {a: {pass: rtn, input: m}}\n", "escapes the workspace"),
    ("olivepipe: 1\nname: x\nmodels: {m: {tiny: {}}}\nnodes: {a: {pass: rtn, input: m, matrix: {bits: [4, 8]}, params: {bits: 4}}}\n",
     "set in both matrix and params"),
    ("olivepipe: 1\nname: 9x\nnodes: {a: {pass: rtn, input: m}}\n", "invalid name"),
])
def test_bad_inputs(tmp_path, text, expect):
    ps = problems(text, tmp_path)
    assert any(expect in p.message for p in ps), [p.message for p in ps]
    assert all(p.line >= 1 for p in ps if "empty" not in p.message)


def test_tab_hint(tmp_path):
    (p,) = problems("olivepipe: 1\nname: x\nnodes:\n\ta: 1\n", tmp_path)
    assert "tab" in p.hint and p.line == 4


def test_non_utf8(tmp_path):
    (tmp_path / "workflow.yaml").write_bytes(b"olivepipe: 1\nname: \xff\n")
    with pytest.raises(SpecError) as e:
        load_workflow(tmp_path / "workflow.yaml")
    assert "not valid UTF-8" in e.value.problems[0].message and e.value.problems[0].line == 2


def test_missing_data_file(tmp_path):
    ps = problems(MINIMAL, tmp_path, files=())
    assert any("data file 'travel.jsonl' does not exist" in p.message for p in ps)


def test_matrix_expands_with_stable_names_and_fans_out_downstream(tmp_path):
    text = MINIMAL.replace("params: {precision: int4}", "matrix: {precision: [int4, fp32]}")
    wf = parse_workflow(text, "w.yaml", base=tmp_path, check_files=False)
    assert list(wf.nodes) == ["finetune", "onnx-int4", "onnx-fp32", "adapters-int4", "adapters-fp32"]
    assert wf.nodes["onnx-fp32"].params == {"precision": "fp32"}
    assert wf.nodes["adapters-fp32"].inputs == ("onnx-fp32",)


def test_explicit_variant_reference_does_not_fan_out(tmp_path):
    text = MINIMAL.replace("params: {precision: int4}", "matrix: {precision: [int4, fp32]}") \
        .replace("input: onnx", "input: onnx-int4")
    wf = parse_workflow(text, "w.yaml", base=tmp_path, check_files=False)
    assert wf.nodes["adapters"].inputs == ("onnx-int4",)


def test_fan_in_inputs(tmp_path):
    text = MINIMAL + "  chat: {kind: generate, input: [adapters, onnx], prompts: [hi]}\n"
    wf = parse_workflow(text, "w.yaml", base=tmp_path, check_files=False)
    assert wf.nodes["chat"].inputs == ("adapters", "onnx")


def test_kind_specific_fields_are_checked(tmp_path):
    ps = problems(MINIMAL + "  chat: {kind: generate, input: adapters, params: {x: 1}}\n", tmp_path)
    msgs = [p.message for p in ps]
    assert "'params' does not apply to a node of kind 'generate'" in msgs
    assert "a generate node needs `prompts`" in msgs


def test_cli_validate_exit_codes_and_writes_nothing(tmp_path):
    bad = write(tmp_path / "w" / "workflow.yaml", MINIMAL.replace("pass: lora", "pass: lorra"))
    r = cli("validate", bad)
    assert r.returncode == 2
    assert "workflow.yaml:8:" in r.stderr and "unknown pass 'lorra'" in r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in bad.parent.iterdir()) == ["workflow.yaml"]
    r = cli("plan", bad)
    assert r.returncode == 2 and sorted(p.name for p in bad.parent.iterdir()) == ["workflow.yaml"]
    ok = cli("validate", EXAMPLE / "workflow.yaml")
    assert ok.returncode == 0, ok.stderr


def test_cli_validate_json(tmp_path):
    bad = write(tmp_path / "workflow.yaml", MINIMAL.replace("pass: lora", "pass: lorra"))
    write(tmp_path / "travel.jsonl", "{}\n")
    r = cli("validate", "--json", bad)
    import json

    data = json.loads(r.stdout)
    assert data["ok"] is False and data["files"][0]["problems"][0]["line"] == 8


def test_validation_memo_is_exact_and_rechecks_files(mini, monkeypatch):
    import olivepipe.spec as spec

    first = load_workflow(mini)
    calls = []
    real = spec._schema_problems
    monkeypatch.setattr(spec, "_schema_problems", lambda *a: calls.append(1) or real(*a))
    again = load_workflow(mini)
    assert calls == [] and again.nodes == first.nodes and again.positions == first.positions
    assert again.datasets["travel"].files == first.datasets["travel"].files
    mini.write_text(mini.read_text().replace("r: 4", "r: 8"))  # any byte change: validated again
    assert load_workflow(mini).nodes["finetune"].params["r"] == 8 and calls == [1]
    (mini.parent / "travel.jsonl").unlink()  # a memo never hides a missing data file
    with pytest.raises(SpecError, match="1 problem"):
        load_workflow(mini)
    assert not list((mini.parent / ".olivepipe" / "validated").glob("*.pickle"))


def test_olive_pass_takes_one_input(tmp_path):
    ps = problems(MINIMAL.replace("input: onnx}", "input: [onnx, finetune]}"), tmp_path)
    assert any("an Olive pass reads one model" in p.message for p in ps)
