"""Review commands (diff, fmt) register here on the main CLI group."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .cli import _console, _exit, _run, main
from .errors import OlivepipeError, SpecError


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

    def go():
        from . import review

        if textconv:
            if not a or b:
                raise review.ReviewError("--textconv takes exactly one file", "git passes it: see docs/review.md")
            try:
                click.echo(review.textconv(Path(a)), nl=False)
            except OSError as e:
                raise review.ReviewError(f"{a}: cannot read: {e.strerror}", "") from None
            return 0
        if not a or not b:
            raise review.ReviewError("give two workflow files, two lock files, or REV:PATH revisions",
                                     "e.g. olivepipe diff HEAD~1:workflow.yaml workflow.yaml")
        try:
            result = review.diff(a, b)
        except (SpecError, review.ReviewError):
            raise
        except OlivepipeError as e:  # anything else a user caused is "could not compare": 2, not 1
            raise review.ReviewError(e.message, e.hint) from None
        if as_json:
            click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        else:
            from rich.text import Text

            console = _console()
            for line, style in review.render_text(result):
                console.print(Text(line, style=style))
        return 0 if result["same"] else 1

    _exit(_run(go))


@main.command("fmt")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--check", is_flag=True, help="Write nothing; list files that would change (exit 1 if any).")
@click.option("--diff", "show_diff", is_flag=True, help="Write nothing; print what would change as a unified diff.")
def fmt_cmd(files, check, show_diff):
    """Rewrite workflow files in one canonical layout, keeping comments.

    \b
    Top-level keys: olivepipe, name, description, defaults, models, datasets, nodes.
    Node keys: pass/kind, input, data, device, provider, matrix, params, then the rest.
    2-space indentation. Invalid files are refused (exit 2) and left untouched.
    """

    def go():
        import difflib

        from .fmt import format_file, write_atomic

        changed, invalid, same = [], 0, 0
        for f in files:
            try:
                old, new = format_file(f)
            except SpecError as e:
                invalid += 1
                click.echo(e.format(), err=True)
                click.echo(f"{f}: not formatted: {e.message}", err=True)
                continue
            except OlivepipeError as e:
                invalid += 1
                click.echo(f"error: {e.format()}", err=True)
                continue
            if new == old:
                same += 1
                continue
            changed.append(f)
            if show_diff:
                click.echo("".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                        f"{f} (current)", f"{f} (formatted)")), nl=False)
            if check or show_diff:
                click.echo(f"would reformat {f}")
            else:
                write_atomic(f, new)
                click.echo(f"reformatted {f}")
        verb = "would be reformatted" if check or show_diff else "reformatted"
        summary = f"{len(changed)} file{'s' if len(changed) != 1 else ''} {verb}, {same} already formatted"
        click.echo(summary + (f", {invalid} invalid" if invalid else ""), err=True)
        if invalid:
            return 2
        return 1 if changed and (check or show_diff) else 0

    _exit(_run(go))
