"""Where the shared (remote) result cache is, from the environment and `.olivepipe/config.yaml`.

The remote is named, never authenticated, by configuration:

  OLIVEPIPE_REMOTE_CACHE=azblob://<account>/<container>[/prefix]     (``off`` disables any remote)
  or OLIVEPIPE_BLOB_ACCOUNT_URL=https://<account>.blob.core.windows.net + OLIVEPIPE_BLOB_CONTAINER
     (+ OLIVEPIPE_BLOB_PREFIX)
  or .olivepipe/config.yaml:  cache: {remote: azblob://..., account_url: ..., push: true}

Credentials come only from the environment, first match wins: OLIVEPIPE_BLOB_SAS (a SAS token),
AZURE_STORAGE_CONNECTION_STRING, else DefaultAzureCredential without managed identity or a
browser (olivepipe/azure/credentials.py). The config file may be copied or committed, so a
secret in it is refused, never used. ``RemoteConfig`` holds no secret either (its repr is
safe to print); ``connect`` reads them from the environment when the client is built.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from ..errors import StoreError

ENV_REMOTE = "OLIVEPIPE_REMOTE_CACHE"
ENV_ACCOUNT_URL = "OLIVEPIPE_BLOB_ACCOUNT_URL"
ENV_CONTAINER = "OLIVEPIPE_BLOB_CONTAINER"
ENV_PREFIX = "OLIVEPIPE_BLOB_PREFIX"
ENV_PUSH = "OLIVEPIPE_REMOTE_PUSH"
ENV_SAS = "OLIVEPIPE_BLOB_SAS"
ENV_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
CONFIG_FILE = Path(".olivepipe") / "config.yaml"
SCHEME = "azblob"

_OFF = {"off", "none", "false", "0", "no"}
_ON = {"on", "true", "1", "yes"}
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$")
_CACHE_KEYS = {"remote": "azblob://<account>/<container>[/prefix]",
               "account_url": "the blob endpoint, e.g. https://<account>.blob.core.windows.net",
               "push": "true (apply uploads new results) or false (read the remote, never write it)"}
# text that only a credential contains: a connection string's key or SAS, a SAS query
_SECRET_TEXT = re.compile(r"(?i)(AccountKey\s*=|SharedAccessSignature\s*=|SharedAccessKey\s*=|[?&]sig=|\bsig=|"
                          r"DefaultEndpointsProtocol\s*=)")
SECRET_HINT = (f"credentials go in the environment only: {ENV_CONNECTION_STRING} or {ENV_SAS}, "
               "or sign in with `az login` (DefaultAzureCredential)")


@dataclass(frozen=True)
class RemoteConfig:
    """A remote cache location (no credentials: safe to print and to write to logs)."""

    account: str
    container: str
    prefix: str = ""
    account_url: str = ""  # the blob endpoint; "" = https://<account>.blob.core.windows.net
    push: bool = True  # apply uploads new results (False: a read-only shared cache)
    source: str = ""  # what configured it, for messages: an env var name or the config file

    @property
    def endpoint(self) -> str:
        return (self.account_url or f"https://{self.account}.blob.core.windows.net").rstrip("/")

    @property
    def url(self) -> str:
        return f"{SCHEME}://{self.account}/{self.container}" + (f"/{self.prefix}" if self.prefix else "")


def config_path(workspace: Path) -> Path:
    return Path(workspace) / CONFIG_FILE


def remote_config(workspace: Path | None = None, env: Mapping[str, str] | None = None) -> RemoteConfig | None:
    """The configured remote cache, or None. ``workspace``: the folder whose
    `.olivepipe/config.yaml` is read (None: the environment only). Raises StoreError for a
    malformed or contradictory setting, and for a secret in the config file."""
    env = os.environ if env is None else env
    raw = (env.get(ENV_REMOTE) or "").strip()
    if raw.lower() in _OFF:
        return None  # explicitly off: also overrides the config file (offline, or a local-only run)
    file_cache = load_cache_section(config_path(workspace)) if workspace is not None else {}
    env_url, env_container = (env.get(ENV_ACCOUNT_URL) or "").strip(), (env.get(ENV_CONTAINER) or "").strip()
    push = _push(env, file_cache)
    if raw and env_container:
        raise StoreError(f"both {ENV_REMOTE} and {ENV_CONTAINER} are set",
                         f"set either {ENV_REMOTE}=azblob://<account>/<container> or {ENV_ACCOUNT_URL} + "
                         f"{ENV_CONTAINER}, not both")
    if raw:
        account, container, prefix = parse_remote(raw, ENV_REMOTE)
        source = ENV_REMOTE
    elif env_container:
        if not env_url:
            raise StoreError(f"{ENV_CONTAINER} is set but {ENV_ACCOUNT_URL} is not",
                             f"set {ENV_ACCOUNT_URL}=https://<account>.blob.core.windows.net too")
        account, container = _account_of(env_url, ENV_ACCOUNT_URL), _container(env_container, ENV_CONTAINER)
        prefix = _prefix(env.get(ENV_PREFIX) or "", ENV_PREFIX)
        source = f"{ENV_ACCOUNT_URL} + {ENV_CONTAINER}"
    elif file_cache.get("remote"):
        shown = str(config_path(workspace))
        account, container, prefix = parse_remote(file_cache["remote"], f"{shown}: cache.remote")
        source = shown
    else:
        return None
    endpoint = env_url or file_cache.get("account_url") or ""
    if endpoint:
        where = ENV_ACCOUNT_URL if env_url else f"{config_path(workspace)}: cache.account_url"
        _check_url(endpoint, where)
        if _account_of(endpoint, where) != account:
            raise StoreError(f"{where} is for account '{_account_of(endpoint, where)}' but the remote cache is in "
                             f"account '{account}'", "make them name the same storage account")
    return RemoteConfig(account, container, prefix, endpoint.rstrip("/"), push, source)


def parse_remote(text: str, where: str) -> tuple[str, str, str]:
    """``azblob://<account>/<container>[/prefix]`` -> (account, container, prefix)."""
    text = str(text).strip()
    if _SECRET_TEXT.search(text) or "?" in text:
        raise StoreError(f"{where}: a remote cache address carries no credentials (a SAS or key was given in it)",
                         SECRET_HINT)
    u = urlsplit(text)
    if u.scheme != SCHEME or not u.netloc:
        raise StoreError(f"{where}: {text!r} is not a remote cache address",
                         f"write it as {SCHEME}://<account>/<container>[/prefix]")
    if "@" in u.netloc or ":" in u.netloc:
        raise StoreError(f"{where}: the account part of {SCHEME}://<account>/... is a storage account name only",
                         f"no user, password or port; {SECRET_HINT}")
    parts = [p for p in u.path.split("/") if p]
    if not parts:
        raise StoreError(f"{where}: {text!r} names no container", f"write it as {SCHEME}://{u.netloc}/<container>")
    return (_account(u.netloc, where), _container(parts[0], where), _prefix("/".join(parts[1:]), where))


def load_cache_section(path: Path) -> dict:
    """The `cache:` section of a config file ({} when the file is absent), checked: known keys
    with the right types, and no secret anywhere in the file."""
    import yaml

    from ..safefs import read_regular

    try:
        raw = read_regular(path)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise StoreError(f"{path}: cannot read the config file: {e.strerror or e}", "fix or remove it") from None
    try:
        data = yaml.safe_load(raw.decode("utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise StoreError(f"{path}: not valid YAML ({type(e).__name__})", "fix or remove it") from None
    if not isinstance(data, dict):
        raise StoreError(f"{path}: the config file must be a mapping (e.g. `cache: {{remote: ...}}`)", "fix it")
    secret = _find_secret(data)
    if secret:
        # never echo the value: the message lands in terminals and CI logs
        raise StoreError(f"{path}: `{secret}` holds a credential; refusing to use a config file with secrets in it",
                         SECRET_HINT + "; then remove it from the file (and rotate it if the file was shared)")
    cache = data.get("cache") or {}
    if not isinstance(cache, dict):
        raise StoreError(f"{path}: `cache` must be a mapping", f"known keys: {', '.join(_CACHE_KEYS)}")
    for k, v in cache.items():
        if k not in _CACHE_KEYS:
            raise StoreError(f"{path}: unknown setting `cache.{k}`",
                             "known: " + "; ".join(f"{n}: {what}" for n, what in _CACHE_KEYS.items()))
        want = bool if k == "push" else str
        if not isinstance(v, want):
            raise StoreError(f"{path}: `cache.{k}` must be {'true or false' if want is bool else 'a string'}",
                             _CACHE_KEYS[k])
    return cache


def _find_secret(obj, path: str = "") -> str | None:
    """The dotted path of the first value that is (or is named like) a credential."""
    from ..azure.redact import key_is_secret

    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{path}.{k}" if path else str(k)
            # "key"-like names with an empty value are harmless (and "push: false" is not a secret)
            if key_is_secret(k) and v not in (None, "", False, True):
                return p
            found = _find_secret(v, p)
            if found:
                return found
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found = _find_secret(v, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(obj, str) and _SECRET_TEXT.search(obj):
        return path or "(top level)"
    return None


def _push(env: Mapping[str, str], cache: dict) -> bool:
    v = (env.get(ENV_PUSH) or "").strip().lower()
    if not v:
        return bool(cache.get("push", True))
    if v in _ON:
        return True
    if v in _OFF:
        return False
    raise StoreError(f"{ENV_PUSH}={v!r} is neither on nor off", "set it to 1 (upload new results) or 0 (read only)")


def _account(name: str, where: str) -> str:
    if not _ACCOUNT.match(name):
        raise StoreError(f"{where}: {name!r} is not a storage account name",
                         "3 to 24 lowercase letters and digits")
    return name


def _container(name: str, where: str) -> str:
    if not _CONTAINER.match(name):
        raise StoreError(f"{where}: {name!r} is not a container name",
                         "3 to 63 lowercase letters, digits and single hyphens, starting with a letter or digit")
    return name


def _prefix(text: str, where: str) -> str:
    parts = [p for p in str(text).split("/") if p]
    if any(p in (".", "..") for p in parts) or any(c in text for c in "\\\0?#"):
        raise StoreError(f"{where}: prefix {text!r} is not a plain folder path", "use folder names separated by /")
    return "/".join(parts)


def _check_url(url: str, where: str) -> None:
    if _SECRET_TEXT.search(url) or "?" in url or "@" in url:
        raise StoreError(f"{where}: an account URL carries no credentials (a SAS or key was given in it)",
                         SECRET_HINT)
    u = urlsplit(url)
    if u.scheme not in ("https", "http") or not u.hostname:
        raise StoreError(f"{where}: {url!r} is not an http(s) URL",
                         "e.g. https://<account>.blob.core.windows.net")


def _account_of(url: str, where: str) -> str:
    """The account an endpoint serves: its first host label (https://acct.blob.core.windows.net)
    or, for a path-style endpoint (Azurite: http://127.0.0.1:10000/devstoreaccount1), its
    first path segment."""
    _check_url(url, where)
    u = urlsplit(url)
    path = [p for p in u.path.split("/") if p]
    try:
        ipaddress.ip_address(u.hostname)
        is_ip = True
    except ValueError:
        is_ip = False
    if path and (is_ip or u.hostname == "localhost" or "." not in u.hostname):
        return _account(path[0], where)
    return _account(u.hostname.split(".")[0], where)


def parse_connection_string(text: str) -> dict:
    """``Key=Value;...`` -> {key.lower(): value}. Values keep their own '=' (base64 keys end in =)."""
    out = {}
    for part in text.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep and k:
            out[k.strip().lower()] = v.strip()
    return out


def credential_for(cfg: RemoteConfig, env: Mapping[str, str] | None = None) -> tuple[object, str, str, list[str]]:
    """(credential, endpoint, how, secrets) for ``cfg`` from the environment. ``how`` says which
    source is used (no secret in it); ``secrets`` are the literal values to scrub from messages.
    A credential of None means DefaultAzureCredential (see ``default_credential``)."""
    env = os.environ if env is None else env
    sas = (env.get(ENV_SAS) or "").strip()
    if sas:
        return sas.lstrip("?"), cfg.endpoint, f"SAS token from {ENV_SAS}", [sas, sas.lstrip("?")]
    conn = (env.get(ENV_CONNECTION_STRING) or "").strip()
    if conn:
        cs = parse_connection_string(conn)
        name, key, cs_sas = cs.get("accountname"), cs.get("accountkey"), cs.get("sharedaccesssignature")
        secrets = [conn] + [s for s in (key, cs_sas) if s]
        endpoint = cs.get("blobendpoint")
        if endpoint:
            cs_account = _account_of(endpoint, f"BlobEndpoint in {ENV_CONNECTION_STRING}")
        else:
            cs_account = name
            if name:
                endpoint = f"{cs.get('defaultendpointsprotocol', 'https')}://{name}.blob." \
                           f"{cs.get('endpointsuffix', 'core.windows.net')}"
        if cs_account and cs_account != cfg.account:
            raise StoreError(f"{ENV_CONNECTION_STRING} is for storage account '{cs_account}' but the remote cache "
                             f"{cfg.url} is in '{cfg.account}'",
                             f"set {ENV_CONNECTION_STRING} for '{cfg.account}', or {ENV_SAS}, or unset it to "
                             "sign in with `az login`")
        if key and (name or cs_account):
            cred = {"account_name": name or cs_account, "account_key": key}
        elif cs_sas:
            cred = cs_sas
        else:
            raise StoreError(f"{ENV_CONNECTION_STRING} has neither AccountName+AccountKey nor SharedAccessSignature",
                             "copy the connection string again from the storage account's Access keys page")
        # an explicit endpoint (OLIVEPIPE_BLOB_ACCOUNT_URL, cache.account_url) wins over the string's
        return cred, cfg.account_url or (endpoint or cfg.endpoint).rstrip("/"), \
            f"connection string from {ENV_CONNECTION_STRING}", secrets
    from ..azure.credentials import credential_label

    # None: DefaultAzureCredential, built by ``default_credential`` when the client is (importing
    # azure-identity costs more than a cached plan does)
    return None, cfg.endpoint, credential_label(), []


def default_credential(cfg: RemoteConfig):
    """DefaultAzureCredential without managed identity or a browser (bounded: never hangs)."""
    from ..azure.credentials import default_credential as make
    from ..azure.errors import RegistrationError

    try:
        # inside an Azure ML job (executors/azureml.py sets OLIVEPIPE_AZUREML_JOB=1) the compute's managed
        # identity is the credential; elsewhere it stays excluded (the metadata endpoint can hang a laptop)
        if os.environ.get("OLIVEPIPE_AZUREML_JOB") == "1":
            return make(exclude_managed_identity_credential=False)
        return make()
    except RegistrationError as e:
        raise StoreError(f"no credentials for the remote cache {cfg.url}: {e.message}",
                         f"set {ENV_SAS} or {ENV_CONNECTION_STRING}, or `pip install azure-identity` and `az login`"
                         ) from None


__all__ = ["RemoteConfig", "remote_config", "parse_remote", "load_cache_section", "credential_for",
           "parse_connection_string", "config_path", "ENV_REMOTE", "ENV_ACCOUNT_URL", "ENV_CONTAINER",
           "ENV_PREFIX", "ENV_PUSH", "ENV_SAS", "ENV_CONNECTION_STRING", "CONFIG_FILE", "SECRET_HINT"]
