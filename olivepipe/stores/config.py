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

from ..core.errors import StoreError
from ..core.yamlpos import locate

ENV_REMOTE = "OLIVEPIPE_REMOTE_CACHE"
ENV_ACCOUNT_URL = "OLIVEPIPE_BLOB_ACCOUNT_URL"
ENV_CONTAINER = "OLIVEPIPE_BLOB_CONTAINER"
ENV_PREFIX = "OLIVEPIPE_BLOB_PREFIX"
ENV_PUSH = "OLIVEPIPE_REMOTE_PUSH"
ENV_SAS = "OLIVEPIPE_BLOB_SAS"
ENV_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
ENV_TRUSTED = "OLIVEPIPE_TRUSTED_ENDPOINTS"
ENV_TRUSTED_KEYS = "OLIVEPIPE_TRUSTED_KEYS"
ENV_SIGNING_KEY = "OLIVEPIPE_SIGNING_KEY"
CONFIG_FILE = Path(".olivepipe") / "config.yaml"
SCHEME = "azblob"

_OFF = {"off", "none", "false", "0", "no"}
_ON = {"on", "true", "1", "yes"}
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$")
_CACHE_KEYS = {"remote": "azblob://<account>/<container>[/prefix]",
               "account_url": "the blob endpoint, e.g. https://<account>.blob.core.windows.net",
               "push": "true (apply uploads new results) or false (read the remote, never write it)",
               "trusted_keys": "public keys (NAME:BASE64, from `olivepipe cache keygen`) whose signed entries are "
                               "accepted; none: unsigned entries are accepted"}
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
    # file:line:col of `cache.remote` / `cache.account_url` when a config file named them ("" when the
    # environment did): a credential from the environment never goes where only a file points
    remote_at: str = ""
    url_at: str = ""
    # signed entries (stores/signing.py): public keys "NAME:BASE64" a remote entry must be signed by
    # (empty: unsigned entries are accepted), and the secret key file this machine signs with
    trusted_keys: tuple = ()
    signing_key: str = ""

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
    file_cache, at = load_cache_section(config_path(workspace), positions=True) if workspace is not None else ({}, {})
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
        account, container, prefix = parse_remote(file_cache["remote"], f"{at['remote']}: cache.remote")
        source = shown
    else:
        return None
    endpoint = env_url or file_cache.get("account_url") or ""
    remote_at = "" if (raw or env_container) else at.get("remote", "")
    url_at = "" if env_url or not endpoint else at.get("account_url", "")
    if endpoint:
        where = ENV_ACCOUNT_URL if env_url else f"{url_at}: cache.account_url"
        _check_url(endpoint, where)
        if _account_of(endpoint, where) != account:
            raise StoreError(f"{where} is for account '{_account_of(endpoint, where)}' but the remote cache is in "
                             f"account '{account}'", "make them name the same storage account")
    trusted = tuple(re.split(r"[,\s]+", (env.get(ENV_TRUSTED_KEYS) or "").strip())) if env.get(ENV_TRUSTED_KEYS) \
        else tuple(file_cache.get("trusted_keys") or ())
    trusted = tuple(t for t in trusted if t)
    return RemoteConfig(account, container, prefix, endpoint.rstrip("/"), push, source, remote_at, url_at,
                        trusted, signing_key_path(env))


def signing_key_path(env: Mapping[str, str]) -> str:
    """The secret key this machine signs with: OLIVEPIPE_SIGNING_KEY, else `signing_key:` in the
    user's own config (~/.config/olivepipe/config.yaml), never a repository's file."""
    path = (env.get(ENV_SIGNING_KEY) or "").strip()
    if path:
        return path
    data, _ = read_config(user_config_file(env))
    key = data.get("signing_key") if isinstance(data, dict) else None
    return key if isinstance(key, str) else ""


def user_config_file(env: Mapping[str, str]) -> Path:
    home = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(home) / "olivepipe" / "config.yaml"


def parse_remote(text: str, where: str) -> tuple[str, str, str]:
    """``azblob://<account>/<container>[/prefix]`` -> (account, container, prefix)."""
    text = str(text).strip()
    if _SECRET_TEXT.search(text) or "?" in text:
        raise StoreError(f"{where}: a remote cache address carries no credentials (a SAS or key was given in it)",
                         SECRET_HINT)
    try:
        u = urlsplit(text)
    except ValueError:  # e.g. an unbalanced '[' (urlsplit reads it as an IPv6 host)
        u = urlsplit("")
    if u.scheme != SCHEME or not u.netloc:
        raise StoreError(f"{where}: {text[:200]!r} is not a remote cache address",
                         f"write it as {SCHEME}://<account>/<container>[/prefix]")
    if "@" in u.netloc or ":" in u.netloc:
        raise StoreError(f"{where}: the account part of {SCHEME}://<account>/... is a storage account name only",
                         f"no user, password or port; {SECRET_HINT}")
    parts = [p for p in u.path.split("/") if p]
    if not parts:
        raise StoreError(f"{where}: {text!r} names no container", f"write it as {SCHEME}://{u.netloc}/<container>")
    return (_account(u.netloc, where), _container(parts[0], where), _prefix("/".join(parts[1:]), where))


def load_cache_section(path: Path, *, positions: bool = False):
    """The `cache:` section of a config file ({} when the file is absent), checked: known keys
    with the right types, and no secret anywhere in the file. With ``positions``:
    (section, {key: "file:line:col"}). The file is read only inside its workspace (no link out
    of it) and as a workflow is: bounded size, no alias bombs, bounded nesting."""
    data, pos = read_config(path, workspace=Path(path).parent.parent)
    where = lambda *keys: "%s:%d:%d" % (path, *locate(pos, keys))  # noqa: E731
    if not isinstance(data, dict):
        raise StoreError(f"{where()}: the config file must be a mapping (e.g. `cache: {{remote: ...}}`)", "fix it")
    secret = _find_secret(data)
    if secret:
        # never echo the value: the message lands in terminals and CI logs
        raise StoreError(f"{where(*secret[1])}: `{secret[0]}` holds a credential; refusing to use a config file "
                         "with secrets in it",
                         SECRET_HINT + "; then remove it from the file (and rotate it if the file was shared)")
    cache = data.get("cache") or {}
    if not isinstance(cache, dict):
        raise StoreError(f"{where('cache')}: `cache` must be a mapping", f"known keys: {', '.join(_CACHE_KEYS)}")
    for k, v in cache.items():
        if k not in _CACHE_KEYS:
            raise StoreError(f"{where('cache', k)}: unknown setting `cache.{k}`",
                             "known: " + "; ".join(f"{n}: {what}" for n, what in _CACHE_KEYS.items()))
        if k == "trusted_keys":
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise StoreError(f"{where('cache', k)}: `cache.trusted_keys` must be a list of public keys",
                                 _CACHE_KEYS[k])
            continue
        want = bool if k == "push" else str
        if not isinstance(v, want):
            raise StoreError(f"{where('cache', k)}: `cache.{k}` must be "
                             f"{'true or false' if want is bool else 'a string'}", _CACHE_KEYS[k])
    if positions:
        return cache, {k: "%s:%d:%d" % (path, *locate(pos, ("cache", k), value=True)) for k in cache}
    return cache


def read_config(path: Path, *, workspace: Path | None = None) -> tuple[object, dict]:
    """(data, positions) of a small YAML config file ({}, {} when absent). ``workspace``: the
    folder the file must not leave (no symlink below it on the way)."""
    from ..core.errors import UnsafePath
    from ..core.safefs import read_confined, read_regular
    from ..core.yamlpos import MAX_BYTES, decode, load

    try:
        raw = read_confined(workspace, path, limit=MAX_BYTES) if workspace is not None else read_regular(path)
    except FileNotFoundError:
        return {}, {}
    except UnsafePath as e:
        raise StoreError(f"{path}: not read: {e.message}",
                         "olivepipe reads its config only inside the workspace; replace the link by the file") from None
    except OSError as e:
        raise StoreError(f"{path}: cannot read the config file: {e.strerror or e}", "fix or remove it") from None
    if len(raw) > MAX_BYTES:
        raise StoreError(f"{path}:1:1: the config file is over {MAX_BYTES:,} bytes", "it holds a few settings; fix it")
    text, problems = decode(raw, str(path))
    data, pos = None, {}
    if not problems:
        data, pos, problems = load(text, str(path))
    if problems:
        p = problems[0]
        raise StoreError(f"{path}:{p.line}:{p.col}: {p.message}", p.hint or "fix or remove it")
    return (data if data is not None else {}), pos


def _find_secret(obj, path: str = "", keys: tuple = ()) -> tuple[str, tuple] | None:
    """(dotted path, key path) of the first value that is (or is named like) a credential."""
    from ..azure.redact import key_is_secret

    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{path}.{k}" if path else str(k)
            # "key"-like names with an empty value are harmless (and "push: false" is not a secret)
            if key_is_secret(k) and v not in (None, "", False, True):
                return p, keys + (k,)
            found = _find_secret(v, p, keys + (k,))
            if found:
                return found
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found = _find_secret(v, f"{path}[{i}]", keys + (i,))
            if found:
                return found
    elif isinstance(obj, str) and _SECRET_TEXT.search(obj):
        return path or "(top level)", keys
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
    try:
        u = urlsplit(url)
        u.port  # noqa: B018 - raises for a malformed port
    except ValueError:
        raise StoreError(f"{where}: {url[:200]!r} is not a URL", "e.g. https://<account>.blob.core.windows.net") \
            from None
    if u.scheme not in ("https", "http") or not u.hostname:
        raise StoreError(f"{where}: {url[:200]!r} is not an http(s) URL",
                         "e.g. https://<account>.blob.core.windows.net")
    if u.scheme == "http" and not _loopback(u.hostname):
        # plain http would hand every request's credential to whoever is on the path
        raise StoreError(f"{where}: {url[:200]!r} is plain http to another machine",
                         "use https://<account>.blob.core.windows.net (http only to this machine, e.g. Azurite)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _norm_endpoint(url: str) -> str:
    try:
        u = urlsplit(url.strip())
    except ValueError:
        return url.strip().lower()  # matches nothing a checked endpoint normalizes to
    return f"{u.scheme.lower()}://{(u.netloc or '').lower()}{u.path.rstrip('/')}"


def trusted_endpoints(env: Mapping[str, str] | None = None) -> set[str]:
    """Endpoints the user allow-lists outside any repository: OLIVEPIPE_TRUSTED_ENDPOINTS
    (space- or comma-separated URLs) and `trusted_endpoints:` in ~/.config/olivepipe/config.yaml
    ($XDG_CONFIG_HOME). A credential from the environment may go there although only a
    committed config file names them."""
    env = os.environ if env is None else env
    out = {_norm_endpoint(u) for u in re.split(r"[,\s]+", env.get(ENV_TRUSTED) or "") if u}
    user_file = user_config_file(env)
    data, _ = read_config(user_file)
    listed = data.get("trusted_endpoints") if isinstance(data, dict) else None
    if listed is not None and not (isinstance(listed, list) and all(isinstance(u, str) for u in listed)):
        raise StoreError(f"{user_file}: `trusted_endpoints` must be a list of URLs",
                         "e.g. trusted_endpoints: [https://myacct.blob.core.windows.net]")
    return out | {_norm_endpoint(u) for u in listed or ()}


def _check_destination(cfg: RemoteConfig, endpoint: str, what: str, env: Mapping[str, str],
                       env_named: bool) -> None:
    """Refuse (before any connection) to send ``what`` (a credential from the environment) to an
    endpoint that only a config file names, unless the user allow-listed it outside the repository."""
    _check_url(endpoint, cfg.url_at or cfg.source)
    if env_named or _norm_endpoint(endpoint) in trusted_endpoints(env):
        return
    at, field = (cfg.url_at, "cache.account_url") if cfg.url_at else (cfg.remote_at, "cache.remote")
    raise StoreError(f"{at}: {field} sends {what} to {endpoint}, which only this config file names; "
                     "refusing before any connection",
                     f"a credential from the environment goes only to the account the environment names: set "
                     f"{ENV_REMOTE}=azblob://{cfg.account}/{cfg.container} (or {ENV_ACCOUNT_URL}) yourself, or "
                     f"allow-list the endpoint outside the repository: {ENV_TRUSTED}={endpoint} or "
                     "`trusted_endpoints: [...]` in ~/.config/olivepipe/config.yaml")


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
        # the environment named this endpoint only if neither the account nor the URL came from a file
        _check_destination(cfg, cfg.endpoint, f"the SAS token from {ENV_SAS}", env,
                           env_named=not cfg.remote_at and not cfg.url_at)
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
            raise StoreError(f"{cfg.remote_at + ': ' if cfg.remote_at else ''}{ENV_CONNECTION_STRING} is for "
                             f"storage account '{cs_account}' but the remote cache {cfg.url} is in '{cfg.account}'",
                             f"set {ENV_CONNECTION_STRING} for '{cfg.account}', or {ENV_SAS}, or unset it to "
                             "sign in with `az login`")
        if key and (name or cs_account):
            cred = {"account_name": name or cs_account, "account_key": key}
        elif cs_sas:
            cred = cs_sas
        else:
            raise StoreError(f"{ENV_CONNECTION_STRING} has neither AccountName+AccountKey nor SharedAccessSignature",
                             "copy the connection string again from the storage account's Access keys page")
        # an explicit endpoint (OLIVEPIPE_BLOB_ACCOUNT_URL, cache.account_url) wins over the string's;
        # one that only a config file names gets the string's key only if it is the string's own
        own = (endpoint or "").rstrip("/")
        target = cfg.account_url or own or cfg.endpoint
        _check_destination(cfg, target, f"the key of {ENV_CONNECTION_STRING}", env,
                           env_named=not cfg.url_at or _norm_endpoint(target) == _norm_endpoint(own or cfg.endpoint))
        return cred, target.rstrip("/"), f"connection string from {ENV_CONNECTION_STRING}", secrets
    from ..azure.credentials import credential_label

    # an Entra token is good for every storage account: it goes to Azure's own endpoint of the named
    # account, or to another endpoint only if the environment (or the user's allow-list) names it
    _check_destination(cfg, cfg.endpoint, "your Azure sign-in token", env,
                       env_named=not cfg.url_at or _norm_endpoint(cfg.endpoint) == _norm_endpoint(
                           f"https://{cfg.account}.blob.core.windows.net"))
    # None: DefaultAzureCredential, built by ``default_credential`` when the client is (importing
    # azure-identity costs more than a cached plan does)
    return None, cfg.endpoint, credential_label(), []


def default_credential(cfg: RemoteConfig):
    """DefaultAzureCredential without managed identity or a browser (bounded: never hangs)."""
    from ..azure.credentials import default_credential as make
    from ..azure.errors import RegistrationError

    try:
        # inside an Azure ML job (executors/azureml.py sets OLIVEPIPE_AZUREML_JOB=1): Azure ML's own order
        # (on-behalf-of, the compute's managed identity, the chain); elsewhere managed identity stays
        # excluded (the metadata endpoint can hang a laptop)
        if os.environ.get("OLIVEPIPE_AZUREML_JOB") == "1":
            from ..azure.credentials import job_credential

            return job_credential()
        return make()
    except RegistrationError as e:
        raise StoreError(f"no credentials for the remote cache {cfg.url}: {e.message}",
                         f"set {ENV_SAS} or {ENV_CONNECTION_STRING}, or `pip install azure-identity` and `az login`"
                         ) from None


__all__ = ["RemoteConfig", "remote_config", "parse_remote", "load_cache_section", "credential_for",
           "parse_connection_string", "config_path", "ENV_REMOTE", "ENV_ACCOUNT_URL", "ENV_CONTAINER",
           "ENV_PREFIX", "ENV_PUSH", "ENV_SAS", "ENV_CONNECTION_STRING", "ENV_TRUSTED", "trusted_endpoints",
           "ENV_TRUSTED_KEYS", "ENV_SIGNING_KEY", "user_config_file", "CONFIG_FILE", "SECRET_HINT"]
