"""Helpers for bench/gpu_lab.sh.

    ... | python3 bench/gpu_lab_report.py stamp > events.jsonl   # `apply --json` lines, each with "t" (epoch s)
    python3 bench/gpu_lab_report.py summary WORKDIR > summary.json
    python3 bench/gpu_lab_report.py poll OUT.txt               # "EPOCH GPU_MIB RSS_MIB" every 0.5 s

poll: GPU memory (nvidia-smi memory.used) and the summed resident memory of every other
process on the machine (the apply and its workers: nothing else runs there), twice a second.

summary: per node of every events*.jsonl: status, olivepipe seconds, wall seconds between
its start and end events, the peak GPU memory (MiB, nvidia-smi's memory.used, polled into
gpumem.txt as "EPOCH MIB" lines) while it ran and the baseline before the first node,
the first olivepipe note lines and the last error line of its log.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path


def stamp() -> None:
    for line in sys.stdin:
        line = line.rstrip("\n")
        try:
            ev = json.loads(line)
        except ValueError:
            ev = {"event": "text", "text": line}
        if isinstance(ev, dict) and ev.get("event") != "progress":
            ev["t"] = round(time.time(), 3)
            print(json.dumps(ev), flush=True)


def poll(out: Path) -> None:
    import os
    import subprocess

    me = os.getpid()
    page = os.sysconf("SC_PAGE_SIZE")
    with open(out, "a") as f:
        while True:
            try:
                gpu = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout.split()[0]
            except Exception:  # noqa: BLE001 - a missed sample is not a reason to stop polling
                gpu = "-1"
            rss = 0
            for pid in os.listdir("/proc"):
                if pid.isdigit() and int(pid) != me:
                    try:
                        rss += int(open(f"/proc/{pid}/statm").read().split()[1]) * page
                    except (OSError, IndexError, ValueError):
                        pass
            f.write(f"{time.time():.3f} {gpu} {rss // 2**20}\n")
            f.flush()
            time.sleep(0.5)


def _gpumem(path: Path, col: int = 1) -> list[tuple[float, int]]:
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) > col and parts[col].lstrip("-").isdigit():
                out.append((float(parts[0]), int(parts[col])))
    return out


_ERR = re.compile(r"^(\w+(?:\.\w+)*(?:Error|Exception)):? (.*)$")


def _log_facts(log: str | None) -> dict:
    if not log or not Path(log).exists():
        return {}
    notes, last = [], ""
    for line in Path(log).read_text(errors="replace").splitlines():
        if line.startswith("olivepipe: "):
            notes.append(line[len("olivepipe: "):][:300])
        m = _ERR.match(line.strip())
        if m:
            last = f"{m.group(1)}: {m.group(2)}"[:400]
    return {"shim_notes": notes, "last_error_in_log": last} if (notes or last) else {}


def summary(work: Path) -> dict:
    mem = _gpumem(work / "gpumem.txt")
    rss = _gpumem(work / "gpumem.txt", col=2)
    res = {"gpu_mem_samples": len(mem), "workflows": {}}
    for f in sorted(work.glob("events*.jsonl")):
        evs = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
        starts, nodes = {}, {}
        first = min((e["t"] for e in evs if e.get("event") == "start"), default=None)
        for e in evs:
            step = e.get("step")
            if e.get("event") == "start":
                starts[step] = e["t"]
            elif e.get("event") in ("done", "failed", "cached", "skipped", "blocked") and step:
                t0 = starts.get(step, e["t"])
                window = [m for t, m in mem if t0 - 0.5 <= t <= e["t"] + 0.5]
                rwin = [m for t, m in rss if t0 - 0.5 <= t <= e["t"] + 0.5]
                nodes[step] = {"status": e["event"], "seconds": e.get("seconds"), "wall_s": round(e["t"] - t0, 1),
                               "gpu_peak_mib": max(window) if window else None,
                               "host_rss_peak_mib": max(rwin) if rwin else None,
                               **({"error": e.get("message")} if e["event"] in ("failed", "skipped", "blocked") else {}),
                               **_log_facts(e.get("log"))}
            elif e.get("event") == "result":
                res["workflows"].setdefault(f.stem, {})["ok"] = e.get("ok")
                res["workflows"][f.stem]["apply_seconds"] = e.get("seconds")
        before = [m for t, m in mem if first is not None and t < first]
        res["workflows"].setdefault(f.stem, {}).update({"nodes": nodes, "gpu_baseline_mib": min(before) if before else None})
    res["gpu_peak_mib_overall"] = max((m for _, m in mem), default=None)
    return res


if __name__ == "__main__":
    if sys.argv[1:2] == ["stamp"]:
        stamp()
    elif sys.argv[1:2] == ["poll"] and len(sys.argv) == 3:
        poll(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["summary"] and len(sys.argv) == 3:
        print(json.dumps(summary(Path(sys.argv[2])), indent=2))
    else:
        raise SystemExit(__doc__)
