"""`olivepipe init [DIR]`: set up a repository for olivepipe (what it writes: olivepipe/spec/starter.py)."""
from __future__ import annotations

from pathlib import Path

import click

from .app import main


@main.command("init")
@click.argument("directory", required=False, default=".", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing workflow.yaml (nothing else is ever replaced).")
def init_cmd(directory, force):
    """Write a starter workflow.yaml (with its data), .gitignore rules and pre-commit hooks.

    Existing files are kept: .gitignore gets a marked block appended, an existing
    .pre-commit-config.yaml is left alone and the hooks to add are printed."""
    from ..spec.starter import WORKFLOW, init_repo

    res = init_repo(directory, force=force)
    for rel in res.wrote:
        click.echo(f"wrote    {directory / rel}")
    for rel in res.appended:
        click.echo(f"appended {directory / rel} (olivepipe block)")
    for rel, why in res.skipped:
        click.echo(f"skipped  {directory / rel}: {why}")
    if res.add_to_precommit:
        click.echo("\nadd under `repos:` in .pre-commit-config.yaml:\n" + res.add_to_precommit, nl=False)
    wf = directory / WORKFLOW
    click.echo(f"\nnext: olivepipe validate {wf} && olivepipe plan {wf} && olivepipe apply {wf}\n"
               "commit the workflow, its data and olivepipe.lock (after apply); .olivepipe/ and outputs/ stay ignored")
    return 0
