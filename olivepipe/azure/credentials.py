"""Azure credentials that never hang: ``DefaultAzureCredential`` without managed identity or
a browser (:func:`default_credential`), and a time-bounded check that it can get a token
(:func:`check_credentials`). azure-identity is imported only when a credential is built."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from .errors import NETWORK_HINT, RegistrationError, short, translate
from .redact import redact
from .sdk import BoundExceeded, quiet_azure, run_bounded

__all__ = [
    "ARM_SCOPE",
    "CREDENTIAL_KWARGS",
    "DEFAULT_CREDENTIAL_TIMEOUT_S",
    "CredentialStatus",
    "default_credential",
    "credential_label",
    "probe",
    "check_credentials",
    "job_credential",
]

#: Token scope used for the credential check (Azure Resource Manager, which Azure ML uses).
ARM_SCOPE = "https://management.azure.com/.default"

#: DefaultAzureCredential options. Managed identity is excluded because, where the instance
#: metadata address (169.254.169.254) accepts connections but never answers, it blocks for up
#: to ~300 s; interactive browser login is excluded because a workflow must not pop a browser.
CREDENTIAL_KWARGS: Dict[str, Any] = {
    "exclude_managed_identity_credential": True,
    "exclude_interactive_browser_credential": True,
}

DEFAULT_CREDENTIAL_TIMEOUT_S = 10.0


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
        raise RegistrationError(f"cannot set up Azure credentials: {short(exc)}", kind="config") from None


def credential_label(credential: Any = None) -> str:
    """How a credential is described in records: the default's options, or the class name."""
    if credential is None:
        opts = ", ".join(f"{k}={v}" for k, v in CREDENTIAL_KWARGS.items())
        return f"DefaultAzureCredential({opts})"
    return type(credential).__name__


def probe(
    credential: Any, timeout_s: float, *, scope: str = ARM_SCOPE, label_s: Optional[float] = None
) -> Tuple[Optional[RegistrationError], Optional[str]]:
    """Try ``credential.get_token(scope)`` within ``timeout_s`` (``label_s``: the bound to name
    in the timeout message, when it differs).

    Returns ``(None, credential_name)`` on success, ``(error, credential_name)`` otherwise.
    The token itself is dropped at once and never returned or logged.
    """

    def get() -> str:
        credential.get_token(scope)  # result (the token) discarded
        inner = getattr(credential, "_successful_credential", None)
        return type(inner or credential).__name__

    try:
        with quiet_azure():
            name = run_bounded(get, timeout_s, "olivepipe-azure-credcheck")
        return None, name
    except BoundExceeded:
        return (
            RegistrationError(
                f"Azure credential check timed out after {label_s or timeout_s:g} s (a credential source did not answer)",
                NETWORK_HINT + ", or run `az login` again",
                kind="timeout",
            ),
            None,
        )
    except Exception as exc:  # noqa: BLE001
        err = translate(exc, credential=credential)
        return err, err.credential_name


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
    err, name = probe(cred, remaining, label_s=timeout_s)
    elapsed = time.monotonic() - t0
    if err is None:
        return CredentialStatus(True, f"Azure credentials OK ({name})", kind="ok", credential=name, elapsed_s=elapsed)
    return CredentialStatus(False, str(err), kind=err.kind, hint=err.hint or None, credential=name, elapsed_s=elapsed)


def job_credential(env: Optional[Dict[str, str]] = None) -> Any:
    """The credential inside an Azure ML job, in the order Azure ML's own tools use: the
    on-behalf-of credential when ``AZUREML_OBO_ENABLED`` is set (the job runs with the
    submitter's user identity: ``identity: user``), the managed identity Azure ML names in
    ``DEFAULT_IDENTITY_CLIENT_ID`` (the compute's), then the default chain with managed identity
    allowed (the metadata endpoint answers inside a job). Only used where a job must reach the
    cache itself; a job bound to a datastore (``datastore:``) needs none."""
    import os  # noqa: PLC0415

    env = os.environ if env is None else env
    try:
        from azure.identity import ChainedTokenCredential, ManagedIdentityCredential  # noqa: PLC0415
    except ImportError:
        raise RegistrationError("azure-identity is not installed", "pip install azure-identity", kind="dependency") from None
    chain = []
    if str(env.get("AZUREML_OBO_ENABLED", "")).lower() in ("1", "true", "yes"):
        from azure.ai.ml.identity import AzureMLOnBehalfOfCredential  # noqa: PLC0415

        chain.append(AzureMLOnBehalfOfCredential())
    client_id = (env.get("DEFAULT_IDENTITY_CLIENT_ID") or "").strip()
    if client_id:
        chain.append(ManagedIdentityCredential(client_id=client_id))
    chain.append(default_credential(exclude_managed_identity_credential=False))
    return ChainedTokenCredential(*chain)
