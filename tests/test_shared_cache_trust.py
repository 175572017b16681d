"""A shared cache is trusted no further than its key proves (issue 19): what a reader does with
a pulled entry (how the model loads, whether remote code runs, which paths are read) comes from
the reader's own workflow, never from a manifest someone else pushed. Against Azurite."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write

WF = """\
olivepipe: 1
name: shared
models:
  base: {path: base}
nodes:
  a: {kind: sleep, input: base, note: a}
  b: {kind: hf-config, input: a}
"""

EVIL = """\
import os, pathlib
pathlib.Path(os.environ["EVIL_MARKER"]).write_text("the attacker's code ran")
from transformers import PretrainedConfig
class EvilConfig(PretrainedConfig):
    model_type = "evil-cfg"
"""


@pytest.fixture
def hf_kind(sleep_kind):
    import hfconfigkind

    from olivepipe import kinds

    kinds.register(hfconfigkind.KIND, "hfconfigkind")
    yield hfconfigkind.KIND
    kinds.unregister("hf-config")


def push_evil_entry(store, key: str, folder: Path, model: dict) -> None:
    """What a writer with write access to the container can do: any files, any manifest fields."""
    write(folder / "config.json", json.dumps({"model_type": "evil-cfg", "auto_map": {"AutoConfig": "evil.EvilConfig"}}))
    write(folder / "evil.py", EVIL)
    store.publish(key, folder, {"model": model, "kind": "sleep"})


def test_a_pushed_entry_asking_for_remote_code_runs_none(azurite, container, tmp_path, hf_kind, monkeypatch):
    from olivepipe.flow.scheduler import apply
    from olivepipe.flow.plan import make_plan
    from olivepipe.flow.workspace import open_workspace

    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    for k, v in azurite.env(container).items():
        monkeypatch.setenv(k, v)
    write(tmp_path / "ws" / "base" / "config.json", "{}")
    wf = write(tmp_path / "ws" / "workflow.yaml", WF)
    ws = open_workspace(wf)
    key_a = next(s.key for s in make_plan(ws).steps if s.name == "a")
    push_evil_entry(azurite.blob_store(container), key_a, tmp_path / "evil",
                    {"type": "hfmodel", "config": {"model_path": "$OUT", "trust_remote_code": True,
                                                   "load_kwargs": {"trust_remote_code": True}}})

    plan = make_plan(ws)
    assert [s.status for s in plan.steps] == ["cached", "run"]  # the writer's result is served...
    res = apply(ws, plan)
    assert res.ok, res
    assert not marker.exists(), "a shared-cache writer ran code on the reader"
    seen = json.loads((tmp_path / "ws" / "outputs" / "shared" / "b" / "seen.json").read_text())
    # ...but loaded the way this workflow says: its model does not trust remote code
    assert seen == [{"loaded": False, "error": "ValueError", "load_kwargs": {"trust_remote_code": False}}]

    # `cache verify` no longer calls the entry clean: it names what readers ignore
    out = subprocess.run([sys.executable, "-m", "olivepipe.cli", "cache", "verify", "--cache-dir",
                          str(tmp_path / "ws" / ".olivepipe" / "cache")], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "OLIVEPIPE_REMOTE_CACHE": "off"})
    assert out.returncode == 1, out.stdout + out.stderr
    assert key_a[:16] in out.stdout and "trust_remote_code" in out.stdout


@pytest.mark.parametrize("model, why", [
    ({"type": "hfmodel", "config": {"model_path": "/home/someone/.ssh"}}, "outside the result"),
    ({"type": "hfmodel", "config": {"model_path": "$OUT/../../x"}}, "outside the result"),
    ({"type": "onnxmodel", "config": {"model_path": "$OUT", "model_attributes": {"additional_files": ["/etc/passwd"]}}},
     "outside the result"),
    ({"type": "pytorchmodel", "config": {"model_path": "$OUT", "model_script": "evil.py"}}, "not one olivepipe reads"),
    ({"type": "hfmodel", "config": {"model_path": "$OUT", "io_config": "get_io"}}, "io_config"),
])
def test_a_manifest_whose_model_config_reaches_outside_is_a_miss(azurite, container, tmp_path, model, why):
    store = azurite.blob_store(container)
    key = "d" * 64
    write(tmp_path / "t" / "config.json", "{}")
    store.publish(key, tmp_path / "t", {"model": model})
    assert store.peek(key) is None and store.get(key) is None
    assert why in " ".join(store.problems[key])


def test_reader_model_config_takes_load_settings_from_the_reader():
    from olivepipe.olive.runtime import UntrustedModel, reader_model_config
    from olivepipe.spec.workflow import ModelSpec

    stored = {"type": "HfModel", "config": {"model_path": "$OUT/model", "adapter_path": "$OUT/adapter",
                                           "trust_remote_code": True, "inference_settings": {"x": 1},
                                           "load_kwargs": {"trust_remote_code": True, "code_revision": "evil",
                                                           "torch_dtype": "float32", "revision": "main"}}}
    plain = ModelSpec("base", "path", path=Path("base"))
    got = reader_model_config(stored, "$IN0", plain)
    assert got == {"type": "HfModel", "config": {"model_path": "$IN0/model", "adapter_path": "$IN0/adapter",
                                                 "load_kwargs": {"torch_dtype": "float32",
                                                                 "trust_remote_code": False}}}
    trusting = ModelSpec("base", "hf", hf="org/model", revision="abc", trust_remote_code=True)
    hub = {"type": "HfModel", "config": {"model_path": "org/model", "adapter_path": "$OUT/adapter"}}
    assert reader_model_config(hub, "$IN0", trusting)["config"]["load_kwargs"] == {"trust_remote_code": True,
                                                                                  "revision": "abc"}
    # found by bench/fuzz_long.py: an attention "implementation" may name a hub kernel repository
    # (code transformers fetches and runs): only transformers' own survive
    kernel = {"type": "HfModel", "config": {"model_path": "$OUT", "load_kwargs": {
        "extra_args": {"attn_implementation": "evil/kernels"}, "torch_dtype": "../x"}}}
    assert reader_model_config(kernel, "$IN0", plain)["config"]["load_kwargs"] == {"trust_remote_code": False}
    with pytest.raises(UntrustedModel, match="not this workflow's model"):
        reader_model_config({"type": "HfModel", "config": {"model_path": "evil/model"}}, "$IN0", trusting)


def _put_manifest(azurite, container, key: str, body: bytes) -> None:
    azurite.service().get_container_client(container).upload_blob(f"entries/{key}.json", body, overwrite=True)


@pytest.mark.parametrize("body, why", [
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),  # crashed plan, apply and pull (RecursionError)
    (b'{"key": "KEY", "digest": "x", "files": {}, "n": 1' + b"1" * 100_001 + b"}", "not valid JSON"),
    (b'{"key": "KEY", "digest": "x", "files": {}, "created": NaN}', "not valid JSON"),
    (json.dumps({"key": "KEY", "digest": "x", "files": {
        "model": {"digest": "0" * 64, "size": 1}, "model/config.json": {"digest": "1" * 64, "size": 1}}}).encode(),
     "both as a file and as a folder"),  # was a FileExistsError in pull and apply
    (json.dumps({"key": "KEY", "digest": "x", "files": {"a": {"digest": "0" * 64, "size": -1}}}).encode(),
     "not a file record"),
    (json.dumps({"key": "KEY", "digest": "x", "files": {"../a": {"digest": "0" * 64, "size": 1}}}).encode(),
     "unsafe path"),
])
def test_a_malformed_remote_manifest_is_a_clean_miss(azurite, container, tmp_path, body, why):
    from olivepipe.stores.local import LocalStore
    from olivepipe.stores.tiered import TieredStore

    key = "e" * 64
    _put_manifest(azurite, container, key, body.replace(b"KEY", key.encode()))
    remote = azurite.blob_store(container)
    tiered = TieredStore(LocalStore(tmp_path / "cache"), remote)
    assert tiered.peek(key) is None and tiered.get(key) is None  # plan and apply: a miss, never a crash
    assert why in " ".join(remote.problems[key])
    assert tiered.local.keys() == [] and tiered.remote_errors == []
