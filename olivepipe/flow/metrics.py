"""`olivepipe metrics`: what a workflow's evaluate nodes measured, side by side, and how it
changed against another git revision.

Everything comes from results already in the store (``peek`` + ``fetch`` of each
evaluate node's `metrics.json`): nothing is run. A node's current result is the one
its key has now (the plan's key); when the workflow changed since the last apply, the
lock's last result is shown and marked stale. ``diff`` reads another revision's lock
with ``git show`` (through review.py's helpers and ``lock.loads``) and looks its
results up in the same store. The results are plain JSON-able dicts; the CLI renders them.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..core.errors import OlivepipeError, ReviewError

FORMAT = 1
KIND = "evaluate"
CURRENT, STALE, MISSING, UNREADABLE = "current", "stale", "not evaluated", "unreadable"


# -- reading results ------------------------------------------------------------------

def read_result(store, key: str | None) -> tuple[dict | None, str | None]:
    """(metrics.json of a stored evaluate result, why not): never runs anything."""
    from ..core import boundedjson
    from ..core.errors import StoreError
    from ..core.safefs import read_regular

    entry = store.peek(key) if key else None
    if entry is None:
        return None, "not in the cache"
    try:
        # bounded: a shared cache's writer wrote this file (deep nesting, huge numbers, NaN)
        doc = boundedjson.loads(read_regular(Path(store.fetch(entry)) / "metrics.json"), max_depth=32)
    except (OSError, ValueError, StoreError) as e:
        return None, f"metrics.json unreadable ({getattr(e, 'strerror', None) or e.__class__.__name__})"
    if not isinstance(doc, dict) or not isinstance(doc.get("metrics"), dict):
        return None, "metrics.json is not an olivepipe evaluation"
    return doc, None


def _values(doc: dict) -> tuple[dict, dict]:
    values, units = {}, {}
    for k, m in doc["metrics"].items():
        if isinstance(m, dict) and isinstance(m.get("value"), (int, float)) and not isinstance(m["value"], bool):
            values[k] = m["value"]
            units[k] = m.get("unit") or ""
    return values, units


def _row(node: str, doc: dict | None, status: str, key: str | None, why: str | None = None, **extra) -> dict:
    values, units = _values(doc) if doc else ({}, {})
    spec_input, spec_device = extra.pop("input", None), extra.pop("device", None)
    row = {"node": node, "input": (doc or {}).get("model") or spec_input, "status": status,
           "key": key, "values": values, "units": units, "device": (doc or {}).get("device") or spec_device,
           "provider": (doc or {}).get("provider"), "evaluator": (doc or {}).get("evaluator"),
           "measured_at": (doc or {}).get("measured_at")}
    if why:
        row["why"] = why
    row.update(extra)
    return row


def collect(ws) -> dict:
    """Every evaluate node (matrix variants included) with its current or last metrics."""
    from .plan import make_plan

    wf = ws.workflow
    names = [n for n, spec in wf.nodes.items() if spec.kind == KIND]
    if not names:
        raise OlivepipeError(f"{wf.file.name}: no evaluate node", "add one, e.g. `eval: {kind: evaluate, input: "
                             "onnx, metrics: [latency]}` (docs/metrics.md)")
    steps = make_plan(ws).by_name()
    locked = ws.lock_nodes()
    rows = []
    for name in names:
        step, spec = steps[name], wf.nodes[name]
        base = {"input": spec.inputs[0] if spec.inputs else None, "device": spec.device}
        doc, why = read_result(ws.store, step.key)
        if doc is not None:
            runs = history(ws, step.key)
            when = next((r.get("measured_at") for r in reversed(runs)), None)
            rows.append(_row(name, {**doc, "measured_at": when}, CURRENT, step.key, **base, runs=len(runs),
                             spread=spread(runs) if runs else {}))
            continue
        prev = (locked.get(name) or {}).get("key")
        old = read_result(ws.store, prev)[0] if prev and prev != step.key else None
        if old is not None:  # the workflow changed since: its last result, marked as such
            rows.append(_row(name, old, STALE, prev, "the workflow changed since this was measured; "
                             "`olivepipe apply` measures it again", **base))
        else:
            status = UNREADABLE if why and "unreadable" in why else MISSING
            rows.append(_row(name, None, status, step.key, why if status == UNREADABLE else
                             "run `olivepipe apply` to measure it", **base))
    table = _table(ws, rows)
    goals = _judge_goals(ws, table)
    if goals:  # each goal judged on these numbers (plan --format markdown, the HTML report)
        table["goals"] = goals
    return table


def _table(ws, rows: list[dict]) -> dict:
    from ..olive.evaluate import METRICS, all_result_keys

    keys = {k for r in rows for k in r["values"]}
    # metrics in the evaluation table's order, then anything else a result carries
    order = {k: i for i, k in enumerate(all_result_keys(METRICS))}
    metrics = sorted(keys, key=lambda k: (order.get(k, len(order)), k))
    units = {k: next(r["units"][k] for r in rows if k in r["units"]) for k in metrics}
    return {"format": FORMAT, "workflow": ws.lock_name, "file": str(ws.workflow.file), "metrics": metrics,
            "units": units, "rows": rows}


def goal_rows(ws) -> list[dict]:
    """Every goal of every evaluate node, judged on its last result (current, else the lock's,
    marked stale); reads the cache only. [] when no node has goals."""
    if not any(s.kind == KIND and s.options.get("goals") for s in ws.workflow.nodes.values()):
        return []
    return collect(ws).get("goals", [])


def _judge_goals(ws, table: dict) -> list[dict]:
    from ..olive.goals import judge_all

    with_goals = [n for n, s in ws.workflow.nodes.items() if s.kind == KIND and s.options.get("goals")]
    rows = {r["node"]: r for r in table["rows"]}
    baselines = {n: r["values"] for n, r in rows.items() if r["values"]}
    out = []
    for n in with_goals:
        row, goals = rows[n], ws.workflow.nodes[n].options["goals"]
        for (metric, goal), judged in zip(goals.items(), judge_all(goals, row["values"], baselines)):
            text = f"{metric}: {goal['type']} {goal['value']}" + (f" from {goal['baseline']}" if "baseline" in goal else "")
            if not row["values"]:
                out.append({"node": n, "goal": text, "ok": None, "result": "not measured yet", "status": row["status"]})
            else:
                out.append({"node": n, "goal": text, "ok": judged["ok"], "result": judged["text"],
                            "status": row["status"]})
    return out


# -- history: every measurement, not one per key ------------------------------------------------

HISTORY = "history"


def _history_file(ws, key: str) -> Path:
    return ws.dir / HISTORY / key[:2] / f"{key}.jsonl"


def keep_history(ws, name: str, doc: dict | None, entry, record: dict) -> None:
    """Append one fresh result to its key's history (``.olivepipe/history/<k[:2]>/<key>.jsonl``):
    a forced re-measure keeps its key and replaces the cache entry, so this is where the earlier
    numbers stay, with when and where they were measured."""
    import json
    import os

    from ..core.safefs import confined_dir, open_nofollow

    if not doc:
        return
    import time

    # the time stays out of metrics.json: numbers measured again unchanged keep the result's digest
    line = {"key": entry.key, "digest": entry.digest, "workflow": ws.lock_name, "step": name,
            "packages": record.get("packages"), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **doc}
    folder = confined_dir(ws.workflow.file.parent, ".olivepipe", HISTORY, entry.key[:2])
    fd = open_nofollow(folder / f"{entry.key}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(json.dumps(line, sort_keys=True) + "\n")


def history(ws, key: str | None) -> list[dict]:
    """Every recorded measurement of ``key``, oldest first (unreadable lines are skipped)."""
    from ..core import boundedjson
    from ..core.safefs import read_regular

    if not key:
        return []
    try:
        text = read_regular(_history_file(ws, key)).decode("utf-8", "replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            doc = boundedjson.loads(line, max_depth=32)
        except ValueError:
            continue  # a line cut short by a crash
        if isinstance(doc, dict) and isinstance(doc.get("metrics"), dict):
            out.append(doc)
    return out


def spread(runs: list[dict]) -> dict:
    """{result key: {"n", "mean", "min", "max", "stdev"}} over several measurements."""
    import statistics

    per: dict[str, list[float]] = {}
    for r in runs:
        for k, v in _values(r)[0].items():
            per.setdefault(k, []).append(v)
    return {k: {"n": len(v), "mean": statistics.fmean(v), "min": min(v), "max": max(v),
                "stdev": statistics.stdev(v) if len(v) > 1 else 0.0} for k, v in per.items()}


# -- against another revision ------------------------------------------------------------

def lock_at(ws, rev: str) -> tuple[dict, str]:
    """The workflow's lock section at git revision ``rev``: ({node: entry}, "REV:path")."""
    from . import review
    from ..core.lock import loads

    if not rev or rev.startswith("-") or ":" in rev:
        raise ReviewError(f"{rev!r}: not a revision", "give a git revision, e.g. HEAD~1 or main")
    here = ws.lock_path.parent
    top = Path(review._git(["rev-parse", "--show-toplevel"], here, spec=rev).stdout.decode().strip())
    rel = ws.lock_path.resolve().relative_to(top.resolve()).as_posix()
    side = review.read_side(f"{rev}:{rel}", cwd=top)
    if side.kind != "lock":
        raise ReviewError(f"{side.spec}: not a lock file", "")
    return loads(side.text, side.spec)["workflows"].get(ws.lock_name, {}).get("nodes", {}), side.spec


def _measured(ws, entry: dict) -> tuple[dict | None, str | None, bool]:
    """The numbers a lock entry recorded: (metrics.json, why not, re-measured since). The cache
    holds the latest measurement of a key; when its output digest is not the lock's (`apply
    --force` measured again), the recorded one comes from the history."""
    key, digest = entry.get("key"), (entry.get("output") or {}).get("digest")
    stored = ws.store.peek(key) if key else None
    if stored is None or not digest or stored.digest == digest:
        doc, why = read_result(ws.store, key)
        return doc, why, False
    old = next((r for r in reversed(history(ws, key)) if r.get("digest") == digest), None)
    if old is None:
        return None, "measured again since, and the earlier numbers are not in this workspace's history", True
    return old, None, True


def compare(old: dict, new: dict) -> dict:
    """{result key: {"old", "new", "delta", "pct"}} of two {key: number} maps."""
    values = {}
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        values[k] = {"old": a, "new": b, "delta": b - a if a is not None and b is not None else None,
                     "pct": 100.0 * (b - a) / abs(a) if a not in (None, 0) and b is not None else None}
    return values


def diff(ws, current: dict, rev: str) -> dict:
    """Per evaluate node: old (at ``rev``) and new values, with deltas. Old results are
    looked up in this workspace's store by the old lock's keys."""
    old_nodes, shown = lock_at(ws, rev)
    old_rows = {}
    for name, entry in old_nodes.items():
        if entry.get("kind") != KIND:
            continue
        doc, why, again = _measured(ws, entry)
        old_rows[name] = _row(name, doc, CURRENT if doc else MISSING, entry.get("key"), why, remeasured=again)
    new_rows = {r["node"]: r for r in current["rows"]}
    out, keys = [], set(current["metrics"])
    for name in list(new_rows) + [n for n in sorted(old_rows) if n not in new_rows]:
        new, old = new_rows.get(name), old_rows.get(name)
        keys |= set((old or {}).get("values", {}))
        if old is None:
            status = "added"
        elif new is None:
            status = "removed"
        elif not old["values"] or not new["values"]:
            status = "unavailable"  # one side has no numbers in the cache (never measured, or collected)
        elif old["key"] == new["key"]:
            status = "re-measured" if old.get("remeasured") else "same"
        else:
            status = "changed"
        values = compare((old or {}).get("values", {}), (new or {}).get("values", {}))
        out.append({"node": name, "input": (new or old or {}).get("input"),
                    "old_input": (old or {}).get("input"), "status": status,
                    "old_key": (old or {}).get("key"), "new_key": (new or {}).get("key"), "values": values,
                    "measured_at": {"old": (old or {}).get("measured_at"), "new": (new or {}).get("measured_at")},
                    **({"why": old["why"]} if old and old.get("why") and status == "unavailable" else {})})
    units = dict(current["units"])
    for r in old_rows.values():
        for k, u in r["units"].items():
            units.setdefault(k, u)
    metrics = current["metrics"] + sorted(k for k in keys if k not in current["metrics"])
    return {"rev": rev, "lock": shown, "metrics": metrics, "units": units, "rows": out,
            "changed": any(r["status"] != "same" for r in out)}


# -- plotting support -----------------------------------------------------------------

def resolve_metric(result: dict, name: str) -> str:
    """A result key from what a user wrote: the key itself (latency_p90) or a metric
    (latency -> its average)."""
    from ..olive.evaluate import METRICS, result_keys

    known = list(result["metrics"])
    if name in known:
        return name
    if name in METRICS and result_keys(name)[0] in known:
        return result_keys(name)[0]
    import difflib

    names = known + [m for m in METRICS if result_keys(m)[0] in known and m not in known]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    measured = f"measured: {', '.join(known)}" if known else "nothing is measured yet: run `olivepipe apply`"
    raise OlivepipeError(f"no measured metric '{name}'", (f"did you mean '{close[0]}'? " if close else "") + measured)


def points(result: dict, x: str, y: str, changes: dict | None = None) -> list[dict]:
    """What a plot draws: one point per evaluate node that has both metrics, with the
    old position from ``changes`` (a ``diff`` result) when it differs."""
    old = {r["node"]: r["values"] for r in (changes or {}).get("rows", [])}
    out = []
    for r in result["rows"]:
        vx, vy = r["values"].get(x), r["values"].get(y)
        if vx is None or vy is None or not (math.isfinite(vx) and math.isfinite(vy)):
            continue
        p = {"label": f"{r['node']} ({r['input']})" if r.get("input") else r["node"], "x": vx, "y": vy,
             "stale": r["status"] == STALE}
        o = old.get(r["node"], {})
        ox, oy = (o.get(x) or {}).get("old"), (o.get(y) or {}).get("old")
        if ox is not None and oy is not None and (ox, oy) != (vx, vy):
            p["old"] = (ox, oy)
        out.append(p)
    return out


def axis_label(result: dict, key: str) -> str:
    unit = result["units"].get(key) or ""
    return f"{key} ({unit})" if unit else key
