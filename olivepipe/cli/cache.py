"""`olivepipe cache ls|verify|gc`: inspect and clean the result store."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..core.errors import OlivepipeError
from .app import cache_opt, main


@main.group()
def cache():
    """Inspect and clean the result store."""


def _store_for(workflow, cache_dir):
    """The store a cache command works on: --cache-dir, else the workflow's (as apply opens it)."""
    from ..spec.workflow import load_workflow
    from ..stores import open_store
    from ..flow.workspace import default_cache_dir

    wf = load_workflow(workflow, check_files=False) if workflow else None
    if wf is None and not cache_dir:
        raise OlivepipeError("give a workflow file or --cache-dir", "")
    return open_store(Path(os.path.abspath(cache_dir or default_cache_dir(wf))),
                      workspace=wf.file.parent if wf else None), wf


cache_wf = click.argument("workflow", required=False, type=click.Path(dir_okay=False, path_type=Path))


@cache.command("ls")
@cache_wf
@cache_opt
@click.option("--json", "as_json", is_flag=True)
def cache_ls(workflow, cache_dir, as_json):
    """List entries: key, kind, files, size."""
    from ..report.text import cache_rows, cache_text

    store, wf = _store_for(workflow, cache_dir)
    locks = [wf.file.parent / "olivepipe.lock", wf.file.parent / ".olivepipe" / "rehearsal.lock"] if wf else []
    rows, disk = cache_rows(store, locks), store.disk_usage()
    if as_json:
        click.echo(json.dumps({"entries": rows, "disk_bytes": disk}, indent=2))
    else:
        for line in cache_text(rows, disk):
            click.echo(line)


@cache.command("verify")
@cache_wf
@cache_opt
@click.option("--repair", is_flag=True, help="Delete corrupt entries (the next apply rebuilds them).")
def cache_verify(workflow, cache_dir, repair):
    """Re-hash every entry against its manifest (exit 1 if any is corrupt)."""
    store, _ = _store_for(workflow, cache_dir)
    keys, bad = store.keys(), 0
    loaded = [(k, store.load(k)) for k in keys]
    checked = iter(store.verify_all([e for _, e in loaded if e]))  # a file shared by entries is hashed once
    for k, e in loaded:
        problems = next(checked) if e else ["unreadable manifest"]
        if problems:
            bad += 1
            click.echo(f"CORRUPT {k[:16]}: {'; '.join(problems[:3])}")
            if repair:
                store.remove(k)
    click.echo(f"{len(keys)} entries checked, {bad} corrupt" + (", removed" if repair and bad else ""))
    return 1 if bad and not repair else 0


@cache.command("gc")
@cache_wf
@cache_opt
@click.option("--force", "force_all", is_flag=True, help="Delete every result, even those lock files use.")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.option("--remote", is_flag=True,
              help="Clean the shared remote cache instead: keep what the workflow's lock file references, now "
                   "and in each --rev (like `dvc gc -c`).")
@click.option("--rev", "revs", multiple=True, help="With --remote: also keep what the lock file of this git "
                                                   "revision references (repeatable).")
@click.option("--grace", type=click.FloatRange(0), default=1.0, show_default=True,
              help="With --remote: hours; nothing younger is deleted (a push may be writing it).")
def cache_gc(workflow, cache_dir, force_all, dry_run, remote, revs, grace):
    """Delete cached results that no lock file uses.

    Kept: every result that an olivepipe.lock below the workflow's folder (or the current
    folder) references, that a rehearsal lock (.olivepipe/rehearsal.lock) references, or that
    a lock file registered by an earlier apply references, wherever it is. Refuses, deleting
    nothing, while an apply uses the cache. --remote cleans the shared cache instead."""
    from ..stores.gc import collect

    if remote or revs:
        return _gc_remote(workflow, remote, revs, grace, dry_run)
    store, wf = _store_for(workflow, cache_dir)
    res = collect(store, wf.file.parent if wf else Path.cwd(), force=force_all, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {len(res['entries_removed'])} entries, "
               f"{res['bytes_freed'] / 1e6:.1f} MB; kept {res['kept']} referenced by lock files")


def _gc_remote(workflow, remote, revs, grace, dry_run) -> int:
    from ..stores.gc import committed_keys
    from ..spec.workflow import load_workflow
    from ..stores.blob import BlobStore
    from ..stores.config import remote_config

    if not remote:
        raise OlivepipeError("--rev scopes `cache gc --remote`", "add --remote")
    if workflow is None:
        raise OlivepipeError("`cache gc --remote` needs the workflow whose lock files say what to keep",
                             "olivepipe cache gc workflow.yaml --remote --rev main")
    wf = load_workflow(workflow, check_files=False)
    cfg = remote_config(wf.file.parent)
    if cfg is None:
        raise OlivepipeError("no remote cache is configured", "see docs/shared-cache.md")
    keep = committed_keys(wf.file.parent / "olivepipe.lock", list(revs))
    res = BlobStore.from_config(cfg).gc(keep, grace_s=grace * 3600, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{cfg.url}: {verb} {len(res['entries_removed'])} entries and {res['objects_removed']} objects "
               f"({res['bytes_freed'] / 1e6:.1f} MB); kept {res['kept']} entries"
               + (f"; {res['publishing']} publish(es) running, so no object was deleted" if res["publishing"] else ""))
    return 0


@cache.command("keygen")
@click.argument("name")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the key files go (default: ~/.config/olivepipe/keys).")
def cache_keygen(name, folder):
    """Make a signing key NAME for the shared cache; prints its public half (docs/shared-cache.md)."""
    from ..stores.config import ENV_SIGNING_KEY, user_config_file
    from ..stores.signing import keygen

    folder = folder or user_config_file(os.environ).parent / "keys"
    secret, pub = keygen(name, folder)
    click.echo(str(pub))
    click.echo(f"secret key: {secret} (keep it private: whoever holds it can publish results you trust)\n"
               f"sign with it:  export {ENV_SIGNING_KEY}={secret}\n"
               f"trust it:      add '{pub}' to cache.trusted_keys in .olivepipe/config.yaml", err=True)
