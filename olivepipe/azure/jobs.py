"""An olivepipe node as an Azure ML command job: the environment it runs in and the job itself.

* :func:`environment_spec` - the conda spec that pins olivepipe's Olive stack to the versions
  installed here (torch as a CPU or a CUDA build, by the node's device), as plain data.
* :func:`recipe_identity` - the digest that goes into keys: over the specs for both devices,
  so it changes whenever any pin, the Python version or a base image changes.
* :func:`build_environment` - the ``azure.ai.ml.entities.Environment`` for a spec.
* :func:`named_environment` - a user's ``name:version`` as the SDK's ``azureml:name:version``.
* :func:`build_command_job` / :func:`validate_command_job` - the ``azure.ai.ml.command`` job that
  runs ``python -m olivepipe.run.runtime``, validated offline with the SDK's own checks.

Only the two builders import azure-ai-ml (about 1.5 s): plan computes identities without it.
"""
from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from ..core.hashing import digest_obj
from .errors import RegistrationError, short

__all__ = ["STACK", "DEFAULT_IMAGE", "DEFAULT_CUDA_IMAGE", "TORCH_CPU_INDEX", "EnvironmentSpec",
           "environment_spec", "recipe_identity", "build_environment", "named_environment",
           "runtime_command", "build_command_job", "validate_command_job", "IDENTITY_FIELD"]

#: What every generated environment pins (olivepipe's own requirements, pyproject.toml, plus
#: numpy, which the stack shares, and the Azure packages its remote cache and register node
#: use). olivepipe itself is not pinned: its code travels with each job (see executors/azureml.py).
STACK = (
    "olive-ai", "onnxruntime-genai", "onnxruntime", "onnx", "onnxscript", "transformers", "tokenizers",
    "peft", "accelerate", "datasets", "safetensors", "scipy", "numpy", "requests", "torch",
    "pyyaml", "ruamel.yaml", "jsonschema", "networkx", "rich", "click", "matplotlib",
    "azure-ai-ml", "azure-identity", "azure-storage-blob", "cryptography",
)
#: Azure ML base images (Ubuntu 22.04 with conda); CUDA nodes get the CUDA one: CUDA 12.4, as torch
#: 2.13's CUDA wheels need a 12.x driver stack (they bring their own CUDA runtime libraries).
DEFAULT_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04"
DEFAULT_CUDA_IMAGE = "mcr.microsoft.com/azureml/openmpi5.0-cuda12.4-ubuntu22.04"
#: PyPI's Linux torch wheels are CUDA builds; the CPU build of the same version lives here.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: The field of an environment identity that names the environment (digest or name:version).
IDENTITY_FIELD = "azureml-environment"
SPEC_FORMAT = 1  # bump when the spec's shape changes: every generated identity changes with it

_NAMED = re.compile(r"^(?:azureml:)?(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,254}):(?P<version>[A-Za-z0-9_.-]{1,64})$")
_EXPERIMENT_BAD = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class EnvironmentSpec:
    """A generated environment as plain data. ``missing``: packages not installed here, whose
    version cannot be pinned (preflight refuses such a node)."""

    device: str  # "cpu" or "cuda"
    image: str
    python: str  # major.minor, as here
    pins: tuple[tuple[str, str], ...]  # (package, version), sorted
    missing: tuple[str, ...] = ()

    def requirements(self) -> list[str]:
        """The pip lines: the torch index for a CPU build, then one ``name==version`` per package."""
        lines = [f"--extra-index-url {TORCH_CPU_INDEX}"] if self.device == "cpu" else []
        for name, ver in self.pins:
            if name == "torch":
                base = ver.split("+", 1)[0]  # "2.13.0+cpu" here says nothing about the job's build
                ver = f"{base}+cpu" if self.device == "cpu" else base
            lines.append(f"{name}=={ver}")
        return lines

    def conda(self) -> dict:
        """The conda file (as a mapping) an Azure ML environment is built from."""
        return {"name": "olivepipe", "channels": ["conda-forge"],
                "dependencies": [f"python={self.python}", "pip", {"pip": self.requirements()}]}

    def digest(self) -> str:
        return digest_obj({"format": SPEC_FORMAT, "image": self.image, "conda": self.conda(),
                           "missing": list(self.missing)})


def _default_version(name: str) -> Optional[str]:
    from ..core.versions import version

    return version(name)


def environment_spec(device: str, extra_packages=(), *, version: Callable[[str], Optional[str]] = _default_version,
                     image: str = DEFAULT_IMAGE, cuda_image: str = DEFAULT_CUDA_IMAGE,
                     python: Optional[str] = None) -> EnvironmentSpec:
    """The generated environment for a node on ``device`` ("gpu"/"cuda" or anything else: CPU):
    :data:`STACK` plus ``extra_packages`` (the node's key-shaping packages), each pinned to the
    version installed here (``version``: name -> installed version or None)."""
    cuda = device in ("gpu", "cuda")
    names = sorted(set(STACK) | set(extra_packages))
    pins, missing = [], []
    for n in names:
        v = version(n)
        if v:
            pins.append((n, v))
        else:
            missing.append(n)
    return EnvironmentSpec("cuda" if cuda else "cpu", cuda_image if cuda else image,
                           python or f"{sys.version_info.major}.{sys.version_info.minor}", tuple(pins), tuple(missing))


def recipe_identity(extra_packages=(), **kw) -> str:
    """The environment identity for keys: one digest over the CPU and the CUDA spec. The node's
    device is already in its key record, so one digest that both specs feed is enough, and any
    pin, the Python version or either image changing changes it."""
    return digest_obj({"cpu": environment_spec("cpu", extra_packages, **kw).digest(),
                       "cuda": environment_spec("cuda", extra_packages, **kw).digest()})


def named_environment(text: str) -> str:
    """``name:version`` (or ``azureml:name:version``, or a registry asset id
    ``azureml://registries/<r>/environments/<name>/versions/<v>``) as the SDK takes it.
    A floating reference (``@latest``, no version) is refused: the identity in keys must pin it."""
    text = str(text or "").strip()
    if text.startswith("azureml://"):
        if re.search(r"/environments/[^/]+/versions/[^/]+$", text):
            return text
    else:
        m = _NAMED.match(text)
        if m:
            return f"azureml:{m['name']}:{m['version']}"
    raise RegistrationError(
        f"environment {text!r} is not a pinned Azure ML environment",
        "write it as name:version (e.g. olive-stack:3); @latest or a missing version would let the "
        "environment change under the same key", kind="config")


def build_environment(spec: EnvironmentSpec, *, description: str = "") -> Any:
    """The anonymous ``Environment`` for ``spec``: Azure ML names anonymous environments by a hash
    of their content, so one spec is built into an image once and reused by every job."""
    from .sdk import import_ml, quiet_azure

    Environment = import_ml().entities.Environment
    with quiet_azure():
        return Environment(image=spec.image, conda_file=spec.conda(),
                           description=description or f"olivepipe {spec.device} stack {spec.digest()[:16]}")


def runtime_command(store_url: str, job_file: str = "job.json", out: str = "outputs/result.json",
                    publish_to: Optional[str] = None) -> str:
    """The job's command. ``outputs/`` is uploaded with the job's artifacts by Azure ML.
    ``publish_to``: a job output folder new store blobs go into (datastore binding)."""
    # ${{...}} bindings are substituted by Azure ML; quoting them would keep them literal
    arg = (lambda v: v if v.startswith("${{") else shlex.quote(v))
    return (f"python -m olivepipe.run.runtime {shlex.quote(job_file)} --store {arg(store_url)} --out {shlex.quote(out)}"
            + (f" --publish-to {arg(publish_to)}" if publish_to else ""))


def datastore_uri(datastore: str, prefix: str = "") -> str:
    """The Azure ML URI of the shared cache's folder on ``datastore`` (a datastore over the
    cache's container): ``azureml://datastores/<ds>/paths/<prefix>``."""
    return f"azureml://datastores/{datastore}/paths/{prefix.strip('/')}".rstrip("/") + "/"


def experiment_name(workflow: str) -> str:
    """Azure ML experiment names take letters, digits, '-' and '_' (first a letter or digit)."""
    name = _EXPERIMENT_BAD.sub("-", f"olivepipe-{workflow}" if workflow else "olivepipe").strip("-_")
    return name[:255] or "olivepipe"


def build_command_job(*, code_dir: Path, store_url: str, compute: str, environment: Any, step: str, key: str,
                      name: str, workflow: str = "", kind: str = "", instance_type: Optional[str] = None,
                      timeout_s: Optional[float] = None, environment_variables: Optional[Mapping[str, str]] = None,
                      identity: Any = None, datastore: Optional[str] = None, datastore_prefix: str = "") -> Any:
    """The ``azure.ai.ml.command`` job for one node, validated (:func:`validate_command_job`).

    ``code_dir`` holds job.json and olivepipe's code (uploaded as the job's code snapshot);
    ``environment`` is an ``Environment`` or an ``azureml:name:version`` string; ``name`` is the
    job name (chosen here, so a job can be cancelled even if the submit's answer is lost).
    ``compute="serverless"``: Azure ML's serverless compute, sized by ``instance_type``.
    ``datastore``: the store is bound as job input (read-only mount) and output (upload) on
    that datastore's ``datastore_prefix`` folder, so the job reaches it with the datastore's
    credential and needs no token (``--store`` is then the mount)."""
    if not compute:
        raise RegistrationError(f"node {step} has no Azure ML compute", "set `executor: {azureml: {compute: ...}}`",
                                kind="config")
    from .sdk import import_ml, quiet_azure

    ml = import_ml()
    tags = {"olivepipe.key": key, "olivepipe.step": step, "olivepipe.workflow": workflow or "", "olivepipe.kind": kind}
    kw = {}
    if compute == "serverless":
        if not instance_type:
            raise RegistrationError(f"node {step} is on serverless compute without an instance_type",
                                    "set `executor: {azureml: {compute: serverless, instance_type: "
                                    "Standard_NC24ads_A100_v4}}`", kind="config")
        compute = None  # no compute target: Azure ML runs it serverless, sized by the instance type
    if instance_type:
        kw["instance_type"] = instance_type
    command = runtime_command(store_url)
    if datastore:
        uri = datastore_uri(datastore, datastore_prefix)
        kw["inputs"] = {"cache": ml.Input(type="uri_folder", path=uri, mode="ro_mount")}
        kw["outputs"] = {"publish": ml.Output(type="uri_folder", path=uri, mode="upload")}
        command = runtime_command("${{inputs.cache}}", publish_to="${{outputs.publish}}")
    if timeout_s:
        kw["timeout"] = max(1, int(-(-float(timeout_s) // 1)))  # whole seconds, rounded up
    if isinstance(identity, str):  # the placement's `identity:` (Azure ML's default is the AML token)
        ents = ml.entities
        identity = {"user": ents.UserIdentityConfiguration, "managed": ents.ManagedIdentityConfiguration}[identity]()
    if identity is not None:
        kw["identity"] = identity
    with quiet_azure():
        job = ml.command(name=name, display_name=step, experiment_name=experiment_name(workflow),
                         description=f"olivepipe node {step} (key {key[:12]})", tags=tags,
                         command=command, code=str(code_dir), environment=environment,
                         compute=compute, environment_variables=dict(environment_variables or {}), **kw)
    validate_command_job(job)
    return job


def validate_command_job(job: Any) -> None:
    """The SDK's offline checks (azure-ai-ml 1.35.2): the node's schema validation
    (``_validate``), its conversion to a ``CommandJob`` and to the REST body the submit sends,
    and a schema round trip of the job (``CommandJob._load(data=job._to_dict())``); plus what
    the SDK does not check but a runtime job needs (a command, a compute, an environment).
    Raises RegistrationError (kind ``validation``) with the SDK's first problem."""
    from .sdk import import_ml, quiet_azure

    CommandJob = import_ml().entities.CommandJob
    problems = []
    if not (getattr(job, "command", "") or "").strip().startswith("python -m olivepipe.run.runtime "):
        problems.append("the command does not run olivepipe.run.runtime")
    resources = getattr(job, "resources", None)
    if not getattr(job, "compute", None) and not getattr(resources, "instance_type", None):
        problems.append("no compute (and no instance_type for serverless compute)")
    if getattr(job, "environment", None) is None:
        problems.append("no environment")
    try:
        with quiet_azure():
            result = job._validate()  # pylint: disable=protected-access
            if not result.passed:
                problems += [f"{k}: {v}" for k, v in sorted(result.error_messages.items())]
            as_job = job._to_job()  # pylint: disable=protected-access
            as_job._to_rest_object()  # pylint: disable=protected-access
            CommandJob._load(data=as_job._to_dict())  # pylint: disable=protected-access
    except Exception as exc:  # noqa: BLE001 - the SDK raises many types here
        problems.append(short(exc))
    if problems:
        raise RegistrationError(f"invalid Azure ML command job: {'; '.join(problems)}", kind="validation")
