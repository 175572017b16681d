import json
import os
import signal
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Azurite's fixtures, defined here once: a session fixture imported into several test modules is
# one per module (each started its own emulator)
from azurite import azurite, container  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "travel-tiny"


def _shared_travel() -> Path:
    """The lab's travel sample in the `shared/` folder beside the checkout (a worktree may sit
    deeper: the nearest ancestor with shared/data wins; OLIVEPIPE_SHARED names it outright)."""
    import os

    if os.environ.get("OLIVEPIPE_SHARED"):
        return Path(os.environ["OLIVEPIPE_SHARED"]) / "data" / "data_sample_travel.jsonl"
    for up in REPO.parents:
        if (up / "shared" / "data" / "data_sample_travel.jsonl").is_file():
            return up / "shared" / "data" / "data_sample_travel.jsonl"
    return REPO.parent / "shared" / "data" / "data_sample_travel.jsonl"


SHARED_TRAVEL = _shared_travel()  # never copied into the project: tests link or copy it into tmp folders
TESTS = Path(__file__).resolve().parent

# A developer's shell must not turn the whole suite into a tiered (remote) cache.
for _v in ("OLIVEPIPE_REMOTE_CACHE", "OLIVEPIPE_BLOB_ACCOUNT_URL", "OLIVEPIPE_BLOB_CONTAINER",
           "OLIVEPIPE_BLOB_PREFIX", "OLIVEPIPE_BLOB_SAS", "OLIVEPIPE_REMOTE_PUSH", "OLIVEPIPE_CACHE_DIR"):
    os.environ.pop(_v, None)

# A suite started as a background job (`cmd &` in a script) inherits SIGINT ignored (Python's
# getsignal still says default_int_handler), and an ignored signal stays ignored across exec: the
# Ctrl-C tests' applies would never see their Ctrl-C. A handler set here is reset to the default in
# every child.
signal.signal(signal.SIGINT, signal.default_int_handler)

# Worker processes import test-only node kinds (fakekinds.py) by module name.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)


def pytest_collection_modifyitems(items):
    """Files that run real Olive passes (a test marked e2e) first, each file's tests in their own
    order: on pytest-xdist workers (tests/run.sh, --dist loadfile with its reordering off) the
    long files start at once and the many short ones fill in, so both workers end together."""
    e2e_files = {item.path for item in items if item.get_closest_marker("e2e")}
    items.sort(key=lambda item: item.path not in e2e_files)  # stable: the order within stays


@pytest.fixture
def sleep_kind():
    """Registers the test-only `sleep` node kind, as a plugin would; removed afterwards."""
    import fakekinds

    from olivepipe import kinds

    kinds.register(fakekinds.KIND, "fakekinds")
    yield fakekinds.KIND
    kinds.unregister("sleep")


@pytest.fixture
def echo_kind():
    """Registers the test-only `echo` node kind (echokind.py): a result that depends only on what it read."""
    import echokind

    from olivepipe import kinds

    kinds.register(echokind.KIND, "echokind")
    yield echokind.KIND
    kinds.unregister("echo")


def copy_example(dest: Path) -> Path:
    """A private copy of the tiny travel example, without any state; returns its workflow file."""
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".olivepipe", "outputs", "olivepipe.lock"))
    return dest / "workflow.yaml"


@pytest.fixture
def example(tmp_path) -> Path:
    """A private copy of the tiny travel example (with its own .olivepipe and lock)."""
    return copy_example(tmp_path / "travel")


def tree_snapshot(root: Path) -> dict:
    """{relative path: (mode, size, mtime_ns, sha256 of files)} of everything under root (links
    not followed): equal snapshots mean nothing was written, deleted or touched."""
    import hashlib

    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = os.lstat(p)
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else None
            out[p.relative_to(root).as_posix()] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out


def apply_result(stdout: str) -> dict:
    """The result document of `apply --json` (its last line; the lines before are events)."""
    return json.loads(stdout.strip().splitlines()[-1])


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def located(text: str, error) -> tuple[dict, callable]:
    """A SpecError's problems by (line, col), and ``at(line, snippet)`` that pops the one at
    the snippet's place in ``text`` (so a test can end with ``assert got == {}``)."""
    got = {(p.line, p.col): (p.message, p.hint) for p in error.problems}

    def at(line, snippet):
        col = text.splitlines()[line - 1].index(snippet) + 1
        return got.pop((line, col))

    return got, at


def cli(*args, cwd=None, env=None, timeout=1800) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (exit codes, stderr and all)."""
    e = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "olivepipe.cli", *map(str, args)], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=timeout)


MINIMAL = """\
olivepipe: 1
name: mini
models:
  base: {tiny: {arch: phi3}}
datasets:
  travel: {files: travel.jsonl, text_template: "<|user|>\\n{prompt}<|end|>\\n<|assistant|>\\n{response}<|end|>", max_seq_len: 64}
nodes:
  finetune: {pass: lora, input: base, data: travel, params: {r: 4, max_steps: 2, torch_dtype: float32}}
  onnx: {pass: model-builder, input: finetune, params: {precision: int4}}
  adapters: {pass: extract-adapters, input: onnx}
"""


@pytest.fixture
def mini(tmp_path) -> Path:
    wf = write(tmp_path / "mini" / "workflow.yaml", MINIMAL)
    write(tmp_path / "mini" / "travel.jsonl", '{"prompt": "a", "response": "b"}\n' * 8)
    return wf
