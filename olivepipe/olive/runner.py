"""Runs one compiled Olive config inside a worker process and reads back its result.

Imported only in workers: this is the one module that imports Olive.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from .runtime import normalize_model_config


class NoOutputModel(RuntimeError):
    """Olive finished but produced no model (it logs a warning and exits 0)."""


def run_olive(config: dict, log_path: Path | None = None) -> dict:
    from olive.workflows import run as olive_run  # heavy: paid once per worker

    out = Path(config["output_dir"])
    result = olive_run(config)
    produced = out / "model_config.json"
    has_output = result is not None and getattr(result, "has_output_model", lambda: True)()
    if not produced.exists() or not has_output:
        raise NoOutputModel("Olive produced no output model" + _last_error(log_path))
    model = json.loads(produced.read_text())
    produced.unlink()  # holds absolute staging paths; the normalized copy lives in the manifest
    return {"model": normalize_model_config(model, out)}


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
