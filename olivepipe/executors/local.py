"""The local executor: jobs run in persistent worker processes on this machine.

Where a job runs is where its placeholders are resolved: $IN* to store entries fetched
here, $DATA* to private snapshots of the data files (Olive reads those, never the
user's file, so the bytes trained on are the bytes hashed), $SRC* to local model
folders (checked after the run: a folder changed during the run fails the node), and
$OUT/$SCRATCH to a staging folder in the store.
"""
from __future__ import annotations

import functools
import os
import queue
import shutil
import threading
import time
from pathlib import Path

from ..errors import OlivepipeError, InputChanged
from ..hashing import file_digest
from ..olive.runtime import substitute, version, worker_env
from ..pool import Pool, WorkerCrashed
from .base import Check, JobResult, RunContext


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
        self.done: queue.Queue = queue.Queue()
        self.threads: list[threading.Thread] = []
        self.active = 0
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

    def can_run(self, needs, device: str, placement: dict | None = None) -> bool:
        return self.preflight(needs, device).ok

    def environment(self, packages, placement: dict | None = None) -> dict:
        return {n: version(n) for n in sorted(set(packages))}

    def gpus(self) -> list:
        if self._gpus is None:
            self._gpus = query_gpus() if cuda_devices() else []
        return self._gpus

    # -- running -------------------------------------------------------------------
    def open(self, *, slots: int, offline: bool, log_dir: Path) -> None:
        self.pool = Pool(max(1, slots), worker_env(offline=offline), log_dir)

    def start(self, job: dict, ctx: RunContext) -> None:
        self.active += 1
        t = threading.Thread(target=self._run, args=(job, ctx), name=f"olivepipe-{job['step']}", daemon=True)
        self.threads.append(t)
        t.start()

    def wait(self, timeout: float | None = None) -> list[JobResult]:
        try:
            out = [self.done.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                out.append(self.done.get_nowait())
            except queue.Empty:
                break
        self.active -= len(out)
        return out

    def close(self, *, kill: bool = False) -> None:
        if self.pool:
            if kill:  # Ctrl-C: the jobs' process groups die now, not when their node ends
                for w in self.pool.workers:
                    w.kill()
            self.pool.close(kill=kill)
            self.pool = None

    def _run(self, job: dict, ctx: RunContext) -> None:
        t0 = time.perf_counter()
        staging = ctx.store.staging(job["step"])
        cleanup = functools.partial(shutil.rmtree, staging, ignore_errors=True)
        try:
            res = self._run_in(job, ctx, staging)
        except OlivepipeError as e:
            res = JobResult(job["step"], False, e.message)
        except Exception as e:  # a bug in resolution must fail the node, not hang the scheduler
            res = JobResult(job["step"], False, f"{type(e).__name__}: {e}")
        res.seconds = time.perf_counter() - t0
        res.cleanup = cleanup
        self.done.put(res)

    def _run_in(self, job: dict, ctx: RunContext, staging: Path) -> JobResult:
        out, scratch = staging / "out", staging / "scratch"
        scratch.mkdir()
        paths = {"$OUT": str(out), "$SCRATCH": str(scratch)}
        watched: dict[str, tuple[Path, dict]] = {}
        for ph, ref in sorted(job["refs"].items(), key=lambda kv: "text_dataset" in kv[1]):
            paths[ph] = str(self._resolve(ph, ref, ctx, staging, paths, watched, job["refs"]))
        spec = substitute(job["spec"], paths)
        worker = self.pool.acquire(ctx.gpu)
        expired = threading.Event()
        timer = None
        if job.get("timeout_s"):  # a hung pass must not hang apply: kill it, fail the node
            timer = threading.Timer(job["timeout_s"], lambda: (expired.set(), worker.kill()))
            timer.daemon = True
            timer.start()
        try:
            res = worker.run({"kind": job["kind"], "module": job["module"], "spec": spec, "out": str(out),
                              "scratch": str(scratch), "log": str(ctx.log)})
        except WorkerCrashed as e:
            res = {"ok": False, "error": f"timed out after {job['timeout_s']:g} s (timeout: in the workflow)"
                   if expired.is_set() else str(e)}
        finally:
            if timer:
                timer.cancel()
            if ctx.gpu:  # a finished GPU node's worker exits, so its GPU memory is free for the next
                worker.stop()
            self.pool.release(worker)
        for ph, (path, before) in watched.items():  # a local model folder must not change under a run
            if _stats(path) != before:
                raise InputChanged(f"model folder {job['refs'][ph]['tree']} changed while the node ran; "
                                   "nothing was published", "run apply again once it is stable")
        if not res.get("ok"):
            return JobResult(job["step"], False, res.get("error", "failed"))
        if not out.exists():
            out.mkdir()
        return JobResult(job["step"], True, output=out, model=res.get("model"),
                         extra={k: v for k, v in res.items() if k not in ("ok", "model")})

    def _resolve(self, ph: str, ref: dict, ctx: RunContext, staging: Path, paths: dict, watched: dict,
                 refs: dict) -> Path:
        if "entry" in ref:
            entry = ctx.store.get(ref["entry"])
            if entry is None:
                raise OlivepipeError(f"input result {ref['entry'][:12]} is no longer in the cache",
                                     "run apply again: the missing input is rebuilt first")
            return ctx.store.fetch(entry)
        if "file" in ref:  # snapshot: Olive reads this copy, whose digest is the one in the key
            src = ctx.root / ref["file"]
            snap = staging / "inputs" / ph.lstrip("$") / Path(ref["file"]).name
            snap.parent.mkdir(parents=True)
            shutil.copyfile(src, snap, follow_symlinks=False)
            got = file_digest(snap)
            if got != ref["digest"]:
                raise InputChanged(f"data file {ref['file']} changed after it was hashed; nothing was run or published",
                                   "run apply again: the plan hashes the file anew")
            return snap
        if "tree" in ref:
            from ..hashing import tree_digest

            src = ctx.root / ref["tree"]
            _no_links_out(src, Path(ctx.root))
            before = _stats(src)
            # the stat cache re-reads only files whose stat changed since they were hashed
            if tree_digest(ctx.stats.tree(src)) != ref["digest"]:
                raise InputChanged(f"model folder {ref['tree']} changed after it was hashed; nothing was run",
                                   "run apply again")
            watched[ph] = (src, before)
            return src
        if "text_dataset" in ref:
            from ..datasets import materialize_text_dataset
            from ..spec import DatasetSpec

            fields = dict(ref["text_dataset"])
            files = tuple(Path(paths[f]) for f in ref["files"])
            record = {"fields": fields, "files": [refs[f]["digest"] for f in ref["files"]]}
            return materialize_text_dataset(ctx.store, DatasetSpec(**fields, files=files), record)
        raise ValueError(f"unknown reference {ref!r} for {ph}")


def _no_links_out(root: Path, workspace: Path) -> None:
    """A model folder may hold links, but none that lead outside the workspace: Olive
    would read (and the key would hash) a file olivepipe promised never to touch."""
    top = workspace.resolve()
    paths = [root] if not root.is_dir() else [Path(d) / n for d, ds, fs in os.walk(root) for n in ds + fs]
    for p in paths:
        if p.is_symlink():
            try:
                p.resolve(strict=True).relative_to(top)
            except (ValueError, OSError):
                raise OlivepipeError(f"{p.relative_to(workspace) if p.is_relative_to(workspace) else p} links to "
                                     f"{os.readlink(p)}, outside the workspace; nothing was run",
                                     "copy the file into the model folder instead of linking it") from None


def _stats(root: Path) -> dict:
    """{relative path: (inode, size, mtime_ns, ctime_ns)} of every file under root."""
    root = Path(root)
    if root.is_file():
        st = root.stat()
        return {root.name: (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)}
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for fn in filenames:
            p = Path(dirpath) / fn
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return out
