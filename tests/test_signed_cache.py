"""Signed shared-cache entries, Nix-style (issue 19): a workspace that names trusted public keys
serves only entries one of them signed; a manifest changed after signing is a miss; unsigned
caches keep working where no keys are configured, and plan says which it is. Against Azurite."""
from __future__ import annotations

import json
import os

from conftest import write
from olivepipe.stores.config import remote_config
from test_blob_store import olivepipe as cli

K1, K2, K3 = "1" * 64, "2" * 64, "3" * 64


def keygen(tmp_path, name):
    r = cli("cache", "keygen", name, "--dir", tmp_path / "keys")
    assert r.returncode == 0, r.stderr
    return tmp_path / "keys" / f"{name}.secret", r.stdout.strip()


def store(azurite, container, **env):
    from olivepipe.stores.blob import BlobStore

    e = {**azurite.env(container), **{k: str(v) for k, v in env.items()}}
    return BlobStore.from_config(remote_config(None, e), e)


def publish(s, key, folder, note):
    write(folder / "result.json", json.dumps({"note": note}))
    return s.publish(key, folder, {"kind": "sleep", "model": {"type": "hfmodel", "config": {"model_path": "$OUT"}}})


def test_only_the_trusted_writers_entries_are_served(azurite, container, tmp_path):
    trusted_secret, trusted_pub = keygen(tmp_path, "team-2026")
    other_secret, _ = keygen(tmp_path, "intruder")
    publish(store(azurite, container, OLIVEPIPE_SIGNING_KEY=trusted_secret), K1, tmp_path / "a", "trusted")
    publish(store(azurite, container, OLIVEPIPE_SIGNING_KEY=other_secret), K2, tmp_path / "b", "untrusted")
    publish(store(azurite, container), K3, tmp_path / "c", "unsigned")

    reader = store(azurite, container, OLIVEPIPE_TRUSTED_KEYS=trusted_pub)
    assert reader.get(K1) is not None and reader.peek(K1) is not None
    assert reader.get(K2) is None and "not a trusted key" in " ".join(reader.problems[K2])
    assert reader.get(K3) is None and "unsigned" in " ".join(reader.problems[K3])
    # unsigned caches keep working where no keys are configured
    assert all(store(azurite, container).get(k) is not None for k in (K1, K2, K3))

    # a signed manifest changed afterwards (here: its model config) is a miss
    cc = azurite.service().get_container_client(container)
    m = json.loads(cc.download_blob(f"entries/{K1}.json").readall())
    m["model"]["config"]["adapter_path"] = "$OUT"
    cc.upload_blob(f"entries/{K1}.json", json.dumps(m), overwrite=True)
    assert reader.get(K1) is None and "changed after it was signed" in " ".join(reader.problems[K1])
    # the trusted writer's next publish repairs it (its workspace trusts the team key too, so it sees
    # the broken manifest and replaces it, conditionally on what it saw)
    publish(store(azurite, container, OLIVEPIPE_SIGNING_KEY=trusted_secret, OLIVEPIPE_TRUSTED_KEYS=trusted_pub),
            K1, tmp_path / "a2", "trusted")
    assert reader.get(K1) is not None


def test_keys_rotate_by_name(azurite, container, tmp_path):
    old_secret, old_pub = keygen(tmp_path, "team-2026")
    again = cli("cache", "keygen", "team-2026", "--dir", tmp_path / "keys")
    assert again.returncode == 1 and "exists already" in again.stderr  # a key is never overwritten
    new_secret, new_pub = keygen(tmp_path, "team-2027")
    assert oct(os.stat(new_secret).st_mode & 0o777) == "0o600"
    publish(store(azurite, container, OLIVEPIPE_SIGNING_KEY=old_secret), K1, tmp_path / "a", "old")
    publish(store(azurite, container, OLIVEPIPE_SIGNING_KEY=new_secret), K2, tmp_path / "b", "new")
    both = store(azurite, container, OLIVEPIPE_TRUSTED_KEYS=f"{old_pub} {new_pub}")
    assert both.get(K1) is not None and both.get(K2) is not None  # during the change-over
    retired = store(azurite, container, OLIVEPIPE_TRUSTED_KEYS=new_pub)
    assert retired.get(K1) is None and retired.get(K2) is not None


def test_plan_says_whether_the_shared_cache_is_signature_checked(azurite, container, tmp_path, sleep_kind):
    _, pub = keygen(tmp_path, "team-2026")
    write(tmp_path / "ws" / "base" / "config.json", "{}")
    wf = write(tmp_path / "ws" / "workflow.yaml", "olivepipe: 1\nname: s\nmodels:\n  base: {path: base}\n"
                                                  "nodes:\n  a: {kind: sleep, input: base}\n")
    plain = cli("plan", wf, env=azurite.env(container))
    assert plain.returncode == 0 and "not signature-checked" in plain.stderr, plain.stderr
    write(tmp_path / "ws" / ".olivepipe" / "config.yaml", f"cache:\n  trusted_keys: ['{pub}']\n")
    signed = cli("plan", wf, "--json", env=azurite.env(container))
    assert signed.returncode == 0 and "only entries signed by team-2026" in json.loads(signed.stdout)["shared_cache"]
    write(tmp_path / "ws" / ".olivepipe" / "config.yaml", "cache:\n  trusted_keys: ['team:bm90IGEga2V5']\n")
    bad = cli("plan", wf, env=azurite.env(container))
    assert bad.returncode == 1 and "is not a public key" in bad.stderr
