"""olivepipe/olive/gptq_shim.py on a CPU: detection, idempotence, nothing patched where nothing
is needed, and each fix skipped where its target already behaves. gptqmodel itself is absent
here: fake modules stand in for it; transformers and peft are the real, pinned ones."""
from __future__ import annotations

import json
import sys
import types

import pytest

from olivepipe.olive import gptq_shim as shim
from olivepipe.olive import passes
from olivepipe.olive.runner import _pass_types, input_model_path

AWQ_QC = {"bits": 4, "group_size": 128, "quant_method": "awq", "version": "gemm", "zero_point": True}


def folder(tmp_path, name, config):
    d = tmp_path / name
    d.mkdir()
    if config is not None:
        (d / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    return str(d)


@pytest.fixture
def no_gptqmodel(monkeypatch):
    """gptqmodel neither imported nor importable, whatever this machine has."""
    real = shim._installed
    monkeypatch.setattr(shim, "_installed", lambda n: False if n == "gptqmodel" else real(n))
    monkeypatch.delitem(sys.modules, "gptqmodel", raising=False)


@pytest.fixture
def gptqmodel_installed(monkeypatch):
    real = shim._installed
    monkeypatch.setattr(shim, "_installed", lambda n: True if n == "gptqmodel" else real(n))


def snapshot():
    """What the fixes touch, to prove a call left it alone."""
    from peft import import_utils as piu
    from transformers.utils import hub
    from transformers.utils.quantization_config import AwqConfig

    return ({n: getattr(hub, n, None) for n in shim.HUB_NAMES}, AwqConfig.post_init,
            {m: getattr(sys.modules.get(m), "is_gptqmodel_available", None) for m in shim.PEFT_USERS},
            piu.is_gptqmodel_available, "gptqmodel" in sys.modules)


# -- detection ------------------------------------------------------------------------------
def test_detects_awq_checkpoints_from_config_json(tmp_path):
    awq = folder(tmp_path, "awq", {"model_type": "phi3", "quantization_config": AWQ_QC})
    upper = folder(tmp_path, "upper", {"quantization_config": {**AWQ_QC, "quant_method": "AWQ"}})
    gptq = folder(tmp_path, "gptq", {"quantization_config": {"quant_method": "gptq", "bits": 4}})
    plain = folder(tmp_path, "plain", {"model_type": "phi3"})
    assert shim.is_awq_checkpoint(awq) and shim.is_awq_checkpoint(upper)
    assert shim.quant_method(gptq) == "gptq" and not shim.is_awq_checkpoint(gptq)
    for p in (plain, folder(tmp_path, "none", None), folder(tmp_path, "bad", "{not json"),
              folder(tmp_path, "list", "[1, 2]"), folder(tmp_path, "qc", {"quantization_config": "awq"}),
              folder(tmp_path, "qm", {"quantization_config": {"quant_method": 4}}),
              str(tmp_path / "missing"), None, ""):
        assert not shim.is_awq_checkpoint(p), p


def test_input_model_path_flat_and_nested():
    assert input_model_path({"input_model": {"type": "HfModel", "model_path": "/m"}}) == "/m"
    assert input_model_path({"input_model": {"type": "HfModel", "config": {"model_path": "/n"}}}) == "/n"
    assert input_model_path({"input_model": {"type": "HfModel", "model_path": {"x": 1}}}) is None
    assert input_model_path({}) is None and input_model_path({"input_model": None}) is None
    assert _pass_types({"passes": {"finetune": {"type": "LoRA"}, "x": "odd"}}) == ["LoRA"]


# -- nothing where nothing is needed ------------------------------------------------------
def test_non_awq_input_without_gptqmodel_patches_nothing(tmp_path, no_gptqmodel):
    before = snapshot()
    plain = folder(tmp_path, "plain", {"model_type": "phi3"})
    assert shim.prepare_for(plain) == []
    assert shim.prepare_for(plain, pass_types=["LoRA"]) == []
    assert shim.prepare_for(None) == []
    assert snapshot() == before


def test_awq_input_without_gptqmodel_says_so_and_patches_nothing(tmp_path, no_gptqmodel):
    before = snapshot()
    awq = folder(tmp_path, "awq", {"quantization_config": AWQ_QC})
    notes = shim.prepare_for(awq, pass_types=["LoRA"])
    assert len(notes) == 1 and "gptqmodel is not installed" in notes[0]
    assert snapshot() == before


def test_extract_adapters_needs_no_fix(tmp_path, gptqmodel_installed, monkeypatch):
    monkeypatch.setattr(shim, "FIXES", (lambda: pytest.fail("no fix may run"),))
    monkeypatch.setattr(shim, "GPTQMODEL_FIXES", shim.FIXES)
    awq = folder(tmp_path, "awq", {"quantization_config": AWQ_QC})
    assert shim.prepare_for(awq, pass_types=["ExtractAdapters"]) == []


def test_which_fixes_run_and_a_failing_fix_is_reported(tmp_path, gptqmodel_installed, monkeypatch):
    ran = []

    def fix(name, note=None, boom=False):
        def f():
            ran.append(name)
            if boom:
                raise RuntimeError("kaboom\nsecond line")
            return note
        f.__name__ = name
        return f

    monkeypatch.setattr(shim, "FIXES", (fix("a", "A"), fix("b", boom=True), fix("c"), fix("d", "D")))
    monkeypatch.setattr(shim, "GPTQMODEL_FIXES", (fix("p", "P"),))
    awq = folder(tmp_path, "awq", {"quantization_config": AWQ_QC})
    assert shim.prepare_for(awq, pass_types=["LoRA"]) == ["A", "b failed: RuntimeError: kaboom", "D"]
    assert ran == ["a", "b", "c", "d"]
    ran.clear()
    # a plain model while gptqmodel is installed: only what peft's gptqmodel check needs
    assert shim.prepare_for(folder(tmp_path, "plain", {}), pass_types=["ModelBuilder"]) == ["P"]
    assert ran == ["p"]


# -- fix 1: transformers.utils.hub names ----------------------------------------------------
@pytest.fixture
def hub_without_names(monkeypatch):
    """transformers.utils.hub as transformers 5.17+ has it: no create_repo, no list_repo_tree."""
    from transformers.utils import hub

    for n in ("create_repo", "list_repo_tree"):
        monkeypatch.setattr(hub, n, None, raising=False)
        monkeypatch.delattr(hub, n)  # undone: back to whatever this transformers has
    monkeypatch.delitem(sys.modules, "gptqmodel", raising=False)
    return hub


def test_hub_fix_aliases_huggingface_hub_and_is_idempotent(hub_without_names):
    import huggingface_hub

    note = shim.fix_hub_names()
    assert note and "create_repo" in note and "list_repo_tree" in note
    assert hub_without_names.create_repo is huggingface_hub.create_repo
    assert hub_without_names.list_repo_tree is huggingface_hub.list_repo_tree
    assert shim.fix_hub_names() is None  # nothing missing any more


def test_hub_fix_skipped_when_names_exist_or_gptqmodel_is_imported(hub_without_names, monkeypatch):
    for n in ("create_repo", "list_repo_tree"):
        monkeypatch.setattr(hub_without_names, n, object(), raising=False)
    assert shim.fix_hub_names() is None
    monkeypatch.delattr(hub_without_names, "create_repo")
    monkeypatch.setitem(sys.modules, "gptqmodel", types.ModuleType("gptqmodel"))
    assert shim.fix_hub_names() is None and not hasattr(hub_without_names, "create_repo")


# -- fixes 2 and 3: early import, banner off stdout ----------------------------------------
FAKE_GPTQMODEL = '''
import sys, torch
__version__ = "6.0.3"
print("GPT-QModel banner")
# as gptqmodel 6.0.3's nn_modules/exllamav3_torch.py: fails under the meta device
HALF = float(torch.tensor([15360], dtype=torch.uint16).view(torch.float16).item())
'''


@pytest.fixture
def fake_gptqmodel(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "gptqmodel"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(FAKE_GPTQMODEL)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(sys.modules, "gptqmodel", None)
    monkeypatch.delitem(sys.modules, "gptqmodel")  # undone: gptqmodel not imported afterwards


def test_early_import_keeps_the_banner_off_stdout(fake_gptqmodel, capfd):
    note = shim.import_gptqmodel_early()
    assert note and "6.0.3" in note
    assert sys.modules["gptqmodel"].HALF == 1.0
    out, err = capfd.readouterr()
    assert "banner" not in out and "GPT-QModel banner" in err
    assert shim.import_gptqmodel_early() is None  # already imported: skipped


def test_early_import_never_runs_under_the_meta_device(fake_gptqmodel):
    import torch

    torch.set_default_device("meta")
    try:
        assert shim.import_gptqmodel_early()
    finally:
        torch.set_default_device(None)
    assert sys.modules["gptqmodel"].HALF == 1.0


# -- fix 4: AWQ backend ----------------------------------------------------------------------
@pytest.fixture
def awq_config(monkeypatch):
    from transformers.utils.quantization_config import AwqConfig

    monkeypatch.setattr(AwqConfig, "post_init", AwqConfig.post_init)  # undone after the test
    return AwqConfig


def test_backend_choice(monkeypatch):
    have = set()
    monkeypatch.setattr(shim, "_installed", lambda n: n in have)
    monkeypatch.setattr(shim, "_cuda", lambda: True)
    assert shim._awq_backend_choice() == "torch_awq"  # no triton: auto would die in its validate_once
    have.add("triton")
    assert shim._awq_backend_choice() == "gemm_triton"  # no compiled exllama kernels
    have.add(shim.AWQ_KERNEL_EXT)
    assert shim._awq_backend_choice() is None  # a CUDA build: auto works
    have.discard(shim.AWQ_KERNEL_EXT)
    monkeypatch.setattr(shim, "_cuda", lambda: False)
    assert shim._awq_backend_choice() is None  # CPU with triton: auto picks a torch kernel


def test_backend_fix_changes_only_auto_and_is_idempotent(awq_config, monkeypatch):
    monkeypatch.setattr(shim, "_awq_backend_choice", lambda: "gemm_triton")
    original = awq_config.post_init
    note = shim.fix_awq_backend()
    assert note and "gemm_triton" in note
    assert awq_config(bits=4, group_size=128).backend == "gemm_triton"
    assert awq_config.from_dict(dict(AWQ_QC)).backend == "gemm_triton"  # as from a checkpoint's config.json
    assert awq_config(bits=4, group_size=128, backend="torch_awq").backend == "torch_awq"  # explicit: kept
    patched = awq_config.post_init
    assert shim.fix_awq_backend() is None and awq_config.post_init is patched
    assert patched.__wrapped__ is original


def test_backend_fix_skipped_where_auto_works(awq_config, monkeypatch):
    monkeypatch.setattr(shim, "_awq_backend_choice", lambda: None)
    original = awq_config.post_init
    assert shim.fix_awq_backend() is None
    assert awq_config.post_init is original and awq_config(bits=4).backend == "auto"


# -- fix 5: peft's gptqmodel version check -------------------------------------------------
@pytest.fixture
def peft_refusing(monkeypatch, gptqmodel_installed):
    """peft 0.21 with gptqmodel 6.0.3 installed: its check raises, in every module that imported it."""
    import importlib

    def refuse():
        raise ImportError("Found an incompatible version of gptqmodel. Found version `6.0.3`, "
                          "but only versions `7.0.0` or higher are supported")

    mods = [importlib.import_module(m) for m in shim.PEFT_USERS]
    for m in mods:
        monkeypatch.setattr(m, "is_gptqmodel_available", refuse)
    return mods


def test_peft_fix_bypasses_the_version_check_everywhere_and_is_idempotent(peft_refusing):
    note = shim.fix_peft_version_check()
    assert note and "7.0.0" in note and all(m in note for m in shim.PEFT_USERS)
    assert all(m.is_gptqmodel_available is shim._gptqmodel_importable for m in peft_refusing)
    assert peft_refusing[0].is_gptqmodel_available() is True
    assert shim.fix_peft_version_check() is None


def test_peft_fix_skipped_when_peft_accepts_or_gptqmodel_is_absent(peft_refusing, monkeypatch):
    ok = lambda: True  # a fixed peft (or gptqmodel >= 7 with optimum)
    for m in peft_refusing:
        monkeypatch.setattr(m, "is_gptqmodel_available", ok)
    assert shim.fix_peft_version_check() is None
    assert all(m.is_gptqmodel_available is ok for m in peft_refusing)
    absent = lambda: False  # peft's answer when gptqmodel is not installed
    for m in peft_refusing:
        monkeypatch.setattr(m, "is_gptqmodel_available", absent)
    assert shim.fix_peft_version_check() is None
    assert all(m.is_gptqmodel_available is absent for m in peft_refusing)


def test_the_real_peft_here_is_left_alone(no_gptqmodel):
    """This machine's peft and no gptqmodel: its check answers False, nothing to bypass."""
    import peft.import_utils as piu

    before = piu.is_gptqmodel_available
    assert shim.fix_peft_version_check() is None and piu.is_gptqmodel_available is before


# -- passes.py tables -----------------------------------------------------------------------
def test_awq_lora_is_incompatible_only_without_gptqmodel():
    why = passes.incompatibility("AutoAWQQuantizer", "LoRA", installed=lambda p: False)
    assert why and "gptqmodel" in why
    assert passes.incompatibility("AutoAWQQuantizer", "LoRA", installed=lambda p: p == "gptqmodel") is None
    assert passes.input_needs("AutoAWQQuantizer", "LoRA") == ("gptqmodel",)
    # gptqmodel does not help these: peft has no AWQ DoRA/LoHa/LoKr layer
    for t in ("DoRA", "LoHa", "LoKr", "QLoRA"):
        assert passes.incompatibility("AutoAWQQuantizer", t, installed=lambda p: True), t
        assert passes.input_needs("AutoAWQQuantizer", t) == ()
    assert passes.incompatibility("Rtn", "LoRA", installed=lambda p: True)
    assert passes.incompatibility("LoRA", "ModelBuilder") is None


def test_model_builder_after_lora_on_awq_names_the_genai_failure_and_the_route():
    why = passes.chain_incompatibility("AutoAWQQuantizer", "LoRA", "ModelBuilder")
    assert "'AWQModel' object has no attribute 'named_modules'" in why
    assert "kind: dequantize" in why and "0.18.0" in why
    assert passes.chain_incompatibility(None, "LoRA", "ModelBuilder") is None
