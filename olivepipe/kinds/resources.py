"""What a node needs in memory, known before it runs: plan warns with the estimate and blocks a
node whose host RAM estimate exceeds this machine's memory (hours are not spent to find out).

The model's size comes from its safetensors headers (a few KB read, packed quantized weights
counted unpacked); the per-pass figures are measured ones (olivepipe/olive/passes.py MEMORY).
A node whose model size is unknown (a hub model not on disk) gets no estimate.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path


ENV_RAM = "OLIVEPIPE_HOST_RAM_GIB"  # the host RAM plan assumes (tests, or a machine that lies)
GIB = 1024 ** 3


@functools.lru_cache(maxsize=64)
def _params(path: str, mtime_ns: int) -> int | None:
    from ..models.dequant import effective_params

    return effective_params(Path(path))


def model_params(step) -> int | None:
    """Parameters of the model a step reads (its source model: passes keep the shape);
    ``step`` is its kinds.base.StepView."""
    m = step.source
    if m is None or m.path is None:
        return None
    p = Path(m.path)
    if not p.is_dir():
        return None
    try:
        return _params(str(p), p.stat().st_mtime_ns)
    except OSError:
        return None


def estimate(step) -> dict | None:
    """{"host_gib": (low, high), "gpu_gib": g, "params_b": b, "source": why} or None: the node's
    kind says what a model of this size needs (NodeKind.memory)."""
    params = model_params(step)
    if not params:
        return None
    from . import get

    e = get(step.node.kind).memory(step, params)
    return None if e is None else {**e, "params_b": params / 1e9}


def host_ram_gib() -> tuple[float | None, float | None]:
    """(total, available) host RAM in GiB from /proc/meminfo (no process, no import of psutil)."""
    if os.environ.get(ENV_RAM):
        v = float(os.environ[ENV_RAM])
        return v, v
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        total = int(info["MemTotal"].split()[0]) * 1024 / GIB
        avail = int(info.get("MemAvailable", info["MemTotal"]).split()[0]) * 1024 / GIB
        return total, avail
    except (OSError, KeyError, ValueError):
        return None, None


def _fmt(lo: float, hi: float) -> str:
    return f"{lo:.0f}" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f}"


def estimate_warnings(step) -> list[str]:
    node = step.node
    e = estimate(step)
    if e is None:
        return []
    lo, hi = e["host_gib"]
    text = f"MEMORY: about {_fmt(lo, hi)} GiB host RAM"
    if e["gpu_gib"]:
        text += f", {e['gpu_gib']:.0f} GiB GPU memory"
    text += f" for {e['params_b']:.2f} B parameters ({e['source']})"
    out = [text]
    if step.placement is None:
        total, avail = host_ram_gib()
        if total is not None and lo <= total and avail is not None and hi > avail:
            out.append(f"MEMORY: this machine has {avail:.0f} GiB of {total:.0f} GiB available now; "
                       f"{node.name} may need up to {hi:.0f} GiB")
    return out


def memory_problem(step) -> str | None:
    """A reason to block: the low estimate exceeds this machine's whole RAM (local nodes only)."""
    if step.placement is not None:
        return None
    e = estimate(step)
    if e is None:
        return None
    total, _ = host_ram_gib()
    lo, hi = e["host_gib"]
    if total is None or lo <= total:
        return None
    return (f"needs about {_fmt(lo, hi)} GiB host RAM ({e['source']}; {e['params_b']:.2f} B parameters here), "
            f"this machine has {total:.0f} GiB: run it where there is more memory (`executor:`), or on a smaller model")
