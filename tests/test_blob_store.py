"""The shared cache on Azure Blob storage: BlobStore, TieredStore, configuration and
`cache push/pull`, against a real Azurite started by the tests (tests/azurite.py)."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from azurite import ACCOUNT, ACCOUNT_KEY
from conftest import write
from fakes import FakeExecutor
from olivepipe.core.errors import StoreError
from olivepipe.core.hashing import file_digest
from olivepipe.stores import open_store
from olivepipe.stores.config import load_cache_section, remote_config
from olivepipe.stores.local import LocalStore
from trees import make_tree

KEY_A, KEY_B, KEY_C = "a" * 64, "b" * 64, "c" * 64
MODEL = {"type": "hfmodel", "config": {"model_path": "$OUT"}}


def tree_bytes(d: Path) -> dict:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(Path(d).rglob("*")) if p.is_file()}


def blob_names(azurite, container) -> list[str]:
    return sorted(b.name for b in azurite.service().get_container_client(container).list_blobs())


FILES = {"model.onnx.data": os.urandom(5 << 20) + b"end",  # > one 4 MiB download chunk
         "model.json": b'{"a": 1}', "sub/dir/empty.txt": b"", "sub/copy.json": b'{"a": 1}'}


# -- BlobStore ------------------------------------------------------------------------------------

def test_publish_peek_get_fetch_round_trip_is_byte_for_byte(azurite, container, tmp_path):
    store = azurite.blob_store(container)
    src = make_tree(tmp_path / "src", FILES)
    before = tree_bytes(src)
    assert store.peek(KEY_A) is None and store.get(KEY_A) is None

    entry = store.publish(KEY_A, src, {"kind": "sleep", "record": {"x": 1}})
    assert tree_bytes(src) == before  # a remote publish only reads its source
    assert entry.files["model.json"]["digest"] == file_digest(src / "model.json")
    assert store.peek(KEY_A).digest == store.get(KEY_A).digest == entry.digest
    assert store.get(KEY_A).manifest["record"] == {"x": 1} and store.keys() == [KEY_A]

    got = store.fetch(store.get(KEY_A), tmp_path / "dest")
    assert tree_bytes(got) == before
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o444 for p in got.rglob("*") if p.is_file())
    private = store.fetch(entry)  # no dest: a fresh private folder
    assert tree_bytes(private) == before and stat.S_IMODE(private.stat().st_mode) == 0o700
    with pytest.raises(StoreError, match="not an empty folder"):
        store.fetch(entry, got)
    # the layout the docs promise: objects by digest, the manifest last under entries/
    digests = {file_digest(src / rel) for rel in FILES}
    assert blob_names(azurite, container) == sorted([f"entries/{KEY_A}.json"] + [f"objects/{d}" for d in digests])


def test_a_prefix_keeps_the_store_inside_it(azurite, container, tmp_path):
    store = azurite.blob_store(container, "team/olivepipe")
    store.publish(KEY_A, make_tree(tmp_path / "s", {"x": b"1"}), {})
    assert all(n.startswith("team/olivepipe/") for n in blob_names(azurite, container))
    assert azurite.blob_store(container).keys() == [] and store.keys() == [KEY_A]


def test_identical_files_are_stored_once(azurite, container, tmp_path):
    store = azurite.blob_store(container)
    shared = os.urandom(300_000)
    store.publish(KEY_A, make_tree(tmp_path / "a", {"w.bin": shared, "copy/w.bin": shared, "a.txt": b"a"}), {})
    first = dict(store.stats)
    store.publish(KEY_B, make_tree(tmp_path / "b", {"other/name.bin": shared, "b.txt": b"b"}), {})
    objects = [n for n in blob_names(azurite, container) if n.startswith("objects/")]
    assert len(objects) == 3  # shared, a.txt, b.txt
    assert first["objects_uploaded"] == 2  # the duplicate inside entry A went up once
    assert store.stats["objects_uploaded"] - first["objects_uploaded"] == 1  # only b.txt for entry B
    assert store.stats["bytes_uploaded"] - first["bytes_uploaded"] == 1
    assert tree_bytes(store.fetch(store.get(KEY_B), tmp_path / "got"))["other/name.bin"] == shared


def test_a_publish_race_has_one_winner_and_the_loser_serves_its_entry(azurite, container, tmp_path):
    """Two publishers (two machines: two store objects) of one key with different bytes, both past
    their "is it there?" check before either writes its manifest."""
    from olivepipe.stores.blob import BlobStore

    gate = threading.Barrier(2, timeout=60)

    class Racing(BlobStore):
        def _upload_objects(self, files, paths):
            super()._upload_objects(files, paths)
            gate.wait()  # both have uploaded their objects; now both create the manifest

    env = azurite.env(container)
    stores = [Racing.from_config(remote_config(None, env), env) for _ in range(2)]
    results, errors = [None, None], []

    def go(i):
        try:
            results[i] = stores[i].publish(KEY_A, make_tree(tmp_path / f"r{i}", {"out.txt": f"run {i}".encode()}), {})
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert results[0].manifest["id"] == results[1].manifest["id"]  # both hold the one winner's entry
    assert results[0].digest == results[1].digest
    assert [n for n in blob_names(azurite, container) if n.startswith("entries/")] == [f"entries/{KEY_A}.json"]
    served = azurite.blob_store(container).get(KEY_A)
    assert served.manifest["id"] == results[0].manifest["id"]
    assert tree_bytes(azurite.blob_store(container).fetch(served, tmp_path / "got"))["out.txt"] in (b"run 0", b"run 1")


def test_health_catches_a_deleted_object_and_a_publish_repairs_it(azurite, container, tmp_path):
    store = azurite.blob_store(container)
    entry = store.publish(KEY_A, make_tree(tmp_path / "a", {"x.bin": b"x" * 1000, "y.txt": b"y"}), {})
    azurite.service().get_container_client(container).delete_blob(f"objects/{entry.files['x.bin']['digest']}")
    assert store.peek(KEY_A) is not None  # the manifest is still there...
    assert store.get(KEY_A) is None  # ...but it cannot be served
    assert "x.bin: object" in store.problems[KEY_A][0] and "missing" in store.problems[KEY_A][0]
    # the same bytes again: the missing object is uploaded, and the old manifest is whole again
    again = store.publish(KEY_A, make_tree(tmp_path / "b", {"x.bin": b"x" * 1000, "y.txt": b"y"}), {})
    assert again.manifest["id"] == entry.manifest["id"] and store.get(KEY_A) is not None
    # other bytes (a node that is not deterministic): the broken manifest is replaced by the new one
    cc = azurite.service().get_container_client(container)
    cc.delete_blob(f"objects/{entry.files['x.bin']['digest']}")
    other = store.publish(KEY_A, make_tree(tmp_path / "c", {"x.bin": b"z" * 999}), {})
    assert other.manifest["id"] != entry.manifest["id"]
    assert store.get(KEY_A).manifest["id"] == other.manifest["id"]
    assert tree_bytes(store.fetch(store.get(KEY_A), tmp_path / "got")) == {"x.bin": b"z" * 999}


def test_same_size_corruption_is_caught_on_download_and_repaired(azurite, container, tmp_path):
    local = LocalStore(tmp_path / "local")
    from olivepipe.stores.tiered import TieredStore

    store = azurite.blob_store(container)
    entry = store.publish(KEY_A, make_tree(tmp_path / "a", {"w.bin": b"good" * 500}), {})
    obj = f"objects/{entry.files['w.bin']['digest']}"
    azurite.service().get_container_client(container).upload_blob(obj, b"evil" * 500, overwrite=True)
    assert store.get(KEY_A) is not None  # HEAD sees the right size...
    with pytest.raises(StoreError, match="does not match its digest"):
        store.fetch(store.get(KEY_A), tmp_path / "dest")  # ...the streamed sha256 does not
    assert list((tmp_path / "dest").iterdir()) == []  # nothing half-fetched is left
    tiered = TieredStore(local, store)
    assert tiered.get(KEY_A) is None and local.keys() == []  # never served, never pulled
    tiered.publish(KEY_A, make_tree(tmp_path / "b", {"w.bin": b"good" * 500}), {})  # the node ran here
    fresh = azurite.blob_store(container)
    assert tree_bytes(fresh.fetch(fresh.get(KEY_A), tmp_path / "again")) == {"w.bin": b"good" * 500}


def test_remove_drops_the_manifest_only(azurite, container, tmp_path):
    store = azurite.blob_store(container)
    store.publish(KEY_A, make_tree(tmp_path / "a", {"x": b"1"}), {})
    store.remove(KEY_A)
    store.remove(KEY_A)  # idempotent
    assert store.keys() == [] and store.get(KEY_A) is None
    assert [n for n in blob_names(azurite, container) if n.startswith("objects/")]  # gc's business


def test_a_missing_container_says_how_to_create_it(azurite, tmp_path):
    store = azurite.blob_store("no-such-container")
    with pytest.raises(StoreError, match="container does not exist") as e:
        store.get(KEY_A)
    assert "az storage container create" in e.value.hint and ACCOUNT_KEY not in str(e.value.format())


# -- TieredStore ----------------------------------------------------------------------------------

def test_tiered_pulls_a_remote_only_entry_into_local_and_serves_it(azurite, container, tmp_path):
    from olivepipe.stores.blob import BlobEntry
    from olivepipe.stores.local import LocalEntry
    from olivepipe.stores.tiered import TieredStore

    remote = azurite.blob_store(container)
    remote.publish(KEY_A, make_tree(tmp_path / "built", FILES), {"kind": "sleep", "model": MODEL})
    local = LocalStore(tmp_path / "cache")
    tiered = TieredStore(local, azurite.blob_store(container))
    peeked = tiered.peek(KEY_A)
    assert isinstance(peeked, BlobEntry) and not local.root.exists()  # plan's lookup writes nothing
    got = tiered.get(KEY_A)
    assert isinstance(got, LocalEntry) and local.keys() == [KEY_A] and tiered.pulled == [KEY_A]
    assert got.digest == peeked.digest and got.manifest["model"] == MODEL
    assert tree_bytes(tiered.fetch(got)) == FILES and tiered.fetch(got).is_relative_to(local.root)

    def no_remote(*a, **k):
        raise AssertionError("served from local: the remote is not asked again")

    tiered.remote.get = tiered.remote.peek = no_remote
    assert tiered.get(KEY_A).digest == got.digest and tiered.peek(KEY_A) is not None


def test_tiered_publish_writes_both_and_a_remote_failure_keeps_the_local_entry(azurite, container, tmp_path):
    from azure.storage.blob import ContainerClient

    from olivepipe.stores.blob import BlobStore
    from olivepipe.stores.tiered import TieredStore

    tiered = TieredStore(LocalStore(tmp_path / "one"), azurite.blob_store(container))
    e = tiered.publish(KEY_A, make_tree(tmp_path / "a", {"x": b"1"}), {"kind": "k"})
    assert tiered.local.get(KEY_A).digest == e.digest == tiered.remote.get(KEY_A).digest
    assert tiered.remote.get(KEY_A).manifest["kind"] == "k"

    with socket_closed() as port:  # a remote that cannot be reached
        url = f"http://127.0.0.1:{port}/{ACCOUNT}"
        dead = BlobStore(ContainerClient(url, container, credential={"account_name": ACCOUNT,
                                                                     "account_key": ACCOUNT_KEY},
                                         retry_total=0, connection_timeout=5), label="azblob://dead/c")
        broken = TieredStore(LocalStore(tmp_path / "two"), dead)
        assert broken.get(KEY_A) is None and broken.remote_errors  # unreachable: a miss, with a warning
        dead.get = dead.peek = dead.publish = _not_again  # known down: not asked (nor waited on) again
        assert broken.get(KEY_C) is None and broken.peek(KEY_C) is None
        with pytest.raises(StoreError) as err:
            broken.publish(KEY_B, make_tree(tmp_path / "b", {"y": b"2"}), {})
    assert "stored in the local cache" in err.value.message and "olivepipe cache push" in err.value.hint
    assert broken.local.get(KEY_B) is not None  # the local entry stands
    assert ACCOUNT_KEY not in err.value.format()

    readonly = TieredStore(LocalStore(tmp_path / "three"), azurite.blob_store(container), push=False)
    readonly.publish(KEY_C, make_tree(tmp_path / "c", {"z": b"3"}), {})
    assert readonly.local.get(KEY_C) is not None and readonly.remote.get(KEY_C) is None


def _not_again(*a, **k):
    raise AssertionError("a remote known to be unreachable was asked again")


class socket_closed:
    """A loopback port nothing listens on (bound, then closed: refused at once)."""

    def __enter__(self):
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return self.port

    def __exit__(self, *exc):
        return False


WF = """\
olivepipe: 1
name: shared
models:
  base: {path: base}
nodes:
  a: {kind: sleep, input: base, note: a}
  b: {kind: sleep, input: a, note: b}
"""


def workspace(folder: Path) -> Path:
    write(folder / "base" / "config.json", "{}")
    return write(folder / "workflow.yaml", WF)


def test_apply_through_a_tiered_store_shares_results_with_a_fresh_workspace(azurite, container, tmp_path,
                                                                            sleep_kind, monkeypatch):
    from olivepipe.flow.scheduler import apply
    from olivepipe.flow.plan import make_plan
    from olivepipe.stores.tiered import TieredStore
    from olivepipe.flow.workspace import open_workspace

    wf1 = workspace(tmp_path / "one")
    store1 = TieredStore(LocalStore(tmp_path / "one" / ".olivepipe" / "cache"), azurite.blob_store(container))
    ex1 = FakeExecutor()
    ws1 = open_workspace(wf1, executor=ex1, store=store1)
    res1 = apply(ws1, make_plan(ws1))
    assert res1.ok and ex1.started == ["a", "b"]
    keys = sorted(o.key for o in res1.outcomes.values())
    assert store1.local.keys() == keys == azurite.blob_store(container).keys()  # published to both

    # a second machine: empty local cache, the remote configured the way a user does it
    wf2 = workspace(tmp_path / "two")
    for k, v in azurite.env(container).items():
        monkeypatch.setenv(k, v)
    ex2 = FakeExecutor()
    ws2 = open_workspace(wf2, executor=ex2)
    assert isinstance(ws2.store, TieredStore) and ws2.store.local.keys() == []
    plan = make_plan(ws2)
    assert [s.status for s in plan.steps] == ["cached", "cached"]
    assert ws2.store.local.keys() == []  # plan pulled nothing
    res2 = apply(ws2, plan)
    assert res2.ok and ex2.started == []  # no job ran
    assert {o.status for o in res2.outcomes.values()} == {"cached"}
    assert sorted(ws2.store.local.keys()) == keys and sorted(ws2.store.pulled) == keys
    out1, out2 = (tmp_path / d / "outputs" / "shared" / "b" / "result.json" for d in ("one", "two"))
    assert out2.read_bytes() == out1.read_bytes()
    from olivepipe.core import lock as lockfile

    assert lockfile.nodes(wf1.parent / "olivepipe.lock", "shared") == lockfile.nodes(wf2.parent / "olivepipe.lock",
                                                                                    "shared")
    assert_no_secret(tmp_path, azurite, container)


def assert_no_secret(folder: Path, azurite, container, *texts: str):
    """The account key is nowhere: files under ``folder`` (caches, manifests, locks, logs,
    outputs), any blob in the container, or the given texts."""
    needles = [ACCOUNT_KEY.encode(), ACCOUNT_KEY[:24].encode()]
    for p in folder.rglob("*"):
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            assert not any(n in data for n in needles), f"account key in {p}"
    cc = azurite.service().get_container_client(container)
    for b in cc.list_blobs():
        data = cc.download_blob(b.name).readall()
        assert not any(n in data for n in needles), f"account key in blob {b.name}"
    for t in texts:
        assert ACCOUNT_KEY not in t and ACCOUNT_KEY[:24] not in t


# -- the CLI --------------------------------------------------------------------------------------

# the real CLI, with the test-only `sleep` kind registered first (as a plugin would)
CLI = ("import sys, fakekinds; from olivepipe import kinds; kinds.register(fakekinds.KIND, 'fakekinds'); "
       "from olivepipe.cli import main; sys.argv[0] = 'olivepipe'; main()")


def olivepipe(*args, env=None, cwd=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("OLIVEPIPE_", "AZURE_"))}
    return subprocess.run([sys.executable, "-c", CLI, *map(str, args)], env={**e, **(env or {})}, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_cache_push_and_pull_through_the_cli(azurite, container, tmp_path, sleep_kind):
    from olivepipe.flow.scheduler import apply
    from olivepipe.flow.plan import make_plan
    from olivepipe.flow.workspace import open_workspace

    wf1 = workspace(tmp_path / "one")
    ws1 = open_workspace(wf1, executor=FakeExecutor(), store=LocalStore(tmp_path / "one" / ".olivepipe" / "cache"))
    assert apply(ws1, make_plan(ws1)).ok  # built without a remote
    keys = ws1.store.keys()
    env = azurite.env(container)
    outputs = []

    first = olivepipe("cache", "push", wf1, "--json", env=env)
    outputs.append(first.stdout + first.stderr)
    assert first.returncode == 0, first.stderr
    pushed = json.loads(first.stdout)
    assert (pushed["transferred"], pushed["up_to_date"], pushed["ok"]) == (2, 0, True) and pushed["bytes"] > 0
    assert azurite.blob_store(container).keys() == keys
    again = olivepipe("cache", "push", wf1, env=env)
    outputs.append(again.stdout + again.stderr)
    assert again.returncode == 0 and "pushed 0 results (0 files, 0 bytes)" in again.stdout
    assert "2 already there" in again.stdout

    wf2 = workspace(tmp_path / "two")
    shutil.copy(tmp_path / "one" / "olivepipe.lock", tmp_path / "two" / "olivepipe.lock")  # committed with the workflow
    pulled = olivepipe("cache", "pull", wf2, "--json", env=env)
    outputs.append(pulled.stdout + pulled.stderr)
    assert pulled.returncode == 0, pulled.stderr
    got = json.loads(pulled.stdout)
    assert (got["transferred"], got["up_to_date"], got["files"]) == (2, 0, 2) and got["bytes"] == pushed["bytes"]
    local2 = LocalStore(tmp_path / "two" / ".olivepipe" / "cache")
    assert local2.keys() == keys
    assert [local2.get(k).digest for k in keys] == [ws1.store.get(k).digest for k in keys]
    twice = olivepipe("cache", "pull", wf2, "--json", env=env)
    outputs.append(twice.stdout + twice.stderr)
    assert twice.returncode == 0 and json.loads(twice.stdout)["transferred"] == 0
    ex = FakeExecutor()
    ws2 = open_workspace(wf2, executor=ex, store=local2)
    assert apply(ws2, make_plan(ws2)).ok and ex.started == []  # everything was pulled

    # a result the remote lacks: pull says which, and fails
    azurite.blob_store(container).remove(keys[0])
    wf3 = workspace(tmp_path / "three")
    shutil.copy(tmp_path / "one" / "olivepipe.lock", tmp_path / "three" / "olivepipe.lock")
    short = olivepipe("cache", "pull", wf3, env=env)
    outputs.append(short.stdout + short.stderr)
    assert short.returncode == 1 and "missing in the remote cache: 1" in short.stderr and keys[0][:12] in short.stderr
    # --all pushes every local entry, and repairs the removed one
    everything = olivepipe("cache", "push", "--all", "--cache-dir", tmp_path / "one" / ".olivepipe" / "cache",
                           "--json", env=env, cwd=tmp_path)
    outputs.append(everything.stdout + everything.stderr)
    assert everything.returncode == 0 and json.loads(everything.stdout)["transferred"] == 1
    nothing = olivepipe("cache", "push", wf1)  # no remote configured: a clear error, exit 1
    assert nothing.returncode == 1 and "no remote cache is configured" in nothing.stderr
    assert_no_secret(tmp_path, azurite, container, *outputs)


def test_bad_credentials_fail_cleanly_and_never_show_the_secret(azurite, container, tmp_path, sleep_kind):
    wf = workspace(tmp_path / "w")
    from olivepipe.flow.scheduler import apply
    from olivepipe.flow.plan import make_plan
    from olivepipe.flow.workspace import open_workspace

    ws = open_workspace(wf, executor=FakeExecutor(), store=LocalStore(tmp_path / "w" / ".olivepipe" / "cache"))
    assert apply(ws, make_plan(ws)).ok
    wrong_key = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="
    bad = {**azurite.env(container),
           "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string.replace(ACCOUNT_KEY, wrong_key)}
    res = olivepipe("cache", "push", wf, env=bad)
    assert res.returncode == 1 and "access denied" in res.stderr, res.stderr
    assert wrong_key not in res.stdout + res.stderr and wrong_key[:20] not in res.stdout + res.stderr
    sas = "sv=2023-11-03&ss=b&srt=co&sp=rl&se=2099-01-01T00:00:00Z&sig=c2VjcmV0U2lnbmF0dXJlVmFsdWUxMjM0NTY3OA%3D"
    res = olivepipe("cache", "push", wf, env={**azurite.env(container), "OLIVEPIPE_BLOB_SAS": sas,
                                              "OLIVEPIPE_BLOB_ACCOUNT_URL": azurite.endpoint})
    assert res.returncode == 1 and "access denied" in res.stderr, res.stderr
    assert "c2VjcmV0U2lnbmF0dXJl" not in res.stdout + res.stderr


# -- configuration (no Azurite needed) ----------------------------------------------------------

def test_remote_addresses_parse_and_bad_ones_are_refused():
    env = {"OLIVEPIPE_REMOTE_CACHE": "azblob://myacct/results/team/a"}
    cfg = remote_config(None, env)
    assert (cfg.account, cfg.container, cfg.prefix, cfg.endpoint) == (
        "myacct", "results", "team/a", "https://myacct.blob.core.windows.net")
    assert cfg.push and cfg.url == "azblob://myacct/results/team/a"
    cfg = remote_config(None, {"OLIVEPIPE_BLOB_ACCOUNT_URL": "http://127.0.0.1:10000/devstoreaccount1",
                               "OLIVEPIPE_BLOB_CONTAINER": "cache", "OLIVEPIPE_REMOTE_PUSH": "0"})
    assert (cfg.account, cfg.container, cfg.push) == ("devstoreaccount1", "cache", False)
    assert remote_config(None, {}) is None
    for bad, why in [("s3://a/b", "not a remote cache address"), ("azblob://myacct", "names no container"),
                     ("azblob://My_Acct/c1c", "not a storage account name"),
                     ("azblob://myacct/c1c?sv=1&sig=abc", "carries no credentials"),
                     ("azblob://myacct/c1c/../x", "not a plain folder path")]:
        with pytest.raises(StoreError, match=why):
            remote_config(None, {"OLIVEPIPE_REMOTE_CACHE": bad})
    with pytest.raises(StoreError, match="both OLIVEPIPE_REMOTE_CACHE and OLIVEPIPE_BLOB_CONTAINER are set"):
        remote_config(None, {**env, "OLIVEPIPE_BLOB_CONTAINER": "x1x"})
    with pytest.raises(StoreError, match="is for account 'other'"):
        remote_config(None, {**env, "OLIVEPIPE_BLOB_ACCOUNT_URL": "https://other.blob.core.windows.net"})


def test_connection_string_for_another_account_is_refused():
    from olivepipe.stores.config import credential_for

    cfg = remote_config(None, {"OLIVEPIPE_REMOTE_CACHE": "azblob://myacct/results"})
    conn = f"DefaultEndpointsProtocol=https;AccountName=other;AccountKey={ACCOUNT_KEY};EndpointSuffix=core.windows.net"
    with pytest.raises(StoreError, match="is for storage account 'other'") as e:
        credential_for(cfg, {"AZURE_STORAGE_CONNECTION_STRING": conn})
    assert ACCOUNT_KEY not in e.value.format()
    cred, endpoint, how, secrets = credential_for(cfg, {"AZURE_STORAGE_CONNECTION_STRING": conn.replace("other", "myacct")})
    assert cred == {"account_name": "myacct", "account_key": ACCOUNT_KEY}
    assert endpoint == "https://myacct.blob.core.windows.net" and ACCOUNT_KEY not in how and ACCOUNT_KEY in secrets


def test_config_file_names_the_remote_and_secrets_in_it_are_refused(tmp_path):
    ws = tmp_path / "ws"
    write(ws / ".olivepipe" / "config.yaml", "cache:\n  remote: azblob://myacct/results/p\n  push: false\n")
    cfg = remote_config(ws, {})
    assert (cfg.url, cfg.push, cfg.source) == ("azblob://myacct/results/p", False, str(ws / ".olivepipe" / "config.yaml"))
    assert remote_config(ws, {"OLIVEPIPE_REMOTE_CACHE": "off"}) is None  # the environment turns it off
    assert remote_config(ws, {"OLIVEPIPE_REMOTE_CACHE": "azblob://myacct/other"}).container == "other"
    secret = f"DefaultEndpointsProtocol=https;AccountName=myacct;AccountKey={ACCOUNT_KEY}"
    for text, where in [(f"cache:\n  remote: azblob://myacct/results\n  connection_string: '{secret}'\n",
                         "cache.connection_string"),
                        (f"cache:\n  remote: '{secret}'\n", "cache.remote"),
                        (f"other:\n  note: '{secret}'\n", "other.note"),
                        ("cache:\n  remote: azblob://myacct/results\n  sas: 'sv=1&sig=abc'\n", "cache.sas")]:
        write(ws / ".olivepipe" / "config.yaml", text)
        with pytest.raises(StoreError, match="holds a credential") as e:
            load_cache_section(ws / ".olivepipe" / "config.yaml")
        assert where in e.value.message and ACCOUNT_KEY not in e.value.format() and "abc" not in e.value.format()
        assert "AZURE_STORAGE_CONNECTION_STRING" in e.value.hint
    write(ws / ".olivepipe" / "config.yaml", "cache:\n  remtoe: azblob://myacct/results\n")
    with pytest.raises(StoreError, match="unknown setting `cache.remtoe`"):
        remote_config(ws, {})


def test_open_store_is_the_local_store_without_a_remote(tmp_path, monkeypatch):
    for k in ("OLIVEPIPE_REMOTE_CACHE", "OLIVEPIPE_BLOB_CONTAINER", "OLIVEPIPE_BLOB_ACCOUNT_URL"):
        monkeypatch.delenv(k, raising=False)
    store = open_store(tmp_path / "ws" / ".olivepipe" / "cache", base=tmp_path / "ws")
    assert type(store) is LocalStore and store.base == tmp_path / "ws"
    write(tmp_path / "ws" / ".olivepipe" / "config.yaml", "cache: {remote: 'azblob://myacct/results'}\n")
    tiered = open_store(tmp_path / "ws" / ".olivepipe" / "cache")  # the config next to the default cache
    assert type(tiered).__name__ == "TieredStore" and tiered.remote.label == "azblob://myacct/results"
    assert tiered.root == tmp_path / "ws" / ".olivepipe" / "cache"
    assert tiered.remote._container is None  # opening made no client, so no request

    class NoRemote:
        def __getattr__(self, name):
            raise AssertionError(f"the remote was used ({name}) by a local-only command")

    # ls / verify / gc are about this machine: through the tiered store they never touch the remote
    tiered.remote._container = NoRemote()
    from olivepipe.stores.gc import collect
    from olivepipe.report.summary import cache_rows

    tiered.local.ensure()
    tiered.local.publish(KEY_A, make_tree(tmp_path / "a", {"x": b"1"}), {"kind": "k"})
    assert [r["key"] for r in cache_rows(tiered)] == [KEY_A] and tiered.verify(tiered.load(KEY_A)) == []
    assert collect(tiered, tmp_path / "ws")["entries_removed"] == [KEY_A] and tiered.keys() == []
