"""An Olive workflow config -> an olivepipe workflow file, validated where it will be written and
laid out as `olivepipe fmt` would. The translation itself (Olive knowledge) is olive/importer.py."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import Problem, SpecError
from ..olive.catalog import Catalog
from ..olive.importer import Translation, Untranslated, header, read_config, render, translate


@dataclass
class ImportResult:
    text: str  # the workflow file: header comments + YAML (canonical layout when it validates)
    translation: Translation
    problems: list[Problem]  # validation problems of the written file; [] when it validates

    @property
    def report(self) -> list[Untranslated]:
        return self.translation.report

    @property
    def valid(self) -> bool:
        return not self.problems


def import_config(config_path: Path, out_path: Path, *, name: str | None = None,
                  catalog: Catalog | None = None) -> ImportResult:
    """Translate ``config_path`` for a workflow at ``out_path``, validate it there, and lay it
    out canonically (olivepipe.spec.fmt). Writes nothing: the caller decides (see olivepipe.cli.importer)."""
    from .fmt import format_text
    from .workflow import parse_workflow

    config_path, out_path = Path(config_path), Path(os.path.abspath(out_path))
    cfg = read_config(config_path)
    stem = config_path.stem
    t = translate(cfg, source_dir=config_path.resolve().parent, out_dir=out_path.parent, name=name,
                  default_name=stem, catalog=catalog)
    body = render(t.doc)
    shown = str(out_path)
    text = header(str(config_path), t.report) + body
    try:
        parse_workflow(text, shown, base=out_path.parent, catalog=catalog, file=out_path)
    except SpecError as e:
        text = header(str(config_path), t.report, e.problems) + body
        try:  # again on the file as written: the listed problems move its lines down
            parse_workflow(text, shown, base=out_path.parent, catalog=catalog, file=out_path)
        except SpecError as located:
            e = located
        return ImportResult(text, t, e.problems)
    return ImportResult(format_text(text, shown, out_path.parent), t, [])
