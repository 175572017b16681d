"""Which Azure ML workspace: subscription / resource group / workspace name from the node's
``workspace:`` mapping, then environment variables, then an Azure ML ``config.json``
(searched like ``MLClient.from_config``), with where each value came from.

Cheap to import: no Azure SDK, no registration code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .errors import RegistrationError, short

__all__ = ["WORKSPACE_FIELDS", "ENV_KEYS", "resolve_workspace", "find_workspace_config", "missing_workspace_error"]

WORKSPACE_FIELDS = ("subscription_id", "resource_group", "workspace_name")
#: Environment variables for each workspace field, in precedence order.
ENV_KEYS: Dict[str, Tuple[str, ...]] = {
    "subscription_id": ("AZURE_SUBSCRIPTION_ID",),
    "resource_group": ("AZURE_RESOURCE_GROUP", "AZUREML_RESOURCE_GROUP"),
    "workspace_name": ("AZUREML_WORKSPACE_NAME",),
}
#: The node option holding the workspace mapping (schema: ``workspace: {subscription_id,
#: resource_group, workspace_name, config}``), and its key naming a config.json.
WORKSPACE_OPTION = "workspace"
CONFIG_KEY = "config"


def _clean(value: Any) -> Optional[str]:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def find_workspace_config(start: Optional[os.PathLike] = None) -> Optional[Path]:
    """Find an Azure ML workspace config file the way ``MLClient.from_config`` does.

    ``start`` may be the file itself. Otherwise, for each directory in (``.azureml``,
    ``aml_config``, none) and each file name in (``config.json``, ``project.json``),
    search ``start`` (default: cwd) and up to 20 parent directories.
    """
    path = Path(".") if start is None else Path(start)
    if path.is_file():
        return path
    for sub in (".azureml", "aml_config", None):
        for fname in ("config.json", "project.json"):
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
        raise RegistrationError(f"cannot read Azure ML config file {path}: {short(exc)}", kind="config") from None
    if not isinstance(data, dict):
        raise RegistrationError(f"Azure ML config file {path} must contain a JSON object", kind="config")
    scope = data.get("Scope") or data.get("scope")
    if scope:
        # /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/workspaces/<ws>
        pieces = str(scope).split("/")
        get = lambda i: pieces[i] if len(pieces) > i else None  # noqa: E731
        return {"subscription_id": get(2), "resource_group": get(4), "workspace_name": get(8)}
    return {f: _clean(data.get(f)) for f in WORKSPACE_FIELDS}


def missing_workspace_error(missing: List[str], note: Optional[str] = None) -> RegistrationError:
    """The one-line error for workspace values nobody gave, saying how to give each."""
    ways = "; ".join(f"{f}: node config 'workspace: {{{f}: ...}}' or env {'/'.join(ENV_KEYS[f])}" for f in missing)
    return RegistrationError(
        f"Azure ML workspace not fully specified, missing {', '.join(missing)}",
        f"set {ways}; or give an Azure ML config.json (download it from the workspace's page in "
        f"Azure ML studio) via node config 'workspace: {{config: ...}}'" + (f" ({note})" if note else ""),
        kind="config",
    )


def resolve_workspace(
    options: Optional[Mapping[str, Any]],
    env: Optional[Mapping[str, str]] = None,
    *,
    base_dir: Optional[os.PathLike] = None,
    start_dir: Optional[os.PathLike] = None,
    required: bool = True,
) -> Tuple[Optional[str], Optional[str], Optional[str], Dict[str, str]]:
    """Resolve ``(subscription_id, resource_group, workspace_name, source)`` for a node.

    ``options`` are the node's options; only its ``workspace:`` mapping is read. Per value,
    first match wins: ``workspace.<field>``, then ``env`` (``AZURE_SUBSCRIPTION_ID``;
    ``AZURE_RESOURCE_GROUP`` then ``AZUREML_RESOURCE_GROUP``; ``AZUREML_WORKSPACE_NAME``),
    then an Azure ML config.json: ``workspace.config`` (a file, or a directory to search from;
    relative to ``base_dir``) or else found by searching from ``start_dir`` (default: cwd)
    like ``MLClient.from_config``. The config file is read only when something is still
    missing (a named one must exist, though).

    ``source`` maps each field to where it came from, e.g. ``"node config (workspace.resource_group)"``,
    ``"env AZURE_SUBSCRIPTION_ID"``, ``"config.json /abs/.azureml/config.json"`` or ``"missing"``.
    With ``required`` (default) a missing value raises :class:`RegistrationError` (kind
    ``config``) naming what is missing and how to provide it.
    """
    block = (options or {}).get(WORKSPACE_OPTION) or {}
    env = os.environ if env is None else env
    values: Dict[str, Optional[str]] = {f: None for f in WORKSPACE_FIELDS}
    source: Dict[str, str] = {}

    for f in WORKSPACE_FIELDS:
        val = _clean(block.get(f))
        if val:
            values[f], source[f] = val, f"node config ({WORKSPACE_OPTION}.{f})"
            continue
        for key in ENV_KEYS[f]:
            val = _clean(env.get(key))
            if val:
                values[f], source[f] = val, f"env {key}"
                break

    explicit = _clean(block.get(CONFIG_KEY))
    config_file: Optional[Path] = None
    searched_from: Optional[Path] = None
    if explicit is not None:
        p = Path(explicit).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        if not p.exists():
            raise RegistrationError(f"Azure ML config file not found: {p}", kind="config")
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
        if config_file is not None:
            note = f"the config file used ({config_file}) lacks them"
        else:
            note = f"no .azureml/config.json found searching up from {searched_from}"
        raise missing_workspace_error(missing, note)
    return values["subscription_id"], values["resource_group"], values["workspace_name"], source
