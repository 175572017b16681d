"""Plain-text one-liners that need no renderer: a cached no-op apply, `status`, `cache ls` rows.

Kept apart from report.py so the hot path of a no-op apply never imports rich."""
from __future__ import annotations

CACHED, RUN = "cached", "run"


def nothing_to_do(result) -> str:
    """The one-line answer of an apply that found everything cached."""
    c = sum(1 for o in result.outcomes.values() if o.status == "cached")
    return f"Apply complete: nothing to do, {c} cached ({result.seconds:.2f}s)"


def status_lines(plan) -> list[str]:
    """`olivepipe status`: one line per step, with the first reason of a stale one."""
    word = {CACHED: "up to date", RUN: "stale"}
    out = []
    for s in plan.steps:
        why = f"  ({s.reasons[0]})" if s.reasons and s.status != CACHED else ""
        out.append(f"{word.get(s.status, s.status):>10}  {s.name}{why}")
    return out


def cache_rows(store, extra_locks=()) -> list[dict]:
    """`olivepipe cache ls`: one row per readable entry (key, kind, files, bytes, duration_s, and
    the `workflow:node`s whose lock records use it: the lock files registered with the store
    plus ``extra_locks``)."""
    users = lock_users(list(getattr(store, "roots", lambda: [])()) + list(extra_locks))
    rows = []
    for k in store.keys():
        e = store.load(k)
        if e:
            rows.append({"key": k, "kind": e.manifest.get("kind"), "files": len(e.manifest["files"]),
                         "bytes": e.size, "duration_s": e.manifest.get("duration_s"),
                         "used_by": sorted(users.get(k, ()))})
    return rows


def lock_users(lock_paths) -> dict[str, set[str]]:
    """{key: {"workflow:node", ...}} over readable lock files (an unreadable one names nobody)."""
    from . import lock as lockfile
    from .errors import OlivepipeError

    out: dict[str, set[str]] = {}
    for path in dict.fromkeys(lock_paths):
        try:
            data = lockfile.read(path)
        except (OlivepipeError, OSError):
            continue
        for wf, section in data["workflows"].items():
            for node, rec in (section.get("nodes") or {}).items():
                if isinstance(rec, dict) and rec.get("key"):
                    out.setdefault(rec["key"], set()).add(f"{wf}:{node}")
    return out
