"""How Olive runs under olivepipe: environment, versions that shape results, output reading."""
from __future__ import annotations

import functools
import os
from pathlib import Path

@functools.lru_cache(maxsize=1)
def _dist_infos() -> dict[str, str]:
    """{normalized name: version} from the *.dist-info folders on sys.path, first wins.

    A directory listing per path entry instead of importlib.metadata's machinery:
    keys need ~10 versions on every plan, and this is the hot path of a no-op apply.
    """
    import sys

    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for n in names:
            if n.endswith(".dist-info"):
                name, _, ver = n[: -len(".dist-info")].partition("-")
                found.setdefault(_norm(name), ver)
    return found


def _norm(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


@functools.lru_cache(maxsize=None)
def version(dist: str) -> str | None:
    v = _dist_infos().get(_norm(dist))
    if v is not None:
        return v
    from importlib import metadata  # egg-info and other layouts: the slow, general way

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions(names) -> dict[str, str | None]:
    """{package: installed version} for the packages that shape a result (None: not installed)."""
    return {n: version(n) for n in sorted(set(names))}


def worker_env(base: dict | None = None, *, offline: bool = True) -> dict:
    """Environment for worker processes: no telemetry, no heartbeat stall, no surprise downloads."""
    env = dict(os.environ if base is None else base)
    env.update({
        "OLIVE_DISABLE_TELEMETRY": "1",
        # Olive still sends a heartbeat (a ~10 s stall offline) unless it believes it runs
        # in CI; its own switch only stops later events.
        "CI": env.get("CI") or "1",
        "ORT_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
        "WANDB_DISABLED": "true",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    })
    if offline:
        env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    return env


OUT = "$OUT"


def _map_strings(v, fn):
    """Apply ``fn`` to every string inside nested dicts and lists."""
    if isinstance(v, str):
        return fn(v)
    if isinstance(v, dict):
        return {k: _map_strings(x, fn) for k, x in v.items()}
    if isinstance(v, list):
        return [_map_strings(x, fn) for x in v]
    return v


def normalize_model_config(cfg: dict, output_dir: Path) -> dict:
    """Olive's model_config.json with paths under ``output_dir`` made relative ($OUT/...)."""
    prefix = str(Path(output_dir).resolve())

    def rel(v: str) -> str:
        if v == prefix or v.startswith(prefix + os.sep):
            r = os.path.relpath(v, prefix)
            return OUT if r == "." else f"{OUT}/{Path(r).as_posix()}"
        return v

    return _map_strings(cfg, rel)


def rebase_model_config(cfg: dict, placeholder: str) -> dict:
    """A stored model config ($OUT/...) as seen by a job that reads it as ``placeholder``.

    Also drops None values from its ``config``: Olive writes `"load_kwargs": null` and
    then crashes reading it back with a dataset."""
    cfg = substitute(cfg, {OUT: placeholder})
    cfg["config"] = {k: v for k, v in cfg.get("config", {}).items() if v is not None}
    return cfg


def substitute(obj, paths: dict[str, str]):
    """Replace placeholder prefixes ($OUT, $IN0, ...) in every string of a job."""

    def sub(v: str) -> str:
        if v.startswith("$"):
            head, sep, rest = v.partition("/")
            if head in paths:
                return str(paths[head]) + (sep + rest if sep else "")
        return v

    return _map_strings(obj, sub)


def resolve_model_config(cfg: dict, tree: Path) -> dict:
    """Inverse of normalize: $OUT/... -> absolute paths inside a store entry."""
    return substitute(cfg, {OUT: str(tree)})
