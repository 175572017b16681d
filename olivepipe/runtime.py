"""The node runtime a remote job runs: ``python -m olivepipe.runtime JOB.json --store URL --out RESULT.json``.

JOB.json is the plain job (``Workspace.job``) plus what the scheduler knows: ``key``,
``record``, ``replace`` (``--force``) and ``offline``. Every placeholder is resolved here,
from the store alone:

* ``{"entry": key}``: a stored result (an upstream node's output);
* ``{"entry": key, "input": "file", "path": name, "digest": d}``: a data file, uploaded by the
  submitter as a content-addressed input entry (:func:`input_key`); the file is re-hashed here,
  so the bytes the node reads are the bytes in its key;
* ``{"entry": key, "input": "tree", "digest": d[, "path": name]}``: a local model folder (or
  file), uploaded the same way; the entry's digest must be the one in the key;
* ``{"text_dataset": {...}, "files": [placeholders]}``: built here from the data inputs above
  (``olivepipe.datasets``), and itself cached in the store.

``{"file": ...}`` and ``{"tree": ...}`` refs name the submitting machine's files and are refused:
the submitter uploads them first and rewrites the refs (executors/azureml.py).

Then the kind's worker side runs in this process (``kinds.load_in_worker``), the result is
published under the job's key with the scheduler's metadata (model, kind, record, duration_s),
and RESULT.json says ``{"ok", "error", "model", "seconds", "key", "digest", "linked"}``. A job
whose key is already in the store publishes nothing and reports ok with ``linked: true``, so a
chain of jobs can short-circuit what is already computed. Exit status: 0 ok, 1 failed, 2 usage.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from .errors import InputChanged, OlivepipeError, StoreError
from .hashing import file_digest
from .keys import key_of
from .safefs import write_atomic

FORMAT = 1
INPUT_KIND = "olivepipe-input"  # the manifest kind of an uploaded data file or model folder


def input_key(what: str, digest: str, name: str = "") -> str:
    """The store key of an uploaded input: its content digest (and, for a data file, its file name:
    the extension tells readers the format), so identical inputs are uploaded once."""
    return key_of({"format": FORMAT, "kind": INPUT_KIND, "input": what, "digest": digest, "name": name})


def open_store_url(url: str):
    """A store from its URL: ``azblob://<account>/<container>[/prefix]`` (the shared cache,
    authenticated from this machine's environment) or a local folder (``file://`` or a path)."""
    url = str(url)
    if url.startswith("azblob://"):
        from .stores.config import ENV_ACCOUNT_URL, ENV_REMOTE, remote_config

        env = {ENV_REMOTE: url}
        if os.environ.get(ENV_ACCOUNT_URL):  # a non-default endpoint (e.g. Azurite) stays configurable
            env[ENV_ACCOUNT_URL] = os.environ[ENV_ACCOUNT_URL]
        try:
            from .stores.blob import BlobStore
        except ImportError as e:
            raise StoreError(f"this olivepipe cannot open {url}: {e}", "install olivepipe[azure]") from None
        return BlobStore.from_config(remote_config(None, env))
    if "://" in url and not url.startswith("file://"):
        raise StoreError(f"unknown store URL {url!r}", "use azblob://<account>/<container>[/prefix] or a folder")
    from .stores.local import LocalStore

    return LocalStore(url.removeprefix("file://"))


def run_job(job: dict, store, *, log: Path | None = None) -> dict:
    """Run one job against ``store``; returns the RESULT document (never raises for a node failure)."""
    t0 = time.perf_counter()
    key = job.get("key")
    try:
        _check_job(job)
        replace = bool(job.get("replace"))
        if not replace:
            entry = store.get(key)
            if entry is not None:  # computed before (by anyone sharing the store): link, publish nothing
                print(f"olivepipe.runtime: {job['step']}: result {key[:12]} is already in the store", flush=True)
                return _result(True, t0, key, model=entry.model, digest=entry.digest, linked=True)
        staging = Path(store.staging(job["step"]))
        try:
            out, scratch = staging / "out", staging / "scratch"
            scratch.mkdir()
            paths = {"$OUT": str(out), "$SCRATCH": str(scratch)}
            # text datasets last: they are built from the data inputs resolved before them
            for ph, ref in sorted(job["refs"].items(), key=lambda kv: "text_dataset" in kv[1]):
                paths[ph] = str(_resolve(ph, ref, store, paths, job["refs"]))
            from .kinds import JobIO, load_in_worker
            from .olive.runtime import substitute

            kind = load_in_worker(job["kind"], job["module"])
            io = JobIO(out=out, scratch=scratch, log=Path(log) if log else staging / "node.log")
            res = kind.run(substitute(job["spec"], paths), io) or {}
            out.mkdir(exist_ok=True)  # a kind with nothing to write still has a (empty) result
            seconds = time.perf_counter() - t0
            meta = {"model": res.get("model"), "kind": job["kind"], "record": job.get("record"),
                    "duration_s": round(seconds, 3)}
            entry = store.publish(key, out, meta, replace=replace)
            extra = {k: v for k, v in res.items() if k != "model"}
            return _result(True, t0, key, model=entry.model, digest=entry.digest, extra=extra)
        finally:
            discard = getattr(store, "discard", None)  # not in the protocol; both stores have it
            if discard:
                discard(staging)
            else:
                shutil.rmtree(staging, ignore_errors=True)
    except OlivepipeError as e:
        print(f"olivepipe.runtime: {e.format()}", file=sys.stderr, flush=True)
        return _result(False, t0, key, error=e.message)
    except BaseException as e:  # noqa: BLE001 - like a worker: any failure is the node's, reported
        traceback.print_exc()
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        if isinstance(e, KeyboardInterrupt):
            raise
        return _result(False, t0, key, error=f"{type(e).__name__}: {msg}"[:500])


def _check_job(job: dict) -> None:
    if job.get("format") != FORMAT:
        raise OlivepipeError(f"job format {job.get('format')!r} is not {FORMAT}",
                             "the job was written by another olivepipe version than the one running it")
    key = job.get("key")
    if not (isinstance(key, str) and len(key) == 64 and all(c in "0123456789abcdef" for c in key)):
        raise OlivepipeError(f"job has no valid key ({key!r})", "jobs for this runtime carry their step's key")
    for f in ("step", "kind", "module", "spec", "refs"):
        if f not in job:
            raise OlivepipeError(f"job has no `{f}`", "write it with Workspace.job plus key and record")


def _resolve(ph: str, ref: dict, store, paths: dict, refs: dict) -> Path:
    if "entry" in ref:
        entry = store.get(ref["entry"])
        label = ref.get("from") or f"result {ref['entry'][:12]}"
        if entry is None:
            raise OlivepipeError(f"input {label} ({ph}) is not in the store",
                                 "the submitter uploads inputs before the job starts; run apply again")
        rel = ref.get("path") or ""
        if rel and (rel.startswith("/") or ".." in rel.split("/")):
            raise OlivepipeError(f"{ph}: path {rel!r} leaves its input entry",
                                 "this job file was not written by olivepipe")
        if ref.get("input") == "tree" and entry.digest != ref.get("digest"):
            raise InputChanged(f"model folder {label} in the store is not the one in the key", "run apply again")
        tree = Path(store.fetch(entry))
        path = tree / rel if rel else tree
        if ref.get("input") == "file" and file_digest(path) != ref.get("digest"):
            raise InputChanged(f"data file {label} in the store is not the one in the key", "run apply again")
        return path
    if "text_dataset" in ref:
        from .datasets import materialize_text_dataset
        from .spec import DatasetSpec

        fields = dict(ref["text_dataset"])
        files = tuple(Path(paths[f]) for f in ref["files"])
        record = {"fields": fields, "files": [refs[f]["digest"] for f in ref["files"]]}
        return materialize_text_dataset(store, DatasetSpec(**fields, files=files), record)
    if "file" in ref or "tree" in ref:
        raise OlivepipeError(f"{ph} names {ref.get('file') or ref.get('tree')} on the submitting machine; "
                             "a job reads its inputs from the store", "submit it through an executor that uploads them")
    raise OlivepipeError(f"unknown reference {ref!r} for {ph}", "this job file was not written by olivepipe")


def _result(ok: bool, t0: float, key, *, error: str = "", model=None, digest=None, linked=False, extra=None) -> dict:
    return {"ok": ok, "error": error, "model": model, "seconds": round(time.perf_counter() - t0, 3), "key": key,
            "digest": digest, "linked": linked, **({"extra": extra} if extra else {})}


@contextlib.contextmanager
def _tee(log: Path):
    """fd 1 and 2 (this process and anything it starts) to both the original stdout (the job's
    log, streamed by Azure ML) and ``log`` (what a kind reads back, e.g. Olive's last error)."""
    sys.stdout.flush(), sys.stderr.flush()
    r, w = os.pipe()
    saved_out, saved_err = os.dup(1), os.dup(2)
    sink = open(log, "ab")

    def pump():
        while True:
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            os.write(saved_out, chunk)
            sink.write(chunk)
            sink.flush()

    t = threading.Thread(target=pump, name="olivepipe-runtime-tee", daemon=True)
    t.start()
    os.dup2(w, 1)
    os.dup2(w, 2)
    os.close(w)
    try:
        yield
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(saved_out, 1)  # the pipe's last write ends close here: the pump sees EOF
        os.dup2(saved_err, 2)
        t.join(timeout=10)  # a child that outlived the node may hold the pipe: do not wait for it
        os.close(saved_out), os.close(saved_err)
        sink.close()


def main(argv=None, *, open_store: Callable[[str], object] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m olivepipe.runtime",
                                 description="Run one olivepipe job against a store.")
    ap.add_argument("job", help="the job JSON (a plain job plus key and record)")
    ap.add_argument("--store", required=True, help="the store URL: azblob://<account>/<container>[/prefix] or a folder")
    ap.add_argument("--out", required=True, help="where to write the RESULT JSON")
    args = ap.parse_args(argv)
    from .azure.redact import redact
    from .olive.runtime import worker_env

    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="olivepipe-runtime-"))
    try:
        try:
            job = json.loads(Path(args.job).read_text(encoding="utf-8"))
            if not isinstance(job, dict):
                raise OlivepipeError(f"{args.job} is not a job (a JSON object)")
            # what local workers get too: no telemetry, no heartbeat stall, no hub unless the workflow needs it
            os.environ.update(worker_env({}, offline=bool(job.get("offline", True))))
            store = (open_store or open_store_url)(args.store)
        except (OSError, ValueError, OlivepipeError) as e:
            msg = e.message if isinstance(e, OlivepipeError) else f"{type(e).__name__}: {e}"
            res = _result(False, t0, None, error=redact(msg))
        else:
            with _tee(work / "node.log"):
                print(f"olivepipe.runtime: {job.get('step')} (key {str(job.get('key'))[:12]}) on store "
                      f"{redact(args.store)}", flush=True)
                res = run_job(job, store, log=work / "node.log")
                print(f"olivepipe.runtime: {job.get('step')}: {'ok' if res['ok'] else 'failed: ' + res['error']} "
                      f"in {res['seconds']:g} s", flush=True)
        res["error"] = redact(res["error"])
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, json.dumps(res, indent=1, sort_keys=True) + "\n")  # a reader never sees half a result
        return 0 if res["ok"] else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
