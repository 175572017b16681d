"""Plan-time checks of what each node needs from this machine (CUDA, packages, GPU memory).

Cheap by design (no torch import): a pipeline should learn that it cannot run
before it starts, not an hour in.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass

from .olive.catalog import NEEDS
from .olive.runtime import version

KIND_PACKAGES = {"generate": ("onnxruntime-genai",), "register": ("azure-ai-ml", "azure-identity")}


@dataclass(frozen=True)
class Check:
    ok: bool
    needs: tuple[str, ...]  # human-readable needs, e.g. "CUDA", "autoawq"
    missing: tuple[str, ...]
    note: str = ""

    @property
    def message(self) -> str:
        if self.ok:
            return ""
        return "needs " + ", ".join(self.missing) + (f" ({self.note})" if self.note else "")


@functools.lru_cache(maxsize=1)
def cuda_devices() -> list[dict]:
    """GPUs visible through the NVIDIA driver, without importing torch."""
    if os.environ.get("OLIVEPIPE_ASSUME_NO_CUDA"):
        return []
    if not (os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi")):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, _, mem = line.rpartition(",")
        try:
            gpus.append({"name": name.strip(), "memory_mib": int(mem.strip())})
        except ValueError:
            continue
    return gpus


def check_node(kind: str, pass_type: str | None, device: str) -> Check:
    needs, missing = [], []
    note = ""
    want_cuda = device == "gpu"
    packages: tuple[str, ...] = ()
    if kind == "olive" and pass_type in NEEDS:
        n = NEEDS[pass_type]
        want_cuda = want_cuda or n.cuda
        packages = n.packages
        note = n.note if n.cuda else ""
    packages = packages + KIND_PACKAGES.get(kind, ())
    if want_cuda:
        needs.append("CUDA GPU")
        if not cuda_devices():
            missing.append("a CUDA GPU (none found)")
    for p in packages:
        needs.append(p)
        if version(p) is None:
            missing.append(f"package {p} (not installed)")
    return Check(not missing, tuple(needs), tuple(missing), note if missing else "")
