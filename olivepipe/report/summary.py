"""Plain-text one-liners that need no renderer: a cached no-op apply, `status`, `cache ls` rows.

Kept apart from text.py so the hot path of a no-op apply never imports rich."""
from __future__ import annotations

from ..flow.status import BLOCKED, CACHED, RUN, SKIP, Outcome
SYMBOL = {CACHED: ("=", "green"), RUN: ("+", "yellow"), BLOCKED: ("!", "red"), SKIP: ("-", "dim")}
WORD = {CACHED: "cached", RUN: "will run", BLOCKED: "blocked", SKIP: "skip"}


def nothing_to_do(result) -> str:
    """The one-line answer of an apply that found everything cached."""
    c = sum(1 for o in result.outcomes.values() if o.status == Outcome.CACHED)
    failed = [o for o in result.outcomes.values() if o.status == Outcome.FAILED]
    if failed:  # a cached result can still fail its node: a missed goal is judged on every apply
        return "\n".join([f"✗ {o.name}: {o.error}" for o in failed] +
                         [f"Apply failed: nothing ran, {c} cached, {len(failed)} failed ({result.seconds:.2f}s)"])
    return nothing_to_do_line(c, result.seconds)


def nothing_to_do_line(cached: int, seconds: float) -> str:
    return f"Apply complete: nothing to do, {cached} cached ({seconds:.2f}s)"


def _fmt_s(s: float | None) -> str:
    if s is None:
        return ""
    return f"{s:.1f}s" if s < 120 else f"{s / 60:.1f}min"


def plan_lines(plan) -> list[list[tuple[str, str]]]:
    """The plan as lines of (text, style) parts: report.plan_text prints them through rich; joined
    they are the plain text (what the no-op fast path replays, olivepipe/fastpath.py)."""
    title = f"Plan for {plan.workflow}" + (" (REHEARSAL: tiny models, CPU stand-ins)" if plan.rehearse else "")
    out = [[(title, "bold")]] + [[(f"  {line}", "bold yellow")] for line in variant_lines(plan)]
    for s in plan.steps:
        sym, color = SYMBOL[s.status]
        head = [(f"  {sym} ", color), (s.name, "bold"),
                (f"  {s.label} @ {s.device}" + ("" if s.where == "local" else f" on {s.where}"), "cyan"),
                (f"  {WORD[s.status]}", color)]
        if s.status == RUN and s.estimate_s:
            head.append((f"  (~{_fmt_s(s.estimate_s)}" + (f": {s.estimate_note})" if s.estimate_note else " last time)"),
                         "dim"))
        out.append(head)
        if s.status in (RUN, BLOCKED):
            out += [[(f"      {r}", "dim" if s.status == RUN else "red")] for r in s.reasons]
        out += [[(f"      {note}", "dim")] for note in s.notes]
        out += [[(f"      ! {w}", "bold magenta")] for w in s.warnings]
    shown = {s.name for s in plan.steps}
    out += [[(f"  ~ {name}  REHEARSAL: {note}", "bold magenta")]
            for name, note in plan.substitutions.items() if name not in shown]
    c = plan.counts()
    summary = f"Plan: {c[RUN]} to run, {c[CACHED]} cached, {c[BLOCKED]} blocked"
    if c[SKIP]:
        summary += f", {c[SKIP]} skipped"
    out.append([(summary, "bold")])
    return out


def variant_lines(plan) -> list[str]:
    """A -S variant, said as what it changes in the committed file."""
    v = plan.variant
    if not v:
        return []
    return [f"variant {v['name']} of the committed file (results in .olivepipe/variants.lock):"] + [
        f"  {c['path']}: {_short(c['old'])} -> {_short(c['new'])}" for c in v["changes"]]


def _short(v) -> str:
    import json

    return "(unset)" if v is None else json.dumps(v, default=str) if not isinstance(v, str) else v


def plan_plain(plan) -> str:
    return "".join("".join(part for part, _ in line) + "\n" for line in plan_lines(plan))


def event_json(e) -> dict:
    """One `apply --json` line (``e``: an executor.Event)."""
    out = {"event": e.kind, "step": e.step}
    if e.message:
        out["message"] = e.message
    if e.seconds:
        out["seconds"] = round(e.seconds, 3)
    if e.log:
        out["log"] = e.log
    return out


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
    users = lock_users(list(store.roots()) + list(extra_locks))
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
    from ..core import lock as lockfile
    from ..core.errors import OlivepipeError

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


# -- metrics (olivepipe metrics, and plan --format markdown --metrics) ------------------------

def metric_num(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, int) or abs(v) >= 1e4:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def metric_cell(v: dict) -> str:
    a, b = v.get("old"), v.get("new")
    if a == b:
        return metric_num(a)
    if a is None or b is None:
        return f"{metric_num(a)} -> {metric_num(b)}"
    pct = f" ({v['pct']:+.1f}%)" if v.get("pct") is not None else ""
    return f"{metric_num(a)} -> {metric_num(b)}{pct}"


def metric_head(result: dict, k: str) -> str:
    unit = result["units"].get(k)
    return f"{k} ({unit})" if unit else k


def metrics_markdown(table: dict, *, diff: bool) -> list[str]:
    keys = table["metrics"]
    lines = ["| node | input | " + " | ".join(metric_head(table, k) for k in keys) + " | status |",
             "|---|---|" + "---:|" * len(keys) + "---|"]
    for r in table["rows"]:
        if diff:
            cells = [metric_cell(r["values"][k]) if k in r["values"] else "-" for k in keys]
        else:
            cells = [metric_num(r["values"].get(k)) for k in keys]
        status = r["status"] if diff or r["status"] != "current" else ""
        lines.append(f"| {r['node']} | {r['input'] or '-'} | " + " | ".join(cells) + f" | {status} |")
    if diff:
        lines = [f"Metrics: `{table['lock']}` -> working tree", ""] + lines
    return lines


def goals_markdown(rows: list[dict]) -> list[str]:
    """The goals table of `plan --format markdown`: each goal with its last result."""
    mark = {True: "✅ met", False: "❌ missed", None: "—"}
    lines = ["", "#### Goals (judged on the last measured results)", "", "| node | goal | last result | |",
             "|---|---|---|---|"]
    for r in rows:
        stale = " (stale: measured before this change)" if r["status"] == "stale" else ""
        lines.append(f"| `{r['node']}` | {r['goal']} | {r['result']}{stale} | {mark[r['ok']]} |".replace("\n", " "))
    return lines


def text_grid(head: list[str], body: list[list[str]]) -> list[str]:
    """A plain-text table: columns padded, numbers right-aligned (metrics, exp show)."""
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

    def line(r):  # numbers right-aligned, names left
        return "  ".join(c.rjust(w) if i >= 2 and c[:1] in "-0123456789" else c.ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    return [line(head), line(["-" * w for w in widths]), *[line(r) for r in body]]
