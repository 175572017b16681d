"""Dataset materialization: one dataset definition, rendered to a `text` column on disk.

Olive's AWQ pass hands autoawq only a dataset name, a split and a text column, so a
JSONL plus a template cannot reach it. olivepipe renders the rows through the
template into a folder holding one JSONL with a `text` field, named by the content
digest of what produced it (files, template, limit), and written atomically.
"""
from __future__ import annotations

import csv
import json
import os
import string
import uuid
from pathlib import Path

from .errors import OlivepipeError
from .hashing import digest_obj


def read_rows(path: Path, fmt: str | None):
    fmt = fmt or ("json" if path.suffix.lower() in (".json", ".jsonl") else path.suffix.lower().lstrip("."))
    if fmt == "json":
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            yield from json.loads(text)
            return
        for n, line in enumerate(text.splitlines(), 1):  # CRLF files split cleanly too
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise OlivepipeError(f"{path}:{n}: not valid JSON ({e.msg})", "one JSON object per line") from None
    elif fmt == "csv":
        with open(path, newline="", encoding="utf-8") as f:
            yield from csv.DictReader(f)
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
    else:
        raise OlivepipeError(f"{path}: unsupported format {fmt!r}", "use json, jsonl, csv or parquet")


def render(ds, rows):
    fields = {f for _, f, _, _ in string.Formatter().parse(ds.text_template or "") if f}
    for i, row in enumerate(rows):
        if ds.limit and i >= ds.limit:
            return
        if ds.text_template:
            missing = fields - set(row)
            if missing:
                raise OlivepipeError(f"dataset '{ds.name}' row {i + 1} has no column {sorted(missing)[0]!r}",
                                     f"columns are: {', '.join(sorted(row))}")
            yield ds.text_template.format(**row)
        else:
            yield str(row[ds.text_field or "text"])


def materialize_text_dataset(ws, name: str) -> Path:
    """Folder with data.jsonl ({"text": ...} rows) for dataset ``name``; reused when unchanged."""
    ds = ws.workflow.datasets[name]
    if not ds.files:
        raise OlivepipeError(f"dataset '{name}' comes from the hub; calibration sets must be local files here",
                             "use `files:` for calibration data")
    digest = digest_obj({"record": ws.dataset_record(name), "render": 1})
    root = ws.store.root / "datasets"
    final = root / digest
    if (final / "data.jsonl").exists():
        return final
    tmp = root / f".{digest}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    with open(tmp / "data.jsonl", "w", encoding="utf-8") as f:
        for path in ds.files:
            for text in render(ds, read_rows(path, ds.format)):
                f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.exists():
            raise
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)  # a concurrent apply made the same folder
    return final
