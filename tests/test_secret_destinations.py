"""Secrets go only where the user sent them (issue 19): a credential from the environment is
used only for an endpoint the environment (or the user's own allow-list, outside the
repository) names. A committed `.olivepipe/config.yaml` pointing elsewhere is refused with a
located message before any connection is made."""
from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from conftest import write
from olivepipe.core.errors import StoreError
from olivepipe.stores.config import credential_for, remote_config
from test_blob_store import olivepipe as cli

SAS = "sv=2024-01-01&ss=b&srt=co&sp=rl&sig=SECRETSIGNATUREVALUE0123456789"
CONN = "DefaultEndpointsProtocol=https;AccountName=teamcache;AccountKey=U0VDUkVUS0VZVkFMVUUwMTIzNDU2Nzg5;" \
       "EndpointSuffix=core.windows.net"
WF = """\
olivepipe: 1
name: leak
models:
  base: {path: base}
nodes:
  a: {kind: sleep, input: base}
"""


class Listener:
    """A loopback port that records every connection made to it (and says nothing back)."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections, self.data = 0, b""
        self._stop = False
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()
        return self

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.settimeout(2)
            try:
                self.data += conn.recv(65536)
            except OSError:
                pass
            conn.close()

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.sock.close()
        return False


def committed(tmp_path: Path, config: str) -> Path:
    write(tmp_path / "base" / "config.json", "{}")
    write(tmp_path / ".olivepipe" / "config.yaml", config)
    return write(tmp_path / "workflow.yaml", WF)


@pytest.mark.parametrize("secret_env", [{"OLIVEPIPE_BLOB_SAS": SAS},
                                        {"AZURE_STORAGE_CONNECTION_STRING": CONN.replace("teamcache", "evilacct")}])
def test_a_committed_config_pointing_elsewhere_never_gets_the_secret(tmp_path, secret_env, sleep_kind):
    with Listener() as server:
        wf = committed(tmp_path, "# the attacker's pull request\ncache:\n  remote: azblob://evilacct/loot\n"
                                 f"  account_url: http://127.0.0.1:{server.port}/evilacct\n")
        r = cli("plan", wf, env={**secret_env, "HOME": str(tmp_path / "home")}, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{tmp_path / '.olivepipe' / 'config.yaml'}:4:16: cache.account_url" in r.stderr, r.stderr
    assert "refusing before any connection" in r.stderr and "OLIVEPIPE_TRUSTED_ENDPOINTS" in r.stderr
    assert server.connections == 0 and b"SECRET" not in server.data
    assert "SECRETSIGNATURE" not in r.stdout + r.stderr and "U0VDUkVU" not in r.stdout + r.stderr


def test_a_committed_account_gets_no_sas_from_the_environment(tmp_path):
    ws = tmp_path
    committed(ws, "cache:\n  remote: azblob://evilacct/loot\n")
    cfg = remote_config(ws, {})
    with pytest.raises(StoreError) as err:
        credential_for(cfg, {"OLIVEPIPE_BLOB_SAS": SAS, "HOME": str(tmp_path / "home")})
    assert err.value.message.startswith(f"{ws / '.olivepipe' / 'config.yaml'}:2:11: cache.remote sends the SAS token")
    # the user names the account in the environment: now it is theirs to send the token to
    cfg = remote_config(ws, {"OLIVEPIPE_REMOTE_CACHE": "azblob://evilacct/loot"})
    assert credential_for(cfg, {"OLIVEPIPE_BLOB_SAS": SAS})[1] == "https://evilacct.blob.core.windows.net"


def test_the_allow_list_lives_outside_the_repository(tmp_path, monkeypatch):
    committed(tmp_path, "cache:\n  remote: azblob://teamcache/results\n"
                        "  account_url: https://teamcache.privatelink.example.com\n")
    cfg = remote_config(tmp_path, {})
    env = {"OLIVEPIPE_BLOB_SAS": SAS, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    with pytest.raises(StoreError, match="which only this config file names"):
        credential_for(cfg, env)
    assert credential_for(cfg, {**env, "OLIVEPIPE_TRUSTED_ENDPOINTS": "https://teamcache.privatelink.example.com/"}
                          )[1] == "https://teamcache.privatelink.example.com"
    write(tmp_path / "xdg" / "olivepipe" / "config.yaml",
          "trusted_endpoints: [https://teamcache.privatelink.example.com]\n")
    assert credential_for(cfg, env)[0] == SAS
    # the connection string's own endpoint is the environment's; a file's other endpoint is not
    committed(tmp_path, "cache:\n  remote: azblob://teamcache/results\n"
                        "  account_url: https://teamcache.blob.core.windows.net\n")
    assert credential_for(remote_config(tmp_path, {}), {"AZURE_STORAGE_CONNECTION_STRING": CONN})[1] == \
        "https://teamcache.blob.core.windows.net"


@pytest.mark.parametrize("url", ["http://teamcache.example.com/teamcache", "ftp://teamcache.blob.core.windows.net"])
def test_plain_http_to_another_machine_is_refused(tmp_path, url):
    committed(tmp_path, f"cache:\n  remote: azblob://teamcache/results\n  account_url: {url}\n")
    with pytest.raises(StoreError, match=r"config.yaml:3:16: cache.account_url"):
        remote_config(tmp_path, {})


def test_a_linked_config_file_is_not_read(tmp_path):
    outside = write(tmp_path / "outside" / "config.yaml", "cache:\n  remote: azblob://evilacct/loot\n")
    ws = tmp_path / "ws"
    (ws / ".olivepipe").mkdir(parents=True)
    (ws / ".olivepipe" / "config.yaml").symlink_to(outside)
    with pytest.raises(StoreError, match="symlink"):
        remote_config(ws, {})


@pytest.mark.parametrize("text, why", [
    ("a: &a [*a]\n", "alias"),
    ("cache:\n" + "  x: " + "[" * 200 + "]" * 200 + "\n", "deep"),
    ("cache:\n  remote: azblob://teamcache/results\n#" + "x" * (2 << 20) + "\n", "bytes"),
])
def test_a_hostile_config_file_is_a_located_error(tmp_path, text, why):
    committed(tmp_path, text)
    with pytest.raises(StoreError) as err:
        remote_config(tmp_path, {})
    assert ".olivepipe/config.yaml:" in err.value.message and why in err.value.message.lower()


def test_an_address_urlsplit_cannot_read_is_a_located_error(tmp_path):
    # found by bench/fuzz_long.py: an unbalanced '[' made urlsplit raise ValueError (a traceback on plan)
    committed(tmp_path, "cache:\n  remote: azblob://te[amcache/results\n")
    with pytest.raises(StoreError, match=r"config.yaml:2:11: cache.remote: .* is not a remote cache address"):
        remote_config(tmp_path, {})
