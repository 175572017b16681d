"""Azurite, the Azure Storage emulator, started by the tests themselves (pytest fixtures).

Azurite comes from npm into .azurite/ in the repository (ignored by git):

    npm install --prefix .azurite --no-audit --no-fund azurite@3.37.0

(or set AZURITE_BLOB to an `azurite-blob` executable). Without node/npm or Azurite the tests
that need it skip and say what to install; with OLIVEPIPE_REQUIRE_AZURITE=1 (CI) they fail
instead, so a missing install step cannot pass as green.

One Azurite per test session: blob service only, on 127.0.0.1 with a port the OS picks (read
back from Azurite's own "listens on" line, so no two sessions race for a port), data in a
pytest temp folder, stopped when the session ends. Each test gets its own container. The fixtures
are conftest.py's (one definition, so one Azurite per session, or per pytest-xdist worker).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VERSION = "3.37.0"
INSTALL = f"npm install --prefix .azurite --no-audit --no-fund azurite@{VERSION}"
START_TIMEOUT_S = 120.0  # a cold node start on a loaded 2-core machine can take tens of seconds
# The emulator's well-known development account (public, documented by Microsoft). Tests only.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LISTENS = re.compile(r"Blob service (?:is )?successfully listens on https?://[^:/\s]+:(\d+)")


def _unavailable(why: str):
    msg = f"Azurite is not available: {why}. Install it with: {INSTALL}"
    if os.environ.get("OLIVEPIPE_REQUIRE_AZURITE", "").strip() not in ("", "0"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def find_azurite() -> list[str]:
    """The command that starts Azurite's blob service (skips/fails the test if there is none)."""
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not installed (Node.js >= 20 and npm are needed)")
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
        major = int(out.lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        major = 0
    if major < 20:
        _unavailable(f"node {out or '?'} is too old (Azurite {VERSION} needs Node.js >= 20)")
    given = os.environ.get("AZURITE_BLOB")
    for cand in ([Path(given)] if given else []) + [REPO / ".azurite" / "node_modules" / ".bin" / "azurite-blob"]:
        if cand.exists():
            # run the script with this node: the shebang's `env node` may find another one
            return [node, str(cand.resolve())]
    on_path = shutil.which("azurite-blob")
    if on_path:
        return [on_path]
    _unavailable("no azurite-blob in .azurite/ or on PATH" + ("" if shutil.which("npm") else " (and npm is missing)"))


class Azurite:
    def __init__(self, cmd: list[str], location: Path):
        self.location = location
        self.lines: list[str] = []
        self.port: int | None = None
        self._seen = threading.Event()
        self.proc = subprocess.Popen(
            cmd + ["--blobHost", "127.0.0.1", "--blobPort", "0", "--location", str(location),
                   "--skipApiVersionCheck", "--silent", "--loose", "--disableTelemetry"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)  # its own process group: stopped as one, and Ctrl-C is ours to handle
        threading.Thread(target=self._read, daemon=True, name="azurite-output").start()

    def _read(self):
        for line in self.proc.stdout:  # drained until it exits, so the pipe never fills
            self.lines.append(line.rstrip())
            m = _LISTENS.search(line)
            if m:
                self.port = int(m.group(1))
                self._seen.set()
        self._seen.set()

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._seen.wait(0.2) and self.port is None:
                raise RuntimeError("Azurite exited before listening:\n" + "\n".join(self.lines[-20:]))
            if self.port is not None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
                    return
                except OSError:
                    time.sleep(0.1)
        raise RuntimeError(f"Azurite did not accept connections within {timeout:g} s:\n" + "\n".join(self.lines[-20:]))

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint={self.endpoint};")

    def env(self, container: str, prefix: str = "") -> dict:
        """Environment that points olivepipe at ``container`` here (as a user would set it)."""
        return {"OLIVEPIPE_REMOTE_CACHE": f"azblob://{ACCOUNT}/{container}" + (f"/{prefix}" if prefix else ""),
                "AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def service(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def blob_store(self, container: str, prefix: str = ""):
        """A BlobStore on ``container`` configured the way a user would: from the environment."""
        from olivepipe.stores.blob import BlobStore
        from olivepipe.stores.config import remote_config

        env = self.env(container, prefix)
        return BlobStore.from_config(remote_config(None, env), env)

    def new_container(self) -> str:
        name = f"t{uuid.uuid4().hex[:20]}"
        self.service().create_container(name)
        return name

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:  # it ignores SIGTERM while closing its servers, at times
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait(30)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """A running Azurite blob service for the whole session."""
    pytest.importorskip("azure.storage.blob", reason='pip install "olivepipe[azure]" (azure-storage-blob)')
    cmd = find_azurite()
    server = Azurite(cmd, tmp_path_factory.mktemp("azurite"))
    try:
        server.wait_ready()
    except RuntimeError as e:
        server.stop()
        pytest.fail(str(e), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def container(azurite) -> str:
    """A fresh, empty container for one test."""
    return azurite.new_container()
