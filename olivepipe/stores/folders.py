"""The Blob store's container as two folders: how an Azure ML job sees the shared cache when it
is bound as job input and output on an Azure ML datastore (executors/azureml.py).

Azure ML mounts the datastore path read-only (the input: the cache as it is) and uploads an
output folder to the same path when the command ends (upload mode: files are added or replaced,
never deleted). So :class:`FolderContainer` reads a blob from the output folder first (what this
job wrote), then from the mount, and writes only into the output folder. ``BlobStore`` runs on
it unchanged: the layout (``objects/<sha256>``, ``entries/<key>.json``) and every check are the
store's own, and the bytes reach the container through the datastore's credential, so the job
needs no token of its own.

Only what BlobStore calls is here. Errors are azure-core's, as a ContainerClient raises them.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from types import SimpleNamespace

_CHUNK = 4 << 20


class FolderContainer:
    def __init__(self, read: Path, write: Path):
        self.read, self.write = Path(read), Path(write)

    def _path(self, name: str, *, for_write: bool = False) -> Path | None:
        parts = [p for p in name.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise ValueError(f"not a blob name: {name!r}")
        if for_write:
            return self.write.joinpath(*parts)
        for root in (self.write, self.read):
            p = root.joinpath(*parts)
            if p.is_file():
                return p
        return None

    def _missing(self, name: str):
        from azure.core.exceptions import ResourceNotFoundError

        err = ResourceNotFoundError(f"The specified blob does not exist: {name}")
        err.error_code = "BlobNotFound"
        return err

    # -- the ContainerClient calls BlobStore makes -------------------------------------------
    def get_blob_client(self, name: str) -> _Blob:
        return _Blob(self, name)

    def download_blob(self, name: str) -> _Download:
        p = self._path(name)
        if p is None:
            raise self._missing(name)
        return _Download(p)

    def list_blobs(self, name_starts_with: str = ""):
        seen = set()
        for root in (self.write, self.read):
            for dirpath, _, files in os.walk(root):
                for fn in files:
                    rel = (Path(dirpath) / fn).relative_to(root).as_posix()
                    if rel.startswith(name_starts_with) and rel not in seen:
                        seen.add(rel)
                        yield SimpleNamespace(name=rel)

    def delete_blob(self, name: str) -> None:
        raise PermissionError("a job's view of the cache cannot delete: the datastore mount is read-only")


class _Blob:
    def __init__(self, container: FolderContainer, name: str):
        self.container, self.name = container, name

    def get_blob_properties(self):
        p = self.container._path(self.name)
        if p is None:
            raise self.container._missing(self.name)
        st = p.stat()
        return SimpleNamespace(size=st.st_size, etag=f'"{st.st_mtime_ns:x}-{st.st_size:x}"')

    def upload_blob(self, data, *, overwrite: bool = False, length: int | None = None, **_kw) -> dict:
        from azure.core.exceptions import ResourceExistsError

        if not overwrite and self.container._path(self.name) is not None:
            err = ResourceExistsError(f"The specified blob already exists: {self.name}")
            err.error_code = "BlobAlreadyExists"
            raise err
        dest = self.container._path(self.name, for_write=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}")  # whole or not at all, like a blob
        with open(tmp, "wb") as out:
            if isinstance(data, (bytes, bytearray)):
                out.write(data)
            else:
                shutil.copyfileobj(data, out, _CHUNK)
        os.replace(tmp, dest)
        return {"etag": self.get_blob_properties().etag}


class _Download:
    def __init__(self, path: Path):
        self.path = path
        st = path.stat()
        self.size = st.st_size
        self.properties = SimpleNamespace(etag=f'"{st.st_mtime_ns:x}-{st.st_size:x}"', size=st.st_size)

    def readall(self) -> bytes:
        return self.path.read_bytes()

    def chunks(self):
        with open(self.path, "rb") as fh:
            while True:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    return
                yield chunk
