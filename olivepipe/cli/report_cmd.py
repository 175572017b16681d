"""`olivepipe report FILE -o report.html`: rendering only; olivepipe/report/htmlpage.py collects and draws."""
from __future__ import annotations

from pathlib import Path

import click

from .app import cache_opt, main, rehearse_opt, workflow_arg


@main.command("report")
@workflow_arg
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The HTML file to write (one self-contained page: no network, inline CSS and SVG).")
@cache_opt
@rehearse_opt
def report_cmd(workflow, output, cache_dir, rehearse):
    """Write one HTML page about the workflow: its graph with each step's status, key, time and where it
    runs, the metrics table and plot, and each step's log tail. Reads the cache, the lock and the logs;
    runs nothing."""
    from ..report import htmlpage as htmlreport
    import os

    from ..flow.workspace import open_workspace

    ws = open_workspace(workflow, cache_dir=cache_dir, rehearse=rehearse, read_only=True)
    data = htmlreport.collect(ws)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")  # a reader sees the old page or the new one
    tmp.write_text(htmlreport.render(data), encoding="utf-8")
    os.replace(tmp, output)
    n = len(data["steps"])
    rows = len((data["metrics"] or {}).get("rows") or [])
    click.echo(f"wrote {output} ({n} step{'s' if n != 1 else ''}"
               + (f", {rows} evaluate node{'s' if rows != 1 else ''}" if rows else "") + ")")
    return 0
