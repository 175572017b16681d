"""`olivepipe cache push|pull`: move results between the local cache and the shared remote one
(docs/shared-cache.md). Like `dvc push/pull`: only what the other side lacks moves, so running
either twice is a no-op the second time."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..core.errors import OlivepipeError, StoreError
from .app import cache_opt, main

# the `cache` group of cache.py, found through the app: command modules import no other command
# module (olivepipe/cli/__init__.py registers cache.py before this one)
cache = main.commands["cache"]
cache_wf = click.argument("workflow", required=False, type=click.Path(dir_okay=False, path_type=Path))


def _open(workflow, cache_dir):
    """(workflow or None, local store, remote store, tiered store, lock path or None)."""
    from ..spec.workflow import load_workflow
    from ..stores.blob import BlobStore
    from ..stores.config import remote_config
    from ..stores.local import LocalStore
    from ..stores.tiered import TieredStore
    from ..flow.workspace import default_cache_dir

    wf = load_workflow(workflow, check_files=False) if workflow else None
    if wf is None and not cache_dir:
        raise OlivepipeError("give a workflow file or --cache-dir", "")
    folder = wf.file.parent if wf else Path.cwd()
    cfg = remote_config(folder)
    if cfg is None:
        raise OlivepipeError("no remote cache is configured",
                             "set OLIVEPIPE_REMOTE_CACHE=azblob://<account>/<container>[/prefix], or `cache: {remote: "
                             "azblob://...}` in .olivepipe/config.yaml (docs/shared-cache.md)")
    root = Path(os.path.abspath(cache_dir or default_cache_dir(wf)))
    # as open_workspace does: a cache inside the workspace is created confined to it
    local = LocalStore(root, base=wf.file.parent if wf and root.is_relative_to(wf.file.parent) else None)
    remote = BlobStore.from_config(cfg)
    lock_path = wf.file.parent / "olivepipe.lock" if wf else None
    return wf, local, remote, TieredStore(local, remote), lock_path


def _lock_keys(wf, lock_path) -> list[str]:
    from ..core import lock as lockfile

    nodes = lockfile.nodes(lock_path, wf.name)
    return sorted({rec["key"] for rec in nodes.values() if rec.get("key")})


def _report(command: str, res: dict, as_json: bool) -> int:
    from ..azure.redact import redact

    res["failed"] = [{"key": f["key"], "error": redact(f["error"])} for f in res["failed"]]
    res["ok"] = not res["missing"] and not res["failed"]
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return 0 if res["ok"] else 1
    verb, prep, where = ("pushed", "to", "locally") if command == "push" else ("pulled", "from", "in the remote cache")
    click.echo(f"{verb} {res['transferred']} result{'s' if res['transferred'] != 1 else ''} "
               f"({res['files']} file{'s' if res['files'] != 1 else ''}, {_mb(res['bytes'])}) {prep} {res['remote']}; "
               f"{res['up_to_date']} already there")
    if res["missing"]:
        fix = "run `olivepipe apply` to rebuild them" if command == "push" else "push them from where they were built"
        click.echo(f"missing {where}: {len(res['missing'])} ({fix}): "
                   + ", ".join(k[:12] for k in res["missing"]), err=True)
    for f in res["failed"]:
        click.echo(f"failed {f['key'][:12]}: {f['error']}", err=True)
    return 0 if res["ok"] else 1


def _transfer(command: str, remote, keys, *, have, source, move) -> dict:
    """Move every key that ``have`` lacks from ``source`` with ``move``; counts what happened.
    A read failure of ``have`` is an error here (raised), not a miss."""
    res = {"command": command, "remote": remote.label, "entries": len(keys), "transferred": 0, "up_to_date": 0,
           "missing": [], "failed": [], "files": 0, "bytes": 0}
    for key in keys:
        if have(key) is not None:
            res["up_to_date"] += 1
            continue
        entry = source(key)
        if entry is None:
            res["missing"].append(key)
            continue
        try:
            move(entry)
        except StoreError as e:
            res["failed"].append({"key": key, "error": e.message})
            continue
        res["transferred"] += 1
    return res


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


@cache.command("push")
@cache_wf
@cache_opt
@click.option("--all", "push_all", is_flag=True, help="Every local entry, not only those the workflow's lock references.")
@click.option("--json", "as_json", is_flag=True)
def cache_push(workflow, cache_dir, push_all, as_json):
    """Upload the results the workflow's lock references (or --all) that the remote cache lacks."""
    if not workflow and not push_all:
        raise OlivepipeError("give a workflow file (its lock says what to push), or --all", "")
    wf, local, remote, tiered, lock_path = _open(workflow, cache_dir)
    with local.lease():  # gc leaves entries alone while they are being read
        keys = local.keys() if push_all else _lock_keys(wf, lock_path)
        res = _transfer("push", remote, keys, have=remote.get, source=local.get, move=tiered.upload)
    res["files"], res["bytes"] = remote.stats["objects_uploaded"], remote.stats["bytes_uploaded"]
    return _report("push", res, as_json)


@cache.command("pull")
@click.argument("workflow", type=click.Path(dir_okay=False, path_type=Path))
@cache_opt
@click.option("--json", "as_json", is_flag=True)
def cache_pull(workflow, cache_dir, as_json):
    """Download the results the workflow's lock references that the local cache lacks."""
    wf, local, remote, tiered, lock_path = _open(workflow, cache_dir)
    with local.lease():  # as apply: gc neither races the publishing nor deletes what just arrived
        local.register_root(Path(os.path.abspath(lock_path)))
        res = _transfer("pull", remote, _lock_keys(wf, lock_path), have=local.get, source=remote.get,
                        move=tiered.pull)
    res["files"], res["bytes"] = remote.stats["objects_downloaded"], remote.stats["bytes_downloaded"]
    return _report("pull", res, as_json)
