"""The ``register`` node: register a produced model folder as an Azure ML model.

The equivalent CLI call is::

    az ml model create --name ft-for-travel --version 1 --path ./models/phi/onnx-ao \\
        --resource-group RG --workspace-name WS

* :class:`Registration` - what to register and where, from the node's options.
* :func:`build_model_entity` - the ``azure.ai.ml.entities.Model``, validated offline.
* :func:`describe` - JSON-safe, secret-free record of the call :func:`register` would make.
* :func:`register` - ``MLClient(..., retry_total=0).models.create_or_update(model)``, every
  failure one :class:`RegistrationError`, with a hard time bound.
* :func:`run_register` - the worker's entry point for a ``register`` job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from .credentials import DEFAULT_CREDENTIAL_TIMEOUT_S, credential_label, default_credential, probe
from .errors import NETWORK_HINT, RegistrationError, short, translate
from .redact import redact
from .sdk import CLIENT_KWARGS, BoundExceeded, import_ml, quiet_azure, run_bounded, sdk_versions
from .workspace import WORKSPACE_FIELDS, missing_workspace_error, resolve_workspace

__all__ = [
    "OPERATION",
    "MODEL_TYPE",
    "DEFAULT_REGISTER_TIMEOUT_S",
    "Registration",
    "build_model_entity",
    "describe",
    "register",
    "run_register",
]

log = logging.getLogger(__name__)

#: The SDK call :func:`register` makes.
OPERATION = "ml_client.models.create_or_update"
#: The model asset type registered (a folder of files; the schema has no way to pick another).
MODEL_TYPE = "custom_model"
#: Upper bound for the whole registration (client construction + upload + PUT). Large model
#: folders are uploaded to the workspace datastore, hence the generous default.
DEFAULT_REGISTER_TIMEOUT_S = 1800.0

_BAD_NAME_CHARS = re.compile(r"[\s/\\:?#%&]")


def _clean(value: Any) -> Optional[str]:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _check_identifier(value: str, what: str) -> None:
    if not value:
        raise RegistrationError(f"model {what} is required", kind="config")
    if len(value) > 255 or _BAD_NAME_CHARS.search(value):
        raise RegistrationError(
            f"invalid model {what} {value!r}",
            "use letters, digits, '-', '_' or '.' (no spaces, '/', ':', '?', '#', '%', '&'), at most 255 characters",
            kind="config",
        )


@dataclass(frozen=True)
class Registration:
    """What to register and where.

    ``version`` is coerced to ``str`` (YAML ``version: 1`` gives an int, which azure-ai-ml
    rejects), ``path`` to ``Path``; tag values to ``str`` (as azure-ai-ml sends them).
    Empty description and workspace values become ``None``. ``workspace_source`` records
    where the workspace values came from, for :func:`describe`.
    """

    name: str
    version: str
    path: Path
    description: Optional[str] = None
    tags: Dict[str, str] = field(default_factory=dict)
    subscription_id: Optional[str] = None
    resource_group: Optional[str] = None
    workspace_name: Optional[str] = None
    workspace_source: Dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "name", _clean(self.name) or "")
        put(self, "version", _clean(self.version) or "")
        if self.path is None or str(self.path).strip() == "":
            raise RegistrationError("model path is required", kind="config")
        put(self, "path", Path(os.fspath(self.path)).expanduser())
        put(self, "description", _clean(self.description))
        # Like azure-ai-ml's Model._to_rest_object: values are sent as strings, None dropped.
        put(self, "tags", {str(k): str(v) for k, v in (self.tags or {}).items() if v is not None})
        for f in WORKSPACE_FIELDS:
            put(self, f, _clean(getattr(self, f)))
        put(self, "workspace_source", dict(self.workspace_source or {}))
        _check_identifier(self.name, "name")
        _check_identifier(self.version, "version")

    def __repr__(self) -> str:  # redacted: tags/description may carry secrets
        fields = ", ".join(
            f"{f}={v!r}"
            for f, v in redact({f: getattr(self, f) for f in self.__dataclass_fields__ if f != "path"}).items()
        )
        return f"Registration(path={str(self.path)!r}, {fields})"

    @property
    def workspace(self) -> Tuple[Optional[str], Optional[str], Optional[str]]:
        return (self.subscription_id, self.resource_group, self.workspace_name)

    @classmethod
    def from_options(
        cls,
        options: Mapping[str, Any],
        env: Optional[Mapping[str, str]] = None,
        *,
        path: os.PathLike,
        base_dir: Optional[os.PathLike] = None,
        start_dir: Optional[os.PathLike] = None,
        require_workspace: bool = True,
    ) -> "Registration":
        """Build from a ``register`` node's options (``name``, ``version``, ``tags``,
        ``description``, ``workspace: {...}`` as :func:`resolve_workspace` reads it) and
        ``path``, the model folder (the input node's output). Other keys are ignored."""
        sub, rg, ws, source = resolve_workspace(
            options, env, base_dir=base_dir, start_dir=start_dir, required=require_workspace
        )
        return cls(
            name=options.get("name"),
            version=options.get("version"),
            path=path,
            description=options.get("description"),
            tags=options.get("tags"),
            subscription_id=sub,
            resource_group=rg,
            workspace_name=ws,
            workspace_source=source,
        )


def _require_workspace(reg: Registration) -> None:
    missing = [f for f in WORKSPACE_FIELDS if not getattr(reg, f)]
    if missing:
        raise missing_workspace_error(missing)


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
    Model = import_ml().entities.Model
    try:
        with quiet_azure():
            model = Model(
                name=reg.name,
                version=reg.version,
                path=_absolute(reg.path),
                type=MODEL_TYPE,
                description=reg.description,
                tags=dict(reg.tags),
            )
            type(model)._load(data=model._to_dict())  # pylint: disable=protected-access
            model._to_rest_object()  # pylint: disable=protected-access
    except Exception as exc:  # noqa: BLE001 - azure-ai-ml raises many types here
        raise RegistrationError(f"invalid model entity: {short(exc)}", kind="validation") from None
    return model


def _entity_dict(model: Any) -> Dict[str, Any]:
    with quiet_azure():
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
        "--name", reg.name, "--version", reg.version, "--path", str(reg.path), "--type", MODEL_TYPE,
    ]
    if reg.description:
        parts += ["--description", reg.description]
    for k, v in redact(reg.tags).items():  # redact by key first: "tags.key=v" hides the key name
        parts += ["--set", f"tags.{k}={v}"]
    for flag, value in (
        ("--subscription", reg.subscription_id),
        ("--resource-group", reg.resource_group),
        ("--workspace-name", reg.workspace_name),
    ):
        parts += [flag, value or f"<{flag[2:]}>"]
    return " ".join(shlex.quote(p) for p in parts)


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
        "credential_source": credential_label(),
        "workspace": {
            "subscription_id": reg.subscription_id,
            "resource_group": reg.resource_group,
            "workspace_name": reg.workspace_name,
            "source": dict(reg.workspace_source),
        },
        "entity": _entity_dict(model),
        "local": _path_info(reg.path),
        "cli_equivalent": _cli_equivalent(reg),
        "sdk_versions": sdk_versions(),
    }
    return redact(record)


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
    ``credential`` is None, build :func:`default_credential` and probe it (bounded by
    ``credential_timeout_s``); then, bounded by ``timeout_s``, ``client_factory(credential=...,
    subscription_id=..., resource_group_name=..., workspace_name=..., retry_total=0,
    connection_timeout=30, enable_telemetry=False)`` (default ``azure.ai.ml.MLClient``) and
    ``client.models.create_or_update(model)``.

    Every failure raises :class:`RegistrationError` (one line, no traceback chain).
    """
    t0 = time.monotonic()
    _require_workspace(reg)
    _check_local_path(reg.path)
    model = build_model_entity(reg)

    if credential is None:
        credential = default_credential()
        err, _name = probe(credential, credential_timeout_s)
        if err is not None:
            raise err
    if client_factory is None:
        client_factory = import_ml().MLClient

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
        with quiet_azure():
            result = run_bounded(call, timeout_s, "olivepipe-azure-register")
    except BoundExceeded:
        failure = RegistrationError(f"model registration did not finish within {timeout_s:g} s", NETWORK_HINT, kind="timeout")
    except Exception as exc:  # noqa: BLE001
        where = f"{reg.subscription_id}/{reg.resource_group}/{reg.workspace_name}"
        failure = translate(exc, credential=credential, where=where)
    if failure is not None:
        log.debug("register %s:%s failed: %s", reg.name, reg.version, failure)
        raise failure  # raised outside the except block: no chained traceback

    record = {
        "id": getattr(result, "id", None),
        "name": getattr(result, "name", None) or reg.name,
        "version": str(getattr(result, "version", None) or reg.version),
        "path": str(getattr(result, "path", None)) if getattr(result, "path", None) is not None else None,
        "type": getattr(result, "type", None) or MODEL_TYPE,
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


def run_register(
    job: Mapping[str, Any], *, credential: Any = None, client_factory: Optional[Callable[..., Any]] = None
) -> Dict[str, Any]:
    """Worker entry point for a ``register`` job (``olivepipe.run.worker.run_job``).

    Expects the job as ``Workspace.job`` builds it: ``options`` (the node's ``name``,
    ``version``, ``workspace``, ``tags``, ``description``), ``inputs`` (the first input's
    ``path`` is the model folder to register), ``output_dir``, ``rehearse`` and, when given,
    ``base_dir`` (the workflow's folder: a relative ``workspace.config`` is taken from there
    and the config.json search starts there, as ``plan`` does; otherwise the worker's cwd).
    Under ``rehearse`` nothing is sent to Azure: the record holds :func:`describe` output
    (the workspace may be incomplete). Writes ``registration.json`` into ``output_dir``.
    ``credential`` / ``client_factory`` go to :func:`register`. Returns
    ``{"model": None, "registration": record}``.
    """
    options = dict(job.get("options") or {})
    inputs = list(job.get("inputs") or [])
    path = inputs[0].get("path") if inputs else None
    if not path:
        raise RegistrationError("register node has no input model folder", "give it an `input:`", kind="config")
    rehearse = bool(job.get("rehearse"))
    base_dir = job.get("base_dir")
    reg = Registration.from_options(
        options, os.environ, path=path, base_dir=base_dir, start_dir=base_dir, require_workspace=not rehearse
    )
    if rehearse:
        record: Dict[str, Any] = {"rehearsal": True, "call": describe(reg)}
    else:
        registered = register(reg, credential=credential, client_factory=client_factory)
        record = {"rehearsal": False, "call": describe(reg), "registered": registered}
    if job.get("output_dir"):
        out = Path(job["output_dir"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "registration.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return {"model": None, "registration": record}
