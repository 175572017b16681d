"""`olivepipe import`: an Olive workflow config (JSON) -> an olivepipe workflow file.

The translation is olivepipe/olive/importer.py; this module decides what is written where.
Exit codes: 0 written and valid; 2 the output does not validate (written only with
--force) or the config cannot be imported; 1 the output exists (no --force).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import click

from ..core.errors import OlivepipeError, SpecError
from .app import main


@main.command("import")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", help="Workflow file to write (default: CONFIG's name with .yaml, next to it; "
                                     "`-` prints that file instead).")
@click.option("--name", help="Workflow name (default: the config's workflow_id, else its file name).")
@click.option("--force", is_flag=True, help="Overwrite an existing output; write it even if it does not validate.")
def import_cmd(config, output, name, force):
    """Turn an Olive workflow config into an olivepipe workflow: one node per pass, in order.

    \b
    What olivepipe cannot express (search, evaluators, engine options, extra data
    configs, ...) is listed on stderr and as comments at the top of the file.
    The result is validated where it is written, and laid out as `olivepipe fmt` would.
    Paths in the config are read relative to its folder.
    """
    from ..spec.importing import import_config

    if config.suffix.lower() in (".yaml", ".yml") and not output:
        raise OlivepipeError(f"{config} is YAML: the default output would be the config itself", "pass -o FILE")

    to_stdout = output == "-"
    # printed, it is laid out (and its paths written) as if it were the default file next to CONFIG
    out = Path(output) if output and not to_stdout else config.with_suffix(".yaml")
    if not to_stdout:
        if out.resolve() == config.resolve():  # -o naming the config itself
            raise OlivepipeError(f"{out} is the config being imported", "pass -o with another file")
        if not out.parent.is_dir():
            raise OlivepipeError(f"{out}: no such folder {out.parent}", "create it first, or pass another -o")
        if os.path.lexists(out) and not force:
            raise OlivepipeError(f"{out} exists; not overwritten", "pass --force to replace it, or -o another file")
    result = import_config(config, out, name=name)
    if result.report:
        click.echo(f"not translated ({len(result.report)}):", err=True)
        for u in result.report:
            click.echo(f"  - {u.format()}", err=True)
    else:
        click.echo("everything in the Olive config is translated", err=True)
    if not result.valid:
        click.echo(SpecError(result.problems).format(), err=True)
        if not force:
            click.echo(f"{out}: not written: the imported workflow does not validate "
                       f"({len(result.problems)} problem{'s' if len(result.problems) != 1 else ''}); "
                       "--force writes it anyway", err=True)
            return 2
    n = len(result.translation.doc["nodes"])
    if to_stdout:
        click.echo(result.text, nl=False)
    else:
        _write(out, result.text, replace=force)
        click.echo(f"wrote {out} ({n} node{'s' if n != 1 else ''})" + ("" if result.valid else ", which does not validate"))
    return 0 if result.valid else 2


def _write(path: Path, text: str, *, replace: bool) -> None:
    """Temp file + rename (--force) or + link, which refuses a file that appeared meanwhile."""
    from ..core.safefs import write_atomic

    if replace:
        write_atomic(path, text)
        return
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise OlivepipeError(f"{path} exists; not overwritten", "pass --force to replace it") from None
    finally:
        os.unlink(tmp)
