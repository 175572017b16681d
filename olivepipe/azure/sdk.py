"""Calling the Azure SDK safely: a hard time bound (:func:`run_bounded`), SDK log noise kept
out of stderr and redacted (:func:`quiet_azure`), azure-ai-ml imported lazily (:func:`import_ml`)
and the MLClient options every caller uses (:data:`CLIENT_KWARGS`)."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Callable, Dict, Iterator, Optional

from .errors import RegistrationError
from .redact import redact

__all__ = ["CLIENT_KWARGS", "APPLY_CLIENT_KWARGS", "BoundExceeded", "run_bounded", "quiet_azure", "import_ml", "sdk_versions",
           "sdk_installed", "EXTRA_HINT"]

#: What to run where the `[azure]` extra (azure-ai-ml, azure-identity, azure-storage-blob) is missing.
EXTRA_HINT = 'install olivepipe[azure] (pip install "olivepipe[azure]")'

#: Extra MLClient options. retry_total=0: azure-core otherwise retries failed requests with
#: backoff (offline: ~4.8 s before failing instead of ~0.02 s). connection_timeout bounds
#: TCP connects (azure-core default 300 s). enable_telemetry=False: no App Insights logging.
CLIENT_KWARGS: Dict[str, Any] = {"retry_total": 0, "connection_timeout": 30, "enable_telemetry": False}
#: MLClient options for apply's calls (submit, code upload, environment, status, logs, cancel):
#: azure-core's retry policy, which retries 408/429/500/502/503/504 and connection failures and
#: sleeps what a Retry-After header says (else 0.8 s, 1.6 s, ... up to 60 s). One throttled
#: request must not fail a two-hour node; a probe (CLIENT_KWARGS) must not hang a plan.
APPLY_CLIENT_KWARGS: Dict[str, Any] = {**CLIENT_KWARGS, "retry_total": 6, "retry_backoff_factor": 0.8,
                                       "retry_backoff_max": 60}
# show_progress stays on: with it off, azure-ai-ml 1.35.2 never reads its upload threads' results,
# so a refused code upload (403) would pass silently and the job would start without its code


class BoundExceeded(Exception):
    """:func:`run_bounded` gave up waiting (the argument is the bound in seconds)."""


def run_bounded(fn: Callable[[], Any], timeout_s: float, name: str) -> Any:
    """Run ``fn`` in a daemon thread and wait at most ``timeout_s`` seconds.

    A daemon ``threading.Thread`` rather than ``concurrent.futures``: executor workers are
    joined at interpreter exit, so a stuck call would still block process exit.
    On timeout the thread is abandoned (it ends when the SDK call gives up) and
    :class:`BoundExceeded` is raised; ``fn``'s own exception is re-raised as is.
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
        raise BoundExceeded(timeout_s)
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _redact_record(record: logging.LogRecord) -> bool:
    try:
        record.msg = redact(record.getMessage())
        record.args = None
    except Exception:  # pragma: no cover - never break logging
        pass
    return True


@contextlib.contextmanager
def quiet_azure() -> Iterator[None]:
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


def import_ml() -> Any:
    """``azure.ai.ml`` (with ``azure.ai.ml.entities`` loaded); RegistrationError if not installed."""
    try:
        import azure.ai.ml as ml  # noqa: PLC0415 - lazy: ~1.5 s import
        import azure.ai.ml.entities  # noqa: F401,PLC0415
    except ImportError as exc:
        raise RegistrationError(
            f"azure-ai-ml is not installed ({exc.name or exc})", "pip install azure-ai-ml azure-identity", kind="dependency"
        ) from None
    return ml


def sdk_installed() -> bool:
    """Whether azure-ai-ml can be imported here, without importing it. ``find_spec`` of a
    submodule imports its parents, and raises (not returns None) when the ``azure`` namespace
    itself is missing, as it is where no Azure package is installed."""
    import importlib.util  # noqa: PLC0415

    try:
        return importlib.util.find_spec("azure.ai.ml") is not None
    except (ImportError, ValueError):
        return False


def sdk_versions() -> Dict[str, Optional[str]]:
    """Installed versions of azure-ai-ml, azure-identity and azure-core (None if absent)."""
    from importlib import metadata  # noqa: PLC0415

    out: Dict[str, Optional[str]] = {}
    for dist in ("azure-ai-ml", "azure-identity", "azure-core"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out
