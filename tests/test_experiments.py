"""Experiments: goals on evaluate nodes, the select kind, measurement history (and, below,
`-S` variants and `olivepipe exp`). End to end on a one-layer tiny model: one module fixture
builds int4 and fp32 ONNX models, measures both, selects one and evaluates the winner."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from conftest import EXAMPLE, cli, located, write
from olivepipe.core.errors import SpecError
from olivepipe.spec.workflow import load_workflow

SWEEP = """\
olivepipe: 1
name: sweep
models:
  base: {tiny: {arch: phi3, layers: 1, hidden: 64, heads: 4, seed: 0}}
nodes:
  onnx: {pass: model-builder, input: base, matrix: {precision: [int4, fp32]}}
  eval:
    kind: evaluate
    input: onnx
    metrics: [size, latency]
    latency: {warmup: 1, repeat: 3}
    # a sweep's baseline variant judges itself: the goal holds for it by construction
    goals:
      size: {type: max-degradation, value: 0, baseline: eval-fp32}
  best:
    kind: select
    input: eval
    minimize: size
    constraints:
      latency: {type: percent-max-degradation, value: 100000, baseline: eval-fp32}
  gate:
    kind: evaluate
    input: best
    metrics: [size]
    goals:
      size: {type: threshold, value: 1000}  # bytes: no model is this small, so the gate fails
"""
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}


def _ws(wf, **kw):
    from olivepipe.flow.workspace import open_workspace

    return open_workspace(wf, **kw)


def _apply(wf, **kw):
    from olivepipe.flow.scheduler import apply
    from olivepipe.flow.plan import make_plan

    force = kw.pop("force", ())
    ws = _ws(wf, **kw)
    return apply(ws, make_plan(ws, force=force))


def _lock(wf):
    import yaml

    return yaml.safe_load((wf.parent / "olivepipe.lock").read_text())["workflows"]["sweep"]["nodes"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep")
    wf = write(d / "workflow.yaml", SWEEP)
    first = _apply(wf)
    return {"wf": wf, "first": first, "dir": d}


# -- goals ----------------------------------------------------------------------------------

@pytest.mark.e2e
def test_a_missed_goal_fails_the_node_with_its_numbers(sweep):
    first = sweep["first"]
    gate = first.outcomes["gate"]
    assert gate.status == "failed"
    size = _lock(sweep["wf"])["onnx-int4"]["output"]  # the gate measured the winner, int4
    assert gate.error.startswith("goal missed: size ")
    assert "misses <= 1000 (threshold 1000)" in gate.error
    assert not first.ok
    # every other node passed its goals; the measurement itself is cached and in the lock
    assert {n: o.status for n, o in first.outcomes.items() if n != "gate"} == {
        "base": "ran", "onnx-int4": "ran", "onnx-fp32": "ran", "eval-int4": "ran", "eval-fp32": "ran", "best": "ran"}
    assert "gate" in _lock(sweep["wf"]) and size


@pytest.mark.e2e
def test_a_goal_is_judged_on_every_apply_and_never_remeasures(sweep, tmp_path):
    wf = sweep["wf"]
    again = _apply(wf)
    assert again.outcomes["gate"].status == "failed" and not again.ok  # CI stays red while the goal is missed
    assert not again.ran
    r = cli("plan", wf, "--format", "markdown")
    assert r.returncode == 0, r.stderr
    assert "#### Goals" in r.stdout
    assert "| `gate` | size: threshold 1000 |" in r.stdout and "❌ missed" in r.stdout
    assert "| `eval-int4` | size: max-degradation 0 from eval-fp32 |" in r.stdout and "✅ met" in r.stdout
    # the CLI's exit code gates: 1 while a goal is missed
    r = cli("apply", "-q", wf)
    assert r.returncode == 1 and "goal missed: size" in r.stdout + r.stderr


# -- select ---------------------------------------------------------------------------------

@pytest.mark.e2e
def test_select_picks_by_the_rule_and_its_consumer_reads_the_winner(sweep):
    wf = sweep["wf"]
    lock = _lock(wf)
    sizes = {v: json.loads((wf.parent / "outputs" / "sweep" / f"eval-{v}" / "metrics.json").read_text())
             ["metrics"]["size"]["value"] for v in ("int4", "fp32")}
    assert sizes["int4"] < sizes["fp32"]
    # the winner is copied byte for byte: the select result has the winner's digest
    assert lock["best"]["output"]["digest"] == lock["onnx-int4"]["output"]["digest"]
    assert lock["best"]["result"]["selected"] == "onnx-int4"
    assert lock["best"]["result"]["why"].startswith(f"lowest size {sizes['int4']}")
    gate = json.loads((wf.parent / "outputs" / "sweep" / "gate" / "metrics.json").read_text())
    assert gate["metrics"]["size"]["value"] == sizes["int4"]  # the consumer measured the winner
    r = cli("plan", wf)
    assert f"selected onnx-int4: lowest size {sizes['int4']}" in r.stdout


@pytest.mark.e2e
def test_changing_the_rule_changes_the_choice_and_nothing_else(sweep, tmp_path):
    d = tmp_path / "flip"
    shutil.copytree(sweep["dir"], d, symlinks=True, ignore=shutil.ignore_patterns("outputs"))
    wf = d / "workflow.yaml"
    wf.write_text(SWEEP.replace("minimize: size", "maximize: size"))
    from olivepipe.flow.plan import make_plan

    steps = make_plan(_ws(wf, read_only=True)).by_name()
    assert {n for n, s in steps.items() if s.status == "run"} == {"best", "gate"}  # gate reads the choice
    assert any(r.startswith("select.") for r in steps["best"].reasons), steps["best"].reasons
    res = _apply(wf)
    assert res.outcomes["best"].status == "ran" and res.outcomes["gate"].status == "failed"
    lock = _lock(wf)
    assert lock["best"]["result"]["selected"] == "onnx-fp32"
    assert lock["best"]["output"]["digest"] == lock["onnx-fp32"]["output"]["digest"]


# -- history --------------------------------------------------------------------------------

@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_forced_remeasure_shows_in_metrics_diff_and_spread(sweep, tmp_path):
    d = tmp_path / "hist"
    shutil.copytree(sweep["dir"], d, symlinks=True, ignore=shutil.ignore_patterns("outputs"))
    wf = d / "workflow.yaml"

    def git(*args):
        subprocess.run(["git", *args], cwd=d, check=True, capture_output=True, env={**GIT_ENV, "PATH": "/usr/bin:/bin"})

    git("init", "-q")
    git("add", "workflow.yaml", "olivepipe.lock")
    git("commit", "-qm", "measured")
    before = json.loads((sweep["wf"].parent / "outputs" / "sweep" / "eval-int4" / "metrics.json").read_text())
    res = _apply(wf, force=("eval-int4",))
    assert res.outcomes["eval-int4"].status == "ran"
    after = json.loads((d / "outputs" / "sweep" / "eval-int4" / "metrics.json").read_text())
    r = cli("metrics", wf, "--diff", "HEAD", "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = {x["node"]: x for x in json.loads(r.stdout)["diff"]["rows"]}
    assert rows["eval-int4"]["status"] == "re-measured"
    assert rows["eval-int4"]["old_key"] == rows["eval-int4"]["new_key"]
    lat = rows["eval-int4"]["values"]["latency_avg"]
    assert (lat["old"], lat["new"]) == (before["metrics"]["latency_avg"]["value"],
                                        after["metrics"]["latency_avg"]["value"])
    assert rows["eval-fp32"]["status"] == "same"
    r = cli("metrics", wf, "--diff", "HEAD")
    assert "re-measured" in r.stdout and "->" in r.stdout
    r = cli("metrics", wf, "--format", "json")
    row = next(x for x in json.loads(r.stdout)["rows"] if x["node"] == "eval-int4")
    assert row["runs"] == 2 and row["spread"]["latency_avg"]["n"] == 2
    assert row["spread"]["size"]["stdev"] == 0
    assert "(n=2)" in cli("metrics", wf, "--spread").stdout


# -- validation, no Olive run ------------------------------------------------------------------

BAD = """\
olivepipe: 1
name: bad
models:
  base: {tiny: {arch: phi3}}
nodes:
  onnx: {pass: model-builder, input: base, matrix: {precision: [int4, fp32]}}
  eval: {kind: evaluate, input: onnx, metrics: [size], goals: {latncy: {type: threshold, value: 1}}}
  e2: {kind: evaluate, input: base, metrics: [size], goals: {size: {type: max-degradation, value: 1}}}
  e3: {kind: evaluate, input: base, metrics: [size], goals: {size: {type: min-improvement, value: 1, baseline: onnx-int4}}}
  e4: {kind: evaluate, input: base, metrics: [size], goals: {size: {type: min-improvement, value: 1, baseline: eval}}}
  e5: {kind: evaluate, input: base, metrics: [size], goals: {size: {type: percent-min-improvement, value: 150, baseline: 9}}}
  s1: {kind: select, input: eval}
  s2: {kind: select, input: onnx, minimize: size}
  s3: {kind: select, input: [eval, e2], minimize: latency}
"""


def test_bad_goals_and_selects_get_located_messages(tmp_path):
    wf = write(tmp_path / "workflow.yaml", BAD)
    with pytest.raises(SpecError) as e:
        load_workflow(wf)
    got, at = located(BAD, e.value)

    msg, hint = at(7, "latncy")
    assert msg == "goal of 'eval': no measured metric 'latncy' to set a goal on" and hint == "measured: size"
    assert at(8, "size: {type: max-degradation")[0] == "a max-degradation goal needs a `baseline`"
    assert at(9, "onnx-int4}")[0] == "baseline 'onnx-int4' is a olive node, not an evaluate node"
    msg, hint = at(10, "eval}")
    assert msg == "baseline 'eval' has 2 variants" and "eval-int4" in hint
    assert "outside Olive's range (0, 100)" in at(11, "150")[0]
    assert "exactly one of `minimize` and `maximize`" in at(12, "s1")[0]
    assert "'onnx' is a olive node: a select node chooses" in at(13, "onnx")[0]
    msg, hint = at(14, "latency}")
    assert msg == "not every candidate measures 'latency'" and hint == "measured by all: size"
    assert got == {}  # nothing else, nothing twice


def test_goal_arithmetic_is_olives():
    from olivepipe.olive.goals import judge

    # lower is better (size): max-degradation allows baseline + value
    assert judge("size", {"type": "max-degradation", "value": 10, "baseline": "b"}, {"size": 110}, {"b": {"size": 100}})["ok"]
    assert not judge("size", {"type": "max-degradation", "value": 10, "baseline": "b"}, {"size": 111},
                     {"b": {"size": 100}})["ok"]
    # percent-min-improvement on a lower-is-better metric: at most baseline * (1 - p/100)
    r = judge("size", {"type": "percent-min-improvement", "value": 50, "baseline": 100}, {"size": 50}, {})
    assert r["ok"] and r["bound"] == 50
    # higher is better (throughput): min-improvement needs baseline + value
    assert not judge("throughput", {"type": "min-improvement", "value": 5, "baseline": 10}, {"throughput": 14}, {})["ok"]
    assert judge("latency", {"type": "threshold", "value": 2}, {"latency_avg": 1.5}, {})["ok"]
    r = judge("perplexity", {"type": "percent-max-degradation", "value": 5, "baseline": "fp32"}, {"perplexity": 106},
              {"fp32": {"perplexity": 100}})
    assert not r["ok"] and r["text"] == "perplexity 106 misses <= 105 (percent-max-degradation 5% from fp32's 100)"


def test_select_decides_deterministically():
    from olivepipe.kinds.select import decide

    cands = [{"name": "a", "eval": "ea", "values": {"latency_avg": 2.0, "perplexity": 10.0}},
             {"name": "b", "eval": "eb", "values": {"latency_avg": 1.0, "perplexity": 30.0}},
             {"name": "c", "eval": "ec", "values": {"latency_avg": 1.0, "perplexity": 11.0}}]
    assert decide({"minimize": "latency"}, cands, {})[0] == 1  # a tie goes to the first in input order
    assert decide({"maximize": "latency"}, cands, {})[0] == 0
    rule = {"minimize": "latency", "constraints": {"perplexity": {"type": "percent-max-degradation", "value": 20,
                                                                  "baseline": "ea"}}}
    base = {c["eval"]: c["values"] for c in cands}
    winner, why, lines = decide(rule, cands, base)
    assert winner == 2 and why == "lowest latency_avg 1 (vs a 2); 1 of 3 left out by constraints"
    assert "out: perplexity 30 misses <= 12" in lines[1]
    rule["constraints"]["perplexity"]["value"] = 1
    winner, why, _ = decide(rule, cands[1:], base)
    assert winner is None and "misses" in why


# -- variants -------------------------------------------------------------------------------

@pytest.mark.e2e
def test_a_variant_runs_is_listed_compared_and_applied_back_with_comments_kept(sweep, tmp_path):
    d = tmp_path / "variant"
    shutil.copytree(sweep["dir"], d, symlinks=True, ignore=shutil.ignore_patterns("outputs"))
    wf = d / "workflow.yaml"
    committed_lock = (d / "olivepipe.lock").read_text()
    sets = ["-S", "gate.goals.size.value=1000000000", "-S", "gate.metrics=[size, throughput]"]
    r = cli("plan", wf, *sets)
    assert r.returncode == 0, r.stderr
    assert "variant exp-" in r.stdout and "nodes.gate.goals.size.value: 1000 -> 1000000000" in r.stdout
    assert "nodes.gate.metrics: [\"size\"] -> [\"size\", \"throughput\"]" in r.stdout
    assert "metrics: ['size'] -> ['size', 'throughput']" in r.stdout  # why gate runs: against the committed lock
    r = cli("apply", "-q", wf, *sets)
    assert r.returncode == 0, r.stdout + r.stderr  # the variant's gate passes
    assert (d / "olivepipe.lock").read_text() == committed_lock  # never in the committed lock
    name = next(iter(json.loads((d / ".olivepipe" / "variants" / "sweep.json").read_text())["variants"]))
    assert f"sweep@{name}:" in (d / ".olivepipe" / "variants.lock").read_text()

    shown = json.loads(cli("exp", "show", wf, "--format", "json").stdout)
    assert [v["name"] for v in shown["variants"]] == ["committed", name]
    v = shown["variants"][1]
    assert v["overrides"] == ["gate.goals.size.value=1000000000", "gate.metrics=[size, throughput]"]
    assert v["pending"] == 0 and "throughput" in v["rows"]["gate"]["values"]
    assert v["selected"] == {"best": "onnx-int4"}
    text = cli("exp", "show", wf).stdout
    assert name in text and "nodes.gate.goals.size.value: 1000 -> 1000000000" in text

    r = cli("exp", "diff", wf, "committed", name, "--format", "json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["only_b"] == v["overrides"] and doc["only_a"] == []
    gate = next(x for x in doc["rows"] if x["node"] == "gate")
    assert gate["status"] == "changed" and gate["values"]["throughput"]["old"] is None
    assert gate["values"]["size"]["old"] == gate["values"]["size"]["new"]

    r = cli("exp", "apply", wf, name)
    assert r.returncode == 0, r.stderr
    text = wf.read_text()
    assert text == SWEEP.replace("metrics: [size]\n    goals:\n      size: {type: threshold, value: 1000}",
                                 "metrics: [size, throughput]\n    goals:\n      size: {type: threshold, "
                                 "value: 1000000000}")  # only the two values: comments and layout kept
    res = _apply(wf)
    assert res.ok and not res.ran  # the variant's results were cached: adopting it runs nothing


def test_overrides_that_cannot_apply_are_located(tmp_path):
    wf = write(tmp_path / "workflow.yaml", SWEEP)
    r = cli("plan", wf, "-S", "gate.goals.size.valeu=1")
    assert r.returncode == 2
    line = SWEEP.splitlines().index("      size: {type: threshold, value: 1000}  # bytes: no model is this small, "
                                    "so the gate fails") + 1
    assert f"workflow.yaml:{line}:" in r.stderr and "(set by -S gate.goals.size.valeu=1)" in r.stderr
    r = cli("plan", wf, "-S", "gaet.params.r=8")
    assert r.returncode == 2 and "has no node 'gaet'" in r.stderr and "did you mean 'gate'?" in r.stderr
    r = cli("plan", wf, "-S", "gate")
    assert r.returncode == 2 and "expected PATH=VALUE" in r.stderr
    # a key added to a block mapping: a new line, reported at its parent's line in the committed file
    r = cli("plan", wf, "-S", "onnx.params.precison=int4")
    on = SWEEP.splitlines().index("  onnx: {pass: model-builder, input: base, matrix: {precision: [int4, fp32]}}") + 1
    assert f"workflow.yaml:{on}:" in r.stderr and "unknown parameter 'precison'" in r.stderr
    r = cli("plan", wf, "-S", "best.note=x")
    best = SWEEP.splitlines().index("  best:") + 1
    assert r.returncode == 2 and f"workflow.yaml:{best + 1}:1: unknown key 'note' in nodes.best (set by -S best.note=x)" \
        in r.stderr, r.stderr


# -- import: evaluators and a search space ---------------------------------------------------

SEARCH_CONFIG = {
    "workflow_id": "search",
    "input_model": {"type": "HfModel", "model_path": "models/tiny"},
    "data_configs": [{"name": "heldout", "type": "HuggingfaceContainer",
                      "load_dataset_config": {"data_name": "json", "data_files": "travel.jsonl", "split": "train"},
                      "pre_process_data_config": {"text_template": "{prompt} {response}", "max_seq_len": 32,
                                                  "max_samples": 8}}],
    "evaluators": {"common": {"metrics": [
        {"name": "size", "type": "size_on_disk",
         "sub_types": [{"name": "bytes", "priority": 1, "goal": {"type": "threshold", "value": 1e9}}]},
        {"name": "ppl", "type": "accuracy", "sub_types": [{"name": "perplexity", "priority": 2}],
         "data_config": "heldout"}]}},
    "evaluator": "common",
    "evaluate_input_model": False,
    "search_strategy": {"execution_order": "joint", "sampler": "sequential"},
    "passes": {"builder": {"type": "ModelBuilder", "precision": {
        "olive_parameter_type": "SearchParameter", "type": "Categorical", "support": ["int4", "fp32"]}}},
}


@pytest.mark.e2e
def test_an_olive_search_with_evaluators_imports_and_runs_on_the_tiny_model(tmp_path):
    from olivepipe.models.tinymodel import build_tiny_model

    build_tiny_model(tmp_path / "models" / "tiny", layers=1)
    shutil.copyfile(EXAMPLE / "data" / "travel.jsonl", tmp_path / "travel.jsonl")
    src = write(tmp_path / "search.json", json.dumps(SEARCH_CONFIG))
    r = cli("import", src, "-o", tmp_path / "workflow.yaml")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("\n  - ") == 0, r.stderr  # everything in this config is carried
    wf = load_workflow(tmp_path / "workflow.yaml")
    assert {n: s.kind for n, s in wf.nodes.items()} == {"builder-int4": "olive", "builder-fp32": "olive",
                                                        "eval-int4": "evaluate", "eval-fp32": "evaluate",
                                                        "best": "select"}
    assert wf.nodes["best"].options["minimize"] == "size"
    r = cli("apply", "-q", tmp_path / "workflow.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    import yaml

    lock = yaml.safe_load((tmp_path / "olivepipe.lock").read_text())["workflows"]["search"]["nodes"]
    assert lock["best"]["result"]["selected"] == "builder-int4"  # the smaller model, as the objective says
    assert lock["best"]["output"]["digest"] == lock["builder-int4"]["output"]["digest"]
