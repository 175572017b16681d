"""Register a produced model folder in an Azure ML workspace (the ``register`` node kind).

The equivalent CLI call is::

    az ml model create --name ft-for-travel --version 1 --path ./models/phi/onnx-ao \\
        --resource-group RG --workspace-name WS

What this module offers:

* :class:`Registration` - what to register and where (frozen dataclass).
* :func:`resolve_workspace` - subscription / resource group / workspace from node config,
  then environment variables, then an Azure ML ``config.json`` (searched like
  ``MLClient.from_config``), with the source of every value.
* :func:`build_model_entity` - the ``azure.ai.ml.entities.Model``, validated offline.
* :func:`describe` - JSON-safe, secret-free record of the call :func:`register` would make.
* :func:`check_credentials` - bounded (never hanging) check that Azure credentials work.
* :func:`register` - ``MLClient(..., retry_total=0).models.create_or_update(model)``, with
  every failure turned into one :class:`RegistrationError` and a hard time bound.
* :func:`redact` - scrub secret-looking values; applied to everything this module returns.

azure-ai-ml / azure-identity are imported lazily so that importing this module is cheap
(``import azure.ai.ml`` alone takes 1-1.5 s).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from .errors import OlivepipeError

__all__ = [
    "ARM_SCOPE",
    "OPERATION",
    "CLIENT_KWARGS",
    "CREDENTIAL_KWARGS",
    "NO_CREDENTIALS_HINT",
    "Registration",
    "RegistrationError",
    "CredentialStatus",
    "resolve_workspace",
    "find_workspace_config",
    "build_model_entity",
    "describe",
    "default_credential",
    "check_credentials",
    "register",
    "redact",
    "run_register",
]

log = logging.getLogger(__name__)

#: Token scope used for the credential check (Azure Resource Manager, which Azure ML uses).
ARM_SCOPE = "https://management.azure.com/.default"
#: The SDK call :func:`register` makes.
OPERATION = "ml_client.models.create_or_update"
#: Model asset types accepted by azure-ai-ml's ModelSchema.
MODEL_TYPES = ("custom_model", "mlflow_model", "triton_model")

#: DefaultAzureCredential options. Managed identity is excluded because, where the instance
#: metadata address (169.254.169.254) accepts connections but never answers, it blocks for up
#: to ~300 s; interactive browser login is excluded because a workflow must not pop a browser.
CREDENTIAL_KWARGS: Dict[str, Any] = {
    "exclude_managed_identity_credential": True,
    "exclude_interactive_browser_credential": True,
}
#: Extra MLClient options. retry_total=0: azure-core otherwise retries failed requests with
#: backoff (offline: ~4.8 s before failing instead of ~0.02 s). connection_timeout bounds
#: TCP connects (azure-core default 300 s). enable_telemetry=False: no App Insights logging.
CLIENT_KWARGS: Dict[str, Any] = {"retry_total": 0, "connection_timeout": 30, "enable_telemetry": False}

DEFAULT_CREDENTIAL_TIMEOUT_S = 10.0
#: Upper bound for the whole registration (client construction + upload + PUT). Large model
#: folders are uploaded to the workspace datastore, hence the generous default.
DEFAULT_REGISTER_TIMEOUT_S = 1800.0

NO_CREDENTIALS_HINT = "run `az login` or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET"
NETWORK_HINT = "check network/proxy access (HTTPS_PROXY) to login.microsoftonline.com and management.azure.com"

WORKSPACE_FIELDS = ("subscription_id", "resource_group", "workspace_name")
#: Node-config keys accepted for each workspace field (first one is the documented name).
CFG_KEYS: Dict[str, Tuple[str, ...]] = {
    "subscription_id": ("subscription_id", "subscription"),
    "resource_group": ("resource_group", "resource_group_name"),
    "workspace_name": ("workspace_name",),
}
#: Environment variables for each workspace field, in precedence order.
ENV_KEYS: Dict[str, Tuple[str, ...]] = {
    "subscription_id": ("AZURE_SUBSCRIPTION_ID",),
    "resource_group": ("AZURE_RESOURCE_GROUP", "AZUREML_RESOURCE_GROUP"),
    "workspace_name": ("AZUREML_WORKSPACE_NAME",),
}
#: Node-config keys naming an Azure ML config.json (file, or directory to search from).
CFG_CONFIG_KEYS = ("config", "config_path")
#: The workflow schema puts these under a ``workspace:`` mapping of the register node;
#: the same keys directly in ``cfg`` are accepted too (the nested block wins).
CFG_WORKSPACE_BLOCK = "workspace"


def _cfg_layers(cfg: Mapping[str, Any]) -> List[Tuple[str, Mapping[str, Any]]]:
    block = cfg.get(CFG_WORKSPACE_BLOCK)
    layers: List[Tuple[str, Mapping[str, Any]]] = []
    if isinstance(block, Mapping):
        layers.append((CFG_WORKSPACE_BLOCK + ".", block))
    layers.append(("", cfg))
    return layers


# --------------------------------------------------------------------------- errors


class RegistrationError(OlivepipeError):
    """The single error type of this module (an ``OlivepipeError``: a failure the user can act on).

    ``str(err)`` is one line, ``"<message>: <hint>"`` (or just the message), already redacted
    and free of tracebacks, e.g. ``no Azure credentials: run `az login` or set ...``.
    ``kind`` classifies the failure: ``config``, ``validation``, ``no_credentials``,
    ``auth_failed``, ``permission``, ``not_found``, ``network``, ``http``, ``azureml``,
    ``timeout``, ``dependency`` or ``error``.
    """

    def __init__(self, message: str, hint: Optional[str] = None, *, kind: str = "error") -> None:
        super().__init__(_one_line(redact(str(message))), _one_line(redact(str(hint))) if hint else "")
        self.kind = kind

    def __str__(self) -> str:
        return f"{self.message}: {self.hint}" if self.hint else self.message

    def to_dict(self) -> Dict[str, Any]:
        return {"error": str(self), "message": self.message, "hint": self.hint or None, "kind": self.kind}


class _BoundExceeded(Exception):
    pass


# --------------------------------------------------------------------------- redaction

REDACTED = "***"

# Key-name tokens (after camelCase/punctuation splitting) that mark a secret value.
_SECRET_KEY_PARTS = frozenset(
    {
        "secret", "password", "passwd", "token", "key", "sas", "sig", "signature",
        "authorization", "apikey", "accountkey", "connectionstring", "cookie", "privatekey",
    }
)
_SECRET_KEY_JOINED = ("clientsecret", "connectionstring", "accountkey", "accesskey", "sastoken", "apikey", "password")
_KV_SECRET_NAMES = (
    r"AccountKey|SharedAccessKey|SharedAccessSignature|Password|Pwd|client[_-]?secret|"
    r"access[_-]?token|refresh[_-]?token|id[_-]?token|api[_-]?key|account[_-]?key|sig|secret|token"
)
_STRING_PATTERNS = [
    # key=value / "key": "value" / key: value inside strings (connection strings, SAS query, JSON text)
    (
        re.compile(r"""(?i)(["']?\b(?:""" + _KV_SECRET_NAMES + r""")\b["']?\s*[:=]\s*["']?)([^"'\s,;&}]+)"""),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9\-._~+/]+=*"), r"\1 " + REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),  # JWT
]
# Environment variables whose values are scrubbed wherever they appear (plus any variable whose
# name looks like a secret, see _env_secret_values).
_ENV_SECRETS = ("AZURE_CLIENT_SECRET", "AZURE_PASSWORD", "AZURE_CLIENT_CERTIFICATE_PASSWORD")


def _key_is_secret(key: Any) -> bool:
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(key)).lower()
    parts = [p for p in re.split(r"[^a-z0-9]+", text) if p]
    if any(p in _SECRET_KEY_PARTS for p in parts):
        return True
    joined = "".join(parts)
    return any(s in joined for s in _SECRET_KEY_JOINED)


def _env_secret_values(env: Mapping[str, str]) -> List[str]:
    values = set()
    for name, value in env.items():
        if value and len(value) >= 6 and (name in _ENV_SECRETS or _key_is_secret(name)):
            values.add(value)
    return sorted(values, key=len, reverse=True)


def _redact_str(text: str, secrets: List[str]) -> str:
    for value in secrets:
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern, repl in _STRING_PATTERNS:
        text = pattern.sub(repl, text)
    return text


def redact(obj: Any, *, env: Optional[Mapping[str, str]] = None) -> Any:
    """Return a copy of ``obj`` with secrets scrubbed.

    * dict values under secret-looking keys (client_secret, password, token, key, sas,
      connection_string, AccountKey, api-key, ...) become ``"***"`` (None/"" are kept);
    * in strings: ``AccountKey=...``, ``SharedAccessSignature=...``, ``sig=...``,
      ``"client_secret": "..."``, ``Bearer ...`` and JWTs are scrubbed, as is any literal
      value of a secret environment variable (AZURE_CLIENT_SECRET, ``*_TOKEN``, ``*_KEY``...);
    * lists/tuples/sets are processed element-wise (returned as lists); other values unchanged.
    """
    secrets = _env_secret_values(os.environ if env is None else env)
    return _redact(obj, secrets)


def _redact(obj: Any, secrets: List[str]) -> Any:
    if isinstance(obj, str):
        return _redact_str(obj, secrets)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if _key_is_secret(k) and v not in (None, ""):
                out[k] = REDACTED
            else:
                out[k] = _redact(v, secrets)
        return out
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_redact(v, secrets) for v in obj]
    return obj


# --------------------------------------------------------------------------- helpers


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(text: Any, limit: int = 240) -> str:
    """First meaningful line of an SDK error message.

    azure-ai-ml's MlException messages are multi-line ("1) One or more fields are invalid /
    Details: / (x) <the actual problem> / Resolutions: ..."), so the "(x)" lines are used.
    """
    text = str(text)
    details = [ln.strip()[3:].strip() for ln in text.splitlines() if ln.strip().startswith("(x)")]
    if details:
        text = "; ".join(details)
    else:
        text = next((ln.strip() for ln in text.splitlines() if ln.strip()), text.strip())
    for marker in (" Trace ID:", " Correlation ID:", "\nCode:"):
        text = text.split(marker)[0]
    return _one_line(redact(text), limit)


def _clean_str(value: Any) -> Optional[str]:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _str_dict(value: Any, what: str) -> Dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RegistrationError(f"{what} must be a mapping, got {type(value).__name__}", kind="config")
    # Like azure-ai-ml's Model._to_rest_object: values are sent as strings, None values dropped.
    return {str(k): str(v) for k, v in value.items() if v is not None}


_BAD_NAME_CHARS = re.compile(r"[\s/\\:?#%&]")


def _check_identifier(value: str, what: str) -> None:
    if not value:
        raise RegistrationError(f"model {what} is required", kind="config")
    if len(value) > 255 or _BAD_NAME_CHARS.search(value):
        raise RegistrationError(
            f"invalid model {what} {value!r}",
            "use letters, digits, '-', '_' or '.' (no spaces, '/', ':', '?', '#', '%', '&'), at most 255 characters",
            kind="config",
        )


@contextlib.contextmanager
def _quiet_azure() -> Iterator[None]:
    """Keep azure SDK log noise out of the caller's stderr while we run, and redact the rest.

    * ``azure.identity._credentials.chained`` logs the full multi-line "DefaultAzureCredential
      failed to retrieve a token ..." text at WARNING on every failure; we report it ourselves.
    * ``azure.ai.ml`` has its own stderr StreamHandler (propagate=False, INFO) installed at
      import; it prints "Class DeploymentTemplateReferenceSchema: This is an experimental
      class, ..." the first time a Model is serialised. Records through it are redacted.
    """

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return record.levelno >= logging.ERROR and _redact_record(record)

    class _Scrub(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if "This is an experimental" in str(record.msg):
                return False
            return _redact_record(record)

    chained = logging.getLogger("azure.identity._credentials.chained")
    aml_handlers = list(logging.getLogger("azure.ai.ml").handlers)
    drop, scrub = _Drop(), _Scrub()
    chained.addFilter(drop)
    for h in aml_handlers:
        h.addFilter(scrub)
    try:
        yield
    finally:
        chained.removeFilter(drop)
        for h in aml_handlers:
            h.removeFilter(scrub)


def _redact_record(record: logging.LogRecord) -> bool:
    try:
        record.msg = redact(record.getMessage())
        record.args = None
    except Exception:  # pragma: no cover - never break logging
        pass
    return True


def _run_bounded(fn: Callable[[], Any], timeout_s: float, name: str) -> Any:
    """Run ``fn`` in a daemon thread and wait at most ``timeout_s`` seconds.

    A daemon ``threading.Thread`` rather than ``concurrent.futures``: executor workers are
    joined at interpreter exit, so a stuck call would still block process exit.
    On timeout the thread is abandoned (it ends when the SDK call gives up).
    """
    if timeout_s is None or timeout_s <= 0:
        raise ValueError("timeout_s must be a positive number of seconds")
    box: Dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc
        finally:
            done.set()

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    if not done.wait(timeout_s):
        raise _BoundExceeded(timeout_s)
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _import_ml() -> Any:
    try:
        import azure.ai.ml as ml  # noqa: PLC0415 - lazy: ~1.5 s import
        import azure.ai.ml.entities  # noqa: F401,PLC0415
    except ImportError as exc:
        raise RegistrationError(
            f"azure-ai-ml is not installed ({exc.name or exc})", "pip install azure-ai-ml azure-identity", kind="dependency"
        ) from None
    return ml


def _versions() -> Dict[str, Optional[str]]:
    from importlib import metadata  # noqa: PLC0415

    out: Dict[str, Optional[str]] = {}
    for dist in ("azure-ai-ml", "azure-identity", "azure-core"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


# --------------------------------------------------------------------------- workspace


def find_workspace_config(start: Optional[os.PathLike] = None, file_name: Optional[str] = None) -> Optional[Path]:
    """Find an Azure ML workspace config file the way ``MLClient.from_config`` does.

    ``start`` may be the file itself. Otherwise, for each directory in (``.azureml``,
    ``aml_config``, none) and each file name in (``config.json``, ``project.json``) - or only
    ``file_name`` - search ``start`` (default: cwd) and up to 20 parent directories.
    """
    path = Path(".") if start is None else Path(start)
    if path.is_file():
        return path
    files = [file_name] if file_name else ["config.json", "project.json"]
    for sub in (".azureml", "aml_config", None):
        for fname in files:
            rel = os.path.join(sub, fname) if sub else fname
            current = str(path)
            for _level in range(21):  # the directory itself + 20 levels up
                candidate = os.path.join(current, rel)
                if os.path.isfile(candidate):
                    return Path(candidate)
                parent = os.path.realpath(os.path.join(current, os.pardir))
                if parent == os.path.realpath(current):
                    break
                current = parent
    return None


def _read_workspace_config(path: Path) -> Dict[str, Optional[str]]:
    """Read subscription/resource group/workspace from a config.json (flat keys or "Scope")."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise RegistrationError(f"cannot read Azure ML config file {path}: {_short(exc)}", kind="config") from None
    if not isinstance(data, dict):
        raise RegistrationError(f"Azure ML config file {path} must contain a JSON object", kind="config")
    scope = data.get("Scope") or data.get("scope")
    if scope:
        # /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/workspaces/<ws>
        pieces = str(scope).split("/")
        get = lambda i: pieces[i] if len(pieces) > i else None  # noqa: E731
        return {"subscription_id": get(2), "resource_group": get(4), "workspace_name": get(8)}
    return {
        "subscription_id": _clean_str(data.get("subscription_id")),
        "resource_group": _clean_str(data.get("resource_group")),
        "workspace_name": _clean_str(data.get("workspace_name")),
    }


def resolve_workspace(
    cfg: Optional[Mapping[str, Any]],
    env: Optional[Mapping[str, str]] = None,
    *,
    start_dir: Optional[os.PathLike] = None,
    base_dir: Optional[os.PathLike] = None,
    required: bool = True,
) -> Tuple[Optional[str], Optional[str], Optional[str], Dict[str, str]]:
    """Resolve ``(subscription_id, resource_group, workspace_name, source)``.

    Per value, first match wins: node config (``subscription_id``, ``resource_group``,
    ``workspace_name``, ``config`` under the node's ``workspace:`` mapping as the workflow
    schema has it, or directly in ``cfg``; aliases ``subscription``, ``resource_group_name``), then
    ``env`` (``AZURE_SUBSCRIPTION_ID``; ``AZURE_RESOURCE_GROUP`` then ``AZUREML_RESOURCE_GROUP``;
    ``AZUREML_WORKSPACE_NAME``), then an Azure ML config.json: the node config's ``config`` /
    ``config_path`` (a file, or a directory to search from; relative to ``base_dir``) or else
    found by searching from ``start_dir`` (default: cwd) like ``MLClient.from_config``.
    The config file is read only when something is still missing (an explicitly named file
    must exist, though).

    ``source`` maps each field to where it came from, e.g. ``"node config (resource_group)"``,
    ``"env AZURE_SUBSCRIPTION_ID"``, ``"config.json /abs/.azureml/config.json"`` or ``"missing"``.
    With ``required`` (default) a missing value raises :class:`RegistrationError` (kind
    ``config``) naming what is missing and how to provide it.
    """
    cfg = cfg or {}
    env = os.environ if env is None else env
    values: Dict[str, Optional[str]] = {f: None for f in WORKSPACE_FIELDS}
    source: Dict[str, str] = {}

    layers = _cfg_layers(cfg)
    for f in WORKSPACE_FIELDS:
        for prefix, layer in layers:
            for key in CFG_KEYS[f]:
                val = _clean_str(layer.get(key))
                if val:
                    values[f], source[f] = val, f"node config ({prefix}{key})"
                    break
            if values[f]:
                break
        if values[f]:
            continue
        for key in ENV_KEYS[f]:
            val = _clean_str(env.get(key))
            if val:
                values[f], source[f] = val, f"env {key}"
                break

    explicit = next(
        (layer[k] for _prefix, layer in layers for k in CFG_CONFIG_KEYS if _clean_str(layer.get(k))), None
    )
    config_file: Optional[Path] = None
    searched_from: Optional[Path] = None
    if explicit is not None:
        p = Path(str(explicit)).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        if not p.exists():
            raise RegistrationError(f"Azure ML config file not found: {p}", kind="config")
        searched_from = p
        config_file = find_workspace_config(p)
        if config_file is None:
            raise RegistrationError(
                f"no config.json / project.json found in {p} (or .azureml/, aml_config/, parents)", kind="config"
            )
    if any(values[f] is None for f in WORKSPACE_FIELDS):
        if config_file is None:
            searched_from = Path(start_dir) if start_dir is not None else Path.cwd()
            config_file = find_workspace_config(searched_from)
        if config_file is not None:
            from_file = _read_workspace_config(config_file)
            for f in WORKSPACE_FIELDS:
                if values[f] is None and from_file.get(f):
                    values[f], source[f] = from_file[f], f"config.json {config_file.resolve()}"

    missing = [f for f in WORKSPACE_FIELDS if values[f] is None]
    for f in missing:
        source[f] = "missing"
    if missing and required:
        ways = "; ".join(f"{f}: node config 'workspace: {{{f}: ...}}' or env {'/'.join(ENV_KEYS[f])}" for f in missing)
        if config_file is not None:
            cfg_note = f"the config file used ({config_file}) lacks them"
        else:
            cfg_note = f"no .azureml/config.json found searching up from {searched_from}"
        raise RegistrationError(
            f"Azure ML workspace not fully specified, missing {', '.join(missing)}",
            f"set {ways}; or give an Azure ML config.json (download it from the workspace's page in "
            f"Azure ML studio) via node config 'workspace: {{config: ...}}' ({cfg_note})",
            kind="config",
        )
    return values["subscription_id"], values["resource_group"], values["workspace_name"], source


# --------------------------------------------------------------------------- registration


@dataclass(frozen=True)
class Registration:
    """What to register and where.

    ``version`` is coerced to ``str`` (YAML ``version: 1`` gives an int, which azure-ai-ml
    rejects), ``path`` to ``Path``; tag/property values to ``str`` with ``None`` dropped (as
    azure-ai-ml sends them). Empty workspace values become ``None``. ``workspace_source``
    (extra, optional) records where the workspace values came from, for :func:`describe`.
    """

    name: str
    version: str
    path: Path
    type: str = "custom_model"
    description: Optional[str] = None
    tags: Dict[str, str] = field(default_factory=dict)
    properties: Dict[str, str] = field(default_factory=dict)
    subscription_id: Optional[str] = None
    resource_group: Optional[str] = None
    workspace_name: Optional[str] = None
    workspace_source: Dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "name", _clean_str(self.name) or "")
        put(self, "version", _clean_str(self.version) or "")
        if self.path is None or str(self.path).strip() == "":
            raise RegistrationError("model path is required", kind="config")
        put(self, "path", Path(os.fspath(self.path)).expanduser())
        put(self, "type", _clean_str(self.type) or "custom_model")
        put(self, "description", _clean_str(self.description))
        put(self, "tags", _str_dict(self.tags, "tags"))
        put(self, "properties", _str_dict(self.properties, "properties"))
        for f in WORKSPACE_FIELDS:
            put(self, f, _clean_str(getattr(self, f)))
        put(self, "workspace_source", dict(self.workspace_source or {}))
        _check_identifier(self.name, "name")
        _check_identifier(self.version, "version")
        if self.type not in MODEL_TYPES:
            raise RegistrationError(
                f"invalid model type {self.type!r}", f"use one of {', '.join(MODEL_TYPES)}", kind="config"
            )

    def __repr__(self) -> str:  # redacted: tags/description may carry secrets
        fields = ", ".join(
            f"{f}={v!r}"
            for f, v in redact(
                {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "path"}
            ).items()
        )
        return f"Registration(path={str(self.path)!r}, {fields})"

    @property
    def workspace(self) -> Tuple[Optional[str], Optional[str], Optional[str]]:
        return (self.subscription_id, self.resource_group, self.workspace_name)

    @classmethod
    def from_config(
        cls,
        cfg: Mapping[str, Any],
        env: Optional[Mapping[str, str]] = None,
        *,
        path: Optional[os.PathLike] = None,
        base_dir: Optional[os.PathLike] = None,
        start_dir: Optional[os.PathLike] = None,
        require_workspace: bool = True,
    ) -> "Registration":
        """Build from a ``register`` node config: ``name``, ``version``, optional ``type``,
        ``description``, ``tags``, ``properties``, the workspace keys of
        :func:`resolve_workspace` (``workspace: {...}``), and the model folder: ``path`` argument
        (e.g. the input node's output) or else ``cfg['path']``, relative to ``base_dir``.
        Other keys (kind, input, device, ...) are ignored."""
        raw_path = path if path is not None else cfg.get("path")
        if raw_path is None or str(raw_path).strip() == "":
            raise RegistrationError("register node needs 'path' (the model folder to register)", kind="config")
        model_path = Path(str(raw_path)).expanduser()
        if not model_path.is_absolute() and base_dir is not None:
            model_path = Path(base_dir) / model_path
        sub, rg, ws, source = resolve_workspace(
            cfg, env, start_dir=start_dir, base_dir=base_dir, required=require_workspace
        )
        return cls(
            name=cfg.get("name"),
            version=cfg.get("version"),
            path=model_path,
            type=cfg.get("type") or "custom_model",
            description=cfg.get("description"),
            tags=cfg.get("tags"),
            properties=cfg.get("properties"),
            subscription_id=sub,
            resource_group=rg,
            workspace_name=ws,
            workspace_source=source,
        )


def _require_workspace(reg: Registration) -> None:
    missing = [f for f in WORKSPACE_FIELDS if not getattr(reg, f)]
    if missing:
        ways = "; ".join(f"{f}: node config 'workspace: {{{f}: ...}}' or env {'/'.join(ENV_KEYS[f])}" for f in missing)
        raise RegistrationError(
            f"Azure ML workspace not fully specified, missing {', '.join(missing)}",
            f"set {ways}; or give an Azure ML config.json via node config 'workspace: {{config: ...}}'",
            kind="config",
        )


def _check_local_path(path: Path) -> None:
    if not path.exists():
        raise RegistrationError(f"model path does not exist: {path}", kind="config")
    if path.is_dir() and not any(path.iterdir()):
        # azure-ai-ml would raise EmptyDirectoryError only after contacting the workspace.
        raise RegistrationError(f"model folder is empty: {path}", kind="config")


def _absolute(path: Path) -> str:
    return str(path if path.is_absolute() else Path.cwd() / path)


def build_model_entity(reg: Registration, *, check_path: bool = False) -> Any:
    """Return the ``azure.ai.ml.entities.Model`` for ``reg``, validated offline.

    azure-ai-ml 1.35.2 has no ``Model._validate()``; validation is a schema round trip:
    ``model._to_dict()`` (ModelSchema dump: type enum), ``Model._load(data=...)`` (ModelSchema
    load: required name, version field) and ``model._to_rest_object()`` (the PUT body).
    The path need not exist unless ``check_path`` (a plan may describe a folder that an
    earlier node has not produced yet). Errors: :class:`RegistrationError` (kind validation).
    """
    if check_path:
        _check_local_path(reg.path)
    ml = _import_ml()
    Model = ml.entities.Model
    try:
        with _quiet_azure():
            model = Model(
                name=reg.name,
                version=reg.version,
                path=_absolute(reg.path),
                type=reg.type,
                description=reg.description,
                tags=dict(reg.tags),
                properties=dict(reg.properties),
            )
            _validate_entity(model)
    except RegistrationError:
        raise
    except Exception as exc:  # noqa: BLE001 - azure-ai-ml raises many types here
        raise RegistrationError(f"invalid model entity: {_short(exc)}", kind="validation") from None
    return model


def _validate_entity(model: Any) -> Dict[str, Any]:
    data = model._to_dict()  # pylint: disable=protected-access
    type(model)._load(data=data)  # pylint: disable=protected-access
    model._to_rest_object()  # pylint: disable=protected-access
    return data


def _entity_dict(model: Any) -> Dict[str, Any]:
    with _quiet_azure():
        return json.loads(json.dumps(model._to_dict(), default=str))  # pylint: disable=protected-access


def _path_info(path: Path) -> Dict[str, Any]:
    info: Dict[str, Any] = {"path": _absolute(path), "exists": path.exists()}
    if path.is_file():
        info.update(kind="file", files=1, bytes=path.stat().st_size)
    elif path.is_dir():
        files = size = 0
        for root, _dirs, names in os.walk(path):
            for n in names:
                files += 1
                with contextlib.suppress(OSError):
                    size += os.lstat(os.path.join(root, n)).st_size
        info.update(kind="dir", files=files, bytes=size)
        # azure-ai-ml honours these when uploading a folder (.amlignore wins over .gitignore).
        ignore = next((n for n in (".amlignore", ".gitignore") if (path / n).is_file()), None)
        if ignore:
            info["ignore_file"] = ignore
    return info


def _cli_equivalent(reg: Registration) -> str:
    parts = [
        "az", "ml", "model", "create",
        "--name", reg.name, "--version", reg.version, "--path", str(reg.path), "--type", reg.type,
    ]
    if reg.description:
        parts += ["--description", reg.description]
    for k, v in redact(reg.tags).items():  # redact by key first: "tags.key=v" hides the key name
        parts += ["--set", f"tags.{k}={v}"]
    for k, v in redact(reg.properties).items():
        parts += ["--set", f"properties.{k}={v}"]
    for flag, value in (
        ("--subscription", reg.subscription_id),
        ("--resource-group", reg.resource_group),
        ("--workspace-name", reg.workspace_name),
    ):
        parts += [flag, value or f"<{flag[2:]}>"]
    return " ".join(shlex.quote(p) for p in parts)


def _credential_label(credential: Any = None) -> str:
    if credential is None:
        opts = ", ".join(f"{k}={v}" for k, v in CREDENTIAL_KWARGS.items())
        return f"DefaultAzureCredential({opts})"
    return type(credential).__name__


def describe(reg: Registration) -> Dict[str, Any]:
    """JSON-safe, secret-free record of exactly the call :func:`register` would make.

    For ``plan`` display and offline record files. Builds and validates the entity (raises
    :class:`RegistrationError` if invalid); does not require the path to exist, does not
    touch credentials or the network.
    """
    model = build_model_entity(reg)
    record = {
        "operation": OPERATION,
        "client": {
            "class": "azure.ai.ml.MLClient",
            "subscription_id": reg.subscription_id,
            "resource_group_name": reg.resource_group,
            "workspace_name": reg.workspace_name,
            **CLIENT_KWARGS,
        },
        "credential_source": _credential_label(),
        "workspace": {
            "subscription_id": reg.subscription_id,
            "resource_group": reg.resource_group,
            "workspace_name": reg.workspace_name,
            "source": dict(reg.workspace_source),
        },
        "entity": _entity_dict(model),
        "local": _path_info(reg.path),
        "cli_equivalent": _cli_equivalent(reg),
        "sdk_versions": _versions(),
    }
    return redact(record)


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class CredentialStatus:
    """Result of :func:`check_credentials`. ``reason`` is one user-facing line, no secrets."""

    ok: bool
    reason: str
    kind: str = "ok"  # ok | no_credentials | auth_failed | network | timeout | config | error
    hint: Optional[str] = None
    credential: Optional[str] = None  # class name of the credential that answered / failed
    elapsed_s: float = 0.0

    @property
    def status(self) -> str:
        return "ok" if self.ok else "failed"

    def __bool__(self) -> bool:
        return self.ok

    def to_dict(self) -> Dict[str, Any]:
        return redact(
            {
                "status": self.status,
                "reason": self.reason,
                "kind": self.kind,
                "hint": self.hint,
                "credential": self.credential,
                "elapsed_s": round(self.elapsed_s, 3),
            }
        )


def default_credential(**overrides: Any) -> Any:
    """``DefaultAzureCredential(**CREDENTIAL_KWARGS, **overrides)``; bad settings (e.g. an
    invalid AZURE_TOKEN_CREDENTIALS value, which raises ValueError) become RegistrationError."""
    try:
        from azure.identity import DefaultAzureCredential  # noqa: PLC0415
    except ImportError:
        raise RegistrationError("azure-identity is not installed", "pip install azure-identity", kind="dependency") from None
    try:
        return DefaultAzureCredential(**{**CREDENTIAL_KWARGS, **overrides})
    except Exception as exc:  # noqa: BLE001
        raise RegistrationError(f"cannot set up Azure credentials: {_short(exc)}", kind="config") from None


def _credential_error(
    credential: Any, timeout_s: float, scope: str = ARM_SCOPE, *, label_s: Optional[float] = None
) -> Tuple[Optional[RegistrationError], Optional[str]]:
    """Try ``credential.get_token(scope)`` within ``timeout_s``.

    Returns ``(None, credential_name)`` on success, ``(error, credential_name)`` otherwise.
    The token itself is dropped at once and never returned or logged.
    """
    def probe() -> str:
        credential.get_token(scope)  # result (the token) discarded
        inner = getattr(credential, "_successful_credential", None)
        return type(inner or credential).__name__

    try:
        with _quiet_azure():
            name = _run_bounded(probe, timeout_s, "olivepipe-azureml-credcheck")
        return None, name
    except _BoundExceeded:
        return (
            RegistrationError(
                f"Azure credential check timed out after {label_s or timeout_s:g} s (a credential source did not answer)",
                NETWORK_HINT + ", or run `az login` again",
                kind="timeout",
            ),
            None,
        )
    except Exception as exc:  # noqa: BLE001
        err = _translate(exc, credential=credential)
        return err, getattr(err, "credential_name", None)


def check_credentials(timeout_s: float = DEFAULT_CREDENTIAL_TIMEOUT_S, *, credential: Any = None) -> CredentialStatus:
    """Whether Azure credentials can get an ARM token, within ``timeout_s`` seconds total.

    Uses :func:`default_credential` (managed identity and interactive browser excluded)
    unless ``credential`` is given. Never hangs: ``get_token`` runs in a daemon thread.
    """
    t0 = time.monotonic()
    try:
        cred = credential if credential is not None else default_credential()
    except RegistrationError as err:
        return CredentialStatus(False, str(err), kind=err.kind, hint=err.hint or None, elapsed_s=time.monotonic() - t0)
    remaining = max(0.001, timeout_s - (time.monotonic() - t0))
    err, name = _credential_error(cred, remaining, label_s=timeout_s)
    elapsed = time.monotonic() - t0
    if err is None:
        return CredentialStatus(True, f"Azure credentials OK ({name})", kind="ok", credential=name, elapsed_s=elapsed)
    return CredentialStatus(False, str(err), kind=err.kind, hint=err.hint or None, credential=name, elapsed_s=elapsed)


# --------------------------------------------------------------------------- error translation

_CHAIN_MARKER = "failed to retrieve a token from the included credentials"
_ATTEMPT_RE = re.compile(r"^\t(\w+)(?::\s?(.*))?$")
_NETWORK_RE = re.compile(
    r"Failed to resolve|Name or service not known|Temporary failure in name resolution|timed out|"
    r"Connection(Error| refused| aborted| reset)|Max retries exceeded|Network is unreachable|"
    r"certificate verify failed|SSLError|ProxyError",
    re.I,
)
_HARD_RE = re.compile(r"Authentication failed|AADSTS|invalid_client|invalid_grant|unauthorized_client", re.I)


def _parse_chain(message: str) -> Optional[List[Tuple[str, str]]]:
    if _CHAIN_MARKER not in message:
        return None
    attempts = []
    for line in message.splitlines():
        m = _ATTEMPT_RE.match(line)
        if m:
            attempts.append((m.group(1), m.group(2) or ""))
    return attempts


def _auth_error(message: str, credential: Any) -> RegistrationError:
    attempts = _parse_chain(message)
    if attempts is None:  # a single credential's own failure
        name = type(credential).__name__ if credential is not None else None
        attempts = [(name or "credential", message)]
        chain_len = 1
        hard = True
    else:
        chain_len = len(getattr(credential, "credentials", ()) or ())
        hard = False
    if not attempts:
        return _no_credentials()
    name, reason = attempts[-1]
    # ChainedTokenCredential only continues past CredentialUnavailableError and stops at the
    # first real failure, so only the last attempt can be a real failure; it was one if the
    # chain stopped early or its text says so.
    if not hard:
        hard = bool((chain_len and len(attempts) < chain_len) or _HARD_RE.search(reason) or _NETWORK_RE.search(reason))
    if not hard:
        return _no_credentials()
    short = _short(reason.replace("Authentication failed: ", ""), 200)
    if _NETWORK_RE.search(reason):
        return _named(
            RegistrationError(f"could not reach Microsoft Entra ID to get a token ({name}: {short})", NETWORK_HINT, kind="network"),
            name,
        )
    return _named(
        RegistrationError(
            f"Azure authentication failed ({name}: {short})",
            "check AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, or run `az login` again",
            kind="auth_failed",
        ),
        name,
    )


_SP_VARS = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET")


def _no_credentials() -> RegistrationError:
    present = [v for v in _SP_VARS if os.environ.get(v)]
    hint = NO_CREDENTIALS_HINT
    if present and len(present) < len(_SP_VARS):
        # EnvironmentCredential needs all three (or a certificate / username+password variant).
        missing = [v for v in _SP_VARS if v not in present]
        hint = f"{'/'.join(present)} set but {'/'.join(missing)} missing; set them or run `az login`"
    return _named(RegistrationError("no Azure credentials", hint, kind="no_credentials"), None)


def _named(err: RegistrationError, name: Optional[str]) -> RegistrationError:
    err.credential_name = name  # type: ignore[attr-defined]
    return err


def _translate(exc: BaseException, *, credential: Any = None, reg: Optional[Registration] = None) -> RegistrationError:
    """Map any SDK exception to one RegistrationError with a single clear line."""
    if isinstance(exc, RegistrationError):
        return exc
    try:
        from azure.core import exceptions as core  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        core = None
    try:
        from azure.identity import CredentialUnavailableError  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        CredentialUnavailableError = ()  # type: ignore[assignment,misc]
    # Only look at azure-ai-ml's exception type if it is already loaded: importing it pulls in
    # the whole azure.ai.ml package (~1 s), and an MlException cannot exist without it.
    ml_exc = sys.modules.get("azure.ai.ml.exceptions")
    MlException = getattr(ml_exc, "MlException", ())

    message = str(getattr(exc, "message", None) or exc)
    where = f"{reg.subscription_id}/{reg.resource_group}/{reg.workspace_name}" if reg else "the workspace"

    if CredentialUnavailableError and isinstance(exc, CredentialUnavailableError):
        return _named(
            RegistrationError(
                f"no Azure credentials ({type(credential).__name__}: {_short(message, 160)})",
                NO_CREDENTIALS_HINT,
                kind="no_credentials",
            ),
            type(credential).__name__ if credential is not None else None,
        )
    if core is not None and isinstance(exc, core.ClientAuthenticationError):
        status = getattr(exc, "status_code", None)
        if status in (401, 403):
            return RegistrationError(
                f"Azure rejected the credentials (HTTP {status}): {_short(message, 200)}",
                "run `az login` again / check AZURE_TENANT_ID and that the identity can access the workspace",
                kind="auth_failed",
            )
        return _auth_error(message, credential)
    if core is not None and isinstance(exc, core.ResourceNotFoundError):
        return RegistrationError(
            f"Azure ML workspace or resource not found ({where}): {_short(message, 200)}",
            "check subscription_id, resource_group and workspace_name",
            kind="not_found",
        )
    if core is not None and isinstance(exc, core.HttpResponseError):
        status = getattr(exc, "status_code", None)
        code = getattr(getattr(exc, "error", None), "code", None)
        label = f"HTTP {status}" + (f" {code}" if code else "")
        if status == 403:
            return RegistrationError(
                f"permission denied on {where} ({label}): {_short(message, 200)}",
                "the identity needs e.g. the 'AzureML Data Scientist' or Contributor role on the workspace",
                kind="permission",
            )
        return RegistrationError(f"Azure ML request failed ({label}): {_short(message, 240)}", kind="http")
    if core is not None and isinstance(exc, (core.ServiceRequestError, core.ServiceResponseError)):
        return RegistrationError(f"could not reach Azure: {_short(message, 240)}", NETWORK_HINT, kind="network")
    if MlException and isinstance(exc, MlException):
        return RegistrationError(f"Azure ML rejected the model: {_short(message, 300)}", kind="azureml")
    if core is not None and isinstance(exc, core.AzureError):
        return RegistrationError(f"Azure error ({type(exc).__name__}): {_short(message, 240)}", kind="error")
    return RegistrationError(f"registration failed ({type(exc).__name__}): {_short(message, 240)}", kind="error")


# --------------------------------------------------------------------------- register


def register(
    reg: Registration,
    *,
    credential: Any = None,
    client_factory: Optional[Callable[..., Any]] = None,
    timeout_s: float = DEFAULT_REGISTER_TIMEOUT_S,
    credential_timeout_s: float = DEFAULT_CREDENTIAL_TIMEOUT_S,
) -> Dict[str, Any]:
    """Register ``reg.path`` as model ``reg.name``:``reg.version`` and return a record
    ``{id, name, version, path, type, local_path, workspace, operation, elapsed_s}`` (redacted).

    Steps: check workspace values and the local folder; build and validate the entity; when
    ``credential`` is None, build :func:`default_credential` and check it with
    :func:`check_credentials` semantics (bounded by ``credential_timeout_s``); then, bounded by
    ``timeout_s``, ``client_factory(credential=..., subscription_id=..., resource_group_name=...,
    workspace_name=..., retry_total=0, connection_timeout=30, enable_telemetry=False)``
    (default ``azure.ai.ml.MLClient``) and ``client.models.create_or_update(model)``.

    Every failure raises :class:`RegistrationError` (one line, no traceback chain).
    """
    t0 = time.monotonic()
    _require_workspace(reg)
    _check_local_path(reg.path)
    model = build_model_entity(reg)

    if credential is None:
        credential = default_credential()
        err, _name = _credential_error(credential, credential_timeout_s)
        if err is not None:
            raise err
    if client_factory is None:
        client_factory = _import_ml().MLClient

    def call() -> Any:
        client = client_factory(
            credential=credential,
            subscription_id=reg.subscription_id,
            resource_group_name=reg.resource_group,
            workspace_name=reg.workspace_name,
            **CLIENT_KWARGS,
        )
        return client.models.create_or_update(model)

    failure: Optional[RegistrationError] = None
    try:
        with _quiet_azure():
            result = _run_bounded(call, timeout_s, "olivepipe-azureml-register")
    except _BoundExceeded:
        failure = RegistrationError(
            f"model registration did not finish within {timeout_s:g} s", NETWORK_HINT, kind="timeout"
        )
    except Exception as exc:  # noqa: BLE001
        failure = _translate(exc, credential=credential, reg=reg)
    if failure is not None:
        log.debug("register %s:%s failed: %s", reg.name, reg.version, failure)
        raise failure  # raised outside the except block: no chained traceback

    record = {
        "id": getattr(result, "id", None),
        "name": getattr(result, "name", None) or reg.name,
        "version": str(getattr(result, "version", None) or reg.version),
        "path": str(getattr(result, "path", None)) if getattr(result, "path", None) is not None else None,
        "type": getattr(result, "type", None) or reg.type,
        "local_path": _absolute(reg.path),
        "workspace": {
            "subscription_id": reg.subscription_id,
            "resource_group": reg.resource_group,
            "workspace_name": reg.workspace_name,
        },
        "operation": OPERATION,
        "elapsed_s": round(time.monotonic() - t0, 3),
    }
    log.info("registered model %s:%s in %s", record["name"], record["version"], reg.workspace_name)
    return redact(record)


# --------------------------------------------------------------------------- worker entry


def run_register(job: Mapping[str, Any]) -> Dict[str, Any]:
    """Worker entry point for a ``register`` job (``olivepipe.worker.run_job``).

    Expects the job as ``Workspace.job`` builds it: ``options`` (the node's ``name``,
    ``version``, ``workspace``, ``tags``), ``inputs`` (the first input's ``path`` is the model
    folder to register, unless ``options['path']`` is set), ``output_dir`` and ``rehearse``.
    Under ``rehearse`` nothing is sent to Azure: the record holds :func:`describe` output
    (the workspace may be incomplete). Writes ``registration.json`` into ``output_dir``.
    Returns ``{"model": None, "registration": record}``.
    """
    options = dict(job.get("options") or {})
    inputs = list(job.get("inputs") or [])
    path = options.get("path") or (inputs[0].get("path") if inputs else None)
    if not path:
        raise RegistrationError("register node has no input model folder", "give it an `input:`", kind="config")
    rehearse = bool(job.get("rehearse"))
    reg = Registration.from_config(options, os.environ, path=path, require_workspace=not rehearse)
    if rehearse:
        record: Dict[str, Any] = {"rehearsal": True, "call": describe(reg)}
    else:
        record = {"rehearsal": False, "call": describe(reg), "registered": register(reg)}
    if job.get("output_dir"):
        out = Path(job["output_dir"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "registration.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return {"model": None, "registration": record}
