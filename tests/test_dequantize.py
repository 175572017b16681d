"""Issue 21: the dequantize kind on a real AWQ-format checkpoint of the tiny model, the adapter as
a keyed input, and plan's memory estimates."""
from __future__ import annotations

import json

import pytest

from conftest import write

GROUP = 128


def make_awq_checkpoint(src, dst):
    """The tiny model quantized the way autoawq's GEMM format stores it: per group of 128 input
    rows, asymmetric int4 (scale, zero point), values and zeros packed 8 per int32 in AWQ's order.
    Returns {linear name: the weight the checkpoint stands for} (what dequantize must give back)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from olivepipe.models.dequant import awq_pack

    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors"):
            shutil.copy(f, dst / f.name)
    tensors = load_file(str(src / "model.safetensors"))
    out, expected = {}, {}
    for k, v in tensors.items():
        if k.endswith("_proj.weight") and ".layers." in k:
            base = k[: -len(".weight")]
            w = v.float().t()  # [in, out]
            g = w.reshape(-1, GROUP, w.shape[1])
            lo, hi = g.amin(1), g.amax(1)
            scale = ((hi - lo).clamp(min=1e-5) / 15).half()
            zero = torch.round(-lo / scale.float()).clamp(0, 15).to(torch.int32)
            q = torch.round(g / scale.float()[:, None] + zero[:, None]).clamp(0, 15).to(torch.int32).reshape(w.shape)
            out[base + ".qweight"] = awq_pack(q)
            out[base + ".qzeros"] = awq_pack(zero)
            out[base + ".scales"] = scale
            rep = lambda t: t.repeat_interleave(GROUP, 0)  # noqa: E731
            expected[base + ".weight"] = ((q - rep(zero)).half() * rep(scale)).t()
        else:
            out[k] = v.half()
    save_file(out, str(dst / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((dst / "config.json").read_text())
    cfg["quantization_config"] = {"bits": 4, "group_size": GROUP, "quant_method": "awq", "version": "gemm",
                                  "zero_point": True}
    (dst / "config.json").write_text(json.dumps(cfg))
    return expected


def _adapter(base, out, seed):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    get_peft_model(model, LoraConfig(r=4, target_modules=["qkv_proj", "o_proj"], init_lora_weights=False)) \
        .save_pretrained(out)


@pytest.fixture(scope="module")
def awq(tmp_path_factory):
    from olivepipe.models.tinymodel import build_tiny_model

    d = tmp_path_factory.mktemp("awq")
    build_tiny_model(d / "base", "phi3", layers=1, hidden=256, heads=4, intermediate=512, vocab_size=512)
    expected = make_awq_checkpoint(d / "base", d / "awq")
    return d, expected


def test_awq_layout_matches_autoawq_unpacking_bit_for_bit():
    import torch

    from olivepipe.models import dequant

    packing = dequant._autoawq_packing()
    assert packing is not None, "autoawq (pure-Python wheel) is a test dependency: .ci/setup-env installs it"
    g = torch.Generator().manual_seed(1)
    vals = torch.randint(0, 16, (512, 64), generator=g, dtype=torch.int32)
    zeros = torch.randint(0, 16, (4, 64), generator=g, dtype=torch.int32)
    scales = (torch.rand(4, 64, generator=g) + 0.01).half()
    qw, qz = dequant.awq_pack(vals), dequant.awq_pack(zeros)
    # autoawq's own unpack + reorder gives back exactly the values packed
    iw, iz = packing.reverse_awq_order(*packing.unpack_awq(qw, qz, 4), 4)
    assert torch.equal(iw & 15, vals) and torch.equal(iz & 15, zeros)
    ours = dequant.awq_dequantize(qw, qz, scales, GROUP)
    theirs = dequant.awq_dequantize(qw, qz, scales, GROUP, packing=packing)
    assert torch.equal(ours, theirs)
    assert torch.equal(ours, ((vals - zeros.repeat_interleave(GROUP, 0)).half() * scales.repeat_interleave(GROUP, 0)).t())


def test_gptq_layout_round_trips():
    """gptqmodel's v1 layout: values packed along the input rows, zeros (minus one) along outputs."""
    import torch

    from olivepipe.models.dequant import gptq_dequantize

    g = torch.Generator().manual_seed(2)
    rows, cols, gs = 256, 64, 64
    vals = torch.randint(0, 16, (rows, cols), generator=g, dtype=torch.int64)
    zeros = torch.randint(1, 16, (rows // gs, cols), generator=g, dtype=torch.int64)
    scales = (torch.rand(rows // gs, cols, generator=g) + 0.01).half()

    def pack(v, axis):  # 8 values per int32, lowest bits first
        v = v.reshape(v.shape[0] // 8, 8, -1) if axis == 0 else v.reshape(v.shape[0], -1, 8).transpose(1, 2)
        p = sum(v[:, i] << (4 * i) for i in range(8))
        return (p - (p >> 31 << 32)).to(torch.int32)

    qw, qz = pack(vals, 0), pack(zeros - 1, 1)
    g_idx = torch.arange(rows) // gs
    w = gptq_dequantize(qw, qz, scales, g_idx)
    assert torch.equal(w, ((vals - zeros[g_idx]).half() * scales[g_idx]).t())


def test_dequantize_folder_gives_back_the_awq_weights(awq, tmp_path):
    import torch
    from safetensors.torch import load_file

    from olivepipe.models.dequant import convert, effective_params

    d, expected = awq
    summary = convert(d / "awq", tmp_path / "out", dtype="float16")
    assert summary["format"] == "awq" and summary["dequantized_linears"] == len(expected) == 4
    assert summary["unpacker"].startswith("autoawq")
    got = load_file(str(tmp_path / "out" / "model.safetensors"))
    for k, w in expected.items():
        assert torch.equal(got[k], w), k
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["torch_dtype"] == "float16"
    assert (tmp_path / "out" / "tokenizer.json").exists()
    # plan's size reading: packed ints counted unpacked, equal to the float model's count
    assert effective_params(d / "awq") == effective_params(tmp_path / "out") == effective_params(d / "base")


WF = """\
olivepipe: 1
name: deq
models:
  awq: {path: awq, adapter: lora}
nodes:
  dequantize: {kind: dequantize, input: awq, device: cpu, dtype: float16}
  onnx: {pass: model-builder, input: dequantize, params: {precision: int4, extra_options: {int4_block_size: 128, int4_is_symmetric: false}}}
  adapters: {pass: extract-adapters, input: onnx}
  chat: {kind: generate, input: adapters, prompts: ["what is the best thing to see in chicago"], max_new_tokens: 4}
"""


@pytest.fixture
def deq_wf(awq, tmp_path):
    import shutil

    d, _ = awq
    shutil.copytree(d / "awq", tmp_path / "awq")
    _adapter(d / "base", tmp_path / "lora", seed=0)
    return write(tmp_path / "workflow.yaml", WF)


def test_adapter_is_a_keyed_input_through_dequantize(deq_wf, awq):
    from olivepipe.flow.plan import make_plan
    from olivepipe.flow.workspace import open_workspace

    before = make_plan(open_workspace(deq_wf, read_only=True)).by_name()
    _adapter(awq[0] / "base", deq_wf.parent / "lora", seed=1)  # same files, other weights
    after = make_plan(open_workspace(deq_wf, read_only=True)).by_name()
    assert after["dequantize"].key != before["dequantize"].key
    # model-builder's key follows from its input's result, which is not known before it runs:
    # its record names the input step, whose key changed
    assert after["onnx"].record != before["onnx"].record or after["onnx"].key is None


def test_adapter_path_in_params_is_refused(tmp_path):
    from olivepipe.core.errors import SpecError
    from olivepipe.spec.workflow import load_workflow
    from olivepipe.models.tinymodel import build_tiny_model

    build_tiny_model(tmp_path / "base", "phi3", layers=1, hidden=64, heads=4, vocab_size=512)
    (tmp_path / "lora").mkdir()
    wf = write(tmp_path / "workflow.yaml", """\
olivepipe: 1
name: p
models:
  base: {path: base}
nodes:
  onnx: {pass: model-builder, input: base, params: {precision: int4, extra_options: {adapter_path: lora}}}
""")
    with pytest.raises(SpecError) as e:
        load_workflow(wf)
    p = e.value.problems[0]
    assert "outside the node's key" in p.message and p.line == 6 and "dequantize" in p.hint


@pytest.mark.e2e
def test_dequantize_then_int4_with_adapter_then_chat(deq_wf, awq):
    from olivepipe.flow.scheduler import apply
    from olivepipe.flow.plan import make_plan
    from olivepipe.flow.workspace import open_workspace

    ws = open_workspace(deq_wf)
    res = apply(ws, make_plan(ws))
    assert res.ok, {n: (o.status, o.error) for n, o in res.outcomes.items()}
    deq = ws.store.fetch(ws.store.get(res.outcomes["dequantize"].key))
    assert (deq / "adapter" / "adapter_config.json").exists()
    assert json.loads((deq / "dequantize.json").read_text())["format"] == "awq"
    onnx = ws.store.fetch(ws.store.get(res.outcomes["adapters"].key))
    assert list(onnx.glob("*.onnx_adapter"))
    report = json.loads((deq_wf.parent / "outputs" / "deq" / "chat" / "report.json").read_text())
    assert report["runs"][0]["adapter"] and report["runs"][0]["new_tokens"] > 0
    # the adapter changes: dequantize and everything after it run again
    _adapter(awq[0] / "base", deq_wf.parent / "lora", seed=3)
    plan = make_plan(open_workspace(deq_wf, read_only=True)).by_name()
    assert plan["dequantize"].status == "run" and plan["onnx"].status == "run"


def test_memory_estimate_blocks_model_builder_where_ram_is_short(awq, tmp_path, monkeypatch):
    """The estimate scales with the model's parameters; at the lab's size it is the measured 34-37 GiB."""
    import shutil

    from olivepipe.kinds import resources
    from olivepipe.flow.plan import make_plan
    from olivepipe.flow.workspace import open_workspace

    d, _ = awq
    shutil.copytree(d / "base", tmp_path / "base")
    wf = write(tmp_path / "workflow.yaml", """\
olivepipe: 1
name: mem
models:
  base: {path: base}
nodes:
  onnx: {pass: model-builder, input: base, params: {precision: int4}}
""")
    ws = open_workspace(wf, read_only=True)
    view = ws.step("onnx").view
    params = resources.model_params(view)
    lo, hi = resources.estimate(view)["host_gib"]
    assert lo == pytest.approx(8.7 * params / 1e9) and hi == pytest.approx(9.7 * params / 1e9)
    monkeypatch.setattr(resources, "model_params", lambda step: 3_821_079_552)  # Phi-3.5-mini
    lo, hi = resources.estimate(view)["host_gib"]
    assert 33 <= lo <= 34 and 36 <= hi <= 37.5
    monkeypatch.setenv(resources.ENV_RAM, "16")
    step = make_plan(open_workspace(wf, read_only=True)).by_name()["onnx"]
    assert step.status == "blocked" and "needs about 33-37 GiB host RAM" in step.reasons[0]
    assert any(w.startswith("MEMORY: about 33-37 GiB") for w in step.warnings)
    monkeypatch.setenv(resources.ENV_RAM, "125")
    assert make_plan(open_workspace(wf, read_only=True)).by_name()["onnx"].status == "run"


def test_olive_format_is_unpacked_by_olives_own_quantlinear(tmp_path):
    """Olive's gptq/rtn checkpoints (quant_method olive): tensors packed by Olive's QuantLinear come
    back as the weights Olive's own forward uses."""
    import torch
    from olive.common.quant.nn import QuantLinear
    from safetensors.torch import load_file, save_file

    from olivepipe.models.dequant import convert, effective_params

    torch.manual_seed(0)
    src = tmp_path / "olive"
    src.mkdir()
    linears = {"model.layers.0.mlp.down_proj": torch.nn.Linear(128, 64, bias=False),
               "model.layers.0.self_attn.o_proj": torch.nn.Linear(64, 64, bias=False)}
    tensors, expected = {"model.norm.weight": torch.ones(64)}, {}
    for name, lin in linears.items():
        q = QuantLinear.from_module(lin, bits=4, symmetric=False, group_size=32)
        tensors.update({f"{name}.qweight": q.qweight, f"{name}.scales": q.scales, f"{name}.qzeros": q.qzeros})
        x = torch.randn(3, lin.in_features)
        expected[name] = (x, q(x))
    save_file(tensors, str(src / "model.safetensors"))
    (src / "config.json").write_text(json.dumps({"model_type": "phi3", "quantization_config": {
        "quant_method": "olive", "bits": 4, "symmetric": False, "group_size": 32}}))
    summary = convert(src, tmp_path / "out", dtype="float32")
    assert summary["format"] == "olive" and summary["dequantized_linears"] == 2
    got = load_file(str(tmp_path / "out" / "model.safetensors"))
    for name, (x, y) in expected.items():
        assert torch.allclose(x @ got[name + ".weight"].t(), y, atol=1e-5), name
    assert effective_params(src) == 64 + 128 * 64 + 64 * 64
