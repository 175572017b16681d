"""`olivepipe import`: Olive workflow configs -> olivepipe workflows, and back through the compiler.

The round trip imports every config in tests/olive_configs/ (their sources: SOURCES.md),
compiles each node back with olivepipe (olivepipe.report.preview.compile_preview) and compares
passes, params, data configs, input model and device with the original: every difference
must be one the report names, and every report entry must name something in the config.
Olive's own classes (TextGenParams, AcceleratorLookup) give the effective values on both
sides, so the comparison does not share the importer's tables. No Olive runs.
"""
import inspect
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import TESTS, cli, write
from olivepipe.core.errors import SpecError
from olivepipe.spec.fmt import format_text
from olivepipe.olive import importer
from olivepipe.olive.catalog import load_catalog
from olivepipe.olive.compile import DATA_NAME
from olivepipe.olive.importer import ImportConfigError, translate
from olivepipe.spec.importing import import_config
from olivepipe.spec.workflow import load_workflow

CONFIGS = TESTS / "olive_configs"
VALID = sorted(CONFIGS.glob("*.json"))
REFUSED = CONFIGS / "refused" / "llama2-qlora.json"
ROW = '{"prompt": "where to go in chicago", "response": "the art institute", "text": "x"}\n'

# What each config's report names (paths into the Olive config): exactly these
EXPECTED_REPORT = {
    "olive-finetune-travel.json": {"output_dir", "log_severity_level"},
    "olive-auto-opt-cpu.json": {"input_model.adapter_path", "output_dir", "log_severity_level"},
    # log_severity_level 1 is what olivepipe runs Olive at: carried, not reported
    "phi-3.5-mini-mixed.json": {"evaluators.evaluator", "evaluator", "output_dir", "cache_dir"},
    "qwen3-0.6b-cpu-int4.json": {"log_severity_level", "output_dir", "cache_dir"},  # torch_dtype is kept
    "qwen2.5-1.5b-qnn-gpu.json": {"systems.target_system.type", "systems.target_system.python_environment_path",
                                  "data_configs[wikitext2_train_act]", "output_dir", "cache_dir"},
    "llama-3.2-1b-rtn.json": {"output_dir"},
}
# Engine options whose value here cannot change a model (Olive's run artifacts; a shared
# cache that names no account); everything else must be reported or compiled the same
NO_EFFECT = {"no_artifacts": None, "evaluate_input_model": None,
             "cache_config": {"account_name": None, "container_name": None}}


def flat(obj, key="config"):
    """Olive's NestedConfig: the nested and the flat form are one config."""
    obj = obj or {}
    return {**(obj.get(key) or {}), **{k: v for k, v in obj.items() if k != key}}


def staged(tmp_path, config: Path) -> Path:
    """A copy of the config with the local files it names (data files, a model folder)."""
    d = tmp_path / "src"
    d.mkdir(exist_ok=True)
    (d / ".git").mkdir(exist_ok=True)  # the workspace root: paths stay inside it
    dest = d / config.name
    shutil.copy(config, dest)
    cfg = json.loads(config.read_text())
    for dc in cfg.get("data_configs") or []:
        files = flat(dc.get("load_dataset_config"), "params").get("data_files")
        for f in [files] if isinstance(files, str) else files or []:
            write(d / f, ROW * 8)
    path = flat(cfg["input_model"]).get("model_path", "")
    if path.count("/") > 1:  # a local folder (a hub id has one slash at most)
        write(d / path / "config.json", json.dumps({"model_type": "phi3"}))
    return dest


def covered(path: str, report: set) -> bool:
    return any(path == r or path.startswith(r + ".") for r in report)


def effective_text_gen(pre: dict) -> dict:
    """Olive's own view of a text-generation pre-process config (its defaults filled in)."""
    from olive.data.component.text_generation import TextGenParams

    own = {k: v for k, v in pre.items() if k not in ("type", "model_name", "task", "trust_remote_code")}
    out = TextGenParams(**own).model_dump()
    out["chat_template"] = out["chat_template"] or None  # Olive tests its truth: false and None are one
    return out


def olive_device(acc: dict) -> str:
    from olive.hardware.accelerator import AcceleratorLookup

    if acc.get("device"):
        return acc["device"].lower()
    eps = acc.get("execution_providers") or ["CPUExecutionProvider"]
    return AcceleratorLookup.infer_single_device_from_execution_providers(eps)


def _diffs(prefix: str, want: dict, got: dict, defaults: dict) -> set:
    """Paths where two param dicts differ, a value equal to Olive's default counting as absent."""
    out = set()
    for k in set(want) | set(got):
        a, b = want.get(k, defaults.get(k)), got.get(k, defaults.get(k))
        if isinstance(a, dict) and isinstance(b, dict) and k == "training_args":
            out |= _diffs(f"{prefix}.{k}", a, b, {})
        elif a != b:
            out.add(f"{prefix}.{k}")
    return out


def round_trip_differences(cfg: dict, src: Path, compiled: dict) -> set:
    """Every path of the Olive config whose meaning the compiled olivepipe nodes do not carry."""
    catalog = load_catalog()
    diffs: set = set()
    passes = [(n, flat(p[0] if isinstance(p, list) else p)) for n, p in cfg["passes"].items()]
    assert len(passes) == len(compiled), "one node per pass"
    data_configs = {dc["name"]: dc for dc in cfg.get("data_configs") or []}
    used = set()
    for (pname, orig), (node, out) in zip(passes, compiled.items()):
        [(_, got)] = out["passes"].items()
        pass_type = catalog.resolve(orig["type"])
        assert got["type"] == pass_type, (pname, got["type"])
        spec = catalog.params(pass_type)
        defaults = {k: s["default"] for k, s in spec.items() if "default" in s}
        data_params = {k for k, s in spec.items() if s["type"] == "data_config"}
        mine = {k: v for k, v in orig.items() if k not in data_params and k != "type"}
        theirs = {k: v for k, v in got.items() if k not in data_params and k != "type"}
        diffs |= _diffs(f"passes.{pname}", mine, theirs, defaults)
        for k in data_params & set(orig):
            used.add(orig[k])
            if got.get(k) != DATA_NAME:
                diffs.add(f"passes.{pname}.{k}")
                continue
            [dc_out] = out["data_configs"]
            dc = data_configs[orig[k]]
            where = f"data_configs[{orig[k]}]"
            load_in, load_out = flat(dc.get("load_dataset_config"), "params"), dc_out["load_dataset_config"]
            for key in ("data_name", "subset", "split"):
                a = load_in.get(key, "validation" if key == "split" else None)  # Olive's default split
                if a != load_out.get(key):
                    diffs.add(f"{where}.load_dataset_config.{key}")
            files = load_in.get("data_files")
            want_files = [str((src / f).resolve()) for f in ([files] if isinstance(files, str) else files or [])]
            if want_files != [str(Path(f).resolve()) for f in load_out.get("data_files") or []]:
                diffs.add(f"{where}.load_dataset_config.data_files")
            a = effective_text_gen(flat(dc.get("pre_process_data_config"), "params"))
            b = effective_text_gen(dc_out.get("pre_process_data_config") or {})
            diffs |= {f"{where}.pre_process_data_config.{x}" for x in a if a[x] != b[x]}
            loader = flat(dc.get("dataloader_config"), "params")
            if {k2: v for k2, v in loader.items() if k2 != "type"} not in ({}, {"batch_size": 1}):
                diffs.add(f"{where}.dataloader_config")
        if node == next(iter(compiled)):  # the first node reads the input model itself
            m_in, m_out = flat(cfg["input_model"]), out["input_model"]
            path = m_in["model_path"]
            local = (src / path).exists()
            if (str((src / path).resolve()) if local else path) != m_out["model_path"]:
                diffs.add("input_model.model_path")
            lk_in = {"trust_remote_code": False, **(m_in.get("load_kwargs") or {})}
            lk_out = {"trust_remote_code": False, **(m_out.get("load_kwargs") or {})}
            diffs |= {f"input_model.load_kwargs.{k}" for k in set(lk_in) | set(lk_out) if lk_in.get(k) != lk_out.get(k)}
            diffs |= {f"input_model.{k}" for k in m_in if k not in ("type", "model_path", "load_kwargs")}
        engine = {**(cfg.get("engine") or {}), **cfg}
        target = engine.get("target") or engine.get("host")
        system = flat((cfg.get("systems") or {})[target]) if isinstance(target, str) else flat(target or {})
        acc_in = (system.get("accelerators") or [{"device": "cpu"}])[0]
        [acc_out] = out["systems"]["local_system"]["accelerators"]
        if olive_device(acc_in) != acc_out["device"]:
            diffs.add(f"systems.{target}.accelerators[0].device")
        if (acc_in.get("execution_providers") or acc_out["execution_providers"])[:1] != acc_out["execution_providers"]:
            diffs.add(f"systems.{target}.accelerators[0].execution_providers")
        for k, v in system.items():
            if k not in ("accelerators",) and not (k == "type" and v == "LocalSystem"):
                diffs.add(f"systems.{target}.{k}")
    diffs |= {f"data_configs[{n}]" for n in data_configs if n not in used}
    diffs |= {f"evaluators.{e}" for e in cfg.get("evaluators") or {}}
    first = next(iter(compiled.values()))
    for k, v in cfg.items():
        if k in ("input_model", "systems", "data_configs", "evaluators", "passes", "host", "target"):
            continue
        if k in NO_EFFECT and (NO_EFFECT[k] is None or NO_EFFECT[k] == v):
            continue
        if first.get(k) != v:
            diffs.add(k)
    return diffs


def test_configs_are_there_with_their_sources():
    assert {p.name for p in VALID} == set(EXPECTED_REPORT)
    sources = (CONFIGS / "SOURCES.md").read_text()
    for p in [*VALID, REFUSED]:
        assert f"`{p.relative_to(CONFIGS).as_posix()}`" in sources, p


# `olive auto-opt` without --use_model_builder captures with OnnxConversion, which fails on phi3 here
INVALID_HERE = {"olive-auto-opt-cpu.json": "OnnxConversion fails on phi3"}


@pytest.mark.parametrize("config", VALID, ids=[p.name for p in VALID])
def test_round_trip(tmp_path, config):
    from olivepipe.report.preview import compile_preview
    from olivepipe.flow.workspace import open_workspace

    src = staged(tmp_path, config)
    out = src.parent / "workflow.yaml"
    result = import_config(src, out)
    if config.name in INVALID_HERE:  # translated faithfully, and refused for what this stack cannot run
        assert not result.valid and any(INVALID_HERE[config.name] in p.message for p in result.problems)
        return
    assert result.valid, "\n".join(p.format() for p in result.problems)
    assert {u.path for u in result.report} == EXPECTED_REPORT[config.name]
    assert format_text(result.text, str(out), out.parent) == result.text  # already canonical
    for u in result.report:  # each entry is in the header, on one line
        assert f"#   - {u.format()}\n" in result.text
    out.write_text(result.text)
    load_workflow(out)  # `olivepipe validate`
    cfg = json.loads(config.read_text())
    compiled = compile_preview(open_workspace(out), [])
    report = {u.path for u in result.report}
    diffs = round_trip_differences(cfg, src.parent, compiled)
    assert {d for d in diffs if not covered(d, report)} == set(), "differences the report does not name"
    for u in result.report:  # and nothing is reported that the config does not say
        assert any(covered(d, {u.path}) for d in diffs) or u.message.startswith("not given"), u.format()


def test_finetune_config_becomes_the_labs_workflow(tmp_path):
    """The lab's `olive finetune` config: the same model, data file, template and training."""
    src = staged(tmp_path, CONFIGS / "olive-finetune-travel.json")
    doc = import_config(src, src.parent / "w.yaml").translation.doc
    assert doc["models"] == {"phi-3-5-mini-instruct": {"hf": "microsoft/Phi-3.5-mini-instruct", "trust_remote_code": True,
                                                       "load_kwargs": {"attn_implementation": "eager"}}}
    assert doc["datasets"]["train_data"] == {
        "files": "data/data_sample_travel.jsonl", "text_template": "<|user|>\n{prompt}<|end|>\n<|assistant|>\n{response}<|end|>",
        "max_seq_len": 1024, "max_samples": 256, "add_special_tokens": False}
    assert doc["nodes"] == {"f": {"pass": "lora", "input": "phi-3-5-mini-instruct", "data": "train_data",
                                  "params": {"torch_dtype": "bfloat16", "training_args": {"max_steps": 100}, "r": 64, "alpha": 16}}}
    assert doc["defaults"] == {"device": "gpu"}


# -- unit: each untranslatable feature is reported ---------------------------------------

def base_config(**extra):
    cfg = {"input_model": {"type": "HfModel", "model_path": "microsoft/Phi-3.5-mini-instruct"},
           "passes": {"mb": {"type": "ModelBuilder", "precision": "int4"}}}
    cfg.update(extra)
    return cfg


def lora_config(data=None, pre=None, load=None, **extra):
    dc = {"name": "train", "type": "HuggingfaceContainer",
          "load_dataset_config": load or {"data_name": "json", "data_files": "train.jsonl", "split": "train"},
          "pre_process_data_config": {"text_template": "{prompt} {response}", "max_samples": 16, **(pre or {})}}
    cfg = {"input_model": {"type": "HfModel", "model_path": "microsoft/Phi-3.5-mini-instruct",
                           "load_kwargs": {"attn_implementation": "eager"}},
           "data_configs": [dc, *(data or [])],
           "passes": {"f": {"type": "LoRA", "train_data_config": "train", "training_args": {"max_steps": 4}}}}
    cfg.update(extra)
    return cfg


def run(cfg, tmp_path=None, **kw):
    d = tmp_path or Path("/nonexistent-olivepipe-test")
    t = translate(cfg, source_dir=d, out_dir=d, **kw)
    return t.doc, {u.path: u.message for u in t.report}


@pytest.mark.parametrize("extra, path", [
    ({"search_strategy": {"execution_order": "joint", "sampler": "tpe"}}, "search_strategy"),
    ({"engine": {"search_strategy": {"execution_order": "joint"}}}, "engine.search_strategy"),
    ({"cache_dir": "cache"}, "cache_dir"),
    ({"output_dir": "models/out"}, "output_dir"),
    ({"packaging_config": [{"type": "Zipfile", "name": "OutputModel"}]}, "packaging_config"),
    ({"log_severity_level": 0}, "log_severity_level"),
    ({"cache_config": {"account_name": "acct", "container_name": "c"}}, "cache_config"),
    ({"enable_shared_cache": True}, "enable_shared_cache"),
    ({"pass_flows": [["mb"]]}, "pass_flows"),
    ({"evaluator": "common"}, "evaluator"),
])
def test_engine_options_are_reported(extra, path):
    _, report = run(base_config(**extra))
    assert path in report, report


def test_engine_options_without_effect_are_not_reported():
    _, report = run(base_config(no_artifacts=True, evaluate_input_model=False, clean_cache=True, search_strategy=False,
                                cache_config={"account_name": None, "container_name": None}, host="local", target="local",
                                systems={"local": {"type": "LocalSystem", "accelerators": [{"device": "cpu"}]}}))
    assert report == {}


def test_evaluators_olivepipe_cannot_run_are_reported_each():
    ev = {"metrics": [{"name": "latency", "type": "latency", "sub_types": [{"name": "avg"}]}]}
    lm = {"type": "LMEvaluator", "tasks": ["mmlu"]}
    doc, report = run(base_config(evaluators={"common": ev, "lm": lm}, evaluator="lm"))
    assert "no `evaluator` names it" in report["evaluators.common"]
    assert "lm-eval" in report["evaluators.lm"] and "evaluator" in report
    assert [n for n in doc["nodes"]] == ["mb"]  # nothing to evaluate with


def test_evaluators_become_evaluate_nodes_with_goals():
    ev = {"metrics": [
        {"name": "lat", "type": "latency", "sub_types": [
            {"name": "avg", "priority": 1, "goal": {"type": "percent-max-degradation", "value": 20}},
            {"name": "p99"}], "user_config": {"warmup_num": 2, "repeat_test_num": 7, "io_bind": True}},
        {"name": "size", "type": "size_on_disk", "sub_types": [{"name": "bytes", "goal": {"type": "threshold",
                                                                                          "value": 1e9}}]},
        {"name": "acc", "type": "accuracy", "sub_types": [{"name": "accuracy_score"}]}]}
    doc, report = run(base_config(evaluators={"common": ev}, evaluator="common"))
    nodes = doc["nodes"]
    assert nodes["eval"] == {"kind": "evaluate", "input": "mb", "metrics": ["latency", "size"],
                             "latency": {"warmup": 2, "repeat": 7},
                             "goals": {"latency_avg": {"type": "percent-max-degradation", "value": 20,
                                                       "baseline": "eval-phi-3-5-mini-instruct"},
                                       "size": {"type": "threshold", "value": 1e9}}}
    # Olive evaluates the input model too (evaluate_input_model defaults to true): the relative goal's baseline
    assert nodes["eval-phi-3-5-mini-instruct"] == {"kind": "evaluate", "input": "phi-3-5-mini-instruct",
                                                   "metrics": ["latency", "size"], "latency": {"warmup": 2, "repeat": 7}}
    # exactly what is not carried
    assert set(report) == {"evaluators.common.metrics[lat].sub_types[p99]",
                           "evaluators.common.metrics[lat].user_config.io_bind", "evaluators.common.metrics[acc]"}
    assert "classification" in report["evaluators.common.metrics[acc]"] or "integer" in \
        report["evaluators.common.metrics[acc]"]


def test_a_search_space_becomes_a_matrix_and_a_select_node():
    ev = {"metrics": [{"name": "size", "type": "size_on_disk", "sub_types": [{"name": "bytes", "priority": 1}]},
                      {"name": "tp", "type": "throughput", "sub_types": [
                          {"name": "avg", "priority": 2, "goal": {"type": "min-improvement", "value": 1}}]}]}
    search = {"olive_parameter_type": "SearchParameter", "type": "Categorical", "support": ["int4", "fp32"]}
    doc, report = run(base_config(evaluators={"e": ev}, evaluator="e", evaluate_input_model=False,
                                  search_strategy={"execution_order": "joint", "sampler": "tpe", "max_iter": 4},
                                  passes={"mb": {"type": "ModelBuilder", "precision": search}}))
    nodes = doc["nodes"]
    assert nodes["mb"]["matrix"] == {"precision": ["int4", "fp32"]} and "params" not in nodes["mb"]
    assert nodes["best"] == {"kind": "select", "input": "eval", "minimize": "size",
                             "constraints": {"throughput": {"type": "min-improvement", "value": 1,
                                                            "baseline": "eval-phi-3-5-mini-instruct"}}}
    assert "goals" not in nodes["eval"]  # a variant that misses a goal is left out, not failed
    assert set(report) == {"search_strategy.sampler", "search_strategy.max_iter"}
    # alternatives of one pass that form a grid are the same search space
    doc, report = run(base_config(search_strategy=True, passes={"mb": [
        {"type": "ModelBuilder", "precision": "int4"}, {"type": "ModelBuilder", "precision": "fp32"}]}))
    assert doc["nodes"]["mb"]["matrix"] == {"precision": ["int4", "fp32"]}
    assert "nothing selects" in report["search_strategy"]


def test_multiple_accelerators_and_providers_are_reported():
    systems = {"local": {"type": "LocalSystem", "accelerators": [
        {"device": "gpu", "execution_providers": ["CUDAExecutionProvider", "TensorrtExecutionProvider"]},
        {"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}]}}
    doc, report = run(base_config(systems=systems, host="local", target="local"))
    assert "systems.local.accelerators" in report and "first is imported" in report["systems.local.accelerators"]
    assert "systems.local.accelerators[0].execution_providers" in report
    assert doc["defaults"] == {"device": "gpu"}  # the first accelerator, its first provider (gpu's default)


def test_device_comes_from_the_target_and_is_inferred_from_the_provider():
    systems = {"host": {"type": "LocalSystem", "accelerators": [{"device": "cpu"}]},
               "npu": {"type": "LocalSystem", "accelerators": [{"execution_providers": ["QNNExecutionProvider"]}]}}
    doc, report = run(base_config(systems=systems, host="host", target="npu"))
    assert doc["defaults"] == {"device": "npu"}
    assert "systems.host.accelerators" in report  # the host's own accelerator is not what runs
    doc, _ = run(base_config(systems={"s": {"type": "LocalSystem", "accelerators": [
        {"device": "gpu", "execution_providers": ["DmlExecutionProvider"]}]}}, target="s"))
    assert doc["defaults"] == {"device": "gpu", "provider": "DmlExecutionProvider"}
    _, report = run(base_config(systems={"s": {"type": "LocalSystem", "accelerators": [
        {"execution_providers": ["DmlExecutionProvider"]}]}}, target="s"))
    assert "systems.s.accelerators[0].device" in report  # Dml runs on gpu and npu: Olive asks too


@pytest.mark.parametrize("system, path", [
    ({"type": "AzureML", "aml_compute": "gpu-cluster", "accelerators": [{"device": "gpu"}]}, "systems.s.type"),
    ({"type": "Docker", "config": {"image_name": "olive", "accelerators": [{"device": "cpu"}]}}, "systems.s.image_name"),
    ({"type": "PythonEnvironment", "python_environment_path": "/env/bin"}, "systems.s.python_environment_path"),
])
def test_other_systems_are_reported(system, path):
    _, report = run(base_config(systems={"s": system}, host="s", target="s"))
    assert path in report and "systems.s.type" in report


def test_unused_systems_are_reported():
    _, report = run(base_config(systems={"spare": {"type": "LocalSystem"}}))
    assert "systems.spare" in report


def test_user_script_without_its_file_is_reported(tmp_path):
    cfg = base_config(passes={"q": {"type": "OnnxStaticQuantization", "user_script": "user_script.py"}})
    doc, report = run(cfg, tmp_path)
    assert "passes.q.user_script" in report and "does not exist" in report["passes.q.user_script"]
    assert "params" not in doc["nodes"]["q"]
    write(tmp_path / "user_script.py", "")
    doc, report = run(cfg, tmp_path)
    assert report == {}
    # kept, absolute: olivepipe's workers do not run in the config's folder
    assert doc["nodes"]["q"]["params"] == {"user_script": str(tmp_path / "user_script.py")}


def test_data_config_user_script_and_custom_components_are_reported():
    custom = {"name": "codes", "type": "HuggingfaceContainer", "user_script": "user_script.py",
              "load_dataset_config": {"type": "tiny_code_dataset", "params": {"data_name": "nampdn-ai/tiny-codes"}}}
    cfg = lora_config(data=[custom])
    cfg["passes"]["f"]["train_data_config"] = "codes"
    doc, report = run(cfg)
    assert "data_configs[codes].user_script" in report
    assert "data_configs[codes].load_dataset_config.type" in report
    assert "passes.f.train_data_config" in report and "data" not in doc["nodes"]["f"]
    assert "data_configs[train]" in report  # no pass reads it now


def test_dummy_data_container_is_reported_and_the_node_loses_its_data(tmp_path):
    cfg = base_config(data_configs=[{"name": "dummy", "type": "TransformersPromptDummyDataContainer"}],
                      passes={"t": {"type": "OrtSessionParamsTuning", "data_config": "dummy"}})
    doc, report = run(cfg)
    assert "data_configs[dummy].type" in report and "passes.t.data_config" in report
    assert "data" not in doc["nodes"]["t"] and "datasets" not in doc


def test_eval_data_config_is_reported():
    cfg = lora_config(data=[{"name": "ev", "load_dataset_config": {"data_name": "json", "data_files": "e.jsonl"}}])
    cfg["passes"]["f"]["eval_data_config"] = "ev"
    doc, report = run(cfg)
    assert "passes.f.eval_data_config" in report
    assert "data_configs[ev]" not in report  # named by a pass: reported there, once
    assert list(doc["datasets"]) == ["train"]


def test_output_locations_are_reported_and_left_out():
    cfg = lora_config()
    cfg["passes"]["f"]["training_args"] = {"max_steps": 4, "output_dir": "ckpt", "logging_dir": "logs"}
    doc, report = run(cfg)
    assert {"passes.f.training_args.output_dir", "passes.f.training_args.logging_dir"} <= set(report)
    assert doc["nodes"]["f"]["params"]["training_args"] == {"max_steps": 4}


def test_search_values_and_alternatives_and_pass_level_host_are_reported():
    cfg = base_config(passes={
        "mb": [{"type": "ModelBuilder", "precision": "int4"}, {"type": "ModelBuilder", "precision": "fp16"}],
        "q": {"type": "OnnxDynamicQuantization", "per_channel": "SEARCHABLE_VALUES", "reduce_range": "DEFAULT_VALUE",
              "host": "other", "evaluator": "e"}})
    doc, report = run(cfg)
    assert "2 alternative configs" in report["passes.mb"]
    assert {"passes.q.per_channel", "passes.q.host", "passes.q.evaluator"} <= set(report)
    assert "passes.q.reduce_range" not in report  # DEFAULT_VALUE: Olive's default, which writing nothing gives
    assert doc["nodes"]["mb"]["params"] == {"precision": "int4"} and "params" not in doc["nodes"]["q"]


@pytest.mark.parametrize("model, path", [
    ({"adapter_path": "adapter"}, "input_model.adapter_path"),
    ({"task": "text-generation"}, "input_model.task"),
    ({"io_config": {"input_names": ["input_ids"]}}, "input_model.io_config"),
])
def test_model_settings_olivepipe_lacks_are_reported(model, path):
    cfg = base_config()
    cfg["input_model"].update(model)
    _, report = run(cfg)
    assert path in report, report


@pytest.mark.parametrize("model, message", [
    ({"task": "text-classification"}, "input_model.task 'text-classification'"),  # BERT: would load for generation
    ({"load_kwargs": {"attn_implementation": "flex"}}, "attn_implementation 'flex'"),
    ({"load_kwargs": {"device_map": "auto", "quantization_config": {}}}, "device_map, quantization_config"),
    ({"load_kwargs": {"torch_dtype": "float8"}}, "torch_dtype 'float8'"),
])
def test_model_settings_that_would_change_the_model_refuse_the_import(model, message, tmp_path):
    cfg = base_config()
    cfg["input_model"].update(model)
    with pytest.raises(ImportConfigError) as e:
        run(cfg)
    assert message in e.value.message and e.value.exit_code == 2
    src = write(tmp_path / "bert.json", json.dumps(cfg))
    r = cli("import", src)
    assert r.returncode == 2 and message in r.stderr and not (tmp_path / "bert.yaml").exists()


def test_torch_dtype_is_kept():
    cfg = base_config()
    cfg["input_model"]["load_kwargs"] = {"torch_dtype": "float16"}
    doc, report = run(cfg)
    assert doc["models"]["phi-3-5-mini-instruct"]["load_kwargs"] == {"torch_dtype": "float16"} and report == {}


def test_model_translation():
    cfg = base_config(input_model={"type": "HfModel", "config": {
        "model_path": "microsoft/Phi-3.5-mini-instruct",
        "load_kwargs": {"trust_remote_code": True, "revision": "abc123", "attn_implementation": "sdpa"}}})
    doc, report = run(cfg)
    assert report == {}
    assert doc["models"] == {"phi-3-5-mini-instruct": {"hf": "microsoft/Phi-3.5-mini-instruct", "revision": "abc123",
                                                       "trust_remote_code": True,
                                                       "load_kwargs": {"attn_implementation": "sdpa"}}}


def test_local_model_paths_are_relative_to_the_workflow(tmp_path):
    write(tmp_path / "cfg" / "models" / "base" / "config.json", "{}")
    cfg = base_config(input_model={"type": "HfModel", "model_path": "models/base"})
    t = translate(cfg, source_dir=tmp_path / "cfg", out_dir=tmp_path / "wf")
    assert t.doc["models"] == {"base": {"path": "../cfg/models/base"}}
    cfg = base_config(input_model={"type": "ONNXModel", "model_path": "models/model.onnx"})
    assert run(cfg)[0]["models"] == {"model": {"path": "models/model.onnx"}}


def test_training_without_attention_setting_is_reported():
    cfg = lora_config()
    del cfg["input_model"]["load_kwargs"]
    _, report = run(cfg)
    assert "eager" in report["input_model.load_kwargs.attn_implementation"]


@pytest.mark.parametrize("load, pre, path", [
    ({"data_name": "json", "data_files": {"train": "a.jsonl"}}, {}, "data_configs[train].load_dataset_config.data_files"),
    ({"data_name": "json", "data_files": "a.jsonl"}, {}, "data_configs[train].load_dataset_config.split"),
    ({"data_name": "json", "data_files": "a.jsonl", "split": "train[10:20]"}, {}, "data_configs[train].load_dataset_config.split"),
    ({"data_name": "text", "data_files": "a.txt", "split": "train"}, {}, "data_configs[train].load_dataset_config.data_name"),
    ({"data_name": "nampdn-ai/tiny-codes", "split": "train", "col_filters": {"programming_language": "Python"}}, {},
     "data_configs[train].load_dataset_config.col_filters"),
    (None, {"text_template": None, "text_cols": ["phrase", "tone"]}, "data_configs[train].pre_process_data_config.text_cols"),
    (None, {"text_cols": ["phrase"]}, "data_configs[train].pre_process_data_config.text_cols"),
    (None, {"strategy": "line-by-line"}, "data_configs[train].pre_process_data_config.strategy"),
    (None, {"chat_template": True}, "data_configs[train].pre_process_data_config.chat_template"),
    (None, {"max_samples": None}, "data_configs[train].pre_process_data_config.max_samples"),
    (None, {"model_name": "other/model"}, "data_configs[train].pre_process_data_config.model_name"),
])
def test_data_config_features_olivepipe_lacks_are_reported(load, pre, path):
    _, report = run(lora_config(load=load, pre=pre))
    assert path in report, report


def test_data_config_translation():
    load = {"params": {"data_name": "wikitext", "subset": "wikitext-2-raw-v1"}}
    pre = {"text_template": None, "text_cols": "body", "max_seq_len": 512, "strategy": "join", "chat_template": False,
           "model_name": "microsoft/Phi-3.5-mini-instruct"}
    cfg = lora_config(load=load, pre=pre)
    cfg["data_configs"][0]["dataloader_config"] = {"batch_size": 1}
    doc, report = run(cfg)
    assert report == {}
    # Olive's defaults where olivepipe's differ: split validation, special tokens added
    assert doc["datasets"]["train"] == {"hf": "wikitext", "subset": "wikitext-2-raw-v1", "split": "validation",
                                        "text_field": "body", "max_seq_len": 512, "max_samples": 16,
                                        "add_special_tokens": True}
    doc, _ = run(lora_config(load={"data_name": "json", "data_files": ["a.json", "b.txt"], "split": "train[:50]"}))
    assert doc["datasets"]["train"]["files"] == ["a.json", "b.txt"]
    assert doc["datasets"]["train"]["limit"] == 50 and doc["datasets"]["train"]["format"] == "json"


def test_alias_is_used_only_where_it_means_the_same():
    doc, _ = run(base_config(passes={"q": {"type": "OnnxBlockWiseRtnQuantization"}}))
    assert doc["nodes"]["q"]["pass"] == "OnnxBlockWiseRtnQuantization"  # the alias would exclude /lm_head/MatMul
    doc, _ = run(base_config(passes={"q": {"type": "onnxblockwisertnquantization", "nodes_to_exclude": []}}))
    assert doc["nodes"]["q"]["pass"] == "onnx-int4"
    doc, _ = run(base_config(passes={"c": {"type": "onnxconversion"}, "l": {"type": "qlora"}, "x": {"type": "OnnxPeepholeOptimizer"}}))
    assert [n["pass"] for n in doc["nodes"].values()] == ["OnnxConversion", "qlora", "OnnxPeepholeOptimizer"]


def test_nested_shapes_import_like_flat_ones():
    GPU = {"device": "gpu", "execution_providers": ["CUDAExecutionProvider"]}
    flat_cfg = lora_config(host="local", target="local", output_dir="out",
                           systems={"local": {"type": "LocalSystem", "accelerators": [GPU]}})
    nested = json.loads(json.dumps(flat_cfg))
    nested["input_model"] = {"type": "HfModel", "config": flat_cfg["input_model"]}
    nested["systems"]["local"] = {"type": "LocalSystem", "config": {"accelerators": [GPU]}}
    nested["passes"]["f"] = {"type": "LoRA", "config": {k: v for k, v in flat_cfg["passes"]["f"].items() if k != "type"}}
    dc = nested["data_configs"][0]
    dc["load_dataset_config"] = {"params": dc["load_dataset_config"]}
    dc["pre_process_data_config"] = {"params": dc["pre_process_data_config"]}
    nested["engine"] = {k: nested.pop(k) for k in ("host", "target", "output_dir")}
    a, b = run(flat_cfg), run(nested)
    assert a[0] == b[0]
    assert set(a[1]) == {"output_dir"} and set(b[1]) == {"engine.output_dir"}


def test_names_are_olivepipe_names():
    cfg = base_config(workflow_id="3 my workflow!", passes={"1st pass": {"type": "ModelBuilder", "precision": "int4"},
                                                            "phi-3-5-mini-instruct": {"type": "ExtractAdapters"}})
    doc, _ = run(cfg)
    assert doc["name"] == "imported-3-my-workflow"
    assert list(doc["nodes"]) == ["pass-1st-pass", "phi-3-5-mini-instruct"]
    # the model gives way to a pass of the same name
    assert list(doc["models"]) == ["phi-3-5-mini-instruct-model"]
    assert doc["nodes"]["pass-1st-pass"]["input"] == "phi-3-5-mini-instruct-model"
    with pytest.raises(ImportConfigError):
        run(base_config(), name="no spaces")


@pytest.mark.parametrize("model", [
    {"type": "PyTorchModel", "config": {"hf_config": {"model_name": "microsoft/Phi-3-mini-4k-instruct"}}},
    {"type": "HfModel", "model_path": {"type": "azureml_registry_model", "config": {"name": "phi"}}},
    {"type": "ONNXModel", "model_path": "models/onnx-folder"},
])
def test_models_that_cannot_be_imported_are_errors(model):
    with pytest.raises(ImportConfigError) as e:
        run(base_config(input_model=model))
    assert e.value.exit_code == 2


# -- the tables against the installed Olive -------------------------------------------------

def test_text_gen_defaults_are_olives():
    from olive.data.component.text_generation import TextGenParams

    olive = {k: f.default for k, f in TextGenParams.model_fields.items()}
    assert {k: (v.value if hasattr(v, "value") else v) for k, v in olive.items()} == importer.TEXT_GEN_DEFAULTS


def test_provider_devices_are_olives():
    from olive.hardware.accelerator import AcceleratorLookup
    from olive.hardware.constants import ExecutionProvider

    for ep in ExecutionProvider:
        try:
            olive = AcceleratorLookup.infer_single_device_from_execution_providers([ep.value])
        except AssertionError:  # Olive cannot tell either: it asks for the device
            olive = None
        assert importer.EP_DEVICE.get(ep.value) == olive, ep


def test_dataset_and_task_defaults_are_olives():
    from olive.common.constants import DEFAULT_HF_TASK
    from olive.data.component.dataloader import default_dataloader
    from olive.data.component.load_dataset import huggingface_dataset

    assert inspect.signature(huggingface_dataset).parameters["split"].default == importer.OLIVE_DEFAULT_SPLIT
    assert inspect.signature(default_dataloader).parameters["batch_size"].default == importer.DATALOADER_DEFAULTS["batch_size"]
    assert DEFAULT_HF_TASK == importer.DEFAULT_HF_TASK


def test_run_config_keys_are_olives():
    from olive.workflows.run.config import RunConfig, RunEngineConfig

    assert set(RunConfig.model_fields) == set(importer.RUN_CONFIG_KEYS)
    known = importer.ENGINE_IGNORED | set(importer.ENGINE_WHY) | {"host", "target"}
    assert set(RunEngineConfig.model_fields) == known | {"evaluator"}, "every engine option has a decision"


# -- the command ------------------------------------------------------------------------

@pytest.fixture
def travel(tmp_path):
    return staged(tmp_path, CONFIGS / "olive-finetune-travel.json")


def test_cli_writes_next_to_the_config_and_reports(travel):
    p = cli("import", travel)
    out = travel.with_suffix(".yaml")
    assert p.returncode == 0, p.stderr
    assert "not translated (2):" in p.stderr and "  - output_dir: " in p.stderr
    assert p.stdout.strip() == f"wrote {out} (1 node)"
    text = out.read_text()
    assert text.startswith(f"# Imported from {travel} by `olivepipe import`")
    assert cli("validate", out).returncode == 0
    assert cli("fmt", "--check", out).returncode == 0


def test_cli_never_overwrites_without_force(travel):
    out = travel.with_suffix(".yaml")
    out.write_text("mine\n")
    p = cli("import", travel)
    assert p.returncode == 1 and "exists; not overwritten" in p.stderr and "--force" in p.stderr
    assert out.read_text() == "mine\n"
    p = cli("import", travel, "--force")
    assert p.returncode == 0, p.stderr
    assert yaml.safe_load(out.read_text())["nodes"]["f"]["pass"] == "lora"
    assert not [f for f in os.listdir(out.parent) if f.endswith(".tmp")]


def test_cli_output_and_name_options(travel):
    out = travel.parent / "pipelines" / "lab.yaml"
    p = cli("import", travel, "-o", out, "--name", "lab")
    assert p.returncode == 1 and "no such folder" in p.stderr
    out.parent.mkdir()
    p = cli("import", travel, "-o", out, "--name", "lab")
    assert p.returncode == 0, p.stderr
    doc = yaml.safe_load(out.read_text())
    assert doc["name"] == "lab" and doc["datasets"]["train_data"]["files"] == "../data/data_sample_travel.jsonl"
    assert cli("validate", out).returncode == 0
    p = cli("import", travel, "-o", "-")
    assert p.returncode == 0 and yaml.safe_load(p.stdout)["name"] == "olive-finetune-travel"
    assert not travel.with_suffix(".yaml").exists()
    assert cli("import", travel, "--name", "not a name").returncode == 2


def test_cli_refuses_an_invalid_result_unless_forced(tmp_path):
    src = staged(tmp_path, REFUSED)
    out = src.with_suffix(".yaml")
    p = cli("import", src)
    assert p.returncode == 2
    assert "OnnxConversion fails on phi3 and llama" in p.stderr and "not written" in p.stderr
    assert not out.exists()
    p = cli("import", src, "--force")
    assert p.returncode == 2 and "which does not validate" in p.stdout
    text = out.read_text()
    assert "# Does not validate (1 problem); written with --force:" in text
    v = cli("validate", out)
    assert v.returncode == 2
    # the problem printed at import is located where it is in the written file
    located = [line.split(": ")[0] for line in p.stderr.splitlines() if line.startswith(f"{out}:")]
    assert located and all(f"{loc}: " in v.stderr for loc in located), (p.stderr, v.stderr)


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"passes": {}}', "not an Olive workflow config"),
    ('{"input_model": {"type": "PyTorchModel", "config": {"hf_config": {"model_name": "m"}}}, "passes": {}}',
     "cannot be imported"),
])
def test_cli_rejects_what_is_no_importable_config(tmp_path, content, message):
    f = write(tmp_path / "c.json", content)
    p = cli("import", f)
    assert p.returncode == 2 and message in p.stderr, p.stderr
    assert not (tmp_path / "c.yaml").exists()
    assert "Traceback" not in p.stderr


def test_cli_refuses_to_overwrite_its_own_input(tmp_path):
    f = write(tmp_path / "olive.yaml", yaml.safe_dump(base_config()))  # `olive run` reads YAML too
    p = cli("import", f, "--force")
    assert p.returncode == 1 and "the default output would be the config itself" in p.stderr
    p = cli("import", f, "-o", f, "--force")
    assert p.returncode == 1 and "is the config being imported" in p.stderr
    assert yaml.safe_load(f.read_text()) == base_config()
    p = cli("import", f, "-o", tmp_path / "workflow.yaml")
    assert p.returncode == 0, p.stderr


def test_invalid_results_still_carry_their_report(tmp_path):
    src = staged(tmp_path, REFUSED)
    result = import_config(src, src.with_suffix(".yaml"))
    assert not result.valid and result.report
    with pytest.raises(SpecError):
        format_text(result.text, "x.yaml", src.parent)
    assert "#   - passes.f.eval_data_config: " in result.text
