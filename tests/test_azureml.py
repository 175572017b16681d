"""Offline tests for olivepipe.azure (no Azure endpoint, no credentials)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

try:
    import olivepipe.azure  # noqa: F401
except ImportError:  # running without the package installed / on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from olivepipe.azure.credentials import CredentialStatus, check_credentials, default_credential
from olivepipe.azure.errors import RegistrationError, translate
from olivepipe.azure.redact import redact
from olivepipe.azure.registration import (
    OPERATION,
    Registration,
    build_model_entity,
    describe,
    register,
    run_register,
)
from olivepipe.azure.workspace import find_workspace_config, resolve_workspace

# azure-ai-ml 1.35.2 on marshmallow 3.26 emits hundreds of Marshmallow4Warning deprecations.
pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning")

SECRET = "s3cr3t-Value-123456"
SUB, RG, WS = "00000000-1111-2222-3333-444444444444", "rg-olive", "ws-olive"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def offline_env(monkeypatch, tmp_path):
    """No way for DefaultAzureCredential to find anything: no AZURE_* vars, HOME and the
    Azure CLI config dir in tmp_path, cwd in tmp_path."""
    import os

    for name in list(os.environ):
        if name.startswith(("AZURE_", "AZUREML_", "ARM_", "MSI_", "IDENTITY_", "AZD_")):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(home / ".azure"))
    monkeypatch.setenv("AZD_CONFIG_DIR", str(home / ".azd"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "models" / "phi" / "onnx-ao"
    d.mkdir(parents=True)
    (d / "model.onnx").write_bytes(b"\x08\x01onnx")
    (d / "genai_config.json").write_text("{}")
    return d


@pytest.fixture
def reg(model_dir):
    return Registration(
        name="ft-for-travel",
        version="1",
        path=model_dir,
        description="Phi fine-tuned for travel, ONNX int4",
        tags={"source": "olive", "epochs": 3},
        subscription_id=SUB,
        resource_group=RG,
        workspace_name=WS,
    )


class _Result:
    def __init__(self, model):
        self.id = (
            f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/"
            f"workspaces/{WS}/models/{model.name}/versions/{model.version}"
        )
        self.name, self.version, self.type = model.name, model.version, model.type
        self.path = f"azureml://subscriptions/{SUB}/resourcegroups/{RG}/workspaces/{WS}/datastores/workspaceblobstore/paths/LocalUpload/abc/onnx-ao"


class FakeMLClient:
    """Stands in for azure.ai.ml.MLClient; records how it was built and called."""

    calls: list = []

    def __init__(self, raise_exc=None, hang=False, **kwargs):
        self.kwargs = kwargs
        self._raise, self._hang = raise_exc, hang
        self.models = self

    def create_or_update(self, model):
        FakeMLClient.calls.append((self.kwargs, model))
        if self._hang:
            threading.Event().wait(30)
        if self._raise is not None:
            raise self._raise
        return _Result(model)


def fake_factory(**behaviour):
    def factory(**kwargs):
        return FakeMLClient(**behaviour, **kwargs)

    return factory


@pytest.fixture(autouse=True)
def _reset_calls():
    FakeMLClient.calls = []


class DummyCredential:
    def get_token(self, *scopes, **kwargs):  # pragma: no cover - fake clients never call it
        raise AssertionError("fake client must not ask for a token")


# --------------------------------------------------------------------------- entity


def test_build_model_entity_fields(reg, model_dir):
    from azure.ai.ml.entities import Model

    model = build_model_entity(reg, check_path=True)
    assert isinstance(model, Model)
    assert model.name == "ft-for-travel"
    assert model.version == "1"
    assert model.type == "custom_model"
    assert Path(model.path) == model_dir
    assert model.description == "Phi fine-tuned for travel, ONNX int4"
    assert model.tags == {"source": "olive", "epochs": "3"}  # values sent as strings


def test_registration_coerces_and_validates(model_dir):
    # tags are scalars in the schema (string, number, boolean); azure-ai-ml sends strings
    r = Registration(name=" m ", version=2, path=str(model_dir), tags={"a": None, "b": 1.5, "c": True})
    assert (r.name, r.version, r.path, r.tags) == ("m", "2", model_dir, {"b": "1.5", "c": "True"})
    # the lead sends description "" when the node has none: no empty description on the model
    assert Registration(name="m", version="1", path=model_dir, description="").description is None
    assert Registration(name="m", version="1", path=model_dir, description=" d\n").description == "d"
    with pytest.raises(RegistrationError, match="invalid model name"):
        Registration(name="has space", version="1", path=model_dir)
    with pytest.raises(RegistrationError, match="version is required"):
        Registration(name="m", version=None, path=model_dir)


def test_build_model_entity_path_check(tmp_path):
    r = Registration(name="m", version="1", path=tmp_path / "not-yet")
    build_model_entity(r)  # a plan may describe a folder that does not exist yet
    with pytest.raises(RegistrationError, match="does not exist"):
        build_model_entity(r, check_path=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RegistrationError, match="empty"):
        build_model_entity(Registration(name="m", version="1", path=empty), check_path=True)


# --------------------------------------------------------------------------- describe


def test_describe_is_json_and_secret_free(monkeypatch, model_dir):
    monkeypatch.setenv("AZURE_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
    monkeypatch.setenv("AZURE_TENANT_ID", "66666666-7777-8888-9999-000000000000")
    r = Registration(
        name="ft-for-travel",
        version="1",
        path=model_dir,
        description=f"accidentally pasted {SECRET}",
        tags={
            "client_secret": "oops",
            "stage": "dev",
            "key": "kval123",
            "conn": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abcDEF123==;EndpointSuffix=x",
        },
        subscription_id=SUB,
        resource_group=RG,
        workspace_name=WS,
        workspace_source={"subscription_id": "env AZURE_SUBSCRIPTION_ID"},
    )
    d = describe(r)
    text = json.dumps(d)  # must not raise
    assert json.loads(text) == d
    assert SECRET not in text
    assert "abcDEF123" not in text and "oops" not in text and "kval123" not in text
    assert d["operation"] == OPERATION == "ml_client.models.create_or_update"
    assert (d["workspace"]["subscription_id"], d["workspace"]["resource_group"], d["workspace"]["workspace_name"]) == (
        SUB,
        RG,
        WS,
    )
    assert d["workspace"]["source"] == {"subscription_id": "env AZURE_SUBSCRIPTION_ID"}
    assert d["client"]["retry_total"] == 0
    e = d["entity"]
    assert (e["name"], e["version"], e["type"], Path(e["path"])) == ("ft-for-travel", "1", "custom_model", model_dir)
    assert e["tags"]["stage"] == "dev" and e["tags"]["client_secret"] == "***"
    assert d["local"]["exists"] is True and d["local"]["files"] == 2
    assert d["cli_equivalent"].startswith("az ml model create --name ft-for-travel --version 1")
    assert "Registration(" in repr(r) and SECRET not in repr(r)


def test_describe_missing_folder_and_workspace(tmp_path):
    d = describe(Registration(name="m", version="3", path=tmp_path / "later"))
    assert d["local"]["exists"] is False
    assert d["workspace"]["workspace_name"] is None
    json.dumps(d)


# --------------------------------------------------------------------------- workspace resolution


def _write_config(directory: Path, **values) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    p = directory / "config.json"
    p.write_text(json.dumps(values))
    return p


def test_resolve_precedence_cfg_env_config(tmp_path):
    cfg_file = _write_config(
        tmp_path / "proj" / ".azureml", subscription_id="file-sub", resource_group="file-rg", workspace_name="file-ws"
    )
    start = tmp_path / "proj" / "a" / "b"  # found by searching upwards, like MLClient.from_config
    start.mkdir(parents=True)
    env = {"AZURE_SUBSCRIPTION_ID": "env-sub", "AZURE_RESOURCE_GROUP": "env-rg"}
    cfg = {"workspace": {"subscription_id": "cfg-sub"}}

    sub, rg, ws, source = resolve_workspace(cfg, env, start_dir=start)
    assert (sub, rg, ws) == ("cfg-sub", "env-rg", "file-ws")
    assert source["subscription_id"] == "node config (workspace.subscription_id)"
    assert source["resource_group"] == "env AZURE_RESOURCE_GROUP"
    assert source["workspace_name"] == f"config.json {cfg_file.resolve()}"

    # env beats config.json; AZUREML_RESOURCE_GROUP is the fallback name
    sub, rg, ws, source = resolve_workspace({}, {"AZUREML_RESOURCE_GROUP": "ml-rg"}, start_dir=start)
    assert (sub, rg, ws) == ("file-sub", "ml-rg", "file-ws")
    assert source["resource_group"] == "env AZUREML_RESOURCE_GROUP"
    # AZURE_RESOURCE_GROUP wins over AZUREML_RESOURCE_GROUP
    _, rg, _, _ = resolve_workspace({}, {"AZURE_RESOURCE_GROUP": "a", "AZUREML_RESOURCE_GROUP": "b"}, start_dir=start)
    assert rg == "a"
    # node config beats everything, for all three
    full = {"workspace": {"subscription_id": "s", "resource_group": "r", "workspace_name": "w"}}
    assert resolve_workspace(full, env, start_dir=start)[:3] == ("s", "r", "w")


def test_resolve_reads_only_the_workspace_block(tmp_path):
    # the workflow schema's form: `workspace: {subscription_id, resource_group, workspace_name, config}`;
    # keys beside it cannot be written in a workflow (the schema rejects them), so they are not read
    cfg = {
        "name": "m",
        "workspace": {"workspace_name": "nested-ws", "resource_group": "nested-rg"},
        "workspace_name": "flat-ws",
        "subscription_id": "flat-sub",
    }
    sub, rg, ws, source = resolve_workspace(cfg, {"AZURE_SUBSCRIPTION_ID": "env-sub"}, start_dir=tmp_path)
    assert (sub, rg, ws) == ("env-sub", "nested-rg", "nested-ws")
    assert source["workspace_name"] == "node config (workspace.workspace_name)"
    assert resolve_workspace({"workspace_name": "flat-ws"}, {}, start_dir=tmp_path, required=False)[2] is None
    _write_config(tmp_path / "elsewhere", subscription_id="f-sub", resource_group="f-rg", workspace_name="f-ws")
    got = resolve_workspace({"workspace": {"config": "elsewhere/config.json"}}, {}, base_dir=tmp_path, start_dir=tmp_path)
    assert got[:3] == ("f-sub", "f-rg", "f-ws")


def test_resolve_explicit_config_and_scope_format(tmp_path):
    scope = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}"
    (tmp_path / "ws.json").write_text(json.dumps({"Scope": scope}))
    sub, rg, ws, source = resolve_workspace({"workspace": {"config": "ws.json"}}, {}, base_dir=tmp_path, start_dir=tmp_path / "x")
    assert (sub, rg, ws) == (SUB, RG, WS)
    assert all(v.startswith("config.json ") for v in source.values())
    with pytest.raises(RegistrationError, match="config file not found"):
        resolve_workspace({"workspace": {"config": "nope.json"}}, {}, base_dir=tmp_path)


def test_find_workspace_config_prefers_azureml_dir(tmp_path):
    _write_config(tmp_path, workspace_name="plain")
    preferred = _write_config(tmp_path / ".azureml", workspace_name="dot")
    assert find_workspace_config(tmp_path) == preferred
    assert find_workspace_config(preferred) == preferred  # a file is taken as is


def test_resolve_missing_values_error(tmp_path):
    with pytest.raises(RegistrationError) as ei:
        resolve_workspace({"workspace": {"workspace_name": "w"}}, {}, start_dir=tmp_path)
    err = ei.value
    text = str(err)
    assert err.kind == "config"
    assert "missing subscription_id, resource_group" in text
    assert "workspace_name" not in err.message  # only what is missing
    assert "AZURE_SUBSCRIPTION_ID" in text and "AZURE_RESOURCE_GROUP/AZUREML_RESOURCE_GROUP" in text
    assert "config.json" in text and "\n" not in text
    # not required: partial result with 'missing' sources
    sub, rg, ws, source = resolve_workspace({}, {}, start_dir=tmp_path, required=False)
    assert (sub, rg, ws) == (None, None, None) and set(source.values()) == {"missing"}


def test_registration_from_options(tmp_path, model_dir):
    options = {
        "name": "ft-for-travel",
        "version": 1,
        "tags": {"k": "v"},
        "description": "travel model",
        "workspace": {"workspace_name": WS},
    }
    env = {"AZURE_SUBSCRIPTION_ID": SUB, "AZURE_RESOURCE_GROUP": RG}
    r = Registration.from_options(options, env, path=model_dir, base_dir=tmp_path, start_dir=tmp_path)
    assert r.path == model_dir and r.version == "1" and r.tags == {"k": "v"}
    assert r.description == "travel model"
    assert r.workspace == (SUB, RG, WS)
    assert r.workspace_source["workspace_name"] == "node config (workspace.workspace_name)"


# --------------------------------------------------------------------------- register (fake client)


def test_register_with_fake_client_records_call(reg, model_dir):
    cred = DummyCredential()
    record = register(reg, credential=cred, client_factory=fake_factory())
    assert len(FakeMLClient.calls) == 1
    kwargs, model = FakeMLClient.calls[0]
    assert kwargs["credential"] is cred
    assert (kwargs["subscription_id"], kwargs["resource_group_name"], kwargs["workspace_name"]) == (SUB, RG, WS)
    assert kwargs["retry_total"] == 0
    assert (model.name, model.version, Path(model.path)) == ("ft-for-travel", "1", model_dir)
    assert record["name"] == "ft-for-travel" and record["version"] == "1"
    assert record["id"].endswith("/models/ft-for-travel/versions/1")
    assert record["path"].startswith("azureml://")
    assert record["local_path"] == str(model_dir)
    assert record["operation"] == OPERATION
    json.dumps(record)


def test_register_checks_before_calling(reg, tmp_path):
    from dataclasses import replace

    with pytest.raises(RegistrationError, match="missing workspace_name"):
        register(replace(reg, workspace_name=None), credential=DummyCredential(), client_factory=fake_factory())
    with pytest.raises(RegistrationError, match="does not exist"):
        register(replace(reg, path=tmp_path / "nope"), credential=DummyCredential(), client_factory=fake_factory())
    assert FakeMLClient.calls == []


def _http_error(cls, status, message):
    from azure.core.exceptions import HttpResponseError  # noqa: F401

    err = cls(message=message)
    err.status_code = status
    return err


@pytest.mark.parametrize(
    "make_exc, kind, fragment",
    [
        (lambda c: c.ClientAuthenticationError(message="Authentication failed: AADSTS7000215: Invalid client secret"), "auth_failed", "Azure authentication failed"),
        (lambda c: _http_error(c.HttpResponseError, 403, f"(AuthorizationFailed) no access, token={SECRET}\nCode: AuthorizationFailed"), "permission", "permission denied"),
        (lambda c: c.ResourceNotFoundError(message="(ResourceNotFound) Workspace not found"), "not_found", "not found"),
        (lambda c: c.ServiceRequestError(message="Failed to resolve 'management.azure.com'"), "network", "could not reach Azure"),
        (lambda c: _http_error(c.HttpResponseError, 500, "(InternalError) boom\nmore lines"), "http", "HTTP 500"),
    ],
)
def test_register_errors_become_registration_error(reg, monkeypatch, make_exc, kind, fragment):
    from azure.core import exceptions as core

    monkeypatch.setenv("AZURE_CLIENT_SECRET", SECRET)
    with pytest.raises(RegistrationError) as ei:
        register(reg, credential=DummyCredential(), client_factory=fake_factory(raise_exc=make_exc(core)))
    err = ei.value
    assert err.kind == kind, str(err)
    assert fragment in str(err)
    assert "\n" not in str(err) and "Traceback" not in str(err)
    assert SECRET not in str(err)
    assert err.__cause__ is None and err.__context__ is None  # no chained traceback


def test_register_azureml_exception(reg):
    from azure.ai.ml.exceptions import EmptyDirectoryError

    exc = EmptyDirectoryError(message="Directory x is empty.", no_personal_data_message="empty", target="Model")
    with pytest.raises(RegistrationError, match="Azure ML rejected the model"):
        register(reg, credential=DummyCredential(), client_factory=fake_factory(raise_exc=exc))


def test_register_hard_time_bound(reg):
    t0 = time.monotonic()
    with pytest.raises(RegistrationError) as ei:
        register(reg, credential=DummyCredential(), client_factory=fake_factory(hang=True), timeout_s=0.3)
    assert ei.value.kind == "timeout"
    assert time.monotonic() - t0 < 10  # generous: it is bounded, not a timing assertion


# --------------------------------------------------------------------------- register (real MLClient, no credentials)


def test_register_real_mlclient_no_credentials(offline_env, reg):
    # default path: DefaultAzureCredential + bounded pre-flight check
    with pytest.raises(RegistrationError) as ei:
        register(reg, timeout_s=60, credential_timeout_s=30)
    assert ei.value.kind == "no_credentials"
    assert str(ei.value).startswith("no Azure credentials: run `az login`")


def test_register_real_mlclient_path_no_credentials(offline_env, reg):
    # explicit credential: no pre-flight, the real MLClient asks for the token itself
    from azure.ai.ml import MLClient

    built = []

    def spy(**kwargs):
        client = MLClient(**kwargs)  # real client; must accept retry_total etc.
        built.append(client)
        return client

    with pytest.raises(RegistrationError) as ei:
        register(reg, credential=default_credential(), client_factory=spy, timeout_s=60)
    assert built and isinstance(built[0], MLClient)
    assert ei.value.kind == "no_credentials", str(ei.value)
    assert ei.value.__context__ is None


# --------------------------------------------------------------------------- credentials


def test_check_credentials_offline_fails_within_bound(offline_env, capsys):
    status = check_credentials(timeout_s=20.0)
    assert isinstance(status, CredentialStatus)
    assert not status.ok and status.status == "failed"
    assert status.kind == "no_credentials"
    assert status.reason.startswith("no Azure credentials") and "\n" not in status.reason
    assert status.elapsed_s < 20.0 + 1.0
    # the SDK's multi-line "DefaultAzureCredential failed to retrieve a token" warning is not printed
    assert "failed to retrieve a token" not in capsys.readouterr().err
    json.dumps(status.to_dict())


def test_check_credentials_partial_service_principal(offline_env, monkeypatch):
    monkeypatch.setenv("AZURE_CLIENT_SECRET", SECRET)
    status = check_credentials(timeout_s=20.0)
    assert not status.ok
    assert "AZURE_CLIENT_ID/AZURE_TENANT_ID missing" in status.reason
    assert SECRET not in json.dumps(status.to_dict())


def test_check_credentials_never_hangs():
    release = threading.Event()

    class Hanging:
        def get_token(self, *scopes, **kwargs):
            release.wait(30)  # like managed identity against a silent metadata endpoint

    t0 = time.monotonic()
    status = check_credentials(timeout_s=0.3, credential=Hanging())
    release.set()
    assert not status.ok and status.kind == "timeout"
    assert "timed out after 0.3 s" in status.reason
    assert time.monotonic() - t0 < 10


def test_check_credentials_ok_with_working_credential():
    from azure.core.credentials import AccessToken

    class Works:
        def get_token(self, *scopes, **kwargs):
            return AccessToken("eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl", int(time.time()) + 3600)

    status = check_credentials(credential=Works())
    assert status.ok and status.status == "ok" and status.credential == "Works"
    assert "eyJ" not in json.dumps(status.to_dict())


def test_credential_chain_classification():
    # the text DefaultAzureCredential raises (as ClientAuthenticationError, no HTTP status)
    from azure.core.exceptions import ClientAuthenticationError

    chain_msg = (
        "DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
        "Attempted credentials:\n"
        "\tEnvironmentCredential: EnvironmentCredential authentication unavailable. Environment variables are not fully configured.\n"
        "Visit https://aka.ms/azsdk/python/identity/environmentcredential/troubleshoot to troubleshoot this issue.\n"
        "\tAzureCliCredential: Azure CLI not found on path\n"
        "To mitigate this issue, please refer to the troubleshooting guidelines here at https://aka.ms/x."
    )
    assert translate(ClientAuthenticationError(message=chain_msg)).kind == "no_credentials"
    hard = chain_msg.replace("Azure CLI not found on path", "Authentication failed: AADSTS700016: app not found")
    err = translate(ClientAuthenticationError(message=hard))
    assert err.kind == "auth_failed" and "AzureCliCredential" in str(err)
    assert err.credential_name == "AzureCliCredential"


# --------------------------------------------------------------------------- redact


def test_redact_keys_strings_and_env(monkeypatch):
    monkeypatch.setenv("AZURE_CLIENT_SECRET", SECRET)
    data = {
        "client_secret": "x1",
        "clientSecret": "x2",
        "password": "x3",
        "access_token": "x4",
        "AccountKey": "x5",
        "sas_url": "https://a.blob.core.windows.net/c?sv=1&sig=x6",
        "api-key": "x7",
        "connection_string": "x8",
        "key": "x9",
        "empty_password": "",
        "nested": [{"token": "x10"}, ("keep", {"Authorization": "Bearer x11"})],
        "conn": "DefaultEndpointsProtocol=https;AccountName=acc;AccountKey=AbC+dEf==;EndpointSuffix=core.windows.net",
        "url": "https://acc.blob.core.windows.net/c/b?sv=2021&se=2030&sig=AbCd%2FeF%3D",
        "header": "Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGciOi.eyJhdWQiOiJodHRwczovL.sIgNaTuRe",
        "json_text": '{"client_secret": "x12", "name": "ok"}',
        "note": f"the value {SECRET} leaked",
        "max_tokens": 256,
        "tokenizer": "phi",
        "name": "ft-for-travel",
        "monkey": "banana",
    }
    out = redact(data)
    text = json.dumps(out)
    for i in range(1, 13):
        assert f'"x{i}"' not in text and f"x{i}\\" not in text, i
    for leaked in ("AbC+dEf==", "AbCd%2FeF%3D", "eyJ0eXAi", SECRET):
        assert leaked not in text, leaked
    assert out["empty_password"] == ""
    assert out["nested"][1][0] == "keep"
    assert out["max_tokens"] == 256 and out["tokenizer"] == "phi"
    assert out["name"] == "ft-for-travel" and out["monkey"] == "banana"
    assert "AccountName=acc" in out["conn"] and "se=2030" in out["url"]
    assert out["json_text"] == '{"client_secret": "***", "name": "ok"}'
    assert data["client_secret"] == "x1"  # input untouched


def test_registration_error_is_one_line_and_redacted(monkeypatch):
    monkeypatch.setenv("AZURE_CLIENT_SECRET", SECRET)
    err = RegistrationError(f"bad\nthing {SECRET}", "do\nthis", kind="config")
    assert str(err) == "bad thing ***: do this"
    assert err.to_dict()["kind"] == "config"


# --------------------------------------------------------------------------- worker entry


DESCRIPTION = "Phi-3.5 LoRA for travel, int4 ONNX"


def _job(model_dir, tmp_path, **extra):
    return {
        "kind": "register",
        "log": str(tmp_path / "register.log"),
        "output_dir": str(tmp_path / "out"),
        "inputs": [{"name": "onnx-ao", "model": {"type": "onnxmodel"}, "path": str(model_dir)}],
        "options": {
            "name": "ft-for-travel",
            "version": 1,
            "workspace": {"workspace_name": WS},
            "tags": {"k": "v"},
            "description": DESCRIPTION,
        },
        "node": "register",
        **extra,
    }


def test_run_register_rehearsal_writes_offline_record(offline_env, model_dir, tmp_path):
    res = run_register(_job(model_dir, tmp_path, rehearse=True))
    assert res["model"] is None and res["registration"]["rehearsal"] is True
    on_disk = json.loads((tmp_path / "out" / "registration.json").read_text())
    call = on_disk["call"]
    assert call["operation"] == OPERATION
    assert call["entity"]["name"] == "ft-for-travel" and call["entity"]["version"] == "1"
    assert call["workspace"]["workspace_name"] == WS
    assert call["workspace"]["source"]["workspace_name"] == "node config (workspace.workspace_name)"
    assert call["workspace"]["source"]["subscription_id"] == "missing"
    # the node's description is in the rehearsed call: entity and CLI equivalent
    assert call["entity"]["description"] == DESCRIPTION
    assert f"--description '{DESCRIPTION}'" in call["cli_equivalent"]


def test_run_register_real_offline_fails_cleanly(offline_env, model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUB)
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", RG)
    with pytest.raises(RegistrationError) as ei:
        run_register(_job(model_dir, tmp_path, rehearse=False))
    assert ei.value.kind == "no_credentials"
    from olivepipe.core.errors import OlivepipeError

    assert isinstance(ei.value, OlivepipeError)


def test_run_register_description_reaches_the_model(offline_env, model_dir, tmp_path, monkeypatch):
    # The bug: a register node's description never reached the registered model. Run the real
    # run_register -> register path, with a fake MLClient in place of the network, and look at
    # the Model entity handed to create_or_update and at the REST body it would PUT.
    from azure.ai.ml.entities import Model

    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUB)
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", RG)
    res = run_register(_job(model_dir, tmp_path, rehearse=False), credential=DummyCredential(), client_factory=fake_factory())
    (_kwargs, model), = FakeMLClient.calls
    assert isinstance(model, Model)
    assert model.description == DESCRIPTION
    assert model._to_rest_object().properties.description == DESCRIPTION  # pylint: disable=protected-access
    assert res["registration"]["registered"]["name"] == "ft-for-travel"
    on_disk = json.loads((tmp_path / "out" / "registration.json").read_text())
    assert on_disk["call"]["entity"]["description"] == DESCRIPTION


def test_run_register_empty_description(offline_env, model_dir, tmp_path, monkeypatch):
    # a node without description arrives as "": the model gets none (not an empty string)
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUB)
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", RG)
    job = _job(model_dir, tmp_path, rehearse=False)
    job["options"]["description"] = ""
    res = run_register(job, credential=DummyCredential(), client_factory=fake_factory())
    (_kwargs, model), = FakeMLClient.calls
    assert model.description is None
    assert "description" not in res["registration"]["call"]["entity"]
    assert "--description" not in res["registration"]["call"]["cli_equivalent"]


def test_run_register_base_dir_for_relative_config(offline_env, model_dir, tmp_path):
    # The worker's cwd is its log folder, not the workflow's; plan reads a relative
    # `workspace.config` against the workflow folder, so must the job (via job["base_dir"]).
    proj = tmp_path / "proj"
    _write_config(proj, subscription_id=SUB, resource_group=RG, workspace_name="file-ws")
    job = _job(model_dir, tmp_path, rehearse=True)
    job["options"]["workspace"] = {"config": "config.json"}
    with pytest.raises(RegistrationError, match="config file not found"):
        run_register(job)  # cwd (tmp_path) has no config.json
    call = run_register({**job, "base_dir": str(proj)})["registration"]["call"]
    assert call["workspace"]["workspace_name"] == "file-ws"
    assert call["workspace"]["source"]["subscription_id"] == f"config.json {(proj / 'config.json').resolve()}"


def test_shared_modules_import_without_sdk_or_registration():
    # The Azure ML executor and blob store reuse workspace/credentials/redact: importing them
    # must not load azure-ai-ml (1-1.5 s), any azure SDK module, or the registration code.
    code = (
        "import sys, olivepipe.azure.workspace, olivepipe.azure.credentials, olivepipe.azure.redact; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'azure' or m == 'olivepipe.azure.registration'))"
    )
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert out.stdout.strip() == "[]", out.stdout

