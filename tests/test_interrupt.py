"""Ctrl-C and node timeouts stop running work promptly and publish nothing half-done."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from conftest import write

WF = """\
olivepipe: 1
name: stop
models:
  base: {path: base}
nodes:
  quick: {kind: sleep, input: base, note: quick, seconds: 0}
  slow: {kind: sleep, input: quick, seconds: 600}
"""

APPLY = """
    import json, sys
    import fakekinds
    from olivepipe import kinds
    kinds.register(fakekinds.KIND, "fakekinds")
    from olivepipe.flow.scheduler import Interrupted, apply
    from olivepipe.flow.plan import make_plan
    from olivepipe.flow.workspace import open_workspace
    ws = open_workspace(sys.argv[1])
    try:
        apply(ws, make_plan(ws))
    except Interrupted as e:
        print(json.dumps({"running": e.running, "message": e.message,
                          "outcomes": {n: o.status for n, o in e.result.outcomes.items()}}), flush=True)
        sys.exit(e.exit_code)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_ctrl_c_stops_the_running_node_at_once(tmp_path):
    write(tmp_path / "base" / "config.json", "{}")
    wf = write(tmp_path / "workflow.yaml", WF)
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(APPLY), str(wf)], stdout=subprocess.PIPE,
                            text=True)
    logs = tmp_path / ".olivepipe" / "logs" / "stop"
    while not (logs / "slow.log").exists():  # slow has started (its log is opened before the job)
        assert proc.poll() is None, "apply ended early"
        time.sleep(0.05)
    time.sleep(0.5)
    workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                              text=True).stdout.split()]
    assert workers  # the worker running `slow`
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)  # the node would sleep 600 s: only a prompt stop ends sooner
    assert proc.returncode == 130
    res = json.loads(out.strip().splitlines()[-1])
    assert res["running"] == ["slow"] and res["outcomes"] == {"quick": "ran", "slow": "interrupted"}
    assert "stopped slow" in res["message"]
    assert time.monotonic() - t0 < 300
    assert not any(_alive(p) for p in workers)  # the worker doing `slow` is gone too

    from olivepipe.core import lock as lockfile

    assert set(lockfile.nodes(tmp_path / "olivepipe.lock", "stop")) == {"quick"}


def test_a_node_over_its_timeout_fails_and_publishes_nothing(tmp_path, sleep_kind):
    from olivepipe.flow.scheduler import apply
    from olivepipe.flow.plan import make_plan
    from olivepipe.flow.workspace import open_workspace

    write(tmp_path / "base" / "config.json", "{}")
    wf = write(tmp_path / "workflow.yaml", WF.replace("seconds: 600}", "seconds: 600, timeout: 1s}"))
    ws = open_workspace(wf)
    res = apply(ws, make_plan(ws))
    o = res.outcomes["slow"]
    assert o.status == "failed" and o.error.startswith("timed out after 1 s")
    assert res.outcomes["quick"].status == "ran"
    assert len(list(ws.store.keys())) == 1  # only quick's result
