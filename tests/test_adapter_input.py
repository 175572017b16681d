"""A model that carries an existing PEFT adapter (`adapter: PATH`, Olive's --adapter_path)."""
from __future__ import annotations

import pytest

from conftest import write

WF = """\
olivepipe: 1
name: carried
models:
  base: {path: base, adapter: lora}
nodes:
  onnx: {pass: model-builder, input: base, params: {precision: int4}}
  adapters: {pass: extract-adapters, input: onnx}
"""


def _peft_adapter(base, out, seed):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["qkv_proj", "o_proj"], init_lora_weights=False))
    peft.save_pretrained(out)


@pytest.fixture
def carried(tmp_path):
    from olivepipe.models.tinymodel import build_tiny_model

    build_tiny_model(tmp_path / "base", "phi3", layers=1, hidden=64, heads=4, vocab_size=512)
    _peft_adapter(tmp_path / "base", tmp_path / "lora", seed=0)
    return write(tmp_path / "workflow.yaml", WF)


def test_the_adapter_reaches_olive_and_its_content_is_in_the_key(carried):
    from olivepipe.flow.plan import make_plan
    from olivepipe.report.preview import compile_preview
    from olivepipe.flow.workspace import open_workspace

    cfg = compile_preview(open_workspace(carried), ["onnx"])["onnx"]
    assert cfg["input_model"]["adapter_path"] == str(carried.parent / "lora")
    key = make_plan(open_workspace(carried, read_only=True)).by_name()["onnx"].key
    _peft_adapter(carried.parent / "base", carried.parent / "lora", seed=1)  # same files, other weights
    plan = make_plan(open_workspace(carried, read_only=True)).by_name()["onnx"]
    assert plan.key != key


def test_a_folder_that_is_not_an_adapter_is_refused(carried):
    from olivepipe.core.errors import SpecError
    from olivepipe.spec.workflow import load_workflow

    write(carried.parent / "notlora" / "weights.bin", "x")
    carried.write_text(WF.replace("adapter: lora", "adapter: notlora"))
    with pytest.raises(SpecError) as e:
        load_workflow(carried)
    assert "not a PEFT adapter folder" in e.value.problems[0].message and e.value.problems[0].line == 4


@pytest.mark.e2e
def test_model_builder_builds_the_carried_adapter_into_the_model(carried):
    from olivepipe.flow.scheduler import apply
    from olivepipe.flow.plan import make_plan
    from olivepipe.flow.workspace import open_workspace

    ws = open_workspace(carried)
    res = apply(ws, make_plan(ws))
    assert res.ok, res.outcomes
    tree = ws.store.fetch(ws.store.get(res.outcomes["adapters"].key))
    assert list(tree.glob("*.onnx_adapter")), sorted(p.name for p in tree.iterdir())
