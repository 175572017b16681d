"""Day-to-day use from a terminal: the live progress display and Ctrl-C in a real pseudo-terminal,
`apply --json`, every command's exit codes as documented, and the README's set-up in a fresh git
repository (`olivepipe init`).

The CLI runs in subprocesses. The test-only `sleep` kind is registered by a small launcher
(a plugin would do the same), so only the set-up test runs Olive.
"""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
from conftest import cli, write

LAUNCHER = """\
import sys
import fakekinds
from olivepipe import kinds
kinds.register(fakekinds.KIND, "fakekinds")
from olivepipe.cli import main
sys.argv[0] = "olivepipe"
main()
"""


def launcher(tmp_path: Path) -> Path:
    return write(tmp_path / "launch.py", LAUNCHER)


def run_cli(tmp_path: Path, *args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """The real CLI with the `sleep` kind registered (conftest puts tests/ on PYTHONPATH)."""
    return subprocess.run([sys.executable, str(launcher(tmp_path)), *map(str, args)], cwd=cwd, env=dict(os.environ),
                          capture_output=True, text=True, timeout=timeout, check=False)


def sleep_workflow(folder: Path, name: str, nodes: str) -> Path:
    write(folder / "base" / "config.json", "{}")
    return write(folder / f"{name}.yaml", f"olivepipe: 1\nname: {name}\nmodels:\n  base: {{path: base}}\nnodes:\n{nodes}")


# -- a real terminal: ticking timers, one Ctrl-C ----------------------------------------------

ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>78])")
# the running row of the live table: `running  slow  ...  0:03  log ...`
CLOCK = re.compile(r"running\s+slow\b[^\n\r]*?(?<![\d:])(\d+):(\d\d)(?![\d:])")


class Pty:
    """A child on a pseudo-terminal it has as its controlling terminal, output drained by a thread."""

    def __init__(self, argv, cwd):
        master, slave = pty.openpty()
        # a real size: rich lays out the live table to the terminal's width
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "200", "LINES": "40"}
        env.pop("NO_COLOR", None)

        def take_terminal():  # runs in the child after setsid: the pty becomes its controlling tty,
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # so ^C from the master is a terminal's SIGINT

        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True, close_fds=True,
                                     preexec_fn=take_terminal)  # noqa: PLW1509  (one ioctl, no locks: safe)
        os.close(slave)
        self.master = master
        self.buf = bytearray()
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self):
        while True:
            r, _, _ = select.select([self.master], [], [], 0.2)
            if not r:
                if self.proc.poll() is not None:
                    return
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the child side closed
                return
            if not chunk:
                return
            with self.lock:
                self.buf += chunk

    def text(self) -> str:
        with self.lock:
            return ANSI.sub("", self.buf.decode("utf-8", "replace"))

    def wait_for(self, pred, timeout: float, what: str):
        """Poll the screen output until ``pred(text)`` is truthy; fail with what was seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = pred(self.text())
            if got:
                return got
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"no {what} (exit {self.proc.poll()}); screen so far:\n{self.text()[-3000:]}")

    def close(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.reader.join(5)
        os.close(self.master)


def last_clock(text: str) -> int | None:
    found = CLOCK.findall(text)
    return int(found[-1][0]) * 60 + int(found[-1][1]) if found else None


def test_live_timer_ticks_and_one_ctrl_c_stops_apply_in_a_terminal(tmp_path):
    wf = sleep_workflow(tmp_path, "tty", "  slow: {kind: sleep, input: base, seconds: 600}\n")
    term = Pty([sys.executable, str(launcher(tmp_path)), "apply", str(wf)], cwd=tmp_path)
    try:
        first = term.wait_for(last_clock, 120, "running timer for `slow`")
        second = term.wait_for(lambda t: (c := last_clock(t)) is not None and c >= first + 2 and c,
                               60, f"timer past {first + 2}s (first capture {first}s)")
        assert second > first  # two captures, seconds apart: the clock of the running node moved

        t0 = time.monotonic()
        os.write(term.master, b"\x03")  # Ctrl-C, as the terminal delivers it: SIGINT to the whole foreground group
        try:
            code = term.proc.wait(120)  # the node would sleep 600 s: only a hang misses this bound
        except subprocess.TimeoutExpired:
            pytest.fail(f"apply still running 120 s after Ctrl-C; screen:\n{term.text()[-3000:]}")
        took = time.monotonic() - t0
        print(f"Ctrl-C to exit: {took:.2f}s")
        term.reader.join(5)
        screen = term.text()
        assert code == 130, screen[-3000:]
        assert "interrupted: stopped slow" in screen, screen[-3000:]
        assert re.search(r"resume: olivepipe apply \S*tty\.yaml", screen), screen[-3000:]
    finally:
        term.close()


# -- apply --json ------------------------------------------------------------------------------

def test_apply_json_has_events_for_every_node_then_the_result(tmp_path):
    wf = sleep_workflow(tmp_path, "three", "  a: {kind: sleep, input: base, seconds: 0}\n"
                                           "  b: {kind: sleep, input: a, seconds: 0}\n"
                                           "  c: {kind: sleep, input: base, seconds: 0, note: c}\n")
    p = run_cli(tmp_path, "apply", "--json", wf)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(line) for line in p.stdout.strip().splitlines()]  # every line is one JSON document
    *events, result = lines
    assert result["event"] == "result" and result["ok"] is True
    assert all(e["event"] != "result" for e in events)
    for node in ("a", "b", "c"):
        mine = [e["event"] for e in events if e.get("step") == node]
        assert "start" in mine and "done" in mine, (node, mine)
        assert mine.index("start") < mine.index("done")


# -- one exit-code table for every command ----------------------------------------------------

OK = "  a: {kind: sleep, input: base, seconds: 0}\n  b: {kind: sleep, input: a, seconds: 0}\n"
FILES = {
    "ok": OK,
    "other": OK.replace("input: a, seconds: 0", "input: a, seconds: 0, note: changed"),
    "bad": "  a: {kind: sleep, input: nowhere}\n",                       # an unknown input: invalid
    "fails": "  a: {kind: sleep, input: base, fail: true}\n",
    "gpu": "  a: {kind: sleep, input: base, cuda: true}\n",              # blocked without a CUDA GPU
}
MESSY = "nodes:\n  a: {input: base, kind: sleep}\nolivepipe: 1\nmodels: {base: {path: base}}\nname: messy\n"

# (command line, apply ok.yaml first?, documented exit code)
CODES = [
    ("validate ok.yaml", False, 0),
    ("validate bad.yaml", False, 2),
    ("validate ok.yaml bad.yaml", False, 2),
    ("plan ok.yaml", False, 0),
    ("plan bad.yaml", False, 2),
    ("plan --detailed-exitcode ok.yaml", True, 0),
    ("plan --detailed-exitcode ok.yaml", False, 2),
    ("plan --detailed-exitcode bad.yaml", False, 1),
    ("plan --detailed-exitcode gpu.yaml", False, 1),
    ("status ok.yaml", True, 0),
    ("status ok.yaml", False, 2),
    ("status gpu.yaml", False, 1),
    ("status bad.yaml", False, 1),
    ("apply ok.yaml", False, 0),
    ("apply ok.yaml", True, 0),
    ("apply fails.yaml", False, 1),
    ("apply gpu.yaml", False, 1),
    ("apply bad.yaml", False, 2),
    ("apply --target nosuch ok.yaml", False, 2),
    ("diff ok.yaml ok.yaml", False, 0),
    ("diff ok.yaml other.yaml", False, 1),
    ("diff ok.yaml missing.yaml", False, 2),
    ("fmt --check ok.yaml", False, 0),
    ("fmt --check messy.yaml", False, 1),
    ("fmt --check bad.yaml", False, 2),
    ("init fresh", False, 0),
]


@pytest.mark.parametrize("argv,applied,code", CODES,
                         ids=[f"{a}{' (applied)' if ap else ''}->{c}" for a, ap, c in CODES])
def test_exit_codes(tmp_path, argv, applied, code):
    if "gpu" in argv:
        from olivepipe.run.executors.local import cuda_devices

        if cuda_devices():
            pytest.skip("this machine has a CUDA GPU: the `cuda: true` node is not blocked here")
    for name, nodes in FILES.items():
        sleep_workflow(tmp_path, name, nodes)
    write(tmp_path / "messy.yaml", MESSY)
    if applied:
        assert run_cli(tmp_path, "apply", "-q", "ok.yaml", cwd=tmp_path).returncode == 0
    p = run_cli(tmp_path, *argv.split(), cwd=tmp_path)
    assert p.returncode == code, f"{argv}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"


# -- the README's set-up, in a fresh repository ------------------------------------------------

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false",
       "-c", "init.defaultBranch=main"]


def git(repo: Path, *args) -> str:
    p = subprocess.run([*GIT, *args], cwd=repo, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.mark.e2e  # applies the starter workflow through real Olive passes
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_readme_setup_in_a_fresh_git_repository(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    p = cli("init", cwd=repo, timeout=120)
    assert p.returncode == 0, p.stderr
    p = cli("validate", "workflow.yaml", cwd=repo, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "workflow.yaml: ok (5 nodes + 1 tiny model: 6 steps)"
    assert cli("fmt", "--check", "workflow.yaml", cwd=repo, timeout=120).returncode == 0  # passes its own hook
    # only what init wrote; validate wrote nothing (no .olivepipe/ memo, no lock)
    assert git(repo, "status", "--porcelain", "-uall").splitlines() == [
        "?? .gitignore", "?? .pre-commit-config.yaml", "?? data/travel.jsonl", "?? workflow.yaml"]
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "olivepipe init")
    for args in (("validate", "workflow.yaml"), ("plan", "workflow.yaml"), ("status", "workflow.yaml")):
        p = cli(*args, cwd=repo, timeout=120)
        assert p.returncode in (0, 2), p.stderr  # status: 2 = not run yet
        assert git(repo, "status", "--porcelain", "-uall") == "", args

    # a real apply of the tiny model (about 15 s on 2 cores): its state is ignored, only the lock is new
    p = cli("apply", "-q", "workflow.yaml", cwd=repo, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    assert (repo / ".olivepipe").is_dir() and (repo / "outputs" / "travel-tiny" / "chat").exists()
    assert git(repo, "status", "--porcelain", "-uall").splitlines() == ["?? olivepipe.lock"]
    git(repo, "add", "olivepipe.lock")
    git(repo, "commit", "-q", "-m", "lock")
    p = cli("status", "workflow.yaml", cwd=repo, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr  # up to date
    # the README's next steps: the chat answer in its log, the starter's metrics, the report page
    p = cli("logs", "workflow.yaml", "chat", cwd=repo, timeout=120)
    assert p.returncode == 0 and "what is the best thing to see in chicago" in p.stdout and "  -> " in p.stdout, p.stdout
    p = cli("metrics", "workflow.yaml", cwd=repo, timeout=120)
    assert p.returncode == 0 and re.search(r"^eval\s+adapters\s+[0-9.]+", p.stdout, re.M), p.stdout + p.stderr
    page = tmp_path / "report.html"
    p = cli("report", "workflow.yaml", "-o", page, cwd=repo, timeout=120)
    assert p.returncode == 0 and 'data-node="eval"' in page.read_text(), p.stdout + p.stderr
    p = cli("apply", "workflow.yaml", cwd=repo, timeout=300)
    assert p.returncode == 0 and "nothing to do" in (p.stdout + p.stderr).lower(), p.stdout + p.stderr
    assert git(repo, "status", "--porcelain", "-uall") == ""
    # the README's "change something, re-plan": the reason, and the last time scaled to the new step count
    wf = repo / "workflow.yaml"
    wf.write_text(wf.read_text().replace("max_steps: 4", "max_steps: 8"))
    p = cli("plan", "workflow.yaml", cwd=repo, timeout=120)
    assert p.returncode == 0 and "params.training_args.max_steps: 4 -> 8" in p.stdout, p.stdout + p.stderr
    assert re.search(r"finetune .*will run\s+\(~[0-9.]+s: [0-9.]+s last time for 4 steps, scaled to 8\)", p.stdout), p.stdout


def test_init_keeps_what_exists(tmp_path):
    from olivepipe.spec.starter import GITIGNORE_BLOCK, init_repo

    write(tmp_path / "workflow.yaml", "mine\n")
    write(tmp_path / ".gitignore", "*.pyc")  # no final newline
    write(tmp_path / ".pre-commit-config.yaml", "repos: []\n")
    p = cli("init", tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "workflow.yaml").read_text() == "mine\n"
    assert f"skipped  {tmp_path / 'workflow.yaml'}: exists (--force replaces it)" in p.stdout
    assert (tmp_path / ".gitignore").read_text() == "*.pyc\n\n" + GITIGNORE_BLOCK
    assert (tmp_path / ".pre-commit-config.yaml").read_text() == "repos: []\n"
    assert "add under `repos:`" in p.stdout and "- id: olivepipe-fmt" in p.stdout and "fmt --check" in p.stdout
    # a second run appends nothing more; --force replaces the workflow only
    res = init_repo(tmp_path, force=True)
    assert res.wrote == ["workflow.yaml"] and res.appended == []
    assert (tmp_path / ".gitignore").read_text().count(".olivepipe/") == 1
    assert cli("validate", tmp_path / "workflow.yaml", timeout=120).returncode == 0


def test_init_refuses_to_write_through_a_symlink(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "data").symlink_to(outside)
    p = cli("init", repo, timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr  # UnsafePath: an error the user acts on
    assert f"refusing to write {repo / 'data'}: it is a symlink" in p.stderr
    assert list(outside.iterdir()) == [] and not (repo / "workflow.yaml").exists()
