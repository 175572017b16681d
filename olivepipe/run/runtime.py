"""The node runtime: one job resolved, run, checked and published, wherever it runs.

``run_node(job, store, ...)`` is the one function every executor runs a node through: the local
executor (its threads hand the kind's work to a worker process, worker.py), Azure ML command jobs
(``python -m olivepipe.run.runtime JOB.json --store URL --out RESULT.json``, below) and Ray tasks.
Its job is a typed ``job.Job``; every placeholder is resolved here:

* ``StoredResult`` ($IN<i>): an upstream result, fetched from the store;
* ``DataFile`` ($DATA<i>): a workspace data file, snapshotted into staging and re-hashed, so the
  bytes the node reads are the bytes in its key (only where the workspace is: ``root``);
* ``ModelFolder`` ($SRC<i>, $ADP<i>): a local model folder, checked against its digest before
  and watched during the run (a change fails the node; only where the workspace is);
* ``UploadedInput``: a data file or model folder a submitter uploaded as a content-addressed
  entry (:func:`input_key`), re-checked against its digest;
* ``TextDataset`` ($CALIB): built here from the data inputs above (``olivepipe.core.datasets``), and
  itself cached in the store.

Then the kind's worker side runs, the result is published under the job's key with the
scheduler's metadata (model, kind, record, duration_s), and a ``NodeResult`` comes back (a remote
job writes it as RESULT.json: ``{"ok", "error", "model", "seconds", "key", "digest", "linked"}``).
A job whose key is already in the store publishes nothing and reports ok with ``linked: true``,
so a chain of jobs can short-circuit what is already computed. Exit status of the command:
0 ok, 1 failed, 2 usage.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
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

from ..core.errors import InputChanged, OlivepipeError, StoreError
from ..core.hashing import file_digest, tree_digest
from ..core.job import FORMAT, DataFile, Job, ModelFolder, NodeResult, StoredResult, TextDataset, UploadedInput
from ..core.keys import key_of
from ..kinds.base import JobIO
from ..core.job import substitute
from ..core.safefs import write_atomic

#: execute(job, resolved spec, io) -> the kind's result ({"model", ...}; {"ok": False, "error"} on failure)
Execute = Callable[[Job, dict, JobIO], dict]
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
        from ..stores.config import ENV_ACCOUNT_URL, ENV_REMOTE, remote_config

        env = {ENV_REMOTE: url}
        if os.environ.get(ENV_ACCOUNT_URL):  # a non-default endpoint (e.g. Azurite) stays configurable
            env[ENV_ACCOUNT_URL] = os.environ[ENV_ACCOUNT_URL]
        try:
            from ..stores.blob import BlobStore
        except ImportError as e:
            raise StoreError(f"this olivepipe cannot open {url}: {e}", "install olivepipe[azure]") from None
        return BlobStore.from_config(remote_config(None, env))
    if not is_folder_url(url):
        raise StoreError(f"unknown store URL {url!r}", "use azblob://<account>/<container>[/prefix] or a folder")
    from ..stores.local import LocalStore

    return LocalStore(url.removeprefix("file://"))


def is_folder_url(url: str) -> bool:
    """Whether a store URL names a folder on this machine (a path, or file://...)."""
    return url.startswith("file://") or "://" not in url


def own_seconds(seconds: float, res: dict | None) -> float:
    """A node's own time, the duration plan estimates from: a worker's first import of Olive, which
    the job reports as ``import_s``, is the worker's cost, not the node's."""
    return max(0.0, seconds - float((res or {}).get("import_s") or 0))


def _open_datastore_view(url: str, *, publish_to: str):
    """The shared cache as an Azure ML job sees it through a datastore: mounted at ``url``
    (read-only), written into ``publish_to`` (uploaded by Azure ML after the command)."""
    from ..stores.blob import BlobStore
    from ..stores.folders import FolderContainer

    read = Path(url.removeprefix("file://"))
    if not read.is_dir():
        raise StoreError(f"the datastore mount {read} is not a folder", "the job's inputs.cache binding is wrong")
    return BlobStore(FolderContainer(read, Path(publish_to)), label=f"datastore mount {read}")


def run_node(job: Job, store, *, log: Path | None = None, root: Path | None = None, stats=None,
             execute: Execute | None = None) -> NodeResult:
    """Run one job against ``store`` and publish its result under ``job.key``: the one node runtime
    of every executor (the local worker pool, Azure ML jobs, Ray tasks). Never raises for a node
    failure: the result says it.

    ``root`` (and ``stats``, a hashing.StatCache): the workspace the job was planned in, when it
    runs on that machine; then data files and local model folders are read from it (data files
    snapshotted first). Without it, a job reads only the store (inputs uploaded as entries).
    ``execute(job, spec, io) -> dict``: runs the kind on the resolved spec (the local executor hands
    it to a worker process); default: in this process."""
    t0 = time.perf_counter()
    key = job.key
    try:
        _check_key(key)
        if not job.replace:
            entry = store.get(key)
            if entry is not None:  # computed before (by anyone sharing the store): link, publish nothing
                print(f"olivepipe.runtime: {job.step}: result {key[:12]} is already in the store", flush=True)
                return NodeResult(True, key, model=entry.model, digest=entry.digest, linked=True,
                                  seconds=time.perf_counter() - t0)
        staging = Path(store.staging(job.step))
        try:
            out, scratch = staging / "out", staging / "scratch"
            scratch.mkdir()
            io = JobIO(out=out, scratch=scratch, log=Path(log) if log else staging / "node.log")
            inputs = _Inputs(job, store, staging, root, stats)
            spec = inputs.resolve()
            res = (execute or _in_process)(job, spec, io) or {}
            inputs.check_unchanged()
            if not res.get("ok", True):
                return NodeResult(False, key, error=res.get("error") or "failed", seconds=time.perf_counter() - t0)
            out.mkdir(exist_ok=True)  # a kind with nothing to write still has a (empty) result
            meta = {"model": res.get("model"), "kind": job.kind, "record": job.record,
                    "duration_s": round(own_seconds(time.perf_counter() - t0, res), 3)}
            if res.get("result"):  # what a kind reports about its result (a select's winner): the lock shows it
                meta["result"] = res["result"]
            entry = store.publish(key, out, meta, replace=job.replace)
            extra = {k: v for k, v in res.items() if k not in ("ok", "model", "error", "seconds")}
            return NodeResult(True, key, model=entry.model, digest=entry.digest, extra=extra,
                              seconds=time.perf_counter() - t0)
        finally:
            store.discard(staging)
    except OlivepipeError as e:
        print(f"olivepipe.runtime: {e.format()}", file=sys.stderr, flush=True)
        return NodeResult(False, key, error=e.message, seconds=time.perf_counter() - t0)
    except BaseException as e:  # noqa: BLE001 - like a worker: any failure is the node's, reported
        if isinstance(e, KeyboardInterrupt):
            raise
        traceback.print_exc()
        return NodeResult(False, key, error=failure_text(e), seconds=time.perf_counter() - t0)


def run_kind(kind: str, module: str, spec: dict, io: JobIO) -> dict:
    """A kind's worker side, in this process (``spec`` resolved: local paths only); a worker
    process (worker.py) calls this too."""
    from ..kinds import load_in_worker

    return load_in_worker(kind, module).run(spec, io)


def _in_process(job: Job, spec: dict, io: JobIO) -> dict:
    return run_kind(job.kind, job.module, spec, io)


def failure_text(e: BaseException) -> str:
    """One line for a node's failure: the exception's type and first line."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}"[:500]


def _check_key(key) -> None:
    if not (isinstance(key, str) and len(key) == 64 and all(c in "0123456789abcdef" for c in key)):
        raise OlivepipeError(f"job has no valid key ({key!r})", "jobs for this runtime carry their step's key")


class _Inputs:
    """Every placeholder of a job resolved to a path here, and what must not change under the run."""

    def __init__(self, job: Job, store, staging: Path, root: Path | None, stats):
        self.job, self.store, self.staging, self.root, self.stats = job, store, staging, root, stats
        self.watched: dict[str, tuple[Path, dict]] = {}  # local model folders: stats before the run

    def resolve(self) -> dict:
        paths = {"$OUT": str(self.staging / "out"), "$SCRATCH": str(self.staging / "scratch")}
        # text datasets last: they are built from the data inputs resolved before them
        for ph, ref in sorted(self.job.refs.items(), key=lambda kv: isinstance(kv[1], TextDataset)):
            paths[ph] = str(self._resolve(ph, ref, paths))
        return substitute(self.job.spec, paths)

    def check_unchanged(self) -> None:
        for ph, (path, before) in self.watched.items():  # a local model folder must not change under a run
            if _stats(path) != before:
                raise InputChanged(f"model folder {self.job.refs[ph].tree} changed while the node ran; "
                                   "nothing was published", "run apply again once it is stable")

    def _resolve(self, ph: str, ref, paths: dict) -> Path:
        store = self.store
        if isinstance(ref, StoredResult):
            entry = store.get(ref.key)
            if entry is None:
                raise OlivepipeError(f"input result {ref.key[:12]} ({ph}) is no longer in the store",
                                     "run apply again: the missing input is rebuilt first")
            return Path(store.fetch(entry))
        if isinstance(ref, UploadedInput):
            entry = store.get(ref.key)
            label = ref.source or f"result {ref.key[:12]}"
            if entry is None:
                raise OlivepipeError(f"input {label} ({ph}) is not in the store",
                                     "the submitter uploads inputs before the job starts; run apply again")
            rel = ref.path
            if rel and (rel.startswith("/") or ".." in rel.split("/")):
                raise OlivepipeError(f"{ph}: path {rel!r} leaves its input entry",
                                     "this job file was not written by olivepipe")
            if ref.input == "tree" and entry.digest != ref.digest:
                raise InputChanged(f"model folder {label} in the store is not the one in the key", "run apply again")
            tree = Path(store.fetch(entry))
            path = tree / rel if rel else tree
            if ref.input == "file" and file_digest(path) != ref.digest:
                raise InputChanged(f"data file {label} in the store is not the one in the key", "run apply again")
            return path
        if isinstance(ref, TextDataset):
            from ..core.datasets import materialize_text_dataset
            from ..spec.workflow import DatasetSpec

            files = tuple(Path(paths[f]) for f in ref.files)
            record = {"fields": dict(ref.fields), "files": [self.job.refs[f].digest for f in ref.files]}
            return materialize_text_dataset(store, DatasetSpec(**ref.fields, files=files), record)
        if isinstance(ref, (DataFile, ModelFolder)) and self.root is None:
            raise OlivepipeError(f"{ph} names {ref.file if isinstance(ref, DataFile) else ref.tree} on the "
                                 "submitting machine; a job reads its inputs from the store",
                                 "submit it through an executor that uploads them")
        if isinstance(ref, DataFile):  # snapshot: Olive reads this copy, whose digest is the one in the key
            snap = self.staging / "inputs" / ph.lstrip("$") / Path(ref.file).name
            snap.parent.mkdir(parents=True)
            shutil.copyfile(Path(self.root) / ref.file, snap, follow_symlinks=False)
            if file_digest(snap) != ref.digest:
                raise InputChanged(f"data file {ref.file} changed after it was hashed; nothing was run or published",
                                   "run apply again: the plan hashes the file anew")
            return snap
        if isinstance(ref, ModelFolder):
            src = Path(self.root) / ref.tree
            no_links_out(src, Path(self.root))
            before = _stats(src)
            # the stat cache re-reads only files whose stat changed since they were hashed
            files = self.stats.tree(src) if self.stats is not None else _hash_tree(src)
            if tree_digest(files) != ref.digest:
                raise InputChanged(f"model folder {ref.tree} changed after it was hashed; nothing was run",
                                   "run apply again")
            self.watched[ph] = (src, before)
            return src
        raise OlivepipeError(f"unknown reference {ref!r} for {ph}", "this job file was not written by olivepipe")


def _hash_tree(src: Path) -> dict:
    from ..core.hashing import StatCache

    return StatCache(None).tree(src)


def no_links_out(root: Path, workspace: Path) -> None:
    """A model folder may hold links, but none that lead outside the workspace: Olive
    would read (and the key would hash) a file olivepipe promised never to touch."""
    top = workspace.resolve()
    paths = [root] if not root.is_dir() else [Path(d) / n for d, ds, fs in os.walk(root) for n in ds + fs]
    for p in paths:
        if p.is_symlink():
            try:
                p.resolve(strict=True).relative_to(top)
            except (ValueError, OSError):
                raise OlivepipeError(f"{p.relative_to(workspace) if p.is_relative_to(workspace) else p} links to "
                                     f"{os.readlink(p)}, outside the workspace; nothing was run",
                                     "copy the file into the model folder instead of linking it") from None


def _stats(root: Path) -> dict:
    """{relative path: (inode, size, mtime_ns, ctime_ns)} of every file under root."""
    root = Path(root)
    if root.is_file():
        st = root.stat()
        return {root.name: (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)}
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for fn in filenames:
            p = Path(dirpath) / fn
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return out


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
    ap = argparse.ArgumentParser(prog="python -m olivepipe.run.runtime",
                                 description="Run one olivepipe job against a store.")
    ap.add_argument("job", help="the job JSON (job.Job.to_json: the job plus its key and record)")
    ap.add_argument("--store", required=True, help="the store URL: azblob://<account>/<container>[/prefix] or a folder")
    ap.add_argument("--out", required=True, help="where to write the RESULT JSON")
    ap.add_argument("--publish-to", help="with --store FOLDER: the shared cache (Blob layout) is mounted read-only "
                                         "at FOLDER and new blobs go into this folder, which Azure ML uploads to "
                                         "the same datastore path when the job ends (stores/folders.py)")
    args = ap.parse_args(argv)
    if args.publish_to and open_store is None:
        open_store = functools.partial(_open_datastore_view, publish_to=args.publish_to)
    from ..azure.redact import redact
    from ..olive.runtime import worker_env

    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="olivepipe-runtime-"))
    job = None
    try:
        try:
            try:
                job = Job.from_json(json.loads(Path(args.job).read_text(encoding="utf-8")))
            except ValueError as e:
                raise OlivepipeError(f"{args.job}: {e}",
                                     "the job was written by another olivepipe version than the one running it") from None
            # what local workers get too: no telemetry, no heartbeat stall, no hub unless the workflow needs it
            os.environ.update(worker_env({}, offline=job.offline))
            store = (open_store or open_store_url)(args.store)
        except (OSError, OlivepipeError) as e:
            msg = e.message if isinstance(e, OlivepipeError) else f"{type(e).__name__}: {e}"
            res = NodeResult(False, error=msg, seconds=time.perf_counter() - t0)
            # the job's log is what the submitter sees first: the same line a run prints
            print(f"olivepipe.runtime: {getattr(job, 'step', None)}: failed: {redact(msg)} in {res.seconds:g} s",
                  flush=True)
        else:
            with _tee(work / "node.log"):
                print(f"olivepipe.runtime: {job.step} (key {job.key[:12]}) on store {redact(args.store)}", flush=True)
                res = run_node(job, store, log=work / "node.log")
                print(f"olivepipe.runtime: {job.step}: {'ok' if res.ok else 'failed: ' + res.error} "
                      f"in {res.seconds:g} s", flush=True)
        res.error = redact(res.error)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        # a reader never sees half a result
        write_atomic(out, json.dumps(res.to_json(), indent=1, sort_keys=True) + "\n")
        return 0 if res.ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
