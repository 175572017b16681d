"""Long fuzz run of ``load_workflow``: mutated corpus and example workflows, and hostile files
around them (FIFOs, directories, symlink loops, links out of the workspace), for N minutes;
and (issue 19) mutated remote manifests through the reader's whole path (peek, get, pull,
verify rules, the reader's model config) and mutated committed `.olivepipe/config.yaml`
files with a SAS in the environment (a clean error, or a credential that goes nowhere the file
alone names).

    .venv/bin/python bench/fuzz_long.py --minutes 10 [--seed 1] [--case-timeout 20] [--out DIR]

Not part of the test suite (tests/test_fuzz.py is the CI-sized run). Prints JSON: runs,
outcomes, tracebacks (any exception other than SpecError/OlivepipeError), hangs (a case
that took longer than --case-timeout: the parent kills the worker and goes on), and
invariant violations (what loaded has unsafe names, paths outside the workspace, an order
that is not topological; something was written outside the workspace). Every finding is
saved under --out as a reproducer (the workflow text and the file-system change).

Cases are a pure function of (seed, index), so the parent can save the case a hung worker
was running without hearing from it.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SEEDS = sorted((REPO / "tests" / "corpus" / "bad").glob("*.yaml")) + [
    REPO / "examples" / "travel-tiny" / "workflow.yaml", REPO / "workflows" / "phi35-travel.yaml"]
MINIMAL = """\
olivepipe: 1
name: mini
models:
  base: {tiny: {arch: phi3}}
datasets:
  travel: {files: data/train.jsonl, text_template: "<|user|>{prompt}<|assistant|>{response}", max_seq_len: 64}
nodes:
  finetune: {pass: lora, input: base, data: travel, params: {r: 4, max_steps: 2, torch_dtype: float32}}
  onnx: {pass: model-builder, input: finetune, params: {precision: int4}}
  adapters: {pass: extract-adapters, input: onnx}
  chat: {kind: generate, input: adapters, prompts: [hi]}
"""
VOCAB = ["olivepipe", "name", "nodes", "models", "datasets", "defaults", "pass", "input", "data", "params",
         "matrix", "kind", "device", "provider", "tiny", "hf", "path", "files", "text_template", "prompts",
         "adapters", "training_args", "max_steps", "r", "precision", "lora", "rtn", "model-builder", "generate",
         "register", "base", "finetune", "onnx", "travel", "rehearse", "revision", "trust_remote_code", "version",
         "onnx-int4", "adapters-fp32", "data/train.jsonl", "data", "fifo.jsonl", "loop.jsonl", "out.jsonl", "."]
BITS = [":", " ", "\n", "  ", "\t", "{", "}", "[", "]", ",", "-", "&a", "*a", "<<", "!!", "#", "'", '"', "|", ">",
        "?", "~", "null", "1", "-1", "1e9", ".nan", "yes", "\\", "{{", "}}", "../", "/etc/passwd", "\x00", "\ufeff",
        "---", "...", "%YAML 1.2", "\u2028", "\r", "\x85"]
HOSTILE = ["9" * 5000, "2001-02-30", "!!int 12x", "&r [*r]", "&m {k: *m}", "[" * 300 + "]" * 300,
           "!!python/object/apply:os.system [true]", "!!binary aGk=", '"onnx\\n"', '"data/\\0x.jsonl"',
           "[int4, " + "v" * 300 + "]", "x" * 5000 + ".jsonl", '"\\0"', "../../../../etc/passwd", "/dev/zero",
           "[" + ", ".join(str(i) for i in range(300)) + "]", "{a: 1, b: [1, 2], c: {d: e}}", "fifo.jsonl",
           "loop.jsonl", "data", "outside.jsonl", "link-out.jsonl", "'" + "-" * 200 + "'", "[a, a, a]"]
FS_TARGETS = ["data/train.jsonl", "data/travel.jsonl", "models/tiny", "workflow.yaml", ".olivepipe",
              ".olivepipe/validated"]
FS_KINDS = ["fifo", "dir", "loop", "link-out", "dangling", "empty", "binary", "file"]


# -- cases ------------------------------------------------------------------------------------

def _seed_texts() -> list[str]:
    out = [MINIMAL]
    for p in SEEDS:
        try:
            out.append(p.read_bytes().decode("utf-8", "surrogateescape"))
        except OSError:
            pass
    return out


def _snippet(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.4:
        return rng.choice(HOSTILE)
    if r < 0.7:
        return rng.choice(VOCAB)
    if r < 0.85:
        return "[" + ", ".join(rng.choice(VOCAB) for _ in range(rng.randint(1, 4))) + "]"
    return "{" + ", ".join(f"{rng.choice(VOCAB)}: {rng.choice(VOCAB + HOSTILE[:4])}" for _ in range(rng.randint(1, 3))) + "}"


def _node_names(text: str) -> list[str]:
    m = re.search(r"^nodes:\n((?:[ \t].*\n?)*)", text, re.M)
    return re.findall(r"^  ([A-Za-z][\w-]*):", m.group(1), re.M) if m else []


# -- edits: each (text, rng, i) -> text, i a random offset; one loop applies them ----------------

def _mutations(text: str, rng: random.Random, counts: list[int], ops: list) -> str:
    """``rng.choice(counts)`` edits of ``text``, each a random one of ``ops`` (repeat an op to weight it)."""
    for _ in range(rng.choice(counts)):
        text = rng.choice(ops)(text, rng, rng.randint(0, len(text)))
    return text


def _insert(pick):
    return lambda text, rng, i: text[:i] + pick(rng) + text[i:]


def _delete(most: int):
    return lambda text, rng, i: text[:i] + text[i + rng.randint(1, most):]


def _value(pick, at=lambda rng: ": ", cut_odds: float = 1.0):
    """The value after the next ``at`` (``: `` or ``[``) replaced by ``pick(rng)``: up to the next ``,``
    ``}`` or newline with odds ``cut_odds`` (where there is one), else up to the end of its line."""
    def edit(text, rng, i):
        j = text.find(at(rng), i)
        if j == -1:
            return text
        start = j + 2
        cut = re.search(r"[,}\n]", text[start:])
        end = start + (cut.start() if cut and rng.random() < cut_odds else (text[start:] + "\n").find("\n"))
        return text[:start] + pick(rng) + text[end:]
    return edit


def _lines(change):
    """An edit of one random line: ``change(lines, k, rng)`` edits the list in place."""
    def edit(text, rng, i):
        lines = text.split("\n")
        change(lines, rng.randrange(len(lines)), rng)
        return "\n".join(lines)
    return edit


def _dup_line(lines, k, rng):
    lines[k:k + 1] = [lines[k], lines[k]]


def _drop_line(lines, k, rng):
    del lines[k]


def _splice(seeds):  # lines from another seed
    def change(lines, k, rng):
        other = rng.choice(seeds).split("\n")
        a = rng.randrange(len(other))
        lines[k:k] = other[a:a + rng.randint(1, 6)]
    return _lines(change)


def _rewire(text, rng, i):  # an input pointing at another node: cycles, self-reads, variants
    names = _node_names(text)
    if not names:
        return text
    target = rng.choice(names + [f"{rng.choice(names)}-int4", "base", f"[{', '.join(rng.sample(names, min(3, len(names))))}]"])
    return re.sub(r"input: [^,}\n]+", f"input: {target}", text, count=rng.randint(1, 3))


def _flow_node(change):
    """An edit of a random one-line node (``  name: {...}``): ``change(lines, k, rng)``."""
    def edit(text, rng, i):
        lines = text.split("\n")
        cands = [k for k, ln in enumerate(lines) if re.match(r"  [A-Za-z][\w-]*: \{.*\}$", ln)]
        if cands:
            change(lines, rng.choice(cands), rng)
        return "\n".join(lines)
    return edit


def _matrix(lines, k, rng):
    key = rng.choice(["precision", "bits", "group_size", "r", "device", "x"])
    vals = rng.choice(["[int4, fp32]", "[4, 8]", "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]",
                       "[" + "w" * 70 + "]", "[a, A]", "[true, 1]", "[]"])
    lines[k] = lines[k][:-1] + f", matrix: {{{key}: {vals}}}}}"


def _clone(lines, k, rng):  # many nodes: scale paths
    name = lines[k].split(":")[0].strip()
    lines[k + 1:k + 1] = [lines[k].replace(f"  {name}:", f"  {name}c{c}:", 1) for c in range(rng.choice([10, 100, 1000]))]


def _kind(text, rng, i):
    return re.sub(r"pass: [\w-]+", rng.choice(["kind: generate", "kind: register", "pass: rtn", "kind: tiny-model",
                                               "pass: lorra", "kind: olive"]), text, count=1)


def _byte(text, rng, i):  # one raw byte replaced
    b = text.encode("utf-8", "surrogateescape")
    k = rng.randrange(len(b) + 1)
    return (b[:k] + bytes([rng.randrange(256)]) + b[k + 1:]).decode("utf-8", "surrogateescape")


def mutate(text: str, rng: random.Random, seeds: list[str]) -> str:
    value = _value(_snippet, at=lambda rng: ": " if rng.random() < 0.7 else "[", cut_odds=0.5)
    ops = [_delete(16), _insert(lambda rng: rng.choice(BITS + VOCAB) if rng.random() < 0.8 else chr(rng.randint(0, 0x2FFF))),
           value, value, _lines(_dup_line), _lines(_drop_line), _splice(seeds), _rewire, _flow_node(_matrix),
           _flow_node(_clone), _kind, _byte]
    return _mutations(text, rng, [0, 1, 1, 2, 3, 5], ops)  # 0: the file as is, for the file-system changes


# -- remote manifests and config.yaml (issue 19): what a shared-cache writer or a pull request controls --

KEY = "e" * 64
_D1, _D2 = "1" * 64, "2" * 64
MANIFEST_SEEDS = [json.dumps(m, indent=1) for m in (
    {"format": 1, "key": KEY, "id": "x", "digest": "d" * 64, "created": 1.5, "kind": "olive",
     "files": {"model/config.json": {"digest": _D1, "size": 10}, "adapter/a.safetensors": {"digest": _D2, "size": 20}},
     "model": {"type": "hfmodel", "config": {"model_path": "$OUT/model", "adapter_path": "$OUT/adapter",
                                             "load_kwargs": {"extra_args": {"attn_implementation": "eager"},
                                                             "trust_remote_code": False}}}},
    {"format": 1, "key": KEY, "id": "y", "digest": "d" * 64, "created": 2, "kind": "olive",
     "files": {"model.onnx": {"digest": _D1, "size": 10}, "model.onnx.data": {"digest": _D2, "size": 20}},
     "model": {"type": "onnxmodel", "config": {"model_path": "$OUT", "onnx_file_name": "model.onnx",
                                               "model_attributes": {"additional_files": ["$OUT/genai_config.json"],
                                                                    "_name_or_path": "/home/w/x"}}},
     "signature": {"key": "team", "sig": "AAAA"}},
)]
MANIFEST_BITS = ['"$OUT/../../etc"', '"/etc/passwd"', '"evil/model"', "true", "NaN", "Infinity", "-1", "1e999",
                 "9" * 5000, "[" * 200 + "]" * 200, '{"trust_remote_code": true}', '"model"', '"model/config.json"',
                 '{"type": "pytorchmodel", "config": {"model_script": "evil.py"}}', '"$OUT"', "null", '""',
                 '{"digest": "' + _D1 + '", "size": 1}', '"\u0000"', '"..\\x"', '{"inference_settings": {}}']
CONFIG_SEEDS = [
    "cache:\n  remote: azblob://teamcache/results\n",
    "cache:\n  remote: azblob://teamcache/results\n  account_url: https://teamcache.blob.core.windows.net\n"
    "  push: false\n",
    "cache:\n  remote: azblob://teamcache/results/pre/fix\n  trusted_keys: ['team:" + "A" * 43 + "=']\n",
]
CONFIG_BITS = ["http://127.0.0.1:1/teamcache", "http://evil.example.com/teamcache", "https://evil.example.com",
               "azblob://evilacct/loot", "&a [*a]", "*a", "[" * 100, "sig=abc", "AccountKey=x", "?sv=1",
               "https://teamcache.blob.core.windows.net@evil.com", "http://[::1]:1/teamcache", "'%s'" % ("x" * 3000),
               "!!python/object/apply:os.system [true]", "https://teamcache.blob.core.windows.net:99999",
               "http://localhost/teamcache", "https://TEAMCACHE.blob.core.windows.net"]


def _mutate_json(text: str, rng: random.Random) -> str:
    value = _value(lambda rng: rng.choice(MANIFEST_BITS))
    ops = [value, value, _insert(lambda rng: rng.choice(MANIFEST_BITS + [",", "{", "}", '"k": '])), _delete(12),
           _lines(_dup_line)]
    return _mutations(text, rng, [1, 1, 2, 3], ops)


def _mutate_config(text: str, rng: random.Random) -> str:
    value = _value(lambda rng: rng.choice(CONFIG_BITS), cut_odds=0.0)  # a whole line's value
    return _mutations(text, rng, [1, 1, 2], [value] * 3 + [_insert(lambda rng: rng.choice(CONFIG_BITS + BITS))] * 2)


def case(seed: int, index: int, seeds: list[str]) -> dict:
    rng = random.Random(seed * 1_000_003 + index)
    what = rng.random()
    if what < 0.15:
        return {"index": index, "target": "manifest", "text": _mutate_json(rng.choice(MANIFEST_SEEDS), rng),
                "trusted": rng.random() < 0.3}
    if what < 0.3:
        return {"index": index, "target": "config", "text": _mutate_config(rng.choice(CONFIG_SEEDS), rng),
                "link": rng.random() < 0.1}
    # half from the valid workflows (MINIMAL and the examples, last in the list): they reach the
    # semantic checks, the memo and the file checks; the corpus files mostly stop at the first error
    valid = [seeds[0], *seeds[-2:]]
    text = mutate(rng.choice(valid) if rng.random() < 0.5 else rng.choice(seeds), rng, seeds)
    fs = []
    if rng.random() < 0.3:
        fs = [(rng.choice(FS_TARGETS), rng.choice(FS_KINDS)) for _ in range(rng.randint(1, 2))]
    return {"index": index, "text": text, "fs": fs, "check_files": rng.random() < 0.8, "twice": rng.random() < 0.5}


# -- running one case (worker side) -----------------------------------------------------------

def _clear(p: Path) -> None:
    if p.is_symlink() or p.exists() and not p.is_dir():
        p.unlink()
    elif p.is_dir():
        shutil.rmtree(p)


def _fresh_workspace(ws: Path) -> None:
    for child in list(ws.iterdir()):
        if child.name != ".git":
            _clear(child)
    (ws / "data").mkdir()
    row = '{"prompt": "a", "response": "b"}\n'
    for name in ("train.jsonl", "travel.jsonl", "data_sample_travel.jsonl"):
        (ws / "data" / name).write_text(row * 4)
    (ws / "models" / "tiny").mkdir(parents=True)
    (ws / "models" / "tiny" / "config.json").write_text("{}")


def _apply_fs(ws: Path, outside: Path, target: str, kind: str) -> None:
    p = ws / target
    if any(q.is_symlink() for q in p.parents if ws in q.parents):
        return  # the fuzzer itself must not write through a link it planted
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        _clear(p)
        if kind == "fifo":
            os.mkfifo(p)
        elif kind == "dir":
            p.mkdir()
        elif kind == "loop":
            p.symlink_to(p.name)
        elif kind == "link-out":
            p.symlink_to(outside)
        elif kind == "dangling":
            p.symlink_to(ws / "nowhere")
        elif kind == "empty":
            p.write_bytes(b"")
        elif kind == "binary":
            p.write_bytes(bytes(range(256)) * 4)
        else:
            p.write_text('{"prompt": "x", "response": "y"}\n')
    except OSError:
        pass


def _snapshot(d: Path) -> list:
    return sorted((str(p), p.lstat().st_size) for p in d.rglob("*"))


def _invariants(wf, check_files: bool) -> list[str]:
    import stat as st

    bad = []
    safe = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
    for name in [wf.name, *wf.nodes, *wf.models, *wf.datasets]:
        if not (isinstance(name, str) and safe.fullmatch(name)):
            bad.append(f"unsafe name {name!r}")
    paths = [m.path for m in wf.models.values() if m.path] + [f for d in wf.datasets.values() for f in d.files]
    for p in paths:
        real = Path(os.path.realpath(p))
        try:
            real.relative_to(wf.root)
        except ValueError:
            bad.append(f"path outside the workspace: {p}")
    if check_files:
        for d in wf.datasets.values():
            for f in d.files:
                try:
                    if not st.S_ISREG(os.stat(f).st_mode):
                        bad.append(f"data file is not a regular file: {f}")
                except OSError as e:
                    bad.append(f"data file unreadable: {f}: {e}")
    seen = set(wf.models)
    if sorted(wf.order) != sorted(wf.nodes):
        bad.append("order does not list exactly the nodes")
    for n in wf.order:
        if n in wf.nodes and not all(i in seen for i in wf.nodes[n].inputs):
            bad.append(f"order is not topological at {n}")
        seen.add(n)
    return bad


class _Download:
    def __init__(self, data: bytes):
        self.data, self.size = data, len(data)
        self.properties = type("P", (), {"etag": '"1"'})()

    def readall(self):
        return self.data

    def chunks(self):
        yield self.data


class _FakeContainer:
    """Just enough of an azure ContainerClient to serve one manifest (and wrong-content objects)."""

    def __init__(self, manifest: bytes):
        self.manifest = manifest

    def download_blob(self, name):
        return _Download(self.manifest if name.startswith("entries/") else b"x" * 10)

    def get_blob_client(self, name):
        return type("B", (), {"get_blob_properties": lambda _self: type("Q", (), {"size": 10})()})()


def _traceback(e: BaseException) -> dict:
    tb = traceback.extract_tb(e.__traceback__)
    where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(tb) if "olivepipe" in f.filename),
                 f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?")
    return {"status": "traceback", "detail": f"{type(e).__name__}: {str(e)[:200]}", "where": where,
            "tb": "".join(traceback.format_exception(e))[-3000:]}


def run_manifest_case(c: dict, ws: Path, outside: Path) -> dict:
    """A pushed manifest through the reader's whole path: plan's peek, apply's get and pull (into
    a local store), `cache verify`'s rules and the reader's model config. Never a traceback, never
    a write outside, never a model config that reaches outside its entry."""
    from olivepipe.core.errors import OlivepipeError
    from olivepipe.olive.runtime import UntrustedModel, reader_model_config
    from olivepipe.stores.blob import BlobStore
    from olivepipe.stores.local import LocalStore
    from olivepipe.stores.manifest import reader_problems
    from olivepipe.stores.tiered import TieredStore

    _fresh_workspace(ws)
    before = _snapshot(outside)
    trusted = {}
    if c.get("trusted"):
        from olivepipe.stores.signing import parse_public

        k = parse_public("team:" + "A" * 43 + "=", "fuzz")
        trusted = {k.name: k}
    remote = BlobStore(_FakeContainer(c["text"].encode("utf-8", "surrogateescape")), label="azblob://fuzz/c",
                       trusted=trusted)
    tiered = TieredStore(LocalStore(ws / ".olivepipe" / "cache", base=ws), remote)
    try:
        peeked = tiered.peek(KEY)
        got = tiered.get(KEY)
        for e in (peeked, got):
            if e is None:
                continue
            reader_problems(e.manifest)
            if e.model is not None:
                try:
                    cfg = reader_model_config(e.model, "$IN0", None)
                except UntrustedModel:
                    continue
                bad = [v for v in _strings(cfg) if v.startswith(("/", "~")) or ".." in v.split("/")]
                if bad:
                    return {"status": "invariant", "detail": f"reader model config reaches outside: {bad[:3]}"}
            if c.get("trusted") and peeked is not None:
                return {"status": "invariant", "detail": "an entry without a valid trusted signature was served"}
        outcome = {"status": "ok" if got or peeked else "miss", "detail": ""}
    except OlivepipeError as e:
        outcome = {"status": "olivepipe", "detail": e.message[:200]}
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, KeyboardInterrupt):
            raise
        return _traceback(e)
    if _snapshot(outside) != before:
        return {"status": "invariant", "detail": "something was written outside the workspace"}
    return outcome


def _strings(v):
    if isinstance(v, str):
        yield v
    elif isinstance(v, dict):
        for x in v.values():
            yield from _strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from _strings(x)


def run_config_case(c: dict, ws: Path, outside: Path) -> dict:
    """A committed `.olivepipe/config.yaml` (the pull request's) with a SAS in the environment:
    a clean StoreError or a remote whose credential goes nowhere the file alone names."""
    from olivepipe.core.errors import OlivepipeError
    from olivepipe.stores.config import credential_for, remote_config

    _fresh_workspace(ws)
    (ws / ".olivepipe").mkdir()
    target = ws / ".olivepipe" / "config.yaml"
    if c.get("link"):
        (outside / "config.yaml").write_bytes(c["text"].encode("utf-8", "surrogateescape"))
        target.symlink_to(outside / "config.yaml")
    else:
        target.write_bytes(c["text"].encode("utf-8", "surrogateescape"))
    env = {"OLIVEPIPE_BLOB_SAS": "sv=1&sig=SECRET", "HOME": str(ws / "home")}
    before = _snapshot(outside)
    try:
        cfg = remote_config(ws, env)
        if cfg is not None:
            cred, endpoint, _, _ = credential_for(cfg, env)
            if cred is not None:  # the SAS: only the environment may name where it goes, and it named nothing
                return {"status": "invariant", "detail": f"the SAS would go to {endpoint}, named only by the file"}
        outcome = {"status": "ok", "detail": ""}
    except OlivepipeError as e:
        if c.get("link") and "symlink" not in e.message and "not read" not in e.message:
            return {"status": "invariant", "detail": f"a linked config was not refused as a link: {e.message[:120]}"}
        outcome = {"status": "olivepipe", "detail": e.message[:200]}
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, KeyboardInterrupt):
            raise
        return _traceback(e)
    if c.get("link") and outcome["status"] == "ok":
        return {"status": "invariant", "detail": "a linked config.yaml was read"}
    if _snapshot(outside) != before:
        return {"status": "invariant", "detail": "something was written outside the workspace"}
    return outcome


def run_case(c: dict, ws: Path, outside: Path) -> dict:
    from olivepipe.core.errors import OlivepipeError, SpecError
    from olivepipe.spec.graph import build_graph
    from olivepipe.spec.workflow import load_workflow

    if c.get("target") == "manifest":
        return run_manifest_case(c, ws, outside)
    if c.get("target") == "config":
        return run_config_case(c, ws, outside)
    _fresh_workspace(ws)
    wf_path = ws / "workflow.yaml"
    wf_path.write_bytes(c["text"].encode("utf-8", "surrogateescape"))
    outcome = {"status": "ok", "detail": ""}
    rounds = [False, True] if c["twice"] or c["fs"] else [True]
    for fs_now in rounds:
        if fs_now:
            for target, kind in c["fs"]:
                _apply_fs(ws, outside, target, kind)
        before = _snapshot(outside)
        try:
            wf = load_workflow(wf_path, check_files=c["check_files"])
            build_graph(wf)
            bad = _invariants(wf, c["check_files"])
            if bad:
                return {"status": "invariant", "detail": "; ".join(bad[:5])}
            outcome = {"status": "ok", "detail": ""}
        except SpecError as e:
            if not e.problems or any(not p.message for p in e.problems):
                return {"status": "invariant", "detail": "SpecError without located messages"}
            outcome = {"status": "spec", "detail": ""}
        except OlivepipeError as e:
            outcome = {"status": "olivepipe", "detail": e.message[:200]}
        except BaseException as e:  # noqa: BLE001 - that is what we hunt
            if isinstance(e, KeyboardInterrupt):
                raise
            return _traceback(e)
        if _snapshot(outside) != before:
            return {"status": "invariant", "detail": "something was written outside the workspace"}
    return outcome


def worker(seed: int, start: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # runaway memory is a finding, not a dead box
    seeds = _seed_texts()
    top = Path(tempfile.mkdtemp(prefix="olivepipe-fuzz-"))
    ws, outside = top / "ws", top / "outside"
    (ws / ".git").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.jsonl").write_text('{"prompt": "secret", "response": "secret"}\n')
    out = sys.stdout
    try:
        i = start
        while True:
            c = case(seed, i, seeds)
            out.write(json.dumps({"start": i}) + "\n")
            out.flush()
            try:
                r = run_case(c, ws, outside)
            except MemoryError:
                r = {"status": "traceback", "detail": "MemoryError", "where": "?"}
            r["i"] = i
            out.write(json.dumps(r) + "\n")
            out.flush()
            i += 1
    finally:
        shutil.rmtree(top, ignore_errors=True)


# -- the parent: watchdog and report ------------------------------------------------------------

def _save(out: Path, seed: int, i: int, what: str, seeds: list[str], extra: dict | None = None) -> str:
    c = case(seed, i, seeds)
    d = out / f"{what}-{i}"
    d.mkdir(parents=True, exist_ok=True)
    name = {"manifest": "manifest.json", "config": "config.yaml"}.get(c.get("target"), "workflow.yaml")
    (d / name).write_bytes(c["text"].encode("utf-8", "surrogateescape"))
    (d / "case.json").write_text(json.dumps({k: v for k, v in {**c, **(extra or {})}.items() if k != "text"}, indent=2))
    return str(d)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--case-timeout", type=float, default=20, help="seconds before a case counts as a hang")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "olivepipe-fuzz")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        worker(args.seed, args.worker)
        return
    seeds = _seed_texts()
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.minutes * 60
    stats = {"runs": 0, "outcomes": {}, "tracebacks": 0, "hangs": 0, "invariant_violations": 0, "worker_deaths": 0}
    kinds: dict[str, dict] = {}
    hangs, violations = [], []
    nxt = 0
    while time.monotonic() < deadline:
        proc = subprocess.Popen([sys.executable, __file__, "--seed", str(args.seed), "--worker", str(nxt)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        running, started, buf = None, time.monotonic(), ""
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            limit = (started + args.case_timeout) if running is not None else now + 60  # startup: imports
            r, _, _ = select.select([proc.stdout], [], [], max(0.05, min(limit, deadline) - now))
            if not r:
                if time.monotonic() >= limit:
                    if running is not None:
                        stats["hangs"] += 1
                        stats["runs"] += 1
                        hangs.append(_save(args.out, args.seed, running, "hang", seeds))
                        nxt = running + 1
                    break
                continue
            line = proc.stdout.readline()
            if not line:  # the worker died (a crash in C code, the memory limit)
                stats["worker_deaths"] += 1
                if running is not None:
                    stats["runs"] += 1
                    stats["tracebacks"] += 1
                    kinds.setdefault("worker died", {"count": 0, "case": _save(args.out, args.seed, running, "crash", seeds)})
                    kinds["worker died"]["count"] += 1
                    nxt = running + 1
                break
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # something printed to stdout: not ours
            if "start" in msg:
                running, started = msg["start"], time.monotonic()
                continue
            running = None
            nxt = msg["i"] + 1
            stats["runs"] += 1
            stats["outcomes"][msg["status"]] = stats["outcomes"].get(msg["status"], 0) + 1
            if msg["status"] == "traceback":
                stats["tracebacks"] += 1
                key = f"{msg['where']} {msg['detail'].split(':')[0]}"
                if key not in kinds:
                    kinds[key] = {"count": 0, "detail": msg["detail"],
                                  "case": _save(args.out, args.seed, msg["i"], "traceback", seeds, {"tb": msg.get("tb", "")})}
                kinds[key]["count"] += 1
            elif msg["status"] == "invariant":
                stats["invariant_violations"] += 1
                if len(violations) < 20:
                    violations.append({"detail": msg["detail"], "case": _save(args.out, args.seed, msg["i"], "invariant", seeds)})
        proc.kill()
        proc.wait()
    report = {"minutes": args.minutes, "seed": args.seed, "case_timeout_s": args.case_timeout, **stats,
              "traceback_kinds": kinds, "hang_cases": hangs, "violations": violations, "reproducers": str(args.out)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
