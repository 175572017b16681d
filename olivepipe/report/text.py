"""Renderers: plans, apply progress and results as text (rich), markdown and JSON. Nothing here decides anything."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .summary import SYMBOL, WORD, _fmt_s, plan_lines, variant_lines  # noqa: F401  (plan_text's lines; names kept for callers)
from .summary import cache_rows, event_json, nothing_to_do, status_lines  # noqa: F401  (re-exported for callers)

from ..flow.plan import Plan
from ..flow.status import BLOCKED, CACHED, RUN, SKIP, Outcome

if TYPE_CHECKING:  # types only: `cache ls` and `status` render without importing the executor
    from ..flow.scheduler import ApplyResult, Event

def plan_text(plan: Plan, console: Console) -> None:
    for line in plan_lines(plan):
        text = Text()
        for part, style in line:
            text.append(part, style=style)
        console.print(text)


def plan_markdown(plan: Plan, mermaid: str) -> str:
    lines = [f"### olivepipe plan: `{plan.workflow}`", ""]
    lines += [f"> {line}" for line in variant_lines(plan)] + ([""] if plan.variant else [])
    c = plan.counts()
    lines.append(f"**{c[RUN]} to run, {c[CACHED]} cached, {c[BLOCKED]} blocked**" +
                 (f", {c[SKIP]} skipped" if c[SKIP] else ""))
    est = plan.to_json()["estimate_s"]
    if est is not None:
        lines += ["", f"Estimated time from earlier runs: {_fmt_s(est)}"]
    for name, note in plan.substitutions.items():
        lines.append(f"- rehearsal: `{name}`: {note}")
    lines += ["", "```mermaid", mermaid.rstrip(), "```", "",
              "| step | does | device | status | last time | why |", "|---|---|---|---|---|---|"]
    for s in plan.steps:
        why = "<br>".join(list(s.reasons) + list(s.notes) + [f"⚠ {w}" for w in s.warnings]).replace("|", "\\|")
        lines.append(f"| `{s.name}` | {s.label} | {s.device} | {WORD[s.status]} | {_fmt_s(s.estimate_s)} | {why} |")
    return "\n".join(lines) + "\n"


class Progress:
    """Live table of steps during apply: a ticking timer per running step, its step progress
    read from its log (`26/100`), and the log's path. Plain lines when not a terminal.
    ``verbose`` also streams every running step's log, prefixed with the step's name."""

    def __init__(self, plan: Plan, console: Console, *, verbose: bool = False):
        self.console = console
        self.state = {s.name: ("waiting" if s.status != SKIP else "skip", "") for s in plan.steps}
        self.started: dict[str, float] = {}
        self.logs: dict[str, str] = {}
        self.offsets: dict[str, int] = {}
        self.verbose = verbose
        self.stop = threading.Event()
        self.lock = threading.Lock()
        # get_renderable: redrawn on every refresh, so the timers tick between events
        self.live = Live(get_renderable=self._table, console=console, refresh_per_second=4, transient=False) \
            if console.is_terminal else None
        self.tail = threading.Thread(target=self._stream, daemon=True) if verbose else None

    def __enter__(self):
        if self.live:
            self.live.__enter__()
        if self.tail:
            self.tail.start()
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:  # interrupted: the last frame must not show steps still running
            with self.lock:
                for name, (st, _) in self.state.items():
                    if st in ("running", "waiting"):
                        self.state[name] = ("interrupted" if st == "running" else "not started", "")
        self.stop.set()
        if self.tail:
            self.tail.join(2)
        self._stream_once()
        if self.live:
            self.live.refresh()
            self.live.__exit__(*exc)

    def __call__(self, e: Event) -> None:
        with self.lock:
            if e.kind == "start":
                self.started[e.step] = time.monotonic()
                self.state[e.step] = ("running", e.message)
                self.logs[e.step] = e.log
                self.offsets[e.step] = 0
            else:
                detail = e.message if e.kind in ("failed", "blocked", "skipped") else _fmt_s(e.seconds) if e.seconds else ""
                self.state[e.step] = (e.kind, detail)
        if self.live:
            self.live.refresh()
        elif e.kind != "start":
            self.console.print(f"{e.kind:>8}  {e.step}  {self.state[e.step][1]}")
        else:
            self.console.print(f"{'running':>8}  {e.step}  {e.message}  (log: {e.log})")

    def _stream(self):
        while not self.stop.wait(0.5):
            self._stream_once()

    def _stream_once(self):
        if not self.verbose:
            return
        with self.lock:
            running = [(n, self.logs[n]) for n, (st, _) in self.state.items() if n in self.logs]
        for name, log in running:
            try:
                with open(log, "rb") as f:
                    f.seek(self.offsets.get(name, 0))
                    chunk = f.read()
            except OSError:
                continue
            # whole lines, and tqdm's redraws (ended by \r, not \n): a bar shows as it moves,
            # once per poll (its latest state), instead of only when it finishes, or not at all
            cut = max(chunk.rfind(b"\n"), chunk.rfind(b"\r")) + 1
            if not cut:
                continue
            self.offsets[name] = self.offsets.get(name, 0) + cut
            for line in chunk[:cut].decode("utf-8", "replace").split("\n"):
                redraws = [r for r in line.split("\r") if r.strip()]
                if redraws:
                    self.console.print(Text(f"[{name}] ", style="cyan") + Text(redraws[-1]))

    def _table(self) -> Table:
        from ..run.progress import read_progress

        t = Table(show_header=False, box=None, pad_edge=False)
        styles = {"running": "yellow", "done": "green", "cached": "green", "failed": "red", "blocked": "red",
                  "skipped": "dim", "skip": "dim", "waiting": "dim", "interrupted": "red", "not started": "dim"}
        with self.lock:
            rows = list(self.state.items())
        for name, (st, detail) in rows:
            if st == "running":
                bits = [detail, _fmt_clock(time.monotonic() - self.started[name])]
                prog = read_progress(Path(self.logs[name])) if self.logs.get(name) else None
                if prog:
                    bits.append(f"step {prog}")
                bits.append(f"log {self.logs.get(name, '')}")
                detail = "  ".join(b for b in bits if b)
            t.add_row(Text(st, style=styles.get(st, "")), Text(name, style="bold"), Text(detail or "", style="dim"))
        return t


def _fmt_clock(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def result_text(result: ApplyResult, console: Console, resume: str) -> None:
    failed = [o for o in result.outcomes.values() if o.status in (Outcome.FAILED, Outcome.BLOCKED)]
    ran = len(result.ran)
    cached = sum(1 for o in result.outcomes.values() if o.status == Outcome.CACHED)
    skipped = sum(1 for o in result.outcomes.values() if o.status == Outcome.SKIPPED)
    for o in failed:
        console.print(Text(f"✗ {o.name}: {o.error}", style="red"))
        if o.log:
            console.print(Text(f"    log: {o.log}", style="dim"))
    style = "bold green" if result.ok else "bold red"
    console.print(Text(f"Apply {'complete' if result.ok else 'failed'}: {ran} ran, {cached} cached, "
                       f"{len(failed)} failed, {skipped} skipped in {result.seconds:.2f}s", style=style))
    if failed:
        console.print(Text(f"Finished steps are cached: fix the cause and run `{resume}` again to resume.",
                           style="dim"))


def cache_text(rows: list[dict], disk_bytes: int) -> list[str]:
    lines = [f"{r['key'][:16]}  {r['kind'] or '?':<12} {r['files']:>5} files  {r['bytes'] / 1e6:>10.1f} MB  "
             f"{', '.join(r.get('used_by') or ['(no lock file uses it)'])}" for r in rows]
    total = sum(r["bytes"] for r in rows)
    return lines + [f"{len(rows)} entries, {total / 1e6:.1f} MB of results in {disk_bytes / 1e6:.1f} MB on disk "
                    "(identical files are stored once)"]
