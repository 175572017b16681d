"""`olivepipe metrics`: rendering only; olivepipe/flow/metrics.py collects and compares."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..core.errors import OlivepipeError
from ..report.summary import metric_cell as _cell, metric_head as _head, metric_num as _num
from ..report.summary import metrics_markdown as _markdown
from ..report.summary import text_grid as _grid
from .app import cache_opt, main, rehearse_opt, workflow_arg


@main.command("metrics")
@workflow_arg
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@click.option("--diff", "rev", metavar="REV", help="Compare with the results recorded in the lock at a git revision "
                                                  "(e.g. HEAD~1, main).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Draw every evaluated node on two metrics into OUT.png or OUT.svg.")
@click.option("--x", "x", default="latency", show_default=True, help="Metric on the x axis (e.g. latency_p90).")
@click.option("--y", "y", default="perplexity", show_default=True, help="Metric on the y axis.")
@click.option("--spread", is_flag=True, help="Each metric as mean ± standard deviation over every recorded "
                                             "measurement of the node's current key (apply --force measures again).")
@cache_opt
@rehearse_opt
def metrics_cmd(workflow, fmt, rev, plot, x, y, spread, cache_dir, rehearse):
    """What the evaluate nodes measured, side by side: one row per node (its input model),
    one column per metric. Reads cached results only; runs nothing.

    \b
    Examples:
      olivepipe metrics workflow.yaml
      olivepipe metrics workflow.yaml --diff HEAD~1 --format markdown
      olivepipe metrics workflow.yaml --spread
      olivepipe metrics workflow.yaml --plot tradeoff.png --x latency --y perplexity
    """
    from ..flow import metrics
    from ..flow.workspace import open_workspace

    if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
        raise OlivepipeError(f"--plot {plot}: the file must end in .png or .svg", "e.g. --plot tradeoff.png")
    ws = open_workspace(workflow, cache_dir=cache_dir, rehearse=rehearse, read_only=True)
    result = metrics.collect(ws)
    changes = metrics.diff(ws, result, rev) if rev else None
    if plot is not None:
        kx, ky = metrics.resolve_metric(result, x), metrics.resolve_metric(result, y)
        pts = metrics.points(result, kx, ky, changes)
        if not pts:
            raise OlivepipeError(f"no evaluated node has both {kx} and {ky}",
                                 "measure both (metrics: [...]) and run `olivepipe apply`")
        _draw(pts, metrics.axis_label(result, kx), metrics.axis_label(result, ky), plot,
              f"{result['workflow']}" + (f" (arrows: from {rev})" if changes else ""), ws.workflow.root)
        click.echo(f"wrote {plot} ({len(pts)} point{'s' if len(pts) != 1 else ''})", err=True)
    if fmt == "json":
        click.echo(json.dumps({**result, "diff": changes} if changes else result, indent=2))
    elif fmt == "markdown":
        click.echo("\n".join(_markdown(changes or result, diff=changes is not None)))
    else:
        click.echo("\n".join(_text(result, changes, spread)))
    return 0


# -- tables ---------------------------------------------------------------------------

def _spread_cell(r: dict, k: str) -> str:
    s = (r.get("spread") or {}).get(k)
    if not s:
        return _num(r["values"].get(k))
    return f"{_num(s['mean'])} ± {_num(s['stdev'])} (n={s['n']})"


def _text(result: dict, changes: dict | None, spread: bool = False) -> list[str]:
    if changes is None:
        cell = _spread_cell if spread else (lambda r, k: _num(r["values"].get(k)))
        head = ["node", "input"] + [_head(result, k) for k in result["metrics"]] + ["status"]
        body = [[r["node"], r["input"] or "-"] + [cell(r, k) for k in result["metrics"]]
                + ["" if r["status"] == "current" else r["status"]] for r in result["rows"]]
        n = len(result["rows"])
        lines = [f"olivepipe metrics {result['workflow']}: {n} evaluate node{'s' if n != 1 else ''}", ""]
        lines += _grid(head, body)
        notes = sorted({f"{r['status']}: {r['why']}" for r in result["rows"] if r.get("why")})
        return lines + ([""] + notes if notes else [])
    head = ["node", "input"] + [_head(changes, k) for k in changes["metrics"]] + ["status"]
    body = [[r["node"], r["input"] or "-"] + [_cell(r["values"][k]) if k in r["values"] else "-"
                                               for k in changes["metrics"]] + [r["status"]] for r in changes["rows"]]
    return [f"olivepipe metrics {result['workflow']}: {changes['lock']} -> working tree", ""] + _grid(head, body)


# -- plot -----------------------------------------------------------------------------

def _draw(pts: list[dict], xlabel: str, ylabel: str, out: Path, title: str, base: Path) -> None:
    import io
    import os

    from ..core.safefs import open_nofollow, user_output

    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    try:
        for p in pts:
            if "old" in p:
                ax.annotate("", xy=(p["x"], p["y"]), xytext=p["old"],
                            arrowprops={"arrowstyle": "->", "color": "0.6", "lw": 1})
                ax.scatter([p["old"][0]], [p["old"][1]], s=30, facecolors="none", edgecolors="0.6", zorder=2)
            ax.scatter([p["x"]], [p["y"]], s=50, zorder=3, color="tab:orange" if p["stale"] else "tab:blue")
            ax.annotate(p["label"] + (" (stale)" if p["stale"] else ""), (p["x"], p["y"]),
                        textcoords="offset points", xytext=(6, 6), fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.margins(0.15)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format=out.suffix.lower().lstrip("."))
    finally:
        plt.close(fig)
    # a committed `plot.png -> ~/.bashrc` (or a linked folder on the way) is refused, never written through
    with os.fdopen(open_nofollow(user_output(base, out)), "wb") as f:
        f.write(buf.getvalue())
