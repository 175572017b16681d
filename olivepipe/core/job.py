"""Typed jobs: what a step becomes to run anywhere (no local paths, only placeholders).

A ``Job`` is the plain data every executor hands to the one node runtime (runtime.run_node):
the kind and where to import it, the kind's job spec with placeholders ($OUT, $SCRATCH,
$IN0, $SRC0, $DATA0, $CALIB, ...) and one typed reference per placeholder. ``to_json`` is the
job.json a remote job reads (format 1, unchanged from the dict jobs it replaces).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

FORMAT = 1
OUT = "$OUT"  # the job's own result folder, in a job spec and in a stored model config


def map_strings(v, fn):
    """Apply ``fn`` to every string inside nested dicts and lists."""
    if isinstance(v, str):
        return fn(v)
    if isinstance(v, dict):
        return {k: map_strings(x, fn) for k, x in v.items()}
    if isinstance(v, list):
        return [map_strings(x, fn) for x in v]
    return v


def substitute(obj, paths: dict[str, str]):
    """Replace placeholder prefixes ($OUT, $IN0, ...) in every string of a job."""

    def sub(v: str) -> str:
        if v.startswith("$"):
            head, sep, rest = v.partition("/")
            if head in paths:
                return str(paths[head]) + (sep + rest if sep else "")
        return v

    return map_strings(obj, sub)


@dataclass(frozen=True)
class StoredResult:
    """$IN<i>: an upstream step's result, by key."""

    key: str

    def to_json(self) -> dict:
        return {"entry": self.key}


@dataclass(frozen=True)
class DataFile:
    """$DATA<i> (and a register node's $AZCONFIG): a workspace file, by path relative to the
    workspace root and content digest. Read only on the machine that planned it."""

    file: str
    digest: str

    def to_json(self) -> dict:
        return {"file": self.file, "digest": self.digest}


@dataclass(frozen=True)
class ModelFolder:
    """$SRC<i>, $ADP<i>: a local model folder (or file), by path and tree digest."""

    tree: str
    digest: str

    def to_json(self) -> dict:
        return {"tree": self.tree, "digest": self.digest}


@dataclass(frozen=True)
class UploadedInput:
    """A DataFile or ModelFolder a submitter uploaded as a content-addressed store entry
    (runtime.input_key), so a job that reads only the store can read it."""

    key: str
    input: str  # "file" | "tree"
    digest: str
    source: str = ""  # the workspace path it came from, for messages
    path: str = ""  # inside the entry: the file's name (a single file)

    def to_json(self) -> dict:
        out = {"entry": self.key, "input": self.input, "digest": self.digest, "from": self.source}
        if self.path:
            out["path"] = self.path
        return out


@dataclass(frozen=True)
class TextDataset:
    """$CALIB: a text-column dataset built where the job runs from its data placeholders."""

    fields: dict
    files: tuple[str, ...]

    def to_json(self) -> dict:
        return {"text_dataset": dict(self.fields), "files": list(self.files)}


Ref = Union[StoredResult, DataFile, ModelFolder, UploadedInput, TextDataset]


def ref_from_json(doc: dict) -> Ref:
    """The typed reference of a job.json entry (ValueError for anything else)."""
    if not isinstance(doc, dict):
        raise ValueError(f"a reference is a mapping, not {doc!r}")
    if "entry" in doc and "input" in doc:
        return UploadedInput(doc["entry"], doc["input"], doc.get("digest", ""), doc.get("from", ""),
                             doc.get("path", ""))
    if "entry" in doc:
        return StoredResult(doc["entry"])
    if "file" in doc:
        return DataFile(doc["file"], doc.get("digest", ""))
    if "tree" in doc:
        return ModelFolder(doc["tree"], doc.get("digest", ""))
    if "text_dataset" in doc:
        return TextDataset(dict(doc["text_dataset"]), tuple(doc.get("files") or ()))
    raise ValueError(f"unknown reference {doc!r}")


@dataclass(frozen=True)
class Job:
    step: str
    kind: str
    module: str  # where a worker imports the kind from (plugin kinds run in workers too)
    device: str
    spec: dict  # the kind's job spec, placeholders only
    refs: dict = field(default_factory=dict)  # placeholder -> Ref
    timeout_s: float | None = None
    placement: dict | None = None  # the node's `executor:` mapping (None: this machine)
    key: str = ""  # the step's key: the runtime publishes the result under it
    record: dict | None = None  # the key record (the manifest keeps it; its packages name a remote environment)
    replace: bool = False  # --force: the new result replaces the stored entry of this key
    offline: bool = True  # no hub access where it runs

    def to_json(self) -> dict:
        return {"format": FORMAT, "step": self.step, "kind": self.kind, "module": self.module, "device": self.device,
                "spec": self.spec, "refs": {ph: r.to_json() for ph, r in self.refs.items()},
                "timeout_s": self.timeout_s, "placement": self.placement, "key": self.key, "record": self.record,
                "replace": self.replace, "offline": self.offline}

    @classmethod
    def from_json(cls, doc: dict) -> "Job":
        """A job.json read back; ValueError names what is wrong."""
        if not isinstance(doc, dict):
            raise ValueError("a job is a JSON object")
        if doc.get("format") != FORMAT:
            raise ValueError(f"job format {doc.get('format')!r} is not {FORMAT}")
        for f in ("step", "kind", "module", "spec", "refs"):
            if f not in doc:
                raise ValueError(f"job has no `{f}`")
        if not isinstance(doc["refs"], dict):
            raise ValueError("a job's `refs` is a mapping")
        return cls(step=doc["step"], kind=doc["kind"], module=doc["module"], device=doc.get("device", "cpu"),
                   spec=doc["spec"], refs={ph: ref_from_json(r) for ph, r in doc["refs"].items()},
                   timeout_s=doc.get("timeout_s"), placement=doc.get("placement"), key=doc.get("key") or "",
                   record=doc.get("record"), replace=bool(doc.get("replace")), offline=bool(doc.get("offline", True)))


@dataclass
class NodeResult:
    """What running a job gave: RESULT.json of a remote job (``to_json``, format unchanged)."""

    ok: bool
    key: str | None = None
    error: str = ""
    model: dict | None = None
    seconds: float = 0.0
    digest: str | None = None
    linked: bool = False  # the key was in the store already: nothing ran, nothing was published
    extra: dict = field(default_factory=dict)  # what the kind returned besides its model

    def to_json(self) -> dict:
        return {"ok": self.ok, "error": self.error, "model": self.model, "seconds": round(self.seconds, 3),
                "key": self.key, "digest": self.digest, "linked": self.linked,
                **({"extra": self.extra} if self.extra else {})}
