"""The local executor: jobs run through the node runtime (runtime.run_node) on this machine.

One thread per running job calls ``run_node`` with the workspace root, so data files and
local model folders are read from here (data files snapshotted); the kind's own work goes to
a persistent worker process of the pool (worker.py: heavy libraries imported once, a crash
fails only its node), pinned to its GPU, killed when the node's `timeout:` passes. The
runtime publishes the result into the scheduler's store.
"""
from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

from ...core.job import Job
from ...core.versions import version
from ...olive.runtime import worker_env
from ..pool import Pool, WorkerCrashed
from ..runtime import run_node
from .base import Capabilities, Check, Finished, JobResult, RunContext


@functools.lru_cache(maxsize=1)
def cuda_devices() -> tuple[str, ...]:
    """GPUs the NVIDIA driver exposes, read from /proc (no subprocess, no torch import)."""
    if os.environ.get("OLIVEPIPE_ASSUME_NO_CUDA"):
        return ()
    root = Path("/proc/driver/nvidia/gpus")
    try:
        found = sorted(p.name for p in root.iterdir())
    except OSError:
        return ()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and not visible.strip():
        return ()
    return tuple(found)


def query_gpus() -> list:
    """The GPUs jobs may use, with their memory: nvidia-smi (apply only, never plan), honouring
    the parent's CUDA_VISIBLE_DEVICES; without nvidia-smi, what /proc shows, memory unknown."""
    import subprocess

    from ..gpus import Gpu

    found = {}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30).stdout
        for line in out.strip().splitlines():
            idx, name, mem = (x.strip() for x in line.split(","))
            found[idx] = Gpu(idx, int(mem), name)
    except (OSError, subprocess.SubprocessError, ValueError):
        found = {str(i): Gpu(str(i)) for i in range(len(cuda_devices()))}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(found.values())
    return [found.get(v.strip(), Gpu(v.strip())) for v in visible.split(",") if v.strip()]


class LocalExecutor:
    name = "local"

    def __init__(self):
        self.pool: Pool | None = None
        self.done = Finished()
        self._gpus = None

    # -- what this place can run ---------------------------------------------------
    def preflight(self, needs, device: str, placement: dict | None = None) -> Check:
        want, missing = [], []
        cuda = device == "gpu" or needs.cuda
        if cuda:
            want.append("CUDA GPU")
            if not cuda_devices():
                missing.append("a CUDA GPU (none found)")
        for p in needs.packages:
            want.append(p)
            if version(p) is None:
                missing.append(f"package {p} (not installed)")
        return Check(not missing, tuple(want), tuple(missing), needs.note if missing else "")

    def environment(self, packages, placement: dict | None = None) -> dict:
        return {n: version(n) for n in sorted(set(packages))}

    def where(self, placement: dict | None = None) -> str:
        return "local"

    def capabilities(self, placement: dict | None = None) -> Capabilities:
        return Capabilities(local_gpus=True)

    def gpus(self) -> list:
        if self._gpus is None:
            self._gpus = query_gpus() if cuda_devices() else []
        return self._gpus

    # -- running -------------------------------------------------------------------
    def open(self, *, slots: int, offline: bool, log_dir: Path, wake=None) -> None:
        self.pool = Pool(max(1, slots), worker_env(offline=offline), log_dir)
        self.done.wake = wake

    def start(self, job: Job, ctx: RunContext) -> None:
        threading.Thread(target=self._run, args=(job, ctx), name=f"olivepipe-{job.step}", daemon=True).start()

    def wait(self, timeout: float | None = None) -> list[JobResult]:
        return self.done.take(timeout)

    def close(self, *, kill: bool = False) -> None:
        if self.pool:
            if kill:  # Ctrl-C: the jobs' process groups die now, not when their node ends
                for w in self.pool.workers:
                    w.kill()
            self.pool.close(kill=kill)
            self.pool = None

    def _run(self, job: Job, ctx: RunContext) -> None:
        try:
            res = run_node(job, ctx.store, log=ctx.log, root=ctx.root, stats=ctx.stats,
                           execute=functools.partial(self._execute, gpu=ctx.gpu))
            out = JobResult(job.step, res.ok, res.error, res.seconds, model=res.model, extra=res.extra)
        except BaseException as e:  # noqa: BLE001 - whatever happens, the scheduler must hear of this job
            out = JobResult(job.step, False, f"{type(e).__name__}: {e}")
        self.done.put(out)

    def _execute(self, job: Job, spec: dict, io, *, gpu: str) -> dict:
        """The kind's work, in a pool worker pinned to ``gpu``; killed when the node's timeout passes."""
        worker = self.pool.acquire(gpu)
        expired = threading.Event()
        timer = None
        if job.timeout_s:  # a hung pass must not hang apply: kill it, fail the node
            timer = threading.Timer(job.timeout_s, lambda: (expired.set(), worker.kill()))
            timer.daemon = True
            timer.start()
        try:
            return worker.run({"kind": job.kind, "module": job.module, "spec": spec, "out": str(io.out),
                               "scratch": str(io.scratch), "log": str(io.log)})
        except WorkerCrashed as e:
            return {"ok": False, "error": f"timed out after {job.timeout_s:g} s (timeout: in the workflow)"
                    if expired.is_set() else str(e)}
        finally:
            if timer:
                timer.cancel()
            if gpu:  # a finished GPU node's worker exits, so its GPU memory is free for the next
                worker.stop()
            self.pool.release(worker)
