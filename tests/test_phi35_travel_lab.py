"""The Phi-3.5 travel lab workflow, rehearsed end to end on a CPU; its node kinds."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLE, REPO, SHARED_TRAVEL, cli, copy_example, write, apply_result
from olivepipe.core.datasets import materialize_text_dataset, read_rows
from olivepipe.flow.scheduler import apply
from olivepipe.flow.plan import make_plan
from olivepipe.flow.workspace import open_workspace

LAB = REPO / "workflows" / "phi35-travel.yaml"
TEMPLATE = "<|user|>\n{prompt}<|end|>\n<|assistant|>\n{response}<|end|>"


def _lab_data(folder: Path) -> Path:
    """The lab's data file where the workflow expects it (data/ beside it): a private copy in the test's
    temporary folder of shared/'s file (never in the project; a link would leave the workspace),
    else the example's rows, which have the same columns."""
    dest = folder / "data" / "data_sample_travel.jsonl"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(SHARED_TRAVEL if SHARED_TRAVEL.exists() else EXAMPLE / "data" / "travel.jsonl", dest)
    return dest


@pytest.fixture
def lab(tmp_path):
    """The committed lab file byte for byte, its data file beside it."""
    d = tmp_path / "lab"
    d.mkdir()
    (d / ".git").mkdir()  # the repository root bounds paths
    _lab_data(d)
    return Path(shutil.copy(LAB, d / LAB.name))


@pytest.fixture
def lab_verbatim(tmp_path):
    """The committed lab file byte for byte, in a copy of the repo layout it expects (no writes to the repo)."""
    (tmp_path / "workflows").mkdir()
    (tmp_path / ".git").mkdir()  # the repository root bounds paths, as in a real checkout
    _lab_data(tmp_path / "workflows")
    return Path(shutil.copy(LAB, tmp_path / "workflows" / LAB.name))


def test_lab_validates_and_plans_nine_steps_with_devices(lab_verbatim):
    r = cli("validate", lab_verbatim)
    assert r.returncode == 0, r.stderr
    r = cli("plan", "--json", lab_verbatim, env={"OLIVEPIPE_ASSUME_NO_CUDA": "1"})
    plan = json.loads(r.stdout)
    steps = {s["name"]: s for s in plan["steps"]}
    assert list(steps) == ["quantize", "finetune", "dequantize", "onnx", "adapters", "eval-baked", "chat",
                           "eval-chat", "register"]  # eval-chat: the chat model's quality gate
    assert [steps[n]["device"] for n in steps] == ["gpu", "gpu", "gpu", "cpu", "cpu", "cpu", "cpu", "cpu", "cpu"]
    assert steps["quantize"]["status"] == "blocked" and "CUDA GPU" in " ".join(steps["quantize"]["missing"])
    # on a CPU machine only CUDA blocks: everything else is blocked because quantize is
    for n in ("finetune", "dequantize", "onnx", "adapters", "eval-baked", "chat", "eval-chat", "register"):
        assert steps[n]["status"] == "blocked" and steps[n]["reasons"][0].startswith("input "), steps[n]
    assert not [w for s in steps.values() for w in s["warnings"] if "INCOMPATIBILITY" in w]
    assert "gptqmodel" in steps["finetune"]["needs"]  # LoRA on the AWQ checkpoint loads it through gptqmodel
    assert any("TRUST_REMOTE_CODE" in w for w in steps["quantize"]["warnings"])


def test_lab_data_file_missing_says_where_it_comes_from(tmp_path):
    (tmp_path / ".git").mkdir()
    wf = Path(shutil.copy(LAB, tmp_path / LAB.name))
    r = cli("validate", wf)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "data file 'data/data_sample_travel.jsonl' does not exist" in r.stderr
    assert "PhiCookBook" in r.stderr and "put it at data/data_sample_travel.jsonl" in r.stderr


def test_calibration_dataset_is_rendered_content_addressed(lab):
    ws = open_workspace(lab)

    def materialize(ws):
        return materialize_text_dataset(ws.store, ws.workflow.datasets["travel"], ws.dataset_record("travel"))

    folder = materialize(ws)
    rows = [json.loads(line) for line in (folder / "data.jsonl").read_text().splitlines()]
    data = lab.parent / "data" / "data_sample_travel.jsonl"
    src = list(read_rows(data, "json"))
    assert len(rows) == len(src) > 0
    assert rows[0]["text"] == TEMPLATE.format(**src[0])
    assert not rows[0]["text"].endswith("\r")  # CRLF input leaves no stray carriage returns
    assert materialize(ws) == folder  # unchanged data: same entry
    with open(data, "a") as f:  # the lab's file has no final newline
        f.write("\n" + json.dumps({"prompt": "p", "response": "r"}) + "\n")
    assert materialize(open_workspace(lab)) != folder


def test_awq_node_compiles_with_materialized_calibration_data(lab):
    from olivepipe.report.preview import compile_preview, validate_with_olive

    ws = open_workspace(lab)
    cfg = compile_preview(ws, ["quantize"])["quantize"]
    dc = cfg["data_configs"][0]
    assert cfg["passes"]["quantize"]["type"] == "AutoAWQQuantizer"
    assert os.path.isdir(dc["load_dataset_config"]["data_name"])
    assert dc["pre_process_data_config"] == {"input_cols": "text"}  # all autoawq takes: name, split, column
    validate_with_olive(cfg)


def test_register_without_credentials_is_blocked_with_one_message(tmp_path):
    wf = write(tmp_path / "reg" / "workflow.yaml", """\
olivepipe: 1
name: reg
models:
  base: {tiny: {arch: phi3}}
nodes:
  register: {kind: register, input: base, name: ft-for-travel, version: 1,
             workspace: {subscription_id: 00000000-0000-0000-0000-000000000000, resource_group: rg, workspace_name: ws}}
""")
    env = {k: "" for k in os.environ if k.startswith("AZURE")}
    env.update({"HOME": str(tmp_path), "AZURE_CONFIG_DIR": str(tmp_path / "az"), "AZURE_CLIENT_SECRET": "s3cr3t-value-xyz"})
    r = cli("apply", wf, env=env)
    assert r.returncode == 1
    assert "no Azure credentials" in r.stdout and "Traceback" not in r.stdout + r.stderr
    for p in (tmp_path / "reg").rglob("*"):
        if p.is_file():
            assert b"s3cr3t-value-xyz" not in p.read_bytes(), p


@pytest.mark.e2e
def test_rehearsal_of_the_lab_end_to_end(lab):
    env = {"OLIVEPIPE_ASSUME_NO_CUDA": "1"}
    r = cli("apply", "--rehearse", lab, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "awq is bypassed" in r.stdout  # visible, never silent
    out = lab.parent / "outputs" / "phi35-travel@rehearsal"
    onnx = out / "adapters"
    assert (onnx / "model.onnx").exists() and (onnx / "adapter_weights.onnx_adapter").exists()
    genai_cfg = json.loads((out / "onnx" / "genai_config.json").read_text())
    assert genai_cfg["model"]["type"] == "phi3"
    import onnx as onnx_lib

    m = onnx_lib.load(str(out / "onnx" / "model.onnx"), load_external_data=False)
    assert any(n.op_type == "MatMulNBits" for n in m.graph.node)  # int4
    report = json.loads((out / "chat" / "report.json").read_text())
    run = report["runs"][0]
    assert run["prompt"] == "what is the best thing to see in chicago" and run["adapter"] == "adapter"
    assert run["new_tokens"] > 0 and run["tokens_per_s"] > 0
    ppl = {n: json.loads((out / n / "metrics.json").read_text())["metrics"]["perplexity"]["value"]
           for n in ("eval-chat", "eval-baked")}
    assert abs(ppl["eval-chat"] - ppl["eval-baked"]) <= 0.02 * ppl["eval-baked"]  # the chat model's gate held
    reg = json.loads((out / "register" / "registration.json").read_text())
    assert reg["rehearsal"] is True and reg["call"]["entity"]["name"] == "ft-for-travel"
    assert reg["call"]["entity"]["version"] == "1"
    # the committed lock is untouched by a rehearsal
    assert not (lab.parent / "olivepipe.lock").exists()

    again = cli("apply", "--rehearse", "--json", lab, env=env)
    assert {s["status"] for s in apply_result(again.stdout)["steps"]} == {"cached"}

    # the lab's app.py runs against what olivepipe produced
    app = subprocess.run([sys.executable, str(REPO / "examples" / "phi35-travel" / "app.py"), str(onnx)],
                         capture_output=True, text=True, timeout=120)
    assert app.returncode == 0, app.stderr
    assert app.stdout.startswith("[Travel]: what is the best thing to see in chicago") and "tokens/s" in app.stdout


@pytest.fixture(scope="module")
def built_adapter_model(tmp_path_factory):
    wf = copy_example(tmp_path_factory.mktemp("gen") / "travel")
    d = wf.parent
    ws = open_workspace(wf)
    res = apply(ws, make_plan(ws, targets=("adapters",)))
    assert res.ok
    return d / "outputs" / "travel-tiny" / "adapters"


@pytest.mark.e2e
def test_generate_with_and_without_adapter_and_broken_adapter(built_adapter_model, tmp_path):
    from olivepipe.models.genai import generate

    folder = built_adapter_model
    adapter = ("travel", folder / "adapter_weights.onnx_adapter")
    with_a = generate(folder, ["hello"], adapters=[adapter], max_new_tokens=5)
    assert with_a["adapters"] == ["travel"] and with_a["runs"][0]["adapter"] == "travel"
    assert with_a["runs"][0]["new_tokens"] == 5
    # the model before extract-adapters has the LoRA weights baked in: no adapter to load
    without = generate(folder.parent / "onnx", ["hello"], adapters=[], max_new_tokens=5)
    assert without["runs"][0]["adapter"] is None and without["runs"][0]["new_tokens"] == 5

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    os.chmod(broken / "adapter_weights.onnx_adapter", 0o644)
    (broken / "adapter_weights.onnx_adapter").write_bytes(b"not an adapter")
    with pytest.raises(RuntimeError, match="does not load"):
        generate(broken, ["hello"], adapters=[("travel", broken / "adapter_weights.onnx_adapter")], max_new_tokens=5)
    with pytest.raises(FileNotFoundError):
        generate(broken, ["hello"], adapters=[("x", broken / "missing.onnx_adapter")], max_new_tokens=5)


@pytest.mark.e2e
def test_generate_node_fails_when_model_does_not_load(tmp_path):
    wf = write(tmp_path / "g" / "workflow.yaml", """\
olivepipe: 1
name: g
models:
  base: {tiny: {arch: phi3}}
nodes:
  chat: {kind: generate, input: base, prompts: [hi]}
""")
    ws = open_workspace(wf)
    res = apply(ws, make_plan(ws))
    assert res.outcomes["chat"].status == "failed"  # an HF folder is not an ONNX genai model
    assert res.outcomes["chat"].error
