"""Workflow commands: validate, graph, compile, plan, apply, status."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import click

from ..core.errors import OlivepipeError, Problem, SpecError
from .app import cache_opt, console, main, rehearse_opt, shown, workflow_arg


def _not_a_workflow_file(name: str) -> Problem | None:
    """Why ``name`` cannot be read as a workflow file, checked before the library reads it.

    A FIFO would block a read forever and /dev/zero never ends; a NUL byte makes every
    os call raise ValueError. Each becomes this file's problem, not the end of the run.
    """
    try:
        st = os.stat(name)
    except ValueError:
        return Problem(shown(name), 0, 0, "file name contains a NUL byte", "check how the name was produced")
    except FileNotFoundError:
        return Problem(shown(name), 0, 0, "no such file", "check the path")
    except OSError as e:
        return Problem(shown(name), 0, 0, f"cannot read: {e.strerror}", "")
    if stat.S_ISDIR(st.st_mode):
        return Problem(shown(name), 0, 0, "is a directory, not a workflow file", "give the workflow's YAML file")
    if not stat.S_ISREG(st.st_mode):
        return Problem(shown(name), 0, 0, "is not a regular file (a FIFO, device or socket)", "give the workflow's YAML file")
    return None


@main.command()
# plain strings, not click.Path: click would stop the whole run at the first folder or NUL byte
@click.argument("workflows", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
def validate(workflows, as_json):
    """Check workflow files: schema, references, cycles, passes and their params.

    Every file is checked and reported; exit 2 if any is invalid."""
    from ..spec.workflow import load_workflow

    results, invalid, failed = [], False, 0
    for name in workflows:
        where = shown(name)
        try:
            problem = _not_a_workflow_file(name)
            if problem is not None:
                raise SpecError([problem])
            w = load_workflow(name)
        except SpecError as e:
            invalid = True
            results.append({"file": where, "ok": False, "problems": [p.to_json() for p in e.problems]})
            if not as_json:
                click.echo(e.format(), err=True)
                click.echo(f"{where}: {e.message}", err=True)
            continue
        except OlivepipeError as e:  # not about the file's content (e.g. its state folder): still this file's only
            failed = failed or e.exit_code
            results.append({"file": where, "ok": False,
                            "problems": [Problem(where, 0, 0, e.message, e.hint).to_json()]})
            if not as_json:
                click.echo(f"error: {e.format()}", err=True)
            continue
        results.append({"file": where, "ok": True, "nodes": list(w.nodes), "problems": []})
        if not as_json:
            click.echo(f"{where}: ok ({_counted(w)})")
    code = 2 if invalid else failed
    if as_json:
        click.echo(json.dumps({"ok": code == 0, "files": results}, indent=2))
    return code


def _counted(w) -> str:
    """`4 nodes`, or with tiny models (each one more step in plan and apply) `4 nodes + 1 tiny model: 5 steps`."""
    tiny = sum(1 for name, m in w.models.items() if m.source == "tiny" and any(name in n.inputs for n in w.nodes.values()))
    nodes = f"{len(w.nodes)} node{'s' if len(w.nodes) != 1 else ''}"
    return nodes + (f" + {tiny} tiny model{'s' if tiny != 1 else ''}: {len(w.nodes) + tiny} steps" if tiny else "")


@main.command()
@workflow_arg
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot", "png", "svg"]), default="mermaid")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file (required for png).")
@click.option("--status", "with_status", is_flag=True, help="Color each node by what apply would do (mermaid).")
def graph(workflow, fmt, output, with_status):
    """Print the DAG as mermaid or DOT (png/svg through Graphviz), datasets included."""
    from ..spec.graph import build_graph
    from ..report.render import render_graph
    from ..spec.workflow import load_workflow

    marks = None
    if with_status:
        _, p = _plan_for(workflow, None, False, read_only=True)
        marks = {s.name: s.status for s in p.steps}
    data = render_graph(build_graph(load_workflow(workflow)), fmt, marks)
    if fmt == "svg" and isinstance(data, bytes) and not output:
        data = data.decode("utf-8")  # SVG is text: print it like mermaid and DOT
    if output:
        output.write_bytes(data if isinstance(data, bytes) else data.encode())
    elif isinstance(data, bytes):
        raise OlivepipeError(f"{fmt} is binary", "pass -o FILE")
    else:
        click.echo(data, nl=False)


@main.command("compile")
@workflow_arg
@click.option("--node", "nodes", multiple=True, help="Node(s) to compile (default: every Olive node).")
@click.option("--check", is_flag=True, help="Also validate with Olive's own RunConfig (imports Olive).")
@cache_opt
@rehearse_opt
def compile_cmd(workflow, nodes, check, cache_dir, rehearse):
    """Print the exact Olive workflow JSON each node runs."""
    from ..report.preview import compile_preview
    from ..flow.workspace import open_workspace

    ws = open_workspace(workflow, cache_dir=cache_dir, rehearse=rehearse)
    out = compile_preview(ws, list(nodes), check=check)
    click.echo(json.dumps(out if len(out) != 1 else next(iter(out.values())), indent=2))


def _plan_for(workflow, cache_dir, rehearse, target=(), force=(), force_all=False, read_only=False, sets=()):
    from ..flow.plan import make_plan
    from ..flow.workspace import open_workspace

    overrides = ()
    if sets:
        from ..flow.variants import parse

        overrides = parse(sets)
    ws = open_workspace(workflow, cache_dir=cache_dir, rehearse=rehearse, read_only=read_only, overrides=overrides)
    return ws, make_plan(ws, targets=tuple(target), force=tuple(force), force_all=force_all)


target_opt = click.option("--target", multiple=True, help="Only this node and what it needs (repeatable).")
force_opt = click.option("--force", multiple=True, help="Re-run this node even if cached (repeatable).")
set_opt = click.option("-S", "--set", "sets", multiple=True, metavar="PATH=VALUE",
                       help="A variant without editing the file: set a field by its key path, e.g. "
                            "-S finetune.params.r=8 (repeatable; results go to .olivepipe/variants.lock).")


def _terraform(params: dict, code: int, failed: bool) -> int:
    """--detailed-exitcode (and `status`, always): 0 nothing to do, 2 changes pending, 1 error or a
    blocked step (bad input too: in this mode 2 only ever means "changes"); 130 stays."""
    if not params.get("detailed_exitcode", True):
        return code
    if failed:
        return 130 if code == 130 else 1
    return code  # plan returned 0 or 2


@main.command(exit_map=_terraform)
@workflow_arg
@target_opt
@force_opt
@set_opt
@cache_opt
@rehearse_opt
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when nothing to do, 2 when changes are pending, 1 on error.")
@click.option("--metrics", "with_metrics", is_flag=True,
              help="With --format markdown: add the evaluate nodes' metrics table (for pull requests).")
@click.option("-o", "--out", "save_to", type=click.Path(dir_okay=False, path_type=Path),
              help="Also save the plan to this .json file: `olivepipe apply FILE.json` runs exactly it, or refuses "
                   "if anything it was computed from changed.")
def plan(workflow, target, force, sets, cache_dir, rehearse, fmt, as_json, detailed_exitcode, with_metrics,
         save_to):
    """Show what apply would do, and why: cached, will run (which input/param/version changed), blocked."""
    ws, p = _plan_for(workflow, cache_dir, rehearse, target, force, read_only=True, sets=sets)
    if save_to is not None:
        if sets:
            raise OlivepipeError("-o with -S: a saved plan is of the committed file",
                                 "apply the variant with `olivepipe apply FILE -S ...`, or save the plan without -S")
        from ..flow import savedplan

        if save_to.suffix.lower() != ".json":
            raise OlivepipeError(f"-o {save_to}: a saved plan is a .json file", "e.g. -o plan.json")
        if os.path.abspath(save_to.parent) != os.path.abspath(ws.workflow.file.parent):
            raise OlivepipeError(f"-o {save_to}: save the plan next to the workflow file",
                                 f"e.g. -o {ws.workflow.file.parent / 'plan.json'} (apply finds the workflow there)")
        savedplan.write(save_to, savedplan.snapshot(ws, p, {"target": list(target), "force": list(force),
                                                             "rehearse": rehearse,
                                                             "cache_dir": str(cache_dir) if cache_dir else None}))
        click.echo(f"saved the plan to {save_to}; run exactly it with `olivepipe apply {save_to}`", err=True)
    f = "json" if as_json else fmt
    trust = ws.store.trust_note  # "" without a shared cache
    if f == "json":
        click.echo(json.dumps({**p.to_json(), **({"shared_cache": trust} if trust else {})}, indent=2))
    elif f == "markdown":
        from ..report.text import plan_markdown

        click.echo(plan_markdown(p, ws.graph.mermaid({s.name: s.status for s in p.steps})), nl=False)
        from ..flow.metrics import goal_rows
        from ..report.summary import goals_markdown

        goals = goal_rows(ws)
        if goals:
            click.echo("\n".join(goals_markdown(goals)))
        if with_metrics:
            from ..flow.metrics import collect
            from ..report.summary import metrics_markdown

            click.echo("\n#### Metrics (cached results; stale rows are from before this change)\n")
            click.echo("\n".join(metrics_markdown(collect(ws), diff=False)))
    else:
        from ..report.text import plan_text

        plan_text(p, console())
    if trust and f != "json":
        click.echo(trust, err=True)
    return _pending_code(p) if detailed_exitcode else 0


def _pending_code(p) -> int:
    """0 nothing to do, 2 something will run, 1 something cannot run here (apply would fail)."""
    return 1 if p.blocked else 2 if p.to_run else 0


@main.command()
@workflow_arg
@target_opt
@force_opt
@set_opt
@click.option("--force-all", is_flag=True, help="Re-run every step.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None,
              help="Steps to run at once (independent branches). Default: 1, plus one per visible GPU "
                   "when GPU steps run.")
@click.option("--gpu-slots", type=click.IntRange(1, 64), default=None,
              help="GPU steps to run at once. Default: one per visible GPU.")
@click.option("--stop-on-failure", is_flag=True,
              help="Start nothing new after a failure (default: skip its dependents, finish other branches).")
@cache_opt
@rehearse_opt
@click.option("--json", "as_json", is_flag=True,
              help="JSON lines: one event per line as it happens, then the result document.")
@click.option("-v", "--verbose", is_flag=True, help="Stream every running step's log.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display: only failures and the summary.")
def apply(workflow, target, force, sets, force_all, jobs, gpu_slots, stop_on_failure, cache_dir, rehearse, as_json,
          verbose, quiet):
    """Run what the plan says, through Olive, caching every result."""
    import signal
    import sys

    from ..flow import savedplan
    from ..flow.scheduler import Interrupted, check_no_other_apply
    from ..flow.scheduler import apply as do_apply
    from ..report.stamp import before, remember

    # the fast path's stamp may only record what this answer is computed from: the workflow and its lock
    # as they are before anything reads them, and only for the plain form it answers (report/stamp.py)
    plain = not (target or force or force_all or cache_dir or rehearse or sets)
    seen = before(workflow) if plain else None
    saved = savedplan.read(workflow)
    if saved is not None:
        if target or force or force_all or rehearse or cache_dir:
            raise OlivepipeError("a saved plan carries its own --target/--force/--rehearse/--cache-dir",
                                 f"apply it as it is (`olivepipe apply {workflow}`), or make a new plan")
        plain, seen = False, None
        workflow, target, force, rehearse, cache_dir = (saved.workflow, saved.target, saved.force, saved.rehearse,
                                                        saved.cache_dir)
        # the saved plan is spent once anything ran: resume from the workflow
        resume = _resume_command(["apply", *[a for t in target for a in ("--target", t)],
                                  *(["--rehearse"] if rehearse else []), str(workflow)])
    else:
        resume = _resume_command(sys.argv[1:])
    ws, p = _plan_for(workflow, cache_dir, rehearse, target, force, force_all, sets=sets)
    check_no_other_apply(ws)  # before printing a plan that would not run
    if saved is not None:
        savedplan.check(saved, ws, p)  # exactly that plan, or nothing
    signal.signal(signal.SIGTERM, _terminate)  # a CI cancel or `kill`: stop like Ctrl-C, and say so
    run = dict(jobs=jobs, gpu_slots=gpu_slots, prune_lock=not target,
               on_failure="stop" if stop_on_failure else "keep_going")
    try:
        if as_json:
            from ..report.text import event_json

            def emit(e):
                click.echo(json.dumps(event_json(e)))
                sys.stdout.flush()

            result = do_apply(ws, p, on_event=emit, **run)
            click.echo(json.dumps({"event": "result", **result.to_json()}))
        elif not (p.to_run or p.blocked):
            # nothing to run: a one-line answer, without loading the progress renderer
            from ..report.summary import nothing_to_do

            result = do_apply(ws, p, **run)
            click.echo(nothing_to_do(result))
        else:
            from ..report.text import Progress, plan_text, result_text

            out = console()
            if quiet:
                result = do_apply(ws, p, **run)
            else:
                plan_text(p, out)
                with Progress(p, out, verbose=verbose) as progress:
                    result = do_apply(ws, p, on_event=progress, **run)
            result_text(result, out, resume)
    except Interrupted as e:
        if as_json:
            click.echo(json.dumps({"event": "interrupted", "running": e.running, **e.result.to_json()}))
        click.echo(f"{e.message}\n    resume: {resume}", err=True)
        return e.exit_code
    if plain and not (p.to_run or p.blocked):
        remember(ws, p, result, seen)
    return 0 if result.ok else 1


def _terminate(signum, frame):
    from ..core.errors import Terminated

    raise Terminated()


def _resume_command(argv: list[str]) -> str:
    """The command the user typed, minus what would redo finished work (--force*)."""
    import shlex

    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--force",):
            skip = True
            continue
        if a == "--force-all" or a.startswith("--force="):
            continue
        out.append(a)
    return shlex.join(["olivepipe", *out])


@main.command()
@workflow_arg
@click.argument("node")
@cache_opt
@rehearse_opt
@click.option("--export", "export_to", type=click.Path(path_type=Path), default=None,
              help="Copy the node's result to this new folder (a plain, writable copy).")
@click.option("--json", "as_json", is_flag=True)
def show(workflow, node, cache_dir, rehearse, export_to, as_json):
    """Where a node's result is, its key, what made it and its log."""
    from ..report.show import export, node_info

    ws, p = _plan_for(workflow, cache_dir, rehearse, read_only=export_to is None)
    if export_to is not None:
        dest = export(ws, p, node, export_to)
        click.echo(f"exported {node} to {dest}")
        return 0
    info = node_info(ws, p, node)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return 0
    for k in ("name", "kind", "label", "action", "key", "output", "stored_at", "files", "bytes", "duration_s",
              "log", "reports", "source", "rehearsal"):
        if info.get(k) not in (None, [], ""):
            click.echo(f"{k + ':':<11} {info[k]}")
    for r in info.get("reasons") or []:
        click.echo(f"{'why:':<11} {r}")
    for r in info.get("notes") or []:  # e.g. which model a select node chose, and why
        click.echo(f"{'result:':<11} {r}")
    return 0


@main.command()
@workflow_arg
@click.argument("node")
@rehearse_opt
@click.option("-f", "--follow", is_flag=True, help="Keep printing as the log grows (Ctrl-C to stop).")
def logs(workflow, node, rehearse, follow):
    """Print a node's log from its last run."""
    import sys
    import time

    from ..flow.plan import check_targets
    from ..flow.workspace import open_workspace

    from ..flow.scheduler import apply_mutex

    ws = open_workspace(workflow, rehearse=rehearse, read_only=True)
    check_targets(ws, (node,))
    path = ws.log_path(node)
    if not path.exists():
        raise OlivepipeError(f"node '{node}' has no log yet", f"it is written when the node runs: {path}")
    running = apply_mutex(ws)
    with open(path, "rb") as f:
        while True:
            # asked before reading: whatever the apply wrote before it ended is read below
            live = follow and running.held_elsewhere()
            chunk = f.read(1 << 16)
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            elif not live:
                if follow:  # a finished node's log is complete: following it would wait forever
                    click.echo(f"(no apply of '{ws.lock_name}' is running: the log is complete)", err=True)
                return 0
            else:
                time.sleep(0.5)


@main.command(exit_map=_terraform)
@workflow_arg
@cache_opt
@rehearse_opt
@click.option("--json", "as_json", is_flag=True)
def status(workflow, cache_dir, rehearse, as_json):
    """What is stale: one line per step. Exit 0 up to date, 2 stale, 1 blocked or error (as plan
    --detailed-exitcode)."""
    from ..report.summary import status_lines

    _, p = _plan_for(workflow, cache_dir, rehearse, read_only=True)
    if as_json:
        click.echo(json.dumps({s.name: s.status for s in p.steps}, indent=2))
    else:
        for line in status_lines(p):
            click.echo(line)
    return _pending_code(p)
