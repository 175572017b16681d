"""Runs one compiled Olive config inside a worker process and reads back its result.

Imported only in workers: this is the one module that imports Olive.
"""
from __future__ import annotations

import json
import re
import sys
import time
import warnings
from pathlib import Path

from .runtime import normalize_model_config


class NoOutputModel(RuntimeError):
    """Olive finished but produced no model (it logs a warning and exits 0)."""


# Warnings this stack prints on every run that no user can act on (they flooded node logs): Olive
# 0.13 calls transformers' pre-v6 gradient-checkpointing names, each call a FutureWarning, and
# torch warns about pinned memory on every CPU-only training run. Any other warning stays.
KNOWN_NOISE = (
    (FutureWarning, r"`(is_)?gradient_checkpointing(_enable|_disable)?` is deprecated and will be removed"),
    (UserWarning, r"'pin_memory' argument is set as true but no accelerator is found"),
)


def quiet_known_noise() -> None:
    """Filter KNOWN_NOISE in this (worker) process; idempotent."""
    for category, message in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)


def run_olive(config: dict, log_path: Path | None = None) -> dict:
    quiet_known_noise()
    t0 = time.perf_counter()
    from olive.workflows import run as olive_run  # heavy: paid once per worker

    # the worker's first job pays Olive's import (4 s idle, 30 s on a loaded machine): reported
    # apart, so the lock's duration (plan's estimate) is the pass's own time
    import_s = round(time.perf_counter() - t0, 3)

    out = Path(config["output_dir"])
    _prepare_input(config)
    _fixed_torch_rng()
    result = olive_run(config)
    produced = out / "model_config.json"
    has_output = result is not None and getattr(result, "has_output_model", lambda: True)()
    if not produced.exists() or not has_output:
        raise NoOutputModel("Olive produced no output model" + _last_error(log_path))
    model = json.loads(produced.read_text())
    produced.unlink()  # holds absolute staging paths; the normalized copy lives in the manifest
    return {"model": normalize_model_config(model, out), "import_s": import_s}


def _fixed_torch_rng() -> None:
    """Start each pass from one fixed random state. Some passes draw before they seed (LoRA
    initialises its adapter weights, then the trainer seeds), and torch seeds itself at random in a
    new process: without this a result would depend on chance, or on which nodes ran earlier in the
    same worker (a pool reuses workers; a Ray worker runs whatever Ray hands it)."""
    import torch

    torch.manual_seed(0)


def input_model_path(config: dict) -> str | None:
    """The local folder of a compiled config's input model (flat `model_path` or `config.model_path`)."""
    model = config.get("input_model") or {}
    path = model.get("model_path") or (model.get("config") or {}).get("model_path")
    return path if isinstance(path, str) else None


def _pass_types(config: dict) -> list[str]:
    return [p.get("type") for p in (config.get("passes") or {}).values() if isinstance(p, dict)]


def _prepare_input(config: dict) -> None:
    """Stack fixes an input needs before Olive loads it (LoRA on an AWQ checkpoint: gptq_shim).
    Notes go to stderr, which is the node log during a job."""
    from .gptq_shim import prepare_for

    for note in prepare_for(input_model_path(config), pass_types=_pass_types(config)):
        print(f"olivepipe: {note}", file=sys.stderr, flush=True)


_ERR = re.compile(r"^(\w+(?:\.\w+)*(?:Error|Exception)):? (.*)$")


def _last_error(log_path: Path | None) -> str:
    """The last exception line Olive logged: the real reason behind 'no output model'."""
    if not log_path or not Path(log_path).exists():
        return ""
    last = ""
    for line in Path(log_path).read_text(errors="replace").splitlines():
        m = _ERR.match(line.strip())
        if m:
            last = f"{m.group(1)}: {m.group(2)}"
    return f" (last error: {last[:300]})" if last else ""
