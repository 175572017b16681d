"""`olivepipe exp show|diff|apply`: the variants `-S PATH=VALUE` made, side by side, and
writing one back into the workflow file. Computing lives in olivepipe/flow/variants.py."""
from __future__ import annotations

import json

import click

from ..report.summary import metric_cell, metric_num
from ..report.summary import text_grid as _grid
from .app import cache_opt, main, workflow_arg


@main.group("exp")
def exp():
    """Variants of a workflow made with `apply -S PATH=VALUE`: list, compare, adopt."""


@exp.command("show")
@workflow_arg
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@cache_opt
def show_cmd(workflow, fmt, cache_dir):
    """Every variant applied from WORKFLOW: what it changed, its metrics and what its select
    nodes chose, beside the committed file's. Reads the cache only."""
    from ..flow.variants import show

    doc = show(workflow, cache_dir=cache_dir)
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2, default=str))
        return 0
    keys = doc["metrics"]
    head = ["variant", "node"] + keys + ["selected", "status"]
    body = []
    for v in doc["variants"]:
        status = v.get("error") or ("up to date" if not v["pending"] else f"{v['pending']} to run")
        chosen = ", ".join(f"{n}: {w or '-'}" for n, w in v["selected"].items()) or "-"
        rows = list(v["rows"].values()) or [{"node": "-", "values": {}}]
        for r in rows:
            body.append([v["name"], r["node"]] + [metric_num(r["values"].get(k)) for k in keys] + [chosen, status])
    lines = [f"olivepipe exp show {doc['workflow']}: {len(doc['variants']) - 1} variant(s)", ""] + _grid(head, body)
    changed = [v for v in doc["variants"] if v["changes"]]
    if changed:
        lines.append("")
    for v in changed:
        lines.append(f"{v['name']}: " + "; ".join(f"{c['path']}: {_short(c['old'])} -> {_short(c['new'])}"
                                                 for c in v["changes"]))
    click.echo("\n".join(lines))
    return 0


def _short(v) -> str:
    return "(unset)" if v is None else v if isinstance(v, str) else json.dumps(v, default=str)


@exp.command("diff")
@workflow_arg
@click.argument("a")
@click.argument("b")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@cache_opt
def diff_cmd(workflow, a, b, fmt, cache_dir):
    """Compare two variants (or `committed`): the overrides that differ and every metric, A -> B.
    Exit 0 same numbers, 1 different."""
    from ..flow.variants import diff

    doc = diff(workflow, a, b, cache_dir=cache_dir)
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        lines = [f"olivepipe exp diff {a} -> {b}", ""]
        lines += [f"  only in {a}: -S {o}" for o in doc["only_a"]] + [f"  only in {b}: -S {o}" for o in doc["only_b"]]
        keys = list(dict.fromkeys(k for r in doc["rows"] for k in r["values"]))
        body = [[r["node"], r["status"]] + [metric_cell(r["values"][k]) if k in r["values"] else "-" for k in keys]
                for r in doc["rows"]]
        if body:
            lines += [""] + _grid(["node", "status"] + keys, body)
        lines += [f"  {s['node']} selects {s['a'] or '-'} -> {s['b'] or '-'}" for s in doc["selected"]]
        lines += [f"  {n}: {e}" for n, e in doc["errors"].items()]
        click.echo("\n".join(lines))
    same = all(r["status"] == "same" for r in doc["rows"]) and all(s["a"] == s["b"] for s in doc["selected"])
    return 0 if same else 1


@exp.command("apply")
@workflow_arg
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Print the change to the file, write nothing.")
def apply_cmd(workflow, name, dry_run):
    """Write variant NAME's overrides into WORKFLOW, in place: comments and layout stay. Its
    results are already cached, so the next `olivepipe apply` only records them."""
    import difflib

    from ..spec.fmt import write_atomic
    from ..flow.variants import find, parse, write_back
    from ..flow.workspace import open_workspace

    entry = find(open_workspace(workflow, read_only=True), name)
    old, new = write_back(workflow, parse(entry.get("overrides") or []))
    click.echo("".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"{workflow} (committed)",
                                            f"{workflow} (with {name})")), nl=False)
    if not dry_run and new != old:
        write_atomic(workflow, new)
        click.echo(f"wrote {name}'s {len(entry.get('overrides') or [])} override(s) into {workflow}; "
                   f"`olivepipe apply {workflow}` records its cached results in the lock", err=True)
    return 0
