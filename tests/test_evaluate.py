"""Kind `evaluate` (Olive's own evaluators) and `olivepipe metrics`: real numbers on the tiny
model, cached like any node, side by side, plotted, and diffed against a git revision."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import EXAMPLE, cli, located, write
from olivepipe.core.errors import SpecError
from olivepipe.spec.workflow import load_workflow

TEMPLATE = "<|user|>\\n{prompt}<|end|>\\n<|assistant|>\\n{response}<|end|>"
# one layer, four LoRA steps: the whole pipeline plus four evaluations in well under a minute
WF = f"""\
olivepipe: 1
name: evalmini
models:
  base: {{tiny: {{arch: phi3, layers: 1, hidden: 64, heads: 4, seed: 0}}}}
datasets:
  travel: {{files: travel.jsonl, text_template: "{TEMPLATE}", max_seq_len: 32, limit: 24}}
  heldout: {{files: travel.jsonl, text_template: "{TEMPLATE}", max_seq_len: 32}}
nodes:
  finetune: {{pass: lora, input: base, data: travel, params: {{r: 4, max_steps: 4, torch_dtype: float32}}}}
  onnx: {{pass: model-builder, input: finetune, params: {{precision: int4}}}}
  adapters: {{pass: extract-adapters, input: onnx}}
  base-int4: {{pass: model-builder, input: base, params: {{precision: int4}}}}
  eval-lora:
    kind: evaluate
    input: adapters
    data: heldout
    metrics: [latency, perplexity, size]
    rows: "24:"
    latency: {{warmup: 2, repeat: 5}}
  eval-baked: {{kind: evaluate, input: onnx, data: heldout, metrics: [perplexity], rows: "24:"}}
  eval-base: {{kind: evaluate, input: base-int4, data: heldout, metrics: [latency, perplexity], rows: "24:"}}
  eval-hf: {{kind: evaluate, input: base, data: heldout, metrics: [latency, throughput, perplexity, size], rows: "24:"}}
"""
EVALS = ["eval-lora", "eval-baked", "eval-base", "eval-hf"]
# olivepipe's result keys -> Olive's "<metric>-<sub type>" keys in input_model_metrics.json
OLIVE_KEYS = {"perplexity": "perplexity-perplexity", "size": "size-bytes", "throughput": "throughput-avg",
              "latency_avg": "latency-avg", "latency_p50": "latency-p50", "latency_p90": "latency-p90"}
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}


def _setup(d, text=WF):
    shutil.copyfile(EXAMPLE / "data" / "travel.jsonl", d / "travel.jsonl")  # 36 rows: 24 train, 12 held out
    return write(d / "workflow.yaml", text)


def _apply(wf, **kw):
    from olivepipe.flow.scheduler import apply
    from olivepipe.flow.plan import make_plan
    from olivepipe.flow.workspace import open_workspace

    ws = open_workspace(wf, **kw)
    return apply(ws, make_plan(ws))


def _doc(wf, node, **kw) -> tuple[dict, dict]:
    """(metrics.json, Olive's own input_model_metrics.json) of a node's stored result."""
    from olivepipe.flow.plan import make_plan
    from olivepipe.flow.workspace import open_workspace

    ws = open_workspace(wf, read_only=True, **kw)
    step = make_plan(ws).by_name()[node]
    assert step.status == "cached", step.reasons
    tree = ws.store.fetch(ws.store.peek(step.key))
    return json.loads((tree / "metrics.json").read_text()), json.loads((tree / "input_model_metrics.json").read_text())


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    d = tmp_path_factory.mktemp("evaluate")
    wf = _setup(d)
    first = _apply(wf)
    assert first.ok, {n: o.error for n, o in first.outcomes.items() if o.error}
    second = _apply(wf)
    return {"wf": wf, "first": first, "second": second, "cache": d / ".olivepipe" / "cache"}


# -- the kind, end to end ----------------------------------------------------------------

@pytest.mark.e2e
def test_metrics_are_olives_numbers(evaluated):
    wf = evaluated["wf"]
    assert set(EVALS) <= set(evaluated["first"].ran)
    for node in EVALS:
        doc, olive = _doc(wf, node)
        for key, m in doc["metrics"].items():
            assert isinstance(m["value"], (int, float)) and math.isfinite(m["value"]), (node, key)
        # every number is Olive's own result, as Olive wrote it
        assert {OLIVE_KEYS[k]: m["value"] for k, m in doc["metrics"].items()} == \
            {k: v["value"] for k, v in olive.items()}, node
        assert doc["metrics"]["perplexity"]["value"] > 1  # random weights: about the vocabulary size
        assert doc["metrics"]["perplexity"]["unit"] == ""
    lora, _ = _doc(wf, "eval-lora")
    assert lora["evaluator"] == "OnnxEvaluator" and lora["model"] == "adapters" and lora["model_type"] == "onnx"
    assert lora["metrics"]["latency_avg"]["value"] > 0 and lora["metrics"]["latency_avg"]["unit"] == "ms"
    assert lora["metrics"]["latency_p90"]["value"] >= lora["metrics"]["latency_p50"]["value"] > 0
    assert lora["metrics"]["size"]["value"] > 10_000 and lora["metrics"]["size"]["unit"] == "bytes"
    assert lora["settings"]["latency"] == {"warmup": 2, "repeat": 5, "batch_size": 1, "seq_len": 8}
    hf, _ = _doc(wf, "eval-hf")
    assert hf["evaluator"] == "PyTorchEvaluator" and hf["model_type"] == "hf"
    assert hf["metrics"]["throughput"]["value"] > 0 and hf["metrics"]["throughput"]["unit"] == "sequences/s"
    # the int4 model with its adapter fed as inputs (ExtractAdapters' constant inputs) is the same
    # model as the one with the adapter baked in: same perplexity, so the adapter was applied
    baked, _ = _doc(wf, "eval-baked")
    assert lora["metrics"]["perplexity"]["value"] == pytest.approx(baked["metrics"]["perplexity"]["value"], rel=1e-4)
    report = (evaluated["cache"].parent.parent / "outputs" / "evalmini" / "eval-lora" / "report.md").read_text()
    assert "| perplexity |" in report and "OnnxEvaluator" in report


@pytest.mark.e2e
def test_results_are_cached_and_reused(evaluated):
    assert evaluated["second"].ok and evaluated["second"].ran == []
    from olivepipe.core import lock

    nodes = lock.nodes(evaluated["wf"].parent / "olivepipe.lock", "evalmini")
    rec = nodes["eval-lora"]["record"]
    assert rec["kind"] == "evaluate" and rec["metrics"] == ["perplexity", "size", "latency"]
    assert rec["data"]["files"] and rec["data"]["preprocess"]["max_seq_len"] == 32 and rec["rows"] == "24:"
    assert rec["inputs"][0]["digest"] == nodes["adapters"]["output"]["digest"]
    assert {"olive-ai", "onnxruntime", "torchmetrics"} <= set(rec["packages"])


@pytest.mark.e2e
def test_key_follows_what_is_measured_not_how_it_is_written(evaluated, tmp_path):
    from olivepipe.flow.plan import make_plan
    from olivepipe.flow.workspace import open_workspace

    def plan(text):
        wf = _setup(tmp_path, text)
        shutil.copyfile(evaluated["wf"].parent / "olivepipe.lock", tmp_path / "olivepipe.lock")  # plan says why
        return make_plan(open_workspace(wf, cache_dir=evaluated["cache"], read_only=True)).by_name()

    # Olive's defaults written out, another metric order: the same key, nothing to run
    same = plan(WF.replace("latency: {warmup: 2, repeat: 5}", "latency: {warmup: 2, repeat: 5, batch_size: 1, seq_len: 8}")
                .replace("metrics: [latency, perplexity, size]", "metrics: [size, latency, perplexity]"))
    assert same["eval-lora"].status == "cached"
    changed = plan(WF.replace('rows: "24:"\n    latency', 'rows: "30:"\n    latency'))
    assert changed["eval-lora"].status == "run" and changed["eval-baked"].status == "cached"
    assert any("rows" in r for r in changed["eval-lora"].reasons), changed["eval-lora"].reasons


@pytest.mark.e2e
def test_compiled_evaluation_is_an_olive_workflow_without_passes(evaluated):
    from olivepipe.report.preview import compile_preview, validate_with_olive
    from olivepipe.flow.workspace import open_workspace

    cfg = compile_preview(open_workspace(evaluated["wf"]), ["eval-lora"])["eval-lora"]
    assert cfg["evaluate_input_model"] is True and "passes" not in cfg
    ev = cfg["evaluators"][cfg["evaluator"]]
    assert ev["type"] == "OnnxEvaluator" and [m["name"] for m in ev["metrics"]] == ["perplexity", "size", "latency"]
    data = {d["name"]: d for d in cfg["data_configs"]}
    assert data["olivepipe_eval_data"]["load_dataset_config"]["split"] == "train[24:]"
    assert data["olivepipe_latency"]["type"] == "TransformersPromptDummyDataContainer"
    assert cfg["input_model"]["config"]["constant_inputs_file_name"] == "adapter_weights.onnx_adapter"
    validate_with_olive(cfg)  # Olive's RunConfig takes it, user_script included


# -- olivepipe metrics -------------------------------------------------------------------

@pytest.mark.e2e
def test_metrics_table_json_and_markdown(evaluated):
    wf = evaluated["wf"]
    r = cli("metrics", wf)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    head = next(line for line in lines if line.startswith("node"))
    assert "latency_avg (ms)" in head and "perplexity" in head and "size (bytes)" in head
    for node, inp in (("eval-lora", "adapters"), ("eval-base", "base-int4"), ("eval-hf", "base")):
        row = next(line for line in lines if line.startswith(node + " "))
        assert row.split()[1] == inp
    r = cli("metrics", wf, "--format", "json")
    data = json.loads(r.stdout)
    rows = {row["node"]: row for row in data["rows"]}
    assert list(rows) == EVALS and all(row["status"] == "current" for row in rows.values())
    doc, _ = _doc(wf, "eval-base")
    assert rows["eval-base"]["values"] == {k: m["value"] for k, m in doc["metrics"].items()}
    assert data["units"]["latency_avg"] == "ms" and data["metrics"][0] == "perplexity"
    md = cli("metrics", wf, "--format", "markdown").stdout
    assert md.startswith("| node | input |") and "| eval-hf | base |" in md
    # the pull-request plan carries the same table
    pr = cli("plan", "--format", "markdown", "--metrics", wf).stdout
    assert pr.startswith("### olivepipe plan:") and "#### Metrics" in pr and md.strip() in pr


@pytest.mark.e2e
def test_metrics_plot_png_and_svg(evaluated, tmp_path):
    from PIL import Image

    png = tmp_path / "plot.png"
    r = cli("metrics", evaluated["wf"], "--plot", png, "--x", "latency", "--y", "perplexity")
    assert r.returncode == 0, r.stderr
    assert "3 points" in r.stderr  # eval-baked has no latency
    img = Image.open(png).convert("RGB")
    assert img.size[0] >= 600 and img.size[1] >= 400
    px = np.asarray(img).reshape(-1, 3).astype(int)
    colours, counts = np.unique(px, axis=0, return_counts=True)
    assert tuple(colours[counts.argmax()]) == (255, 255, 255)  # the background
    assert (px != 255).any(axis=1).mean() > 0.02  # axes, ticks, labels and points drawn on it
    # the points: matplotlib's first colour (31, 119, 180), which nothing else on the plot uses
    assert (np.abs(px - [31, 119, 180]).sum(axis=1) < 40).sum() > 50
    svg = tmp_path / "plot.svg"
    assert cli("metrics", evaluated["wf"], "--plot", svg, "--x", "latency_p90", "--y", "size").returncode == 0
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    bad = cli("metrics", evaluated["wf"], "--plot", png, "--x", "latncy", "--y", "perplexity")
    assert bad.returncode == 1 and "no measured metric 'latncy'" in bad.stderr
    assert "did you mean 'latency'?" in bad.stderr and "latency_avg" in bad.stderr
    assert cli("metrics", evaluated["wf"], "--plot", tmp_path / "plot.jpg").returncode == 1


@needs_git
@pytest.mark.e2e
def test_metrics_diff_against_a_git_revision(evaluated, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    wf = _setup(repo)
    shutil.copyfile(evaluated["wf"].parent / "olivepipe.lock", repo / "olivepipe.lock")

    def git(*args):
        subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, check=True, capture_output=True)

    git("init", "-q")
    git("add", "workflow.yaml", "olivepipe.lock", "travel.jsonl")
    git("commit", "-qm", "v1")
    # other held-out rows for the torch model: it alone runs again (the shared cache has the rest)
    wf.write_text(WF.replace('eval-hf: {kind: evaluate, input: base, data: heldout, metrics: [latency, throughput, '
                             'perplexity, size], rows: "24:"}', 'eval-hf: {kind: evaluate, input: base, data: heldout, '
                             'metrics: [latency, throughput, perplexity, size], rows: "12:"}'))
    res = _apply(wf, cache_dir=evaluated["cache"])
    assert res.ok and res.ran == ["eval-hf"]
    env = {**GIT_ENV, "OLIVEPIPE_CACHE_DIR": str(evaluated["cache"])}
    r = cli("metrics", wf, "--diff", "HEAD", "--format", "json", cwd=repo, env=env)
    assert r.returncode == 0, r.stderr
    diff = json.loads(r.stdout)["diff"]
    rows = {row["node"]: row for row in diff["rows"]}
    assert rows["eval-hf"]["status"] == "changed" and rows["eval-lora"]["status"] == "same"
    ppl = rows["eval-hf"]["values"]["perplexity"]
    assert ppl["old"] != ppl["new"] and ppl["delta"] == pytest.approx(ppl["new"] - ppl["old"])
    assert rows["eval-lora"]["values"]["perplexity"]["delta"] == 0
    text = cli("metrics", wf, "--diff", "HEAD", cwd=repo, env=env).stdout
    assert "HEAD:olivepipe.lock -> working tree" in text
    row = next(line for line in text.splitlines() if line.startswith("eval-hf "))
    assert " -> " in row and row.rstrip().endswith("changed")
    bad = cli("metrics", wf, "--diff", "no-such-rev", cwd=repo, env=env)
    assert bad.returncode == 2 and "no-such-rev" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.e2e
def test_a_stale_result_is_shown_as_such(evaluated, tmp_path):
    d = tmp_path / "stale"
    d.mkdir()
    wf = _setup(d, WF.replace("metrics: [latency, perplexity], rows", "metrics: [perplexity], rows"))
    shutil.copyfile(evaluated["wf"].parent / "olivepipe.lock", d / "olivepipe.lock")
    data = json.loads(cli("metrics", wf, "--format", "json", env={"OLIVEPIPE_CACHE_DIR": str(evaluated["cache"])}).stdout)
    rows = {row["node"]: row for row in data["rows"]}
    assert rows["eval-base"]["status"] == "stale" and rows["eval-base"]["values"]["latency_avg"] > 0
    assert rows["eval-lora"]["status"] == "current"


def test_metrics_without_evaluate_nodes_or_results(tmp_path):
    wf = write(tmp_path / "a" / "workflow.yaml", "olivepipe: 1\nname: a\nmodels:\n  base: {tiny: {arch: phi3}}\n"
                                                  "nodes:\n  onnx: {pass: model-builder, input: base, params: {precision: int4}}\n")
    r = cli("metrics", wf)
    assert r.returncode == 1 and "no evaluate node" in r.stderr
    wf = write(tmp_path / "b" / "workflow.yaml", "olivepipe: 1\nname: b\nmodels:\n  base: {tiny: {arch: phi3}}\n"
                                                  "nodes:\n  e: {kind: evaluate, input: base, metrics: [latency]}\n")
    r = cli("metrics", wf, "--format", "json")
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)["rows"]
    assert row["status"] == "not evaluated" and row["values"] == {}
    assert sorted(p.name for p in wf.parent.iterdir()) == ["workflow.yaml"]  # read-only: nothing written


# -- validation --------------------------------------------------------------------------

BAD = """\
olivepipe: 1
name: bad
models:
  base: {tiny: {arch: phi3}}
datasets:
  travel: {files: travel.jsonl, text_template: "{prompt} {response}", limit: 20}
nodes:
  onnx: {pass: model-builder, input: base, params: {precision: int4}}
  chat: {kind: generate, input: onnx, prompts: [hi]}
  e1: {kind: evaluate, input: onnx, metrics: [latncy, accuracy]}
  e2: {kind: evaluate, input: onnx, metrics: [perplexity]}
  e3: {kind: evaluate, input: onnx, data: travel, metrics: [latency]}
  e4: {kind: evaluate, input: onnx, metrics: [latency], rows: "1:"}
  e5: {kind: evaluate, input: onnx, data: travel, metrics: [perplexity], rows: "50%:"}
  e6: {kind: evaluate, input: [onnx, base], metrics: [latency]}
  e7: {kind: evaluate, input: chat, metrics: [latency]}
  e8: {kind: evaluate, input: onnx, metrics: [size], latency: {repeat: 3}}
  e9: {kind: evaluate, input: onnx, data: travel, metrics: [perplexity], rows: "25:"}
  e10: {kind: evaluate, input: onnx}
  e11: {kind: evaluate, input: onnx, metrics: [mmlu]}
  awq: {pass: awq, input: base, data: travel}
  e12: {kind: evaluate, input: awq, metrics: [latency]}
"""


def test_bad_evaluate_nodes_get_located_messages(tmp_path):
    write(tmp_path / "travel.jsonl", '{"prompt": "a", "response": "b"}\n')
    wf = write(tmp_path / "workflow.yaml", BAD)
    with pytest.raises(SpecError) as e:
        load_workflow(wf)
    got, at = located(BAD, e.value)

    assert at(10, "latncy") == ("unknown metric 'latncy'", "did you mean 'latency'?")
    msg, hint = at(10, "accuracy")
    assert "metric 'accuracy' does not work in this stack" in msg and "perplexity" in hint
    msg, hint = at(11, "e2")
    assert msg == "perplexity needs `data`" and "rows:" in hint
    assert at(12, "travel")[0] == "no metric of 'e3' reads data (latency)"
    assert at(13, 'rows')[0] == "`rows` selects from `data`, which 'e4' does not set"
    assert "percentages of a dataset with `limit: 20`" in at(14, '"50%:"')[0]
    assert at(15, "[onnx, base]")[0] == "an evaluate node measures one model; 'e6' lists 2"
    assert at(16, "chat, metrics")[0] == "'chat' is a generate node: it makes no model to evaluate"
    assert "does not measure" in at(17, "latency:")[0]
    assert "start at or past the dataset's `limit: 20`" in at(18, '"25:"')[0]
    assert at(19, "e10")[0] == "an evaluate node needs `metrics`"
    msg, hint = at(20, "mmlu")
    assert "lm-eval" in msg and "perplexity" in hint
    msg, hint = at(22, "awq, metrics")
    assert "AutoAWQQuantizer checkpoint" in msg and "device: gpu" in hint
    assert got == {}  # nothing else, nothing twice


def test_rehearsal_scales_the_evaluation_down(tmp_path):
    from olivepipe.flow.plan import make_plan
    from olivepipe.flow.workspace import open_workspace

    ws = open_workspace(_setup(tmp_path), rehearse=True, read_only=True)
    step = make_plan(ws).by_name()["eval-hf"]
    assert any("2 warm-up and 5 timed runs (was 10 and 20)" in w and "8 sequences" in w for w in step.warnings)
    assert ws.workflow.nodes["eval-hf"].options["max_samples"] == 8
    job = ws.job("eval-lora", {n: _Pending() for n in ("adapters",)})
    (m,) = [m for m in job.spec["config"]["evaluators"]["olivepipe"]["metrics"] if m["name"] == "latency"]
    assert m["sub_types"][0]["metric_config"]["repeat_test_num"] == 5  # was 5 already: unchanged
    assert "$OUT" == job.spec["config"]["output_dir"] and str(tmp_path) not in json.dumps(job.to_json())


def test_a_matrix_input_fans_out_into_one_evaluation_per_variant(tmp_path):
    from olivepipe.spec.workflow import parse_workflow

    wf = parse_workflow("""\
olivepipe: 1
name: fan
models:
  base: {tiny: {arch: phi3}}
nodes:
  onnx: {pass: model-builder, input: base, matrix: {precision: [int4, fp32]}}
  eval: {kind: evaluate, input: onnx, metrics: [latency, size]}
  one: {kind: evaluate, input: onnx-fp32, metrics: [size]}
""", "fan.yaml", base=tmp_path, check_files=False)
    assert [n for n, s in wf.nodes.items() if s.kind == "evaluate"] == ["eval-int4", "eval-fp32", "one"]
    assert wf.nodes["eval-int4"].inputs == ("onnx-int4",) and wf.nodes["one"].inputs == ("onnx-fp32",)
    assert wf.nodes["eval-fp32"].options == {"metrics": ["latency", "size"]}


class _Pending:
    """A stored input as a job sees it (key and model config only)."""

    key = "0" * 64
    model = {"type": "onnxmodel", "config": {"model_path": "$OUT", "onnx_file_name": "model.onnx"}}
