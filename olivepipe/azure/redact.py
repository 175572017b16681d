"""Scrub secrets from values before they are shown, logged or written (:func:`redact`)."""

from __future__ import annotations

import os
import re
from typing import Any, List, Mapping, Optional

__all__ = ["REDACTED", "redact", "key_is_secret"]

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


def key_is_secret(key: Any) -> bool:
    """Whether a mapping key (``client_secret``, ``AccountKey``, ``api-key``, ...) names a secret."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(key)).lower()
    parts = [p for p in re.split(r"[^a-z0-9]+", text) if p]
    if any(p in _SECRET_KEY_PARTS for p in parts):
        return True
    joined = "".join(parts)
    return any(s in joined for s in _SECRET_KEY_JOINED)


def _env_secret_values(env: Mapping[str, str]) -> List[str]:
    values = set()
    for name, value in env.items():
        if value and len(value) >= 6 and (name in _ENV_SECRETS or key_is_secret(name)):
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
            if key_is_secret(k) and v not in (None, ""):
                out[k] = REDACTED
            else:
                out[k] = _redact(v, secrets)
        return out
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_redact(v, secrets) for v in obj]
    return obj
