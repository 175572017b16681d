"""Command line: parse arguments, call the library, render. Exit codes: 0 ok, 1 failure,
2 invalid input (or, with plan --detailed-exitcode, changes pending), 3 internal error, 130 interrupted."""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import click

from .errors import OlivepipeError, SpecError


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _run(fn):
    """One handler for every command: user errors -> message + code; bugs -> traceback file + 3."""
    try:
        return fn()
    except SpecError as e:
        click.echo(e.format(), err=True)
        click.echo(f"{e.message}.", err=True)
        return e.exit_code
    except OlivepipeError as e:
        click.echo(f"error: {e.format()}", err=True)
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted: finished steps are cached; run again to resume", err=True)
        return 130
    except Exception:  # a bug: keep the evidence, spare the user the stack
        import tempfile

        path = Path(tempfile.gettempdir()) / "olivepipe-crash.log"
        from . import __version__
        from .olive.runtime import version

        path.write_text(f"olivepipe {__version__}, olive-ai {version('olive-ai')}, python {sys.version}\n"
                        + traceback.format_exc())
        click.echo(f"internal error (a bug in olivepipe): {sys.exc_info()[1]!r}\n    details: {path}", err=True)
        return 3


def _exit(code):
    sys.exit(code or 0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="olivepipe")
def main():
    """Declarative, cached Microsoft Olive workflows: validate, plan, apply."""


workflow_arg = click.argument("workflow", type=click.Path(dir_okay=False, path_type=Path))
cache_opt = click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
                         help="Store for results (default: .olivepipe/cache next to the workflow, or $OLIVEPIPE_CACHE_DIR).")
rehearse_opt = click.option("--rehearse", is_flag=True,
                            help="Replace hub models with tiny ones of the same architecture and CPU-incapable passes with documented stand-ins.")


@main.command()
@click.argument("workflows", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
def validate(workflows, as_json):
    """Check workflow files: schema, references, cycles, passes and their params."""

    def go():
        from .spec import load_workflow

        results, code = [], 0
        for wf in workflows:
            try:
                w = load_workflow(wf)
                results.append({"file": str(wf), "ok": True, "nodes": list(w.nodes), "problems": []})
                if not as_json:
                    click.echo(f"{wf}: ok ({len(w.nodes)} nodes)")
            except SpecError as e:
                code = 2
                results.append({"file": str(wf), "ok": False, "problems": [p.to_json() for p in e.problems]})
                if not as_json:
                    click.echo(e.format(), err=True)
                    click.echo(f"{wf}: {e.message}", err=True)
        if as_json:
            click.echo(json.dumps({"ok": code == 0, "files": results}, indent=2))
        return code

    _exit(_run(go))


@main.command()
@workflow_arg
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot", "png", "svg"]), default="mermaid")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file (required for png/svg).")
def graph(workflow, fmt, output):
    """Print the DAG as mermaid or DOT (png/svg through Graphviz)."""

    def go():
        from .graph import build_graph
        from .render import render_graph
        from .spec import load_workflow

        g = build_graph(load_workflow(workflow))
        data = render_graph(g, fmt)
        if output:
            output.write_bytes(data if isinstance(data, bytes) else data.encode())
        elif isinstance(data, bytes):
            raise OlivepipeError(f"{fmt} is binary", "pass -o FILE")
        else:
            click.echo(data, nl=False)
        return 0

    _exit(_run(go))


@main.command("compile")
@workflow_arg
@click.option("--node", "nodes", multiple=True, help="Node(s) to compile (default: every Olive node).")
@click.option("--check", is_flag=True, help="Also validate with Olive's own RunConfig (imports Olive).")
@cache_opt
@rehearse_opt
def compile_cmd(workflow, nodes, check, cache_dir, rehearse):
    """Print the exact Olive workflow JSON each node runs."""

    def go():
        from .preview import compile_preview
        from .workspace import open_workspace

        ws = open_workspace(workflow, cache_dir=cache_dir, rehearse=rehearse)
        out = compile_preview(ws, list(nodes), check=check)
        click.echo(json.dumps(out if len(out) != 1 else next(iter(out.values())), indent=2))
        return 0

    _exit(_run(go))


def _plan_for(workflow, cache_dir, rehearse, target, force, force_all=False):
    from .plan import make_plan
    from .workspace import open_workspace

    ws = open_workspace(workflow, cache_dir=cache_dir, rehearse=rehearse)
    for n in (*target, *force):
        if n not in ws.workflow.nodes and n not in ws.workflow.models:
            import difflib

            close = difflib.get_close_matches(n, list(ws.workflow.nodes), n=1)
            raise OlivepipeError(f"unknown node '{n}'", f"did you mean '{close[0]}'?" if close else
                                 f"nodes: {', '.join(ws.workflow.nodes)}")
    return ws, make_plan(ws, targets=tuple(target), force=tuple(force), force_all=force_all)


target_opt = click.option("--target", multiple=True, help="Only this node and what it needs (repeatable).")
force_opt = click.option("--force", multiple=True, help="Re-run this node even if cached (repeatable).")


@main.command()
@workflow_arg
@target_opt
@force_opt
@cache_opt
@rehearse_opt
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when nothing to do, 2 when changes are pending, 1 on error.")
def plan(workflow, target, force, cache_dir, rehearse, fmt, as_json, detailed_exitcode):
    """Show what apply would do, and why: cached, will run (which input/param/version changed), blocked."""

    def go():
        ws, p = _plan_for(workflow, cache_dir, rehearse, target, force)
        f = "json" if as_json else fmt
        if f == "json":
            click.echo(json.dumps(p.to_json(), indent=2))
        elif f == "markdown":
            from .report import plan_markdown

            marks = {s.name: s.status for s in p.steps}
            click.echo(plan_markdown(p, ws.graph.mermaid(marks)), nl=False)
        else:
            from .report import plan_text

            plan_text(p, _console())
        if detailed_exitcode:
            return "changes" if p.has_changes else 0
        return 0

    code = _run(go)
    if detailed_exitcode:  # terraform's contract: 0 nothing to do, 1 error (bad input too), 2 changes
        code = 2 if code == "changes" else 130 if code == 130 else 1 if code else 0
    _exit(code)


@main.command()
@workflow_arg
@target_opt
@force_opt
@click.option("--force-all", is_flag=True, help="Re-run every step.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Steps to run at once (independent branches).")
@click.option("--gpu-slots", type=click.IntRange(1, 64), default=1, show_default=True,
              help="GPU steps to run at once.")
@cache_opt
@rehearse_opt
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (no progress display).")
def apply(workflow, target, force, force_all, jobs, gpu_slots, cache_dir, rehearse, as_json):
    """Run what the plan says, through Olive, caching every result."""

    def go():
        from .executor import apply as do_apply

        ws, p = _plan_for(workflow, cache_dir, rehearse, target, force, force_all)
        if as_json:
            result = do_apply(ws, p, jobs=jobs, gpu_slots=gpu_slots, prune_lock=not target)
            click.echo(json.dumps(result.to_json(), indent=2))
        elif not (p.to_run or p.blocked):
            # nothing to run: a one-line answer, without loading the progress renderer
            result = do_apply(ws, p, jobs=jobs, gpu_slots=gpu_slots, prune_lock=not target)
            c = sum(1 for o in result.outcomes.values() if o.status == "cached")
            click.echo(f"Apply complete: nothing to do, {c} cached ({result.seconds:.2f}s)")
        else:
            from .report import Progress, plan_text, result_text

            console = _console()
            plan_text(p, console)
            with Progress(p, console) as progress:
                result = do_apply(ws, p, jobs=jobs, gpu_slots=gpu_slots, on_event=progress, prune_lock=not target)
            result_text(result, console, str(workflow))
        return 0 if result.ok else 1

    _exit(_run(go))


@main.command()
@workflow_arg
@cache_opt
@rehearse_opt
@click.option("--json", "as_json", is_flag=True)
def status(workflow, cache_dir, rehearse, as_json):
    """What is stale: one line per step (exit 0 when everything is up to date, 2 otherwise)."""

    def go():
        ws, p = _plan_for(workflow, cache_dir, rehearse, (), ())
        if as_json:
            click.echo(json.dumps({s.name: s.status for s in p.steps}, indent=2))
        else:
            for s in p.steps:
                why = f"  ({s.reasons[0]})" if s.reasons and s.status != "cached" else ""
                click.echo(f"{'up to date' if s.status == 'cached' else 'stale' if s.status == 'run' else s.status:>10}  {s.name}{why}")
        return 2 if p.has_changes else 0

    _exit(_run(go))


@main.group()
def cache():
    """Inspect and clean the result store."""


def _store_for(workflow, cache_dir):
    from .spec import load_workflow
    from .store import Store
    from .workspace import default_cache_dir

    if workflow:
        wf = load_workflow(workflow, check_files=False)
        return Store(cache_dir or default_cache_dir(wf)), wf
    if not cache_dir:
        raise OlivepipeError("give a workflow file or --cache-dir", "")
    return Store(cache_dir), None


cache_wf = click.argument("workflow", required=False, type=click.Path(dir_okay=False, path_type=Path))


@cache.command("ls")
@cache_wf
@cache_opt
@click.option("--json", "as_json", is_flag=True)
def cache_ls(workflow, cache_dir, as_json):
    """List entries: key, kind, files, size."""

    def go():
        store, _ = _store_for(workflow, cache_dir)
        rows = []
        for k in store.keys():
            e = store.get(k, check=False)
            if e:
                rows.append({"key": k, "kind": e.manifest.get("kind"), "files": len(e.manifest["files"]),
                             "bytes": e.size, "duration_s": e.manifest.get("duration_s")})
        if as_json:
            click.echo(json.dumps({"entries": rows, "disk_bytes": store.disk_usage()}, indent=2))
        else:
            for r in rows:
                click.echo(f"{r['key'][:16]}  {r['kind'] or '?':<12} {r['files']:>5} files  {r['bytes'] / 1e6:>10.1f} MB")
            click.echo(f"{len(rows)} entries, {store.disk_usage() / 1e6:.1f} MB on disk (deduplicated)")
        return 0

    _exit(_run(go))


@cache.command("verify")
@cache_wf
@cache_opt
@click.option("--repair", is_flag=True, help="Delete corrupt entries (the next apply rebuilds them).")
def cache_verify(workflow, cache_dir, repair):
    """Re-hash every entry against its manifest (exit 1 if any is corrupt)."""

    def go():
        store, _ = _store_for(workflow, cache_dir)
        bad = 0
        for k in store.keys():
            e = store.get(k, check=False)
            problems = store.verify(e) if e else ["unreadable manifest"]
            if problems:
                bad += 1
                click.echo(f"CORRUPT {k[:16]}: {'; '.join(problems[:3])}")
                if repair:
                    store.remove(k)
        click.echo(f"{len(store.keys()) if not repair else len(store.keys()) + bad} entries checked, {bad} corrupt"
                   + (", removed" if repair and bad else ""))
        return 1 if bad and not repair else 0

    _exit(_run(go))


@cache.command("gc")
@cache_wf
@cache_opt
@click.option("--force", "force_all", is_flag=True, help="Also delete entries that lock files still reference.")
@click.option("--dry-run", is_flag=True)
def cache_gc(workflow, cache_dir, force_all, dry_run):
    """Delete entries no lock file references, and unreferenced objects."""

    def go():
        from .gc import referenced_keys

        store, wf = _store_for(workflow, cache_dir)
        keep = set() if force_all else referenced_keys(wf.file.parent if wf else Path.cwd())
        res = store.gc(keep, dry_run=dry_run)
        verb = "would remove" if dry_run else "removed"
        click.echo(f"{verb} {len(res['entries_removed'])} entries, "
                   f"{res['bytes_freed'] / 1e6:.1f} MB; kept {len(keep)} referenced by lock files")
        return 0

    _exit(_run(go))


from . import cli_review  # noqa: E402,F401  (diff, fmt: review commands register themselves on `main`)

if __name__ == "__main__":
    # `python -m olivepipe.cli`: this file runs as __main__, and cli_review registered its
    # commands on the imported olivepipe.cli.main, a second copy; run that one
    from olivepipe.cli import main as _main

    _main()
