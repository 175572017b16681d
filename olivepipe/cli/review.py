"""Review commands: `olivepipe diff` (semantic diff, git textconv driver) and `olivepipe fmt`."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..core.errors import OlivepipeError, SpecError
from .app import console, main, shown


@main.command("diff")
@click.argument("a", required=False)
@click.argument("b", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result (shape: docs/review.md).")
@click.option("--textconv", is_flag=True,
              help="Print one file's normalized rendering (git diff driver; see docs/review.md).")
def diff_cmd(a, b, as_json, textconv):
    """Semantic diff of two workflow definitions (files or REV:PATH), or of two lock files.

    \b
    Exit codes: 0 no differences, 1 differences, 2 a file or revision could not be read.
    Examples:
      olivepipe diff HEAD~1:workflow.yaml workflow.yaml
      olivepipe diff old/olivepipe.lock olivepipe.lock
    """
    from ..flow import review

    if textconv:
        if not a or b:
            raise review.ReviewError("--textconv takes exactly one file", "git passes it: see docs/review.md")
        click.echo(review.textconv(Path(a)), nl=False)
        return 0
    if not a or not b:
        raise review.ReviewError("give two workflow files, two lock files, or REV:PATH revisions",
                                 "e.g. olivepipe diff HEAD~1:workflow.yaml workflow.yaml")
    result = review.diff(a, b)
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        from rich.text import Text

        out = console()
        for line, style in review.render_text(result):
            out.print(Text(line, style=style))
    return 0 if result["same"] else 1


@main.command("fmt")
# plain strings, not click.Path: one folder among the files must not stop the others
@click.argument("files", nargs=-1, required=True)
@click.option("--check", is_flag=True, help="Write nothing; list files that would change (exit 1 if any).")
@click.option("--diff", "show_diff", is_flag=True, help="Write nothing; print what would change as a unified diff.")
def fmt_cmd(files, check, show_diff):
    """Rewrite workflow files in one canonical layout, keeping comments.

    \b
    Top-level keys: olivepipe, name, description, defaults, models, datasets, nodes.
    Node keys: pass/kind, input, data, device, provider, matrix, params, then the rest.
    2-space indentation. Invalid files are refused (exit 2) and left untouched.
    """
    from ..spec.fmt import format_file, unified_diff, write_atomic

    dry = check or show_diff
    changed, invalid, same = 0, 0, 0
    for name in files:
        f = Path(name)
        try:
            old, new = format_file(f)
        except SpecError as e:
            invalid += 1
            click.echo(e.format(), err=True)
            click.echo(f"{shown(name)}: not formatted: {e.message}", err=True)
            continue
        except OlivepipeError as e:
            invalid += 1
            click.echo(f"error: {e.format()}", err=True)
            continue
        if new == old:
            same += 1
            continue
        changed += 1
        if show_diff:
            click.echo(unified_diff(old, new, str(f)), nl=False)
        if dry:
            click.echo(f"would reformat {f}")
        else:
            write_atomic(f, new)
            click.echo(f"reformatted {f}")
    verb = "would be reformatted" if dry else "reformatted"
    summary = f"{changed} file{'s' if changed != 1 else ''} {verb}, {same} already formatted"
    click.echo(summary + (f", {invalid} invalid" if invalid else ""), err=True)
    if invalid:
        return 2
    return 1 if changed and dry else 0
