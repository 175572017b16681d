"""Node kind `register`: register the input model folder in an Azure ML workspace."""
from __future__ import annotations

from .base import Needs, NodeKind

_str = {"type": "string", "minLength": 1}


class Register(NodeKind):
    name = "register"
    fields = {
        "name": _str,
        "version": {"type": ["string", "integer"]},
        "workspace": {"type": "object", "additionalProperties": False,
                      "properties": {"subscription_id": _str, "resource_group": _str, "workspace_name": _str,
                                     "config": _str}},
        "tags": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
    }
    option_fields = ("name", "version", "workspace", "tags")
    packages = ("azure-ai-ml",)
    makes_model = False

    def check(self, ctx, base, n, where):
        for k in ("name", "version"):
            if k not in n:
                ctx.problem(where, f"a register node needs `{k}`", "e.g. `name: ft-for-travel` and `version: 1`")
        given = (n.get("workspace") or {}).get("config") if isinstance(n.get("workspace"), dict) else None
        if isinstance(given, str) and (given.startswith(("/", "~", "\\")) or ".." in given.replace("\\", "/").split("/")):
            ctx.problem(where + ("workspace", "config"), f"workspace.config {given!r} is outside the workspace",
                        "name the Azure ML config.json by a path inside the workspace (e.g. .azureml/config.json), "
                        "or set AZURE_SUBSCRIPTION_ID / AZURE_RESOURCE_GROUP / AZUREML_WORKSPACE_NAME", value=True)
        return {}

    def options(self, raw, description=""):
        opts = super().options(raw)
        if description:  # the registered model's description: part of what this node produces
            opts["description"] = description
        return opts

    def needs(self, step):
        return Needs(packages=("azure-ai-ml", "azure-identity"))

    def preflight(self, step, *, deep):
        if step.rehearse:
            return None
        import os

        from ..azure.credentials import check_credentials
        from ..azure.errors import RegistrationError
        from ..azure.workspace import resolve_workspace

        node, base = step.node, step.folder
        given = (node.options.get("workspace") or {}).get("config")
        if given:
            from ..core.errors import UnsafePath
            from ..core.safefs import check_confined

            try:  # a committed link to a file elsewhere is not the workspace's config
                check_confined(step.root, base / given, "read")
            except UnsafePath as e:
                return f"workspace.config: {e.message}"
        try:
            resolve_workspace(node.options, os.environ, base_dir=base, start_dir=base)
        except RegistrationError as e:
            return e.message
        if not deep:  # plan asks Azure nothing: credentials are checked right before apply
            return None
        status = check_credentials(timeout_s=5)
        return None if status.ok else f"{status.reason} ({status.hint})" if status.hint else status.reason

    def rehearse(self, node, catalog, can_run):
        from .base import Rehearsal

        return Rehearsal(node=node, note="nothing is sent to Azure: an offline registration record is written")

    def job(self, step, inputs):
        from ..core.job import DataFile

        node = step.node
        opts = dict(node.options)
        opts["description"] = node.description
        refs = {}
        # the Azure ML config file travels as data, like any input: the job names no local path
        config = self._config_file(step)
        if config is not None:
            refs["$AZCONFIG"] = DataFile(step.rel(config), step.digest(config))
            opts["workspace"] = {**(opts.get("workspace") or {}), "config": "$AZCONFIG"}
        return {"options": opts, "inputs": inputs, "node": node.name, "rehearse": step.rehearse, "refs": refs}

    @staticmethod
    def _config_file(step):
        from pathlib import Path

        from ..azure.workspace import find_workspace_config

        base = step.folder
        given = (step.node.options.get("workspace") or {}).get("config")
        path = (base / given) if given else find_workspace_config(base)
        if path is None or not Path(path).is_file():
            return None
        path = Path(path).resolve()
        return path if path.is_relative_to(step.root) else None

    def run(self, spec, io):
        from ..azure.registration import run_register

        return run_register({**spec, "output_dir": str(io.out)})


KIND = Register()
