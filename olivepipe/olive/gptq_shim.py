"""Runtime fixes that let LoRA train on an AWQ checkpoint in this stack.

transformers 5 loads AWQ checkpoints only through `gptqmodel`. The gptqmodel that runs
with torch 2.11 / transformers 5.17 (6.0.3, source-only on PyPI, built without its CUDA
extensions) needs five small fixes around it; each one below says why, checks whether
its target still misbehaves, and does nothing when it does not (a fixed release of a
package skips its fix). `prepare_for` applies them where gptqmodel will be imported (an
AWQ input; any peft job while gptqmodel is installed, since peft then rejects 6.x) and
returns one human-readable note per fix it applied; olive/runner.py logs them.

Runs in worker processes only (it imports transformers, peft and gptqmodel); every fix
is idempotent, so a persistent worker may call it before each job.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import sys
from pathlib import Path


def quant_method(model_path: str | None) -> str | None:
    """`quantization_config.quant_method` of a local Hugging Face folder's config.json, or None."""
    if not model_path:
        return None
    cfg = Path(model_path) / "config.json"
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    q = data.get("quantization_config") if isinstance(data, dict) else None
    method = q.get("quant_method") if isinstance(q, dict) else None
    return str(method).lower() if isinstance(method, str) else None


def is_awq_checkpoint(model_path: str | None) -> bool:
    return quant_method(model_path) == "awq"


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# -- fix 1 ------------------------------------------------------------------------
# gptqmodel/utils/hub.py reads these names from transformers.utils.hub at import time;
# transformers 5.x dropped create_repo and list_repo_tree from that module (they live
# in huggingface_hub), so `import gptqmodel` dies with AttributeError. Alias the missing
# ones to huggingface_hub's own (the same functions transformers re-exported before).
HUB_NAMES = ("cached_file", "create_repo", "has_file", "hf_hub_download", "list_repo_tree", "snapshot_download")


def fix_hub_names() -> str | None:
    if "gptqmodel" in sys.modules:
        return None  # already imported (it found what it needed, or failed for another reason)
    from transformers.utils import hub as tf_hub

    missing = [n for n in HUB_NAMES if not hasattr(tf_hub, n)]
    if not missing:
        return None
    import huggingface_hub

    done = [n for n in missing if hasattr(huggingface_hub, n)]
    for n in done:
        setattr(tf_hub, n, getattr(huggingface_hub, n))
    if not done:
        return None
    return (f"transformers.utils.hub lacks {', '.join(done)} (gptqmodel imports them from there): "
            "aliased to huggingface_hub's")


# -- fixes 2 and 3 ----------------------------------------------------------------------
# 2. transformers imports gptqmodel lazily, inside from_pretrained, while the model is
#    being built on the meta device; gptqmodel calls `.item()` on a tensor at import time
#    (nn_modules/exllamav3_torch.py, 6.0.3), which fails there. Importing it now, before
#    any model is loaded, avoids that.
# 3. gptqmodel prints a banner and log lines to stdout on import. The worker's stdout is
#    its result protocol between jobs (during a job fd 1 is the node log, see worker.py);
#    the import runs with sys.stdout pointed at stderr so it can never reach the protocol.
def import_gptqmodel_early() -> str | None:
    if "gptqmodel" in sys.modules:
        return None
    import torch

    default = getattr(torch, "get_default_device", lambda: torch.device("cpu"))()
    if getattr(default, "type", "cpu") == "meta":  # never import under the meta device (fix 2's cause)
        torch.set_default_device("cpu")
    with contextlib.redirect_stdout(sys.stderr):
        mod = importlib.import_module("gptqmodel")
    return (f"imported gptqmodel {getattr(mod, '__version__', '?')} before the model loads "
            "(its import fails under the meta device); its banner went to the node log")


# -- fix 4 ------------------------------------------------------------------------------
# AWQ backend "auto": gptqmodel's AUTO list ranks its compiled kernels (exllama v2, then
# awq_gemm) above the Triton one and does not check that their extension is built; a
# pure-Python build then fails at post_init ("External ExLlama kernels are not properly
# installed"). And without triton (a CPU-only torch), AUTO dies in the Triton kernel's
# validate_once (ModuleNotFoundError) instead of skipping it. So an AwqConfig left on
# "auto" gets "gemm_triton" (pure Triton: trains and runs) when that extension is absent
# and CUDA and triton are present, and "torch_awq" (plain torch) when triton is absent.
# An explicit backend is kept; a build with the extension and triton skips the fix.
AWQ_KERNEL_EXT = "gptqmodel_exllamav2_awq_kernels"


def _cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001
        return False


def _awq_backend_choice() -> str | None:
    if not _installed("triton"):
        return "torch_awq"
    if _cuda() and not _installed(AWQ_KERNEL_EXT):
        return "gemm_triton"
    return None  # auto works here


def fix_awq_backend() -> str | None:
    from transformers.utils import quantization_config as qc

    cls = getattr(qc, "AwqConfig", None)
    backend = getattr(qc, "AwqBackend", None)
    if cls is None or backend is None:
        return None
    if getattr(cls.post_init, "_olivepipe_awq_backend", False):
        return None  # already applied in this process
    choice = _awq_backend_choice()
    if choice is None or choice not in {b.value for b in backend}:
        return None
    original = cls.post_init

    def post_init(self):
        original(self)
        if self.backend in ("auto", "auto_trainable"):  # AwqBackend is a str enum: matches both forms
            self.backend = choice

    post_init._olivepipe_awq_backend = True
    post_init.__wrapped__ = original
    cls.post_init = post_init
    why = "triton is not installed" if choice == "torch_awq" else f"{AWQ_KERNEL_EXT} is not built"
    return f"AWQ backend 'auto' -> '{choice}' ({why}, so auto would fail)"


# -- fix 5 ------------------------------------------------------------------------------
# peft 0.21's is_gptqmodel_available() raises for gptqmodel < 7.0.0 (and for any gptqmodel
# without optimum installed), but 7.x needs torch >= 2.14.1 and transformers >= 5.20.2.
# peft's own AWQ/GPTQ LoRA layers work with 6.0.3 (its is_trainable holds from 5.0.0 on),
# so where the check refuses an importable gptqmodel, peft's modules that imported it by
# name get a version that only asks whether gptqmodel is importable.
PEFT_USERS = ("peft.import_utils", "peft.tuners.lora.gptq", "peft.tuners.lora.awq",
              "peft.utils.quantization_utils", "peft.utils.other")


def _gptqmodel_importable() -> bool:
    return _installed("gptqmodel")


_gptqmodel_importable._olivepipe_peft = True


def fix_peft_version_check() -> str | None:
    try:
        import peft.import_utils as piu
    except ImportError:
        return None
    check = getattr(piu, "is_gptqmodel_available", None)
    if check is None or getattr(check, "_olivepipe_peft", False):
        return None
    try:
        if check():
            return None  # peft accepts the installed gptqmodel
    except ImportError as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    else:
        return None  # gptqmodel not importable: nothing to bypass
    if not _gptqmodel_importable():
        return None
    patched = []
    for name in PEFT_USERS:
        with contextlib.suppress(ImportError):
            mod = importlib.import_module(name)
            if getattr(mod, "is_gptqmodel_available", None) is check:
                mod.is_gptqmodel_available = _gptqmodel_importable
                patched.append(name)
    return f"peft refused gptqmodel ({why[:160]}): version check bypassed in {', '.join(patched)}"


FIXES = (fix_hub_names, import_gptqmodel_early, fix_awq_backend, fix_peft_version_check)

# Passes that never import transformers' AWQ loader nor peft (ExtractAdapters reads ONNX).
NO_PEFT = frozenset({"ExtractAdapters"})
GPTQMODEL_FIXES = (fix_hub_names, import_gptqmodel_early, fix_peft_version_check)  # fix 4 is AWQ-only


def prepare_for(input_model_path: str | None, *, pass_types=None) -> list[str]:
    """Apply the fixes this job needs; one note per fix applied (or failed).

    Needed where gptqmodel will be imported: an AWQ input (transformers 5 loads it only
    through gptqmodel), and also any job that uses peft while gptqmodel is installed:
    peft checks gptqmodel's version for every LoRA target (and in model-builder's
    PeftModel.from_pretrained) and raises for 6.x, then imports it. So with gptqmodel
    installed every job but ``NO_PEFT`` ones gets fixes 1, 2/3 and 5 (each skips itself
    where its target already behaves), and an AWQ input fix 4 as well. Without gptqmodel
    nothing is patched (an AWQ input gets a note saying it cannot load).
    ``pass_types``: the job's Olive pass types (optional). A fix that raises is reported in
    its note and the rest still run: the pass then fails with its own, real error."""
    types = set(pass_types or ())
    if types and types <= NO_PEFT:
        return []
    awq = is_awq_checkpoint(input_model_path)
    if not _gptqmodel_importable():
        return ["AWQ input but gptqmodel is not installed: transformers 5 cannot load it (no fix applied)"] if awq else []
    notes = []
    for fix in (FIXES if awq else GPTQMODEL_FIXES):
        try:
            note = fix()
        except Exception as e:  # noqa: BLE001 - reported, never fatal here
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            note = f"{fix.__name__} failed: {type(e).__name__}: {msg}"[:300]
        if note:
            notes.append(note)
    return notes
