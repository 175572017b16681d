"""Worker process: runs node jobs one at a time, importing heavy libraries once.

Protocol: one JSON job per line on stdin, one JSON result per line on the original
stdout. During a job, fd 1 and 2 go to that node's log file, so everything Olive,
torch or onnxruntime print lands in the node's log. A crash of this process (a
segfault in a pass, a kill) only fails the node it was running.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path


def _die_with_parent() -> None:
    """Never outlive the orchestrator. Workers run in their own session (Ctrl-C reaches only
    olivepipe), so a SIGKILLed olivepipe would leave them training for hours into a staging
    folder nobody will publish. A watchdog thread polls the parent and kills this worker's
    process group (the worker and anything Olive started). PR_SET_PDEATHSIG is not used: it
    fires when the *thread* that started the worker exits, and the pool starts workers from
    executor threads."""
    parent = int(os.environ.get("OLIVEPIPE_PARENT_PID") or os.getppid())

    def die():
        if os.getpgid(0) == os.getpid():  # session leader (pool.py): take the whole group down
            os.killpg(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    def watch():
        while True:
            if os.getppid() != parent:
                die()
            time.sleep(0.5)

    if os.getppid() != parent:  # died before we got here
        die()
    threading.Thread(target=watch, name="olivepipe-parent-watchdog", daemon=True).start()


def run_job(job: dict) -> dict:
    """One resolved job: {"kind", "module", "spec", "out", "scratch", "log"} (paths are local here;
    runtime.run_node resolved them and publishes what this returns)."""
    from ..kinds import JobIO
    from .runtime import run_kind

    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    print(f"olivepipe: worker {os.getpid()} runs {job['kind']}"
          + (f" on GPU {gpus}" if gpus else " (no GPU)" if gpus == "" else ""), file=sys.stderr, flush=True)
    io = JobIO(out=Path(job["out"]), scratch=Path(job["scratch"]), log=Path(job["log"]))
    return run_kind(job["kind"], job["module"], job["spec"], io)


def main() -> int:
    # OLIVEPIPE_NETWORK_AUDIT is installed by `import olivepipe` (netaudit.py)
    _die_with_parent()
    results = os.fdopen(os.dup(1), "w", buffering=1)
    quiet = os.open(os.devnull, os.O_WRONLY)
    saved_err = os.dup(2)
    os.dup2(quiet, 1)
    results.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    for line in sys.stdin:
        job = json.loads(line)
        # never through a planted link: the log folder is olivepipe's, the name its own
        log_fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o644)
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        t0 = time.perf_counter()
        try:
            res = {"ok": True, **run_job(job)}
        except BaseException as e:  # noqa: BLE001 - any failure is reported, the worker lives on
            from .runtime import failure_text

            traceback.print_exc()
            res = {"ok": False, "error": failure_text(e)}
            if isinstance(e, KeyboardInterrupt):
                raise
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(quiet, 1)
            os.dup2(saved_err, 2)
            os.close(log_fd)
        res["seconds"] = round(time.perf_counter() - t0, 3)
        results.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
