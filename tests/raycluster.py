"""A real Ray cluster on loopback for the tests: a head and worker nodes, each its own raylet with
its own CPUs and object store, in one process group the tests own and stop by PID.

`python tests/raycluster.py WORKERS` (with RAY_TMPDIR, HOME and the auth variables set by
``start``) builds the nodes with Ray's own multi-node test cluster (ray.cluster_utils.Cluster),
prints {"address": ...} and serves until SIGTERM. RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps every
node on 127.0.0.1: otherwise Ray replaces a loopback address by this machine's outward IP.
Token authentication is on (RAY_AUTH_MODE=token with a token file in the cluster's temp folder),
as a real cluster should run; nothing is written into the user's home (HOME is the temp folder).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 300.0  # three raylets on a loaded 2-core machine


@dataclass
class RayCluster:
    address: str
    proc: subprocess.Popen
    tmp: Path
    env: dict  # what a driver (olivepipe apply) needs to connect: token, HOME, temp folder

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever Ray left in the group (raylets, agents, workers)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)  # sessions, logs, the token


def start(workers: int = 2, *, extra_env: dict | None = None, num_gpus: int = 0) -> RayCluster:
    # short: Ray's socket paths must fit in 107 bytes
    tmp = Path(tempfile.mkdtemp(prefix="opray-"))
    (tmp / "home").mkdir()
    token = tmp / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {"HOME": str(tmp / "home"), "RAY_TMPDIR": str(tmp), "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    full = {**os.environ, **env, **(extra_env or {}), "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "OLIVEPIPE_RAY_GPUS": str(num_gpus)}
    full.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, __file__, str(workers)], env=full, cwd=tmp, stdout=subprocess.PIPE,
                            stderr=open(tmp / "cluster.log", "wb"), start_new_session=True, text=True)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(START_TIMEOUT_S)
    cluster = RayCluster("", proc, tmp, env)
    if not got or not got[0].strip():
        cluster.stop()
        raise RuntimeError(f"the Ray cluster did not start: {(tmp / 'cluster.log').read_text()[-3000:]}")
    cluster.address = json.loads(got[0])["address"]
    return cluster


def _serve(workers: int) -> None:
    from ray.cluster_utils import Cluster

    gpus = int(os.environ.get("OLIVEPIPE_RAY_GPUS") or 0)
    node = dict(num_cpus=1, num_gpus=0, object_store_memory=80 * 2**20)
    cluster = Cluster(initialize_head=True, head_node_args={**node, "num_gpus": gpus, "include_dashboard": False})
    for _ in range(workers):
        cluster.add_node(**node)
    parent = os.getppid()
    print(json.dumps({"address": cluster.address}), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    # a test run killed outright (SIGKILL, a lost terminal) never calls stop(): the cluster would outlive
    # it, so it also ends when the process that started it is gone
    orphaned = False
    while not done.wait(1.0):
        if os.getppid() != parent:
            orphaned = True
            break
    cluster.shutdown()
    time.sleep(0.5)
    if orphaned:  # nobody is left to clean up: the temp folder (cwd) and whatever Ray left in the group
        shutil.rmtree(os.getcwd(), ignore_errors=True)
        os.killpg(os.getpgrp(), signal.SIGKILL)


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
