"""Parent side of the worker processes: start, send a job, read its result, survive crashes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path


class WorkerCrashed(RuntimeError):
    pass


class Worker:
    def __init__(self, env: dict, log_dir: Path, index: int):
        self.env, self.log_dir, self.index = env, log_dir, index
        self.proc: subprocess.Popen | None = None
        self.gpu: str | None = None  # the GPU this process was started on ("" for none)

    def _start(self):
        self.log_dir.mkdir(parents=True, exist_ok=True)
        err = open(self.log_dir / f"worker-{self.index}.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "olivepipe.run.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1,
                                     env={**self.env, "OLIVEPIPE_PARENT_PID": str(os.getpid())},  # its watchdog
                                     start_new_session=True,  # Ctrl-C reaches olivepipe, which stops workers itself
                                     cwd=self.log_dir)  # never the user's folder: libraries resolve names against the cwd
        err.close()
        hello = self.proc.stdout.readline()
        if not hello:
            raise WorkerCrashed(f"worker failed to start (see {self.log_dir / f'worker-{self.index}.log'})")

    def run(self, job: dict) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        proc = self.proc  # another thread may stop() this worker (Ctrl-C): keep our handle
        try:
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        except (OSError, ValueError):  # pipe closed under us
            line = ""
        if not line:
            code = proc.wait()
            self.proc = None
            how = f"killed by signal {-code} ({signal.Signals(-code).name})" if code < 0 else f"exited with code {code}"
            raise WorkerCrashed(f"worker process {how}")
        return json.loads(line)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def kill(self) -> None:
        """Kill the running job's process group from another thread (timeout, Ctrl-C); the
        thread in ``run`` then sees the worker die and reports it."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass

    def stop(self, kill: bool = False):
        if self.proc is None:
            return
        try:
            if kill:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.stdin.close()
            self.proc.wait(timeout=None if not kill else 10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.proc = None


class Pool:
    """A fixed set of workers handed out to threads; each thread drives one worker.

    A worker is pinned to what its process was started with: CUDA reads
    CUDA_VISIBLE_DEVICES once, so a job for GPU 1 gets a worker started on GPU 1 (an idle
    worker pinned elsewhere is restarted), and CPU jobs get workers that see no GPU, so
    they never hold GPU memory a GPU node needs."""

    def __init__(self, size: int, env: dict, log_dir: Path):
        self.workers = [Worker(env, log_dir, i) for i in range(size)]
        self.free = list(self.workers)
        self.cv = threading.Condition()

    def acquire(self, gpu: str | None = "") -> Worker:
        """A worker whose process sees exactly ``gpu`` ("": no GPU; None: whatever the parent sees)."""
        with self.cv:
            while not self.free:
                self.cv.wait()
            w = next((w for w in self.free if w.proc is not None and w.gpu == gpu), None) \
                or next((w for w in self.free if w.proc is None), None) or self.free[0]
            self.free.remove(w)
        if w.gpu != gpu:
            w.stop()
            w.gpu = gpu
            w.env = {k: v for k, v in w.env.items() if k != "CUDA_VISIBLE_DEVICES"}
            if gpu is not None:
                w.env["CUDA_VISIBLE_DEVICES"] = gpu
        return w

    def release(self, w: Worker):
        with self.cv:
            self.free.append(w)
            self.cv.notify()

    def close(self, kill: bool = False):
        for w in self.workers:
            w.stop(kill=kill)
