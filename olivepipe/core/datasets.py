"""Dataset materialization: one dataset definition, rendered to a `text` column on disk.

Olive's AWQ pass hands autoawq only a dataset name, a split and a text column, so a
JSONL plus a template cannot reach it. olivepipe renders the rows through the
template into a folder holding one JSONL with a `text` field. That folder is a store
entry like any node result: keyed by what produced it (the dataset's record: files'
digests, template, limit), built in a staging folder, published atomically, read-only.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
import string
from pathlib import Path

from .errors import OlivepipeError
from .hashing import digest_many, digest_obj
from .safefs import confined_dir, open_text

RENDER = 1  # bump when render() changes what it writes


def dataset_record(ds, rel, digest) -> dict:
    """A dataset's part of a key record: its definition and its files by ``rel(path)`` and ``digest(path)``."""
    rec = {k: v for k, v in ds.__dict__.items() if k not in ("name", "files") and v is not None}
    if ds.files:
        rec["files"] = dict(zip(map(rel, ds.files), digest_many(digest, list(ds.files))))  # several at once
    return rec


def dataset_fields(ds) -> dict:
    """A dataset's definition as plain data (for jobs: no paths)."""
    return {k: v for k, v in ds.__dict__.items() if k != "files"}


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


HEAD_ROWS = 20  # rows validation reads from each data file: enough to catch a wrong column name
HEAD_JSON_BYTES = 64 << 20  # a JSON array must be parsed whole: larger ones are left to the run


def head_rows(path: Path, fmt: str | None, n: int = HEAD_ROWS) -> list | None:
    """The first ``n`` rows of a data file, reading no more than it takes (a JSON array file is
    parsed whole, up to HEAD_JSON_BYTES; None beyond that). Raises OlivepipeError when the file
    is not what its format says."""
    fmt = fmt or ("json" if path.suffix.lower() in (".json", ".jsonl") else path.suffix.lower().lstrip("."))
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            batch = next(pq.ParquetFile(path).iter_batches(batch_size=n), None)
        except Exception as e:  # pyarrow raises its own types for a file that is not parquet
            raise OlivepipeError(f"{path}: not a readable parquet file ({e})", "check the file") from None
        return batch.to_pylist() if batch is not None else []
    if fmt == "json":
        with open(path, "rb") as f:
            start = f.read(4096).lstrip()
        if start.startswith(b"["):
            if path.stat().st_size > HEAD_JSON_BYTES:
                return None
            try:
                return list(json.loads(path.read_text(encoding="utf-8"))[:n])
            except ValueError as e:
                raise OlivepipeError(f"{path}: not valid JSON ({e})", "a JSON array of objects, or JSONL") from None
        rows = []
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            for lineno, line in enumerate(f, 1):
                if len(rows) >= n:
                    break
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise OlivepipeError(f"{path}:{lineno}: not valid JSON ({e.msg})",
                                             "one JSON object per line") from None
        return rows
    if fmt == "csv":
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            return [row for _, row in zip(range(n), csv.DictReader(f))]
    return None


def template_columns(template: str) -> list[str]:
    """The columns a text_template reads, in order of first use ({a.b} and {a[0]} read column a)."""
    out = []
    try:
        for _, field, _, _ in string.Formatter().parse(template):
            col = re.split(r"[.\[]", field, maxsplit=1)[0] if field else ""
            if col and not col.isdigit() and col not in out:
                out.append(col)
    except ValueError:  # not a format string: validation reports that on its own
        return []
    return out


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


def text_dataset_key(dataset_record: dict) -> str:
    return digest_obj({"kind": "dataset-text", "record": dataset_record, "render": RENDER})


def materialize_text_dataset(store, dataset_spec, dataset_record: dict) -> Path:
    """A read-only folder with data.jsonl ({"text": ...} rows) for ``dataset_spec``, published in
    ``store`` under a key of ``dataset_record``; reused while the record is unchanged."""
    ds = dataset_spec
    if not ds.files:
        raise OlivepipeError(f"dataset '{ds.name}' comes from the hub; calibration sets must be local files here",
                             "use `files:` for calibration data")
    key = text_dataset_key(dataset_record)
    entry = store.get(key)
    if entry is None:
        staging = store.staging(f"dataset-{ds.name}")
        try:
            out = confined_dir(staging, "out")
            with open_text(out / "data.jsonl") as f:
                for path in ds.files:
                    for text in render(ds, read_rows(Path(path), ds.format)):
                        f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
            # a concurrent apply publishing the same key first is fine: theirs is returned
            entry = store.publish(key, out, {"kind": "dataset-text", "record": dataset_record})
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return store.fetch(entry)
