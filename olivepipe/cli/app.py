"""The click group and the one error wrapper every command runs under.

Exit codes: 0 ok, 1 failure, 2 invalid input (or, with plan --detailed-exitcode, changes
pending), 3 internal error, 130 interrupted. Command modules import this module; it
imports none of them (olivepipe/cli/__init__.py registers them).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import click

from ..core.errors import OlivepipeError, SpecError


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def guard(fn, state_dir: Path | None = None) -> tuple[int, bool]:
    """Run ``fn`` and map what it raises to (exit code, failed).

    SpecError: its located problems, 2. OlivepipeError: `error: message` + hint, its own
    code. KeyboardInterrupt: 130. click's own exceptions pass through (usage errors are
    click's to report). Anything else is a bug: a crash log with versions and traceback,
    and 3. ``fn`` returns the exit code of a command that did not fail (None is 0).
    """
    try:
        return fn() or 0, False
    except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise
    except SpecError as e:
        click.echo(e.format(), err=True)
        click.echo(f"{e.message}.", err=True)
        return e.exit_code, True
    except OlivepipeError as e:
        click.echo(f"error: {e.format()}", err=True)
        return e.exit_code, True
    except KeyboardInterrupt:
        click.echo("interrupted: finished steps are cached; run again to resume", err=True)
        return 130, True
    except BrokenPipeError:
        # the reader went away (`olivepipe diff ... | head`): not a bug; keep Python from
        # failing again on flushing the closed stdout at exit
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout without a file descriptor (in-process runners)
            pass
        return 1, True
    except Exception as e:  # a bug: keep the evidence, spare the user the stack
        where = write_crash_log(traceback.format_exc(), state_dir)
        click.echo(f"internal error (a bug in olivepipe): {e!r}\n    details: {where}", err=True)
        return 3, True


def _versions() -> str:
    from importlib import metadata

    from .. import __version__

    try:
        olive = metadata.version("olive-ai")
    except metadata.PackageNotFoundError:
        olive = "not installed"
    return f"olivepipe {__version__}, olive-ai {olive}, python {sys.version.split()[0]} ({sys.executable})"


def write_crash_log(trace: str, state_dir: Path | None = None) -> str:
    """Write a crash report and return where it went.

    Under the workspace's state folder when it exists (``.olivepipe/logs/crash-<time>-<pid>.log``,
    created with confined_dir and opened without following links), else a fresh private
    file from mkstemp: never a fixed name in a shared temp folder, where a planted link
    would redirect the write.
    """
    try:
        head = _versions()
    except Exception as e:  # the report must not fail on its own header
        head = f"versions unknown ({e!r})"
    text = f"{head}\nargv: {sys.argv!r}\ncwd: {os.getcwd()}\n\n{trace}"
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    if state_dir is not None:
        from ..core.safefs import confined_dir, open_nofollow

        try:
            logs = confined_dir(state_dir.parent, state_dir.name, "logs")
            path = logs / name
            fd = open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            return str(path)
        except (OSError, OlivepipeError):  # a symlinked or unwritable state folder: the temp file below
            pass
    try:
        fd, tmp = tempfile.mkstemp(prefix="olivepipe-crash-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return tmp
    except OSError as e:  # nowhere to write: say so, and put the evidence on stderr
        click.echo(text, err=True)
        return f"(not written: {e.strerror}; shown above)"


def state_dir_of(params: dict) -> Path | None:
    """The workspace state folder of a command's workflow, when it already exists.

    Crash logs go there only if olivepipe keeps state for that workflow already: a
    read-only command on a fresh checkout (CI validating a pull request) creates nothing.
    """
    wf = params.get("workflow")
    if not wf:
        return None
    d = Path(wf).parent / ".olivepipe"
    return d if os.path.lexists(d) else None


class Command(click.Command):
    """A command whose callback runs under ``guard``; its return value is the exit code.

    ``exit_map(params, code, failed) -> code`` lets a command translate codes (plan
    --detailed-exitcode follows terraform: 0 nothing to do, 1 error, 2 changes).
    """

    def __init__(self, *args, exit_map=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.exit_map = exit_map

    def invoke(self, ctx: click.Context):
        code, failed = guard(lambda: super(Command, self).invoke(ctx), state_dir_of(ctx.params))
        if self.exit_map is not None:
            code = self.exit_map(ctx.params, code, failed)
        ctx.exit(code)


class Group(click.Group):
    """Every command (and subgroup) made through this group runs under the one wrapper."""

    command_class = Command
    group_class = type  # subgroups are Groups too

    def format_commands(self, ctx, formatter):
        """Each command's whole first sentence, wrapped: click cuts it to fit one line (`...`)."""
        rows = [(name, cmd.get_short_help_str(limit=1000)) for name in self.list_commands(ctx)
                if (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _print_version(ctx, _param, value):
    if not value or ctx.resilient_parsing:
        return
    from .. import __version__
    from ..core.versions import version

    stack = ("olive-ai", "onnxruntime-genai", "onnxruntime", "transformers", "peft", "torch", "azure-ai-ml")
    click.echo(f"olivepipe {__version__} (" + ", ".join(f"{p} {version(p) or 'not installed'}" for p in stack) + ")")
    ctx.exit()


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show olivepipe's version and the Olive stack it runs.")
def main():
    """Declarative, cached Microsoft Olive workflows: validate, plan, apply."""


def shown(name: str) -> str:
    """A file name as messages show it: a NUL byte (possible only in-process) spelled out."""
    return name.replace("\0", "\\0")


class WorkflowPath(click.Path):
    """A workflow file's path; one with a NUL byte (possible only in-process: argv cannot carry
    one) is a usage error, not an exception from the first call that opens it."""

    def convert(self, value, param, ctx):
        if "\0" in os.fsdecode(os.fspath(value)):
            self.fail(f"{shown(os.fsdecode(os.fspath(value)))}: the file name contains a NUL byte", param, ctx)
        return super().convert(value, param, ctx)


# options shared by several command modules
workflow_arg = click.argument("workflow", type=WorkflowPath(dir_okay=False, path_type=Path))
cache_opt = click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
                         help="Store for results (default: .olivepipe/cache next to the workflow, or $OLIVEPIPE_CACHE_DIR).")
rehearse_opt = click.option("--rehearse", is_flag=True,
                            help="Replace hub models with tiny ones of the same architecture and CPU-incapable passes with documented stand-ins.")
