"""An in-process executor with a virtual clock, for testing the shared scheduler.

It satisfies the executor protocol (olivepipe/run/executors/base.py): jobs "run" for the
`seconds` their options say on a virtual clock, so tests check concurrency, GPU slots
and makespans exactly, without sleeping and without worker processes."""
from __future__ import annotations

from olivepipe.run.executors.base import Capabilities, Check, JobResult
from olivepipe.run.runtime import run_kind, run_node


class FakeExecutor:
    name = "fake"

    def __init__(self, *, cuda: bool = True, environment: dict | None = None, gpus=None):
        from olivepipe.run.gpus import Gpu

        self.cuda = cuda
        self.gpu_list = gpus if gpus is not None else [Gpu("0"), Gpu("1")]
        self.pins: dict[str, str] = {}
        self.env = environment or {"fake-runtime": "1.0"}
        self.clock = 0.0
        self.running: list[tuple[float, dict, object]] = []  # (finish time, job, ctx)
        self.started: list[str] = []
        self.max_running = 0
        self.max_gpu = 0
        self.opened = None
        self.closed = False

    def preflight(self, needs, device, placement=None):
        want = ("CUDA GPU",) if (needs.cuda or device == "gpu") else ()
        missing = ("a CUDA GPU (none found)",) if want and not self.cuda else ()
        return Check(not missing, want, missing)

    def environment(self, packages, placement=None):
        return dict(self.env)

    def where(self, placement=None):
        return "local"

    def capabilities(self, placement=None):
        return Capabilities(local_gpus=True)

    def gpus(self):
        return list(self.gpu_list)

    def open(self, *, slots, offline, log_dir, wake=None):
        self.opened = slots  # wake is never needed: a job finishes only inside wait (virtual time)

    def start(self, job, ctx):
        seconds = float(job.spec.get("options", {}).get("seconds", 0))
        self.running.append((self.clock + seconds, job, ctx))
        self.started.append(job.step)
        self.pins[job.step] = ctx.gpu
        self.max_running = max(self.max_running, len(self.running))
        self.max_gpu = max(self.max_gpu, sum(1 for _, j, _ in self.running if j.device == "gpu"))

    def wait(self, timeout=None):
        if not self.running:
            return []
        self.running.sort(key=lambda r: (r[0], r[1].step))
        finish, job, ctx = self.running.pop(0)
        self.clock = max(self.clock, finish)
        return [self._run(job, ctx)]

    def _run(self, job, ctx) -> JobResult:
        def execute(job, spec, io):
            spec.get("options", {}).pop("seconds", None)  # virtual time: the clock already moved
            return run_kind(job.kind, job.module, spec, io)

        # the one node runtime every executor uses, in this process
        res = run_node(job, ctx.store, log=ctx.log, root=ctx.root, stats=ctx.stats, execute=execute)
        return JobResult(job.step, res.ok, res.error, model=res.model)

    def close(self, *, kill=False):
        self.closed = True
