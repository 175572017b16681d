"""`python bench/run.py --quick --json FILE`: the issue-25 figures in a few minutes, no Olive run.

Every figure carries the load average it ran under (1-minute, at its start and end): the
development machine is shared, so read ratios taken side by side, never absolute walls alone.
Whole-process timings alternate the command with its baseline, pair by pair (A B A B ...),
and quote the median of the per-pair ratios.

Keys (targets in docs/performance.md):
  noop_apply_ratio, status_ratio, plan_ratio   no-op `olivepipe apply|status|plan` (console script, fast
                                               path) / bare `python -c pass` of the same interpreter
  per_node_ms_100, per_node_ms_1000            apply of a chain of N trivial nodes through the real local
                                               executor (worker processes): marginal ms per node,
                                               (wall(N) - wall(1)) / (N - 1)
  plan_10k_{chain,wide,matrix,fanout}_s        validate + plan of 10,000 expanded nodes, in process
  hash_cold_over_read                          cold sha256 rate / cold plain read rate of one file
  hash_cold_over_read_multi_file               the same bytes as 4 files hashed several at once / the faster
                                               of reading them in turn or at once
  verify_s_over_hash_once                      `cache verify`'s loop over entries sharing files / hashing
                                               each distinct file once
  peers_noop_s                                 dvc repro / dvc status / Snakemake no-ops of the same 5-stage chain
                                               beside olivepipe's and a bare interpreter, one loop; `olive run` of
                                               one already-run node (bench/peers.py)
  load_avg                                     1-, 5-, 15-minute load at the start and at the end
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import peers
import targets
from targets import GIB, MIB, OLIVEPIPE, PY, REPO, bytecode_env, evict, load, run_wall, write_random


def _figure(fn):
    """Run one section; its result carries the load at its start and end and its wall."""
    l0, t0 = load(), time.perf_counter()
    out = fn()
    out["load_start_end"] = [l0, load()]
    out["section_wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def paired(a: list[str], b: list[str], n: int, env: dict, check=True) -> dict:
    """A and B in turn, n pairs (which goes first alternates): per-pair ratio A/B."""
    ra, rb, ratios = [], [], []
    for i in range(n):
        order = (a, b) if i % 2 == 0 else (b, a)
        walls = {}
        for cmd in order:
            _, w = run_wall(cmd, env=env, check=check)
            walls[id(cmd)] = w
        ra.append(walls[id(a)])
        rb.append(walls[id(b)])
        ratios.append(walls[id(a)] / walls[id(b)])
    return {"ratio_median": round(statistics.median(ratios), 3), "a_median_s": round(statistics.median(ra), 4),
            "b_median_s": round(statistics.median(rb), 4), "ratio_min_max": [round(min(ratios), 3), round(max(ratios), 3)],
            "pairs": n}


def _script_entry() -> str:
    try:
        text = Path(OLIVEPIPE[0]).read_text()
    except OSError:
        return "none: python -m olivepipe.cli"
    return next((ln.split("import", 1)[0].replace("from", "").strip() for ln in text.splitlines()
                 if ln.startswith("from olivepipe")), "?")


def install_layout() -> str:
    """How olivepipe is installed for the interpreter the ratios divide by, as found on disk: an import
    finder in an editable install is imported by every interpreter start, the bare one included,
    which would flatter the ratios. `.ci/setup-env` runs `pip install -e` (setuptools with
    package-dir {"" = "."}: a static .pth path entry)."""
    import sysconfig

    site = Path(sysconfig.get_paths(vars={"base": sys.prefix, "platbase": sys.prefix})["purelib"])
    dist = sorted(site.glob("olivepipe-*.dist-info"))
    if not dist:
        return f"{sys.prefix}: olivepipe not installed there (imported from {REPO})"
    try:
        editable = json.loads((dist[-1] / "direct_url.json").read_text()).get("dir_info", {}).get("editable", False)
    except (OSError, ValueError):
        editable = False
    finders = sorted(p.name for p in site.glob("__editable__*olivepipe*finder*.py"))
    pths = sorted(site.glob("__editable__*olivepipe*.pth"))
    imports = [ln for p in pths for ln in p.read_text().splitlines() if ln.startswith("import")]
    if not editable:
        how = "a regular (non-editable) install"
    elif finders or imports:
        how = f"an editable install with an import finder ({', '.join(finders) or imports[0][:80]}): every interpreter start imports it"
    else:
        how = f"an editable install by a static .pth path entry ({', '.join(p.name for p in pths)}), no import finder"
    return f"{sys.prefix}: {how}"


def noop(tmp: Path, fake_pipeline, pairs: int) -> dict:
    wf, _ = fake_pipeline(tmp / "noop", {})
    env = bytecode_env(tmp)
    trace = {**env, "OLIVEPIPE_FASTPATH": "trace"}
    run_wall([*OLIVEPIPE, "apply", str(wf)], env=env)  # completes the lock the fake pipeline left
    time.sleep(1.1)  # the stamp trusts no file modified within the last second
    p, _ = run_wall([*OLIVEPIPE, "apply", str(wf)], env=trace)
    stamp_note = p.stderr.strip()
    bare = [PY, "-c", "pass"]
    cmds = {"apply": [*OLIVEPIPE, "apply", str(wf)], "status": [*OLIVEPIPE, "status", str(wf)],
            "plan": [*OLIVEPIPE, "plan", str(wf)]}
    taken = {k: run_wall(c, env=trace)[0].stderr.strip() for k, c in cmds.items()}
    for c in [bare, *cmds.values()]:  # bytecode of everything these import
        run_wall(c, env=env)
    out = {"workflow": "lab-shaped 6-node pipeline, results published directly (bench/run.py fake_pipeline)",
           "bare_python": f"{PY} -c pass",
           "install_layout": install_layout(),
           "ci_setup_env_layout": "`.ci/setup-env` runs `pip install -e` (setuptools; pyproject's package-dir {\"\": \".\"}): "
                                  "a static .pth path entry, no import finder (a fresh `pip install --no-deps -e .` "
                                  "into an empty venv made exactly that, 2026-12-07)",
           "bytecode": "cached (PYTHONPYCACHEPREFIX in the bench's temp folder), for the bare interpreter too",
           "console_script": OLIVEPIPE, "console_script_imports": _script_entry(),
           "stamp_written_by_second_apply": stamp_note, "fast_path_trace": taken}
    for k, c in cmds.items():
        out[k] = paired(c, bare, pairs, env)
    off = {**env, "OLIVEPIPE_FASTPATH": "off"}
    out["apply_full_path"] = paired(cmds["apply"], bare, max(5, pairs // 3), off)
    out["apply_full_path"]["note"] = "OLIVEPIPE_FASTPATH=off: what a no-op costs when the stamp does not hold"
    return out


def per_node(tmp: Path, sizes=(1, 100, 1000)) -> dict:
    """A chain of N `sleep` nodes (tests/fakekinds.py, 0 s) through the real local executor."""
    tests = str(REPO / "tests")
    sys.path.insert(0, tests)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (tests, str(REPO), os.environ.get("PYTHONPATH")) if p)
    import fakekinds

    from olivepipe import kinds
    from olivepipe.flow.scheduler import apply
    from olivepipe.flow.plan import make_plan
    from olivepipe.flow.workspace import open_workspace

    kinds.register(fakekinds.KIND, "fakekinds")
    rows = {}
    for n in sizes:
        d = tmp / f"chain-{n}"
        (d / "base").mkdir(parents=True)
        (d / "base" / "config.json").write_text("{}")
        (d / "workflow.yaml").write_text("olivepipe: 1\nname: chain\nmodels:\n  base: {path: base}\nnodes:\n" + "".join(
            f"  n{i}: {{kind: sleep, input: {'base' if i == 0 else f'n{i - 1}'}}}\n" for i in range(n)))
        l0 = load()
        ws = open_workspace(d / "workflow.yaml")
        plan = make_plan(ws)
        t0 = time.perf_counter()
        res = apply(ws, plan)
        wall = time.perf_counter() - t0
        assert res.ok and len(res.ran) == n, res.to_json()
        ws.stats.close()
        rows[n] = {"apply_wall_s": round(wall, 3), "wall_per_node_ms": round(wall / n * 1000, 2),
                   "lock_bytes": (d / "olivepipe.lock").stat().st_size, "load_start_end": [l0, load()]}
        shutil.rmtree(d, ignore_errors=True)
    one = rows[1]["apply_wall_s"]
    for n, row in rows.items():
        if n > 1:
            row["marginal_ms_per_node"] = round((row["apply_wall_s"] - one) / (n - 1) * 1000, 2)
    return {"rows": {str(k): v for k, v in rows.items()},
            "what": "executor.apply of a chain of N trivial nodes (kind sleep, 0 s) on the real local executor: "
                    "worker round trip, publish, output link and lock write per node; marginal = "
                    "(wall(N) - wall(1)) / (N - 1), so the worker pool's start is not spread over the nodes"}


def scale(tmp: Path) -> dict:
    return targets.bench_scale(tmp, [10000], repeat=1, cli_repeat=0)


def hashing(tmp: Path, size: int, rounds: int = 3, shards: int = 4) -> dict:
    """Cold sha256 against a cold plain read: one file, then the same bytes as ``shards`` files (a
    model's safetensors shards), which olivepipe hashes several at once (hashing.digest_many).
    Every timed read starts with the files evicted from the page cache and mincore(2) finding none
    of their pages resident (targets.evict)."""
    from olivepipe.core import hashing as h

    one = tmp / "hash" / "big.bin"
    write_random(one, size)
    many = [tmp / "hash" / "shards" / f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    for p in many:
        write_random(p, size // shards)
    total = sum(p.stat().st_size for p in many)

    def timed(fn, files, nbytes):
        cold = evict(*files)
        return rate(fn, nbytes), cold

    single = {"read": lambda: read_plain(one), "sha256": lambda: h.file_digest(one),
              "read_o_direct": lambda: read_direct(one)}
    multi = {"read": lambda: [read_plain(p) for p in many],
             "read_parallel": lambda: h.digest_many(read_plain, many),
             "sha256": lambda: h.digest_many(h.file_digest, many)}
    rows, rows_multi, cold = [], [], True
    for i in range(rounds):  # order rotated: the host may cache what the guest read last
        for fns, files, nbytes, out in ((single, [one], size, rows), (multi, many, total, rows_multi)):
            names = list(fns)
            row = {}
            for what in names[i % len(names):] + names[:i % len(names)]:
                row[what], ok = timed(fns[what], files, nbytes)
                cold &= ok
            out.append(row)
    ratio = [r["sha256"] / r["read"] for r in rows]
    # the disk's rate for several files: the faster of reading them in turn and reading them at once
    ratio_multi = [r["sha256"] / max(r["read"], r["read_parallel"]) for r in rows_multi]
    read_plain(one)
    hot = rate(lambda: h.file_digest(one), size)
    [read_plain(p) for p in many]
    hot_multi = rate(lambda: h.digest_many(h.file_digest, many), total)
    shutil.rmtree(one.parent)
    return {"bytes": size, "rounds_gb_s": rows, "ratio_median": round(statistics.median(ratio), 3),
            "sha256_hot_gb_s": hot,
            "multi_file": {"files": shards, "bytes": total, "threads": h.THREADS, "rounds_gb_s": rows_multi,
                           "ratio_median": round(statistics.median(ratio_multi), 3), "sha256_hot_gb_s": hot_multi},
            "cold": cold or "some page stayed resident after eviction: not every read was cold",
            "how": "each timed read after fsync + posix_fadvise(DONTNEED) of the files, mincore(2) finding none of "
                   "their pages resident (no root, no system-wide drop_caches); one file: olivepipe.core.hashing.file_digest "
                   "(read on a second thread, sha256 here) vs a plain 1 MiB readinto loop (read_o_direct: the same "
                   "file with O_DIRECT, 4 MiB reads, for reference); several files: digest_many(file_digest) vs the "
                   "faster of reading them in turn and reading them at once; order rotated each round. A VM's host "
                   "can serve a guest-cold read from its own cache, which no guest can drop: the read rates' spread "
                   "over rounds shows it"}


def rate(fn, nbytes: int) -> float:
    """GB/s (10**9) of one call of ``fn`` over ``nbytes``."""
    t0 = time.perf_counter()
    fn()
    return round(nbytes / (time.perf_counter() - t0) / 1e9, 3)


def read_plain(path: Path) -> None:
    buf = bytearray(MIB)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def read_direct(path: Path) -> None:
    """Read with O_DIRECT (past the guest's page cache; aligned 4 MiB buffer)."""
    import mmap

    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 4 * MIB)
    try:
        off = 0
        while n := os.preadv(fd, [buf], off):
            off += n
    finally:
        buf.close()
        os.close(fd)


def verify(tmp: Path, size: int, rounds: int = 3) -> dict:
    from olivepipe.core.hashing import digest_many, digest_obj, file_digest
    from olivepipe.stores.local import LocalStore

    store = LocalStore(tmp / "verify" / "store")
    store.ensure()
    proto = tmp / "verify" / "proto"
    for i in range(2):
        write_random(proto / f"shard-{i}.safetensors", size // 2)
    for name in ("base", "finetune", "merged"):  # three entries sharing two shards (stored once, hard links)
        src = tmp / "verify" / name
        shutil.copytree(proto, src)
        (src / "config.json").write_text(json.dumps({"name": name}))
        write_random(src / "adapter.safetensors", size // 4)  # and one file of each entry's own
        store.publish(digest_obj(name), src, {"kind": "olive"})  # moves src into the store
    keys = store.keys()
    distinct = {}
    for k in keys:
        tree = store.entry_dir(k) / "tree"
        for p in tree.rglob("*"):
            if p.is_file():
                st = p.stat()
                distinct.setdefault((st.st_dev, st.st_ino), p)
    walls = {"verify": [], "hash_once": []}
    for i in range(rounds):
        for what in (("verify", "hash_once") if i % 2 == 0 else ("hash_once", "verify")):
            t0 = time.perf_counter()
            if what == "verify":  # what `olivepipe cache verify` runs
                bad = [k for k, problems in zip(keys, store.verify_all([store.load(k) for k in keys])) if problems]
                assert not bad, bad
            else:
                digest_many(file_digest, list(distinct.values()))
            walls[what].append(time.perf_counter() - t0)
    v, h = statistics.median(walls["verify"]), statistics.median(walls["hash_once"])
    shutil.rmtree(tmp / "verify", ignore_errors=True)
    return {"entries": len(keys), "distinct_files": len(distinct), "verify_s_median": round(v, 3),
            "hash_once_s_median": round(h, 3), "ratio": round(v / h, 3),
            "walls": {k: [round(x, 3) for x in xs] for k, xs in walls.items()},
            "how": "page cache warm for both (the first round reads the disk for whichever goes first)"}


def main(json_path: str | None, fake_pipeline, gb: float = 1.0, pairs: int = 15, chain=None, olive_node=None,
         only=None) -> dict:
    """``chain(root)``: the peers' 5-stage chain as an olivepipe workflow; ``olive_node(tmp)``: an
    already-run `olive run` (bench/peers.py; None leaves Olive out)."""
    tmp = Path(tempfile.mkdtemp(prefix="olivepipe-quick-"))
    out: dict = {"machine": {**targets.machine(), "python": sys.version.split()[0], "executable": PY},
                 "command": " ".join(["bench/run.py", *sys.argv[1:]]),
                 "git": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                       capture_output=True, text=True).stdout.strip()}
    load0 = load()
    sections = {}
    try:
        for name, fn in (("noop", lambda: noop(tmp, fake_pipeline, pairs)),
                         ("peers", lambda: peers.bench(tmp, chain, olive_node)), ("per_node", lambda: per_node(tmp)),
                         ("scale", lambda: scale(tmp)), ("hashing", lambda: hashing(tmp, int(gb * GIB))),
                         ("verify", lambda: verify(tmp, int(gb / 2 * GIB)))):
            if only and name not in only:
                continue
            print(f"[quick] {name} ... (load {load()})", file=sys.stderr, flush=True)
            try:
                sections[name] = _figure(fn)
            except Exception as e:  # one broken section must not lose the others' figures
                import traceback

                traceback.print_exc()
                sections[name] = {"error": f"{type(e).__name__}: {e}"[:2000]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    get = lambda *path: _get(sections, path)  # noqa: E731
    keys = {
        "noop_apply_ratio": get("noop", "apply", "ratio_median"),
        "status_ratio": get("noop", "status", "ratio_median"),
        "plan_ratio": get("noop", "plan", "ratio_median"),
        "per_node_ms_100": get("per_node", "rows", "100", "marginal_ms_per_node"),
        "per_node_ms_1000": get("per_node", "rows", "1000", "marginal_ms_per_node"),
        **{f"plan_10k_{s}_s": get("scale", s, "10000", "validate_plus_plan_s") for s in ("chain", "wide", "matrix", "fanout")},
        "hash_cold_over_read": get("hashing", "ratio_median"),
        "hash_cold_over_read_multi_file": get("hashing", "multi_file", "ratio_median"),
        "verify_s_over_hash_once": get("verify", "ratio"),
        # the peers' no-ops on the same 5-stage chain, medians of the same rounds (seconds)
        "peers_noop_s": {**(get("peers", "median_s") or {}),
                         "olive_run_cached_node": get("peers", "olive_run_cached_node", "median_s")},
        "load_avg": {"start": load0, "end": load()},
    }
    result = {**keys, "loads_by_figure": {k: v.get("load_start_end") for k, v in sections.items()},
              **out, "sections": sections}
    text = json.dumps(result, indent=2)
    if json_path:
        Path(json_path).write_text(text + "\n")
    print(text)
    return result


def _get(d, path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


# -- docs/performance.md's table, from one run's JSON (`bench/run.py --markdown FILE`) -----------------

def _load_span(section: dict | None) -> str:
    ls = (section or {}).get("load_start_end")
    return f"{ls[0][0]} → {ls[1][0]}" if ls else "?"


def _n(x, fmt="{:.3g}") -> str:
    return "—" if x is None else fmt.format(x)


def markdown(r: dict) -> str:
    """The targets table and the peers table of docs/performance.md, filled from one run."""
    sec, m = r.get("sections", {}), r.get("machine", {})
    when = m.get("date", "?")[:16]
    where = f"{m.get('nproc', '?')} cores, {m.get('mem_gib', {}).get('MemTotal', '?')} GiB, Python {m.get('python', '?')}"
    cmd = f"`{r.get('command', '?')}` at `{r.get('git', '?')}`"
    noop, pn, hs, ver = (sec.get(k) or {} for k in ("noop", "per_node", "hashing", "verify"))
    multi = hs.get("multi_file") or {}
    ratio = lambda key: noop.get(key) or {}  # noqa: E731
    per = [r.get("per_node_ms_100"), r.get("per_node_ms_1000")]
    plans = {s: r.get(f"plan_10k_{s}_s") for s in ("chain", "wide", "matrix", "fanout")}
    met = lambda ok: "—" if ok is None else ("**yes**" if ok else "**no**")  # noqa: E731
    rows = [
        ("no-op `apply` ≤ 3× bare Python", f"`noop_apply_ratio` **{_n(r.get('noop_apply_ratio'))}** "
         f"({_n(ratio('apply').get('a_median_s'))} s vs {_n(ratio('apply').get('b_median_s'))} s)",
         None if r.get("noop_apply_ratio") is None else r["noop_apply_ratio"] <= 3, noop),
        ("`status` ≤ 3× bare Python", f"`status_ratio` **{_n(r.get('status_ratio'))}**",
         None if r.get("status_ratio") is None else r["status_ratio"] <= 3, noop),
        ("(`plan`, same path)", f"`plan_ratio` {_n(r.get('plan_ratio'))}", None, noop),
        ("per node at 1,000 ≤ 1.5 × at 100", f"`per_node_ms_100` **{_n(per[0])}** ms, `per_node_ms_1000` **{_n(per[1])}** ms"
         + (f" ({per[1] / per[0]:.2f}×)" if None not in per else ""),
         None if None in per else per[1] <= 1.5 * per[0], pn),
        ("validate + plan of 10,000 nodes < 2 s", ", ".join(f"{s} **{_n(v)}** s" for s, v in plans.items()),
         None if None in (plans["chain"], plans["wide"], plans["matrix"]) else
         max(plans["chain"], plans["wide"], plans["matrix"]) < 2, sec.get("scale")),
        ("cold sha256 ≥ 0.9 × cold read, one file", f"`hash_cold_over_read` **{_n(r.get('hash_cold_over_read'))}** "
         f"(cold: {_rounds(hs.get('rounds_gb_s'))}; sha256 hot {_n(hs.get('sha256_hot_gb_s'))})",
         None if r.get("hash_cold_over_read") is None else r["hash_cold_over_read"] >= 0.9, hs),
        (f"the same, {multi.get('files', '?')} files hashed at once", f"`hash_cold_over_read_multi_file` "
         f"**{_n(r.get('hash_cold_over_read_multi_file'))}** ({multi.get('threads', '?')} threads; cold: "
         f"{_rounds(multi.get('rounds_gb_s'))}; sha256 hot {_n(multi.get('sha256_hot_gb_s'))})",
         None if r.get("hash_cold_over_read_multi_file") is None else r["hash_cold_over_read_multi_file"] >= 0.9, hs),
        ("`cache verify` ≤ 1.1 × hashing each file once", f"`verify_s_over_hash_once` **{_n(r.get('verify_s_over_hash_once'))}** "
         f"({_n(ver.get('verify_s_median'))} s vs {_n(ver.get('hash_once_s_median'))} s)",
         None if r.get("verify_s_over_hash_once") is None else r["verify_s_over_hash_once"] <= 1.1, ver),
    ]
    out = ["| target | figure | met | load (1 min, start → end) | date (UTC) | machine | command |",
           "|---|---|---|---|---|---|---|"]
    out += [f"| {t} | {fig} | {met(ok)} | {_load_span(s)} | {when} | {where} | {cmd} |" for t, fig, ok, s in rows]
    p = sec.get("peers") or {}
    out += ["", f"Peers, one loop ({p.get('rounds', '?')} rounds, order rotated), load {_load_span(p)}, "
            f"{when} UTC, {where}; {p.get('chain', '')}; "
            + (f"dvc {p['peers'].get('dvc')}, Snakemake {p['peers'].get('snakemake')}" if isinstance(p.get("peers"), dict)
               else str(p.get("peers", "not run"))) + ":", "",
            "| command | median | × bare Python | it said |", "|---|---|---|---|"]
    labels = {"bare_python": "`python -c pass`", "olivepipe_apply": "`olivepipe apply` (no-op)",
              "olivepipe_apply_full_path": "`olivepipe apply`, `OLIVEPIPE_FASTPATH=off`",
              "olivepipe_status": "`olivepipe status`", "dvc_repro": "`dvc repro` (no-op)",
              "dvc_status": "`dvc status`", "snakemake": "`snakemake --cores 1` (no-op)"}
    for k, s in (p.get("median_s") or {}).items():
        out.append(f"| {labels.get(k, k)} | {s * 1000:.0f} ms | {p.get('x_bare_median', {}).get(k, '1')} "
                   f"| {(p.get('noop_says') or {}).get(k) or ''} |")
    o = p.get("olive_run_cached_node")
    if o:
        out.append(f"| `olive run` of one already-run node ({o.get('node')}) | {o['median_s']:.1f} s | "
                   f"| {o.get('passes_run_per_run')} passes run |")
    return "\n".join(out)


def _rounds(rows) -> str:
    """Each measure's range over the rounds, GB/s."""
    kinds = {k: [row[k] for row in rows] for k in (rows or [{}])[0]}
    return ", ".join(f"{k} {min(v)}–{max(v)}" for k, v in kinds.items()) + " GB/s"
