"""One error type for everything Azure (:class:`RegistrationError`) and :func:`translate`,
which maps any Azure SDK exception onto it with one clear, redacted line and a ``kind``.

azure-core / azure-identity / azure-ai-ml are looked at only inside :func:`translate`, so
importing this module stays cheap.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Dict, List, Optional, Tuple

from ..core.errors import OlivepipeError
from .redact import redact

__all__ = ["RegistrationError", "translate", "short", "one_line", "NO_CREDENTIALS_HINT", "NETWORK_HINT"]

NO_CREDENTIALS_HINT = "run `az login` or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET"
NETWORK_HINT = "check network/proxy access (HTTPS_PROXY) to login.microsoftonline.com and management.azure.com"


def one_line(text: Any, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RegistrationError(OlivepipeError):
    """The single Azure error type (an ``OlivepipeError``: a failure the user can act on).

    ``str(err)`` is one line, ``"<message>: <hint>"`` (or just the message), already redacted
    and free of tracebacks, e.g. ``no Azure credentials: run `az login` or set ...``.
    ``kind`` classifies the failure: ``config``, ``validation``, ``no_credentials``,
    ``auth_failed``, ``permission``, ``not_found``, ``network``, ``http``, ``azureml``,
    ``timeout``, ``dependency`` or ``error``. ``credential_name`` is the class name of the
    credential that failed, when known.
    """

    def __init__(
        self, message: str, hint: Optional[str] = None, *, kind: str = "error", credential_name: Optional[str] = None
    ) -> None:
        super().__init__(one_line(redact(str(message))), one_line(redact(str(hint))) if hint else "")
        self.kind = kind
        self.credential_name = credential_name

    def __str__(self) -> str:
        return f"{self.message}: {self.hint}" if self.hint else self.message

    def to_dict(self) -> Dict[str, Any]:
        return {"error": str(self), "message": self.message, "hint": self.hint or None, "kind": self.kind}


def short(text: Any, limit: int = 240) -> str:
    """First meaningful line of an SDK error message, redacted.

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
    return one_line(redact(text), limit)


# --------------------------------------------------------------------------- credential failures

_CHAIN_MARKER = "failed to retrieve a token from the included credentials"
_ATTEMPT_RE = re.compile(r"^\t(\w+)(?::\s?(.*))?$")
_NETWORK_RE = re.compile(
    r"Failed to resolve|Name or service not known|Temporary failure in name resolution|timed out|"
    r"Connection(Error| refused| aborted| reset)|Max retries exceeded|Network is unreachable|"
    r"certificate verify failed|SSLError|ProxyError",
    re.I,
)
_HARD_RE = re.compile(r"Authentication failed|AADSTS|invalid_client|invalid_grant|unauthorized_client", re.I)
_SP_VARS = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET")


def _parse_chain(message: str) -> Optional[List[Tuple[str, str]]]:
    """The ``(credential, reason)`` attempts of a DefaultAzureCredential failure text, or None."""
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
    reason_short = short(reason.replace("Authentication failed: ", ""), 200)
    if _NETWORK_RE.search(reason):
        return RegistrationError(
            f"could not reach Microsoft Entra ID to get a token ({name}: {reason_short})",
            NETWORK_HINT,
            kind="network",
            credential_name=name,
        )
    return RegistrationError(
        f"Azure authentication failed ({name}: {reason_short})",
        "check AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, or run `az login` again",
        kind="auth_failed",
        credential_name=name,
    )


def _no_credentials() -> RegistrationError:
    present = [v for v in _SP_VARS if os.environ.get(v)]
    hint = NO_CREDENTIALS_HINT
    if present and len(present) < len(_SP_VARS):
        # EnvironmentCredential needs all three (or a certificate / username+password variant).
        missing = [v for v in _SP_VARS if v not in present]
        hint = f"{'/'.join(present)} set but {'/'.join(missing)} missing; set them or run `az login`"
    return RegistrationError("no Azure credentials", hint, kind="no_credentials")


# --------------------------------------------------------------------------- any SDK exception


def translate(exc: BaseException, *, credential: Any = None, where: Optional[str] = None) -> RegistrationError:
    """Map any SDK exception to one RegistrationError with a single clear line.

    ``credential`` is the credential in use (names the failing source); ``where`` names the
    workspace (``sub/rg/ws``) in not-found and permission messages.
    """
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
    where = where or "the workspace"

    if CredentialUnavailableError and isinstance(exc, CredentialUnavailableError):
        name = type(credential).__name__ if credential is not None else None
        return RegistrationError(
            f"no Azure credentials ({type(credential).__name__}: {short(message, 160)})",
            NO_CREDENTIALS_HINT,
            kind="no_credentials",
            credential_name=name,
        )
    if core is not None and isinstance(exc, core.ClientAuthenticationError):
        status = getattr(exc, "status_code", None)
        if status in (401, 403):
            return RegistrationError(
                f"Azure rejected the credentials (HTTP {status}): {short(message, 200)}",
                "run `az login` again / check AZURE_TENANT_ID and that the identity can access the workspace",
                kind="auth_failed",
            )
        return _auth_error(message, credential)
    if core is not None and isinstance(exc, core.ResourceNotFoundError):
        return RegistrationError(
            f"Azure ML workspace or resource not found ({where}): {short(message, 200)}",
            "check subscription_id, resource_group and workspace_name",
            kind="not_found",
        )
    if core is not None and isinstance(exc, core.HttpResponseError):
        status = getattr(exc, "status_code", None)
        code = getattr(getattr(exc, "error", None), "code", None)
        label = f"HTTP {status}" + (f" {code}" if code else "")
        if status == 403:
            return RegistrationError(
                f"permission denied on {where} ({label}): {short(message, 200)}",
                "the identity needs e.g. the 'AzureML Data Scientist' or Contributor role on the workspace",
                kind="permission",
            )
        return RegistrationError(f"Azure ML request failed ({label}): {short(message, 240)}", kind="http")
    if core is not None and isinstance(exc, (core.ServiceRequestError, core.ServiceResponseError)):
        return RegistrationError(f"could not reach Azure: {short(message, 240)}", NETWORK_HINT, kind="network")
    if MlException and isinstance(exc, MlException):
        return RegistrationError(f"Azure ML rejected the model: {short(message, 300)}", kind="azureml")
    if core is not None and isinstance(exc, core.AzureError):
        return RegistrationError(f"Azure error ({type(exc).__name__}): {short(message, 240)}", kind="error")
    return RegistrationError(f"registration failed ({type(exc).__name__}): {short(message, 240)}", kind="error")
