"""`olivepipe report`: one self-contained HTML page about a workflow's last runs.

The DAG with each step's status, key, time and where it runs; the metrics table and a plot;
goals when the metrics carry them; each step's log tail. Everything is inline (CSS, SVG): the
page loads nothing, so it can be attached to a pull request or mailed. Read-only: it reads the
plan, the lock, the cache and the logs, and writes only the page.
"""
from __future__ import annotations

import html
import math
import re
import time
from pathlib import Path

from ..flow.status import BLOCKED, CACHED, RUN, SKIP

LOG_LINES = 40  # per step: enough to see how it ended
LOG_TAIL_BYTES = 64 << 10
WORD = {CACHED: "up to date", RUN: "will run", BLOCKED: "blocked", SKIP: "skipped"}
COLOR = {CACHED: "#2e7d32", RUN: "#b26a00", BLOCKED: "#c62828", SKIP: "#757575", "model": "#455a64"}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def collect(ws) -> dict:
    """The page's content as plain data (what the tests read, what render() draws)."""
    from .. import __version__
    from ..run.executors.base import placement_key
    from ..flow.plan import make_plan

    plan = make_plan(ws)
    locked = ws.lock_nodes()
    steps = []
    for s in plan.steps:
        rec = locked.get(s.name) or {}
        steps.append({"name": s.name, "label": s.label, "kind": s.kind, "status": s.status,
                      "key": s.key or rec.get("key"), "inputs": list(s.inputs), "device": s.device,
                      "where": s.where, "seconds": rec.get("duration_s"), "reasons": list(s.reasons),
                      "log": log_tail(ws.log_path(s.name))})
    produced = {s["name"] for s in steps}
    sources = [{"name": m, "label": spec.hf or (str(spec.path.name) if spec.path else "model"), "kind": "model",
                "status": "model", "inputs": [], "where": placement_key(None)}
               for m, spec in ws.workflow.models.items()
               if m not in produced and any(m in s["inputs"] for s in steps)]
    from ..flow import metrics as measured

    metrics = measured.collect(ws) if any(n.kind == measured.KIND for n in ws.workflow.nodes.values()) else None
    return {"workflow": ws.lock_name, "file": ws.workflow.file.name, "description": ws.workflow.description,
            "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "version": __version__,
            "rehearse": ws.rehearse, "steps": steps, "sources": sources, "metrics": metrics,
            "summary": plan.counts()}


def log_tail(path: Path, lines: int = LOG_LINES) -> list[str]:
    """The last ``lines`` lines of a log, as a terminal would show them (colors dropped, a progress
    bar's redraws collapsed to its last state)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - LOG_TAIL_BYTES))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    out = []
    for line in text.split("\n"):
        shown = [r for r in _ANSI.sub("", line).split("\r") if r.strip()]
        out.append(shown[-1] if shown else "")
    while out and not out[-1]:
        out.pop()
    return out[-lines:]


# -- rendering ------------------------------------------------------------------------------

def _e(v) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _secs(s) -> str:
    if not isinstance(s, (int, float)):
        return ""
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def dag_svg(steps: list[dict], sources: list[dict]) -> str:
    """The DAG left to right, one column per generation; each box says name, what it does, status."""
    nodes = {n["name"]: n for n in [*sources, *steps]}
    level: dict[str, int] = {}
    for n in nodes.values():  # steps arrive in run order: inputs first
        level[n["name"]] = 1 + max((level.get(i, 0) for i in n["inputs"] if i in nodes), default=-1)
    columns: dict[int, list[str]] = {}
    for name, lv in level.items():
        columns.setdefault(lv, []).append(name)
    w, h, gx, gy, pad = 190, 54, 60, 18, 10
    pos = {name: (pad + lv * (w + gx), pad + i * (h + gy)) for lv, names in columns.items()
           for i, name in enumerate(names)}
    width = pad * 2 + (max(columns, default=0) + 1) * (w + gx) - gx
    height = pad * 2 + max((len(v) for v in columns.values()), default=1) * (h + gy) - gy
    parts = [f'<svg class="dag" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             'role="img" aria-label="workflow graph">']
    for n in nodes.values():
        x2, y2 = pos[n["name"]]
        for i in n["inputs"]:
            if i in pos:
                x1, y1 = pos[i]
                parts.append(f'<path class="edge" d="M{x1 + w},{y1 + h / 2} C{x1 + w + gx / 2},{y1 + h / 2} '
                             f'{x2 - gx / 2},{y2 + h / 2} {x2},{y2 + h / 2}" />')
    for n in nodes.values():
        x, y = pos[n["name"]]
        color = COLOR.get(n["status"], "#455a64")
        word = "source model" if n["status"] == "model" else WORD.get(n["status"], n["status"])
        parts.append(f'<g class="node" data-step="{_e(n["name"])}" data-status="{_e(n["status"])}">'
                     f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" fill="#fff" stroke="{color}" '
                     f'stroke-width="2" /><rect x="{x}" y="{y}" width="6" height="{h}" rx="3" fill="{color}" />'
                     f'<text x="{x + 14}" y="{y + 20}" class="n">{_e(n["name"][:24])}</text>'
                     f'<text x="{x + 14}" y="{y + 38}" class="l">{_e(str(n["label"])[:22])} · '
                     f'<tspan fill="{color}">{_e(word)}</tspan></text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if raw <= m * step)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def plot_svg(points: list[dict], xlabel: str, ylabel: str) -> str:
    """A scatter plot of the evaluated nodes, drawn here (no plotting library, nothing to load)."""
    W, H, L, R, T, B = 640, 360, 70, 160, 20, 50
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]

    def span(v):
        lo, hi = min(v), max(v)
        margin = (hi - lo) * 0.1 or abs(lo) * 0.1 or 1.0
        return lo - margin, hi + margin

    (x0, x1), (y0, y1) = span(xs), span(ys)

    def px(v):
        return L + (v - x0) / (x1 - x0) * (W - L - R)

    def py(v):
        return H - B - (v - y0) / (y1 - y0) * (H - T - B)

    parts = [f'<svg class="plot" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" '
             f'aria-label="{_e(ylabel)} against {_e(xlabel)}">',
             f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="#fafafa" stroke="#bbb" />']
    for t in _ticks(x0, x1):
        parts.append(f'<line x1="{px(t):.1f}" y1="{T}" x2="{px(t):.1f}" y2="{H - B}" class="grid" />'
                     f'<text x="{px(t):.1f}" y="{H - B + 16}" text-anchor="middle" class="tick">{t:g}</text>')
    for t in _ticks(y0, y1):
        parts.append(f'<line x1="{L}" y1="{py(t):.1f}" x2="{W - R}" y2="{py(t):.1f}" class="grid" />'
                     f'<text x="{L - 6}" y="{py(t) + 4:.1f}" text-anchor="end" class="tick">{t:g}</text>')
    parts.append(f'<text x="{(L + W - R) / 2}" y="{H - 10}" text-anchor="middle" class="axis">{_e(xlabel)}</text>'
                 f'<text x="14" y="{(T + H - B) / 2}" text-anchor="middle" class="axis" '
                 f'transform="rotate(-90 14 {(T + H - B) / 2})">{_e(ylabel)}</text>')
    for p in points:
        color = "#ef6c00" if p.get("stale") else "#1565c0"
        parts.append(f'<g class="point" data-label="{_e(p["label"])}"><circle cx="{px(p["x"]):.1f}" '
                     f'cy="{py(p["y"]):.1f}" r="5" fill="{color}" /><text x="{px(p["x"]) + 8:.1f}" '
                     f'y="{py(p["y"]) - 6:.1f}" class="tick">{_e(p["label"][:28])}'
                     f'{" (stale)" if p.get("stale") else ""}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _metrics_html(result: dict) -> str:
    from ..flow import metrics as m
    from .summary import metric_head, metric_num

    keys = result["metrics"]
    head = "".join(f"<th>{_e(metric_head(result, k))}</th>" for k in keys)
    body = "".join(
        f'<tr data-node="{_e(r["node"])}"><td>{_e(r["node"])}</td><td>{_e(r.get("input") or "-")}</td>'
        + "".join(f'<td class="num">{_e(metric_num(r["values"].get(k)))}</td>' for k in keys)
        + f'<td>{_e("" if r["status"] == "current" else r["status"])}</td></tr>' for r in result["rows"])
    out = [f'<table class="metrics"><tr><th>node</th><th>input</th>{head}<th>status</th></tr>{body}</table>']
    notes = sorted({f"{r['status']}: {r['why']}" for r in result["rows"] if r.get("why")})
    out += [f'<p class="note">{_e(n)}</p>' for n in notes]
    axes = []
    for want in (("latency",), ("perplexity", "size")):
        for name in want:
            try:
                axes.append(m.resolve_metric(result, name))
                break
            except Exception:  # not measured: the next candidate, or no plot
                continue
    if len(axes) == 2:
        pts = m.points(result, *axes)
        if pts:
            out.append(plot_svg(pts, m.axis_label(result, axes[0]), m.axis_label(result, axes[1])))
    goals = result.get("goals")
    if isinstance(goals, list) and goals and all(isinstance(g, dict) for g in goals):
        cols = list(dict.fromkeys(k for g in goals for k in g))
        out.append("<h3>Goals</h3><table class=\"goals\"><tr>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr>"
                   + "".join("<tr>" + "".join(f"<td>{_e(g.get(c))}</td>" for c in cols) + "</tr>" for g in goals)
                   + "</table>")
    return "".join(out)


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px;color:#212121;
background:#fff}h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e0e0e0}
.meta{color:#616161}table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #e0e0e0;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre,.key{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px}.status{font-weight:600}
.s-cached{color:#2e7d32}.s-run{color:#b26a00}.s-blocked{color:#c62828}.s-skip{color:#757575}
pre{background:#263238;color:#eceff1;padding:10px;overflow:auto;max-height:420px;margin:4px 0}
.dag text,.plot text{font-family:system-ui,"DejaVu Sans",sans-serif}.dag .n{font-size:13px;font-weight:600}
.dag .l{font-size:11px;fill:#546e7a}.edge{fill:none;stroke:#90a4ae;stroke-width:1.5}.grid{stroke:#e0e0e0}
.tick{font-size:11px;fill:#546e7a}.axis{font-size:12px;fill:#37474f}.note{color:#616161;margin:2px 0}
details{margin:6px 0}summary{cursor:pointer}.why{color:#757575;font-size:12px}
"""


def render(data: dict) -> str:
    c = data["summary"]
    title = f"olivepipe report: {data['workflow']}"
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{_e(title)}</h1>",
           f'<p class="meta">{_e(data["file"])}{" (rehearsal)" if data["rehearse"] else ""} · '
           f'{c[CACHED]} up to date, {c[RUN]} to run, {c[BLOCKED]} blocked · generated {_e(data["generated"])} '
           f'by olivepipe {_e(data["version"])}</p>']
    if data.get("description"):
        out.append(f"<p>{_e(data['description'])}</p>")
    out += ["<h2>Pipeline</h2>", dag_svg(data["steps"], data["sources"]), "<h2>Steps</h2>",
            '<table class="steps"><tr><th>step</th><th>does</th><th>status</th><th>key</th><th>time</th>'
            "<th>runs on</th></tr>"]
    for s in data["steps"]:
        why = "".join(f'<div class="why">{_e(r)}</div>' for r in s["reasons"]) if s["status"] != CACHED else ""
        out.append(f'<tr data-step="{_e(s["name"])}"><td>{_e(s["name"])}</td><td>{_e(s["label"])}</td>'
                   f'<td><span class="status s-{_e(s["status"])}">{_e(WORD.get(s["status"], s["status"]))}'
                   f'</span>{why}</td><td class="key">{_e((s["key"] or "")[:12])}</td>'
                   f'<td class="num">{_e(_secs(s["seconds"]))}</td>'
                   f'<td>{_e(s["where"])} ({_e(s["device"])})</td></tr>')
    out.append("</table>")
    if data.get("metrics"):
        out += ["<h2>Metrics</h2>", _metrics_html(data["metrics"])]
    out.append("<h2>Logs</h2>")
    for s in data["steps"]:
        if s["log"]:
            what = "last line" if len(s["log"]) == 1 else f"last {len(s['log'])} lines"
            out.append(f'<details open class="log" data-step="{_e(s["name"])}"><summary>{_e(s["name"])}: {what}'
                       f'</summary><pre>{_e(chr(10).join(s["log"]))}</pre></details>')
        else:
            out.append(f'<p class="note">{_e(s["name"])}: no log (it has not run on this machine)</p>')
    out.append("</body></html>\n")
    return "\n".join(out)
