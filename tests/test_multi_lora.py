"""Several LoRA adapters on one base ONNX model (kind `adapters`, olivepipe/olive/adapters.py):
static fit checks at validate, exact ones at run time, and generate answering with each adapter
from one loaded model."""
import json

import numpy as np
import pytest

from conftest import write
from olivepipe.core.errors import SpecError
from olivepipe.flow.scheduler import apply
from olivepipe.olive import adapters as oa
from olivepipe.flow.plan import make_plan
from olivepipe.spec.workflow import load_workflow
from olivepipe.flow.workspace import open_workspace

TEMPLATE = '"<|user|>\\n{prompt}<|end|>\\n<|assistant|>\\n{response}<|end|>"'
LORA = "r: 4, alpha: 8, torch_dtype: float32, max_steps: 3, learning_rate: 0.01"
HEAD = f"""\
olivepipe: 1
name: multi
models:
  phi3: {{tiny: {{arch: phi3, layers: 2, hidden: 64, heads: 4, seed: 0}}}}
datasets:
  travel: {{files: travel.jsonl, text_template: {TEMPLATE}, max_seq_len: 64}}
  support: {{files: support.jsonl, text_template: {TEMPLATE}, max_seq_len: 64}}
nodes:
  travel: {{pass: lora, input: phi3, data: travel, params: {{{LORA}}}}}
  support: {{pass: lora, input: phi3, data: support, params: {{{LORA}}}}}
  onnx: {{pass: model-builder, input: travel, params: {{precision: int4}}}}
  extracted: {{pass: extract-adapters, input: onnx}}
"""
# the shape, plus: a float base that takes another r, an asymmetric int4 base with
# another block size, and an adapter whose target modules only the run can compare
WORKFLOW = HEAD + f"""\
  served: {{kind: adapters, input: [extracted, travel, support]}}
  chat: {{kind: generate, input: served, prompts: ["what is the best thing to see in chicago"], max_new_tokens: 6}}
  wide: {{pass: lora, input: phi3, data: support, params: {{{LORA.replace("r: 4", "r: 8")}}}}}
  onnx32: {{pass: model-builder, input: travel, params: {{precision: fp32}}}}
  extracted32: {{pass: extract-adapters, input: onnx32}}
  served32: {{kind: adapters, input: [extracted32, travel, wide]}}
  chat32: {{kind: generate, input: served32, prompts: ["hello"], max_new_tokens: 4}}
  onnx-asym: {{pass: model-builder, input: travel, params: {{precision: int4, int4_is_symmetric: false, int4_block_size: 16}}}}
  extracted-asym: {{pass: extract-adapters, input: onnx-asym}}
  served-asym: {{kind: adapters, input: [extracted-asym, travel, support]}}
  narrow: {{pass: lora, input: phi3, data: support, params: {{{LORA}, target_modules: [qkv_proj]}}}}
  mismatched: {{kind: adapters, input: [extracted, travel, narrow]}}
"""


def data_files(d):
    write(d / "travel.jsonl", "".join(json.dumps({"prompt": f"what to see in city {i}",
                                                  "response": f"The old town and river walk of city {i}."}) + "\n"
                                      for i in range(12)))
    write(d / "support.jsonl", "".join(json.dumps({"prompt": f"my order {i} has not arrived",
                                                   "response": f"Sorry: order {i} ships again today."}) + "\n"
                                       for i in range(12)))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("multi")
    data_files(d)
    wf = write(d / "workflow.yaml", WORKFLOW)
    ws = open_workspace(wf)
    res = apply(ws, make_plan(ws))
    return wf, res


@pytest.fixture
def olive_env(monkeypatch):
    """What a worker's environment sets (olive/runtime.py worker_env), for Olive run in this process."""
    from olivepipe.olive.runtime import worker_env

    for k, v in worker_env().items():
        monkeypatch.setenv(k, v)


def outputs(wf):
    return wf.parent / "outputs" / "multi"


def stored(wf, node):
    """(model config with local paths, tree) of a node's stored result."""
    from olivepipe.olive.runtime import resolve_model_config

    ws = open_workspace(wf)
    step = make_plan(ws).by_name()[node]
    entry = ws.store.get(step.key)
    tree = ws.store.fetch(entry)
    return resolve_model_config(entry.model, tree), tree


# -- end to end ----------------------------------------------------------------------

@pytest.mark.e2e
def test_one_base_two_adapters_and_generate_answers_with_each_from_one_model(built):
    import onnxruntime_genai as og

    wf, res = built
    assert {n for n, o in res.outcomes.items() if o.status != "ran"} == {"mismatched"}, \
        {n: o.error for n, o in res.outcomes.items()}
    out = outputs(wf)
    served = out / "served"
    # one base ONNX (the extracted one, as is) and one adapter file per LoRA, named after its node
    assert sorted(p.name for p in served.glob("*.onnx*")) == ["model.onnx", "support.onnx_adapter",
                                                              "travel.onnx_adapter"]
    assert (served / "model.onnx").read_bytes() == (out / "extracted" / "model.onnx").read_bytes()
    assert (served / "travel.onnx_adapter").read_bytes() == \
        (out / "extracted" / "adapter_weights.onnx_adapter").read_bytes()
    assert (served / "support.onnx_adapter").read_bytes() != (served / "travel.onnx_adapter").read_bytes()
    assert (served / "genai_config.json").is_file() and (served / "tokenizer.json").is_file()

    report = json.loads((out / "chat" / "report.json").read_text())
    assert report["adapters"] == ["support", "travel"]  # one model load, then each adapter in turn
    assert [r["adapter"] for r in report["runs"]] == ["support", "travel"]
    assert all(r["new_tokens"] > 0 for r in report["runs"])

    # the two adapters change the same loaded model differently
    model = og.Model(str(served))
    tok = og.Tokenizer(model)
    adapters = og.Adapters(model)
    logits = {}
    for name in ("travel", "support"):
        adapters.load(str(served / f"{name}.onnx_adapter"), name)
    for name in ("travel", "support"):
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=64)
        gen = og.Generator(model, params)
        gen.set_active_adapter(adapters, name)
        gen.append_tokens(tok.encode("<|user|>\nmy order 3 has not arrived<|end|>\n<|assistant|>\n"))
        logits[name] = np.array(gen.get_output("logits"))
    assert logits["travel"].shape == logits["support"].shape
    assert not np.allclose(logits["travel"], logits["support"])


@pytest.mark.e2e
def test_float_base_takes_another_rank_and_asymmetric_int4_converts(built):
    wf, res = built
    out = outputs(wf)
    assert res.outcomes["served32"].status == "ran" and res.outcomes["served-asym"].status == "ran"
    report = json.loads((out / "chat32" / "report.json").read_text())
    assert report["adapters"] == ["travel", "wide"] and all(r["new_tokens"] > 0 for r in report["runs"])
    assert sorted(p.name for p in (out / "served-asym").glob("*.onnx_adapter")) == ["support.onnx_adapter",
                                                                                   "travel.onnx_adapter"]


@pytest.mark.e2e
@pytest.mark.parametrize("base", ["extracted", "extracted32", "extracted-asym"])
def test_conversion_reproduces_what_extract_adapters_wrote(built, base, olive_env, tmp_path):
    """Olive's convert-adapters, keyed and quantized for the base, gives exactly the adapter
    ExtractAdapters took out of the graph ModelBuilder built from the same LoRA."""
    wf, _ = built
    cfg, _ = stored(wf, base)
    folder, onnx_file = oa.model_files(cfg)
    lora_cfg, _ = stored(wf, "travel")
    got = oa.convert_adapter(oa.adapter_dir(lora_cfg, "travel"), oa.read_base(folder, onnx_file), tmp_path, "travel")
    want = oa.load_adapter(oa.extracted_adapter(cfg))
    assert sorted(got) == sorted(want)
    assert all(got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]) for k in want)
    assert oa.first_difference(want, got) is None


@pytest.mark.e2e
def test_adapter_for_other_modules_fails_at_run_time_and_nothing_is_published(built):
    wf, res = built
    err = res.outcomes["mismatched"].error
    assert res.outcomes["mismatched"].status == "failed"
    assert err == ("AdapterMismatch: adapter 'narrow' has no weight for the base's input "
                   "model.layers.0.attn.o_proj.lora_A.MatMul.weight_Q4 [4, 2, 16]: it adapts other modules "
                   "than the base's adapter (target_modules)")
    assert not (outputs(wf) / "mismatched").exists()
    ws = open_workspace(wf)
    step = make_plan(ws).by_name()["mismatched"]
    assert step.key and ws.store.peek(step.key) is None and step.action == "run"


@pytest.mark.e2e
def test_adapters_of_models_are_checked_at_run_time(built, tmp_path):
    """Models with `adapter:` folders: their rank is not in the workflow, so the run finds the misfit."""
    import shutil

    wf, _ = built
    out = outputs(wf)
    d = tmp_path / "folders"
    for src, dest in ((out / "travel" / "model", "hf"), (out / "travel" / "adapter", "travel-adapter"),
                      (out / "wide" / "adapter", "wide-adapter")):
        shutil.copytree(src, d / dest)
    wf2 = write(d / "workflow.yaml", """\
olivepipe: 1
name: folders
models:
  tuned: {path: hf, adapter: travel-adapter}
  wide: {path: hf, adapter: wide-adapter}
nodes:
  onnx: {pass: model-builder, input: tuned, params: {precision: int4}}
  extracted: {pass: extract-adapters, input: onnx}
  served: {kind: adapters, input: [extracted, tuned, wide]}
""")
    ws = open_workspace(wf2)
    res = apply(ws, make_plan(ws))
    assert res.outcomes["extracted"].status == "ran" and res.outcomes["served"].status == "failed"
    assert res.outcomes["served"].error.startswith(
        "AdapterMismatch: adapter 'wide' does not fit the base: model.layers.0.attn.q_proj.lora_A.MatMul.weight_Q4 "
        "is [8, 2, 16] uint8 in the adapter, the base takes [4, 2, 16] uint8")
    assert not (d / "outputs" / "folders" / "served").exists()


@pytest.mark.e2e
def test_other_rank_fails_the_node_with_the_first_weight_and_its_shapes(built, olive_env, tmp_path):
    """The worker side: the run compares exactly, before it writes anything."""
    from olivepipe.kinds import JobIO
    from olivepipe.kinds.multi_adapter import KIND

    wf, _ = built
    base_cfg, _ = stored(wf, "extracted")
    wide_cfg, _ = stored(wf, "wide")
    travel_cfg, _ = stored(wf, "travel")
    io = JobIO(out=tmp_path / "out", scratch=tmp_path / "scratch", log=tmp_path / "log")
    spec = {"inputs": [{"name": "extracted", "model": base_cfg}, {"name": "travel", "model": travel_cfg},
                       {"name": "wide", "model": wide_cfg}],
            "adapters": ["travel", "wide"], "base_adapter": "travel", "node": "served"}
    with pytest.raises(oa.AdapterMismatch) as e:
        KIND.run(spec, io)
    assert str(e.value) == (
        "adapter 'wide' does not fit the base: model.layers.0.attn.q_proj.lora_A.MatMul.weight_Q4 is [8, 2, 16] "
        "uint8 in the adapter, the base takes [4, 2, 16] uint8 (int4 blocks of a [64, 8] weight; the base's "
        "MatMulNBits is K=64 x N=4: LoRA r differs)")
    assert not io.out.exists()  # travel converted fine, but nothing was written


@pytest.mark.e2e
def test_second_apply_is_all_cached_and_a_rename_reruns_only_the_adapters_node(built):
    wf, _ = built
    ws = open_workspace(wf)
    plan = make_plan(ws)
    assert {s.name for s in plan.steps if s.action != "cached"} == {"mismatched"}
    # file names in the result are node names, so they are part of the key
    text = wf.read_text()
    wf.write_text(text.replace("support: {pass: lora", "helpdesk: {pass: lora").replace(", support]", ", helpdesk]"))
    try:
        plan = make_plan(open_workspace(wf))
        assert {s.name for s in plan.steps if s.action != "cached"} == {"served", "chat", "served-asym", "mismatched"}
    finally:
        wf.write_text(text)


# -- validate time -------------------------------------------------------------------

def problems(tmp_path, text):
    data_files(tmp_path)
    with pytest.raises(SpecError) as e:
        load_workflow(write(tmp_path / "workflow.yaml", text))
    return e.value.problems


def test_other_rank_on_an_int4_base_is_refused_at_validate_with_its_place(tmp_path):
    text = HEAD.replace("support: {pass: lora, input: phi3, data: support, params: {r: 4,",
                        "support: {pass: lora, input: phi3, data: support, params: {r: 8,")
    text += "  served: {kind: adapters, input: [extracted, travel, support]}\n"
    (p,) = problems(tmp_path, text)
    assert p.message == ("adapter 'support' has LoRA r=8, but base 'extracted' fixes r=4: its int4 adapter "
                         "weights (from 'travel') have static shapes")
    assert p.hint == "train 'support' with r: 4, or build a base of its own"
    line = text.splitlines().index("  served: {kind: adapters, input: [extracted, travel, support]}") + 1
    assert (p.line, p.col) == (line, text.splitlines()[line - 1].index("support") + 1)


def test_other_rank_on_a_float_base_validates(tmp_path):
    data_files(tmp_path)
    text = HEAD.replace("precision: int4", "precision: fp32").replace(
        "support: {pass: lora, input: phi3, data: support, params: {r: 4,",
        "support: {pass: lora, input: phi3, data: support, params: {r: 8,")
    wf = load_workflow(write(tmp_path / "workflow.yaml",
                             text + "  served: {kind: adapters, input: [extracted, travel, support]}\n"))
    assert wf.nodes["served"].options == {"adapters": ["travel", "support"], "base_adapter": "travel"}
    # ... unless extract-adapters fixes the rank
    text = text.replace("{pass: extract-adapters, input: onnx}",
                        "{pass: extract-adapters, input: onnx, params: {dynamic_lora_r: false}}")
    (p,) = problems(tmp_path, text + "  served: {kind: adapters, input: [extracted, travel, support]}\n")
    assert "fixes r=4" in p.message


def test_every_static_misfit_is_reported_at_its_input(tmp_path):
    text = HEAD.replace("params: {precision: int4}", "params: {precision: int4, int4_algo_config: rtn}") + f"""\
  dora: {{pass: dora, input: phi3, data: support}}
  elsewhere: {{pass: lora, input: support, data: support, params: {{{LORA}}}}}
  attn-only: {{pass: lora, input: phi3, data: support, params: {{{LORA}, target_modules: [o_proj]}}}}
  a: {{kind: adapters, input: [onnx, travel]}}
  b: {{kind: adapters, input: [extracted, support]}}
  c: {{kind: adapters, input: [extracted, travel, dora, onnx, elsewhere]}}
  d: {{kind: adapters, input: extracted}}
"""
    text = text.replace("travel: {pass: lora, input: phi3, data: travel, params: {",
                        "travel: {pass: lora, input: phi3, data: travel, params: {target_modules: [qkv_proj, o_proj], ")
    text += "  e: {kind: adapters, input: [extracted, travel, attn-only]}\n"
    got = {(p.path, p.message) for p in problems(tmp_path, text)}
    algo = ("base 'extracted' was built by 'onnx' with int4_algo_config: rtn, which quantizes weights unlike "
            "Olive's adapter quantizer (block-wise, as ModelBuilder's default)")
    assert got == {
        ("nodes.a.input.0", ("the first input of 'a' is its base, an extract-adapters node; 'onnx' is a "
                             "model-builder node")),
        *{(f"nodes.{n}.input.0", algo) for n in "bce"},
        ("nodes.b.input", "'travel', the adapter base 'extracted' was built with, is not listed"),
        ("nodes.c.input.2", "'dora' is not a LoRA adapter: it is a dora node"),
        ("nodes.c.input.3", "'onnx' is not a LoRA adapter: it is a model-builder node"),
        ("nodes.c.input.4", "adapter 'elsewhere' is trained on 'support', base 'extracted' on 'phi3'"),
        ("nodes.d.input", "an adapters node reads a base and its adapters; 'd' reads 1"),
        ("nodes.e.input.2", ("adapter 'attn-only' targets o_proj; base 'extracted' takes adapters for o_proj, "
                             "qkv_proj (from 'travel')")),
    }


# -- the Olive-side helpers ----------------------------------------------------------

def test_which_bases_fix_the_rank_and_which_layouts_convert():
    assert oa.rank_fixed({"precision": "int4"}, {})
    assert not oa.rank_fixed({"precision": "fp16"}, {})
    assert oa.rank_fixed({"precision": "fp32"}, {"dynamic_lora_r": False})
    assert not oa.rank_fixed({"precision": "int4", "int4_nodes_to_exclude": ["/model/layers.0/attn/q_proj/lora_A/MatMul"]}, {})
    assert not oa.rank_fixed({"precision": "int4", "int4_op_types_to_quantize": ["Gather"]}, {})
    assert oa.base_layout_problem({"precision": "int4"}) is None
    assert oa.base_layout_problem({"precision": "int4", "int4_algo_config": "default"}) is None
    assert "use_qdq" in oa.base_layout_problem({"precision": "int4", "extra_options": {"use_qdq": True}})
    assert "bf16" in oa.base_layout_problem({"precision": "bf16"})
    assert oa.extract_problem({}) is None
    assert "make_inputs" in oa.extract_problem({"make_inputs": False})
    assert "save_format" in oa.extract_problem({"save_format": "numpy"})


def test_matmulnbits_shapes():
    # K=64 inputs in blocks of 32, N=4 outputs: 2 blocks of 16 bytes per output
    assert oa.nbits_shape("q", 64, 4, 4, 32, rank=3) == [4, 2, 16]
    assert oa.nbits_shape("scales", 64, 4, 4, 32, rank=2) == [4, 2]
    assert oa.nbits_shape("scales", 64, 4, 4, 32, rank=1) == [8]
    assert oa.nbits_shape("zero_points", 4, 64, 4, 16, rank=2) == [64, 1]  # r=4 < one block: padded
    assert oa.nbits_shape("zero_points", 96, 8, 4, 32, rank=1) == [16]  # 3 blocks, two 4-bit points a byte


def test_first_difference_tolerates_rounding_not_a_wrong_layout():
    q = np.array([[0x21, 0x43]], dtype=np.uint8)
    s = np.array([0.5, 0.25], dtype=np.float32)
    ref = {"w_Q4": q, "w_scales": s}
    assert oa.first_difference(ref, {"w_Q4": q.copy(), "w_scales": s * 1.001}) is None
    assert oa.first_difference(ref, {"w_Q4": q + 1, "w_scales": s}) is None  # one int4 step (fp16 rounding)
    assert oa.first_difference(ref, {"w_Q4": q + 2, "w_scales": s}) == "w_Q4 differs by 2 int4 steps"
    assert oa.first_difference(ref, {"w_Q4": q, "w_scales": s * 2}) == "w_scales differs by up to 0.5"
    assert oa.first_difference(ref, {"w_Q4": q[:, :1], "w_scales": s}) == "w_Q4 is [1, 1] uint8, expected [1, 2] uint8"
    assert oa.first_difference(ref, {"w_Q4": q}) == "w_scales is missing"
    assert oa.first_difference(ref, {**ref, "x": s}) == "x is not in the base's adapter"
