"""Where a node's result is and what made it: `olivepipe show`, `logs` and `--export`."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..core import lock as lockfile
from ..core.errors import OlivepipeError
from ..flow.plan import Plan, check_targets
from ..flow.workspace import Workspace


def node_info(ws: Workspace, plan: Plan, name: str) -> dict:
    """Everything a person asks about one step, as plain data (read-only)."""
    check_targets(ws, (name,))
    step = plan.by_name().get(name)
    if step is None:  # a hub or local model: no result of its own
        m = ws.workflow.models[name]
        return {"name": name, "kind": "model", "source": m.hf or (str(m.path) if m.path else "tiny")}
    entry = ws.store.peek(step.key) if step.key else None
    info = {"name": name, "kind": step.kind, "label": step.label, "action": step.action, "key": step.key,
            "reasons": list(step.reasons), "inputs": list(step.inputs), "device": step.device,
            "log": str(ws.log_path(name)) if ws.log_path(name).exists() else None,
            "output": str(ws.outputs / name) if entry is not None else None,
            "record": step.record}
    if entry is None and os.path.islink(ws.outputs / name):
        # outputs/ still links what an earlier run made: say so, rather than print no output at all
        info["output"] = f"{ws.outputs / name} (an earlier result: stale, `olivepipe apply` rebuilds it)"
    if not ws.rehearse:
        try:
            rehearsed = lockfile.nodes(ws.dir / "rehearsal.lock", f"{ws.lock_name}@rehearsal").get(name)
        except OlivepipeError:  # an unreadable rehearsal lock hides nothing of the real result
            rehearsed = None
        if rehearsed and rehearsed.get("key"):
            info["rehearsal"] = (f"a rehearsal result exists ({rehearsed['key'][:12]}): "
                                 f"olivepipe show --rehearse {ws.workflow.file.name} {name}")
    if entry is not None:
        tree = ws.store.fetch(entry)
        info.update(files=len(entry.files), bytes=entry.size, stored_at=str(tree),
                    duration_s=entry.manifest.get("duration_s"), notes=list(step.notes),
                    result=entry.manifest.get("result"))
        for report in ("report.json", "metrics.json", "registration.json"):
            if (tree / report).is_file():
                info.setdefault("reports", []).append(report)
    return info


def export(ws: Workspace, plan: Plan, name: str, dest: Path) -> Path:
    """Copy a node's cached result to ``dest`` (a new folder): a plain, writable copy that
    owes nothing to the cache (the lab's `models/phi/onnx-ao`)."""
    check_targets(ws, (name,))
    step = plan.by_name().get(name)
    entry = ws.store.peek(step.key) if step and step.key else None
    if entry is None:
        raise OlivepipeError(f"node '{name}' has no cached result to export",
                             f"run `olivepipe apply --target {name}` first")
    from ..core.safefs import user_output

    dest = Path(dest)
    if dest.exists() or dest.is_symlink():
        raise OlivepipeError(f"{dest} already exists", "export into a new folder")
    dest = user_output(ws.workflow.root, dest)  # no linked folder on the way out of the workspace
    tmp = dest.with_name(f".{dest.name}.export-{os.getpid()}")
    try:
        shutil.copytree(ws.store.fetch(entry), tmp, symlinks=False, copy_function=shutil.copyfile)
        for d, _, files in os.walk(tmp):  # a copy is the user's: writable, unlike the cache
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(Path(d) / f, 0o644)
        os.rename(tmp, dest)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OlivepipeError(f"cannot export to {dest}: {e.strerror or e}", "check the path and free space") from None
    return dest
