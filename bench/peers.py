"""Peers on the same 5-stage chain, timed in the same loop as olivepipe's no-op (issue 25).

`dvc repro` (no-op) and `dvc status` of a DVC pipeline, Snakemake's no-op of a Snakefile, and
olivepipe's no-op `apply` (fast path and full path) and `status` of an olivepipe workflow: the same
five stages (quantize -> finetune -> onnx -> adapters -> chat, a 4 KiB result each) with the same
inputs (a base model folder, the travel data), every one of them already run. Each round runs every
command once as a fresh process, order rotated, beside a bare `python -c pass`. Then `olive run` of
one already-run node (the example's LoRA node, Olive's own cache warm).

The peers come from their own virtual environment, never a project dependency:

    python3 -m venv ../peers-venv && ../peers-venv/bin/pip install -r bench/peers-requirements.txt

found at $OLIVEPIPE_PEERS_VENV, else a `peers-venv` folder next to the checkout or one level above
it (a git worktree). Without it the section times olivepipe alone and says why.
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import time
from pathlib import Path

from targets import OLIVEPIPE, PY, REPO, bytecode_env, load, run_wall

STAGES = ["quantize", "finetune", "onnx", "adapters", "chat"]
INPUTS = {"quantize": ["base/config.bin"], "finetune": ["quantize", "travel.jsonl"]}  # the rest read the stage before
STAGE_CMD = "mkdir -p {o} && head -c 4096 /dev/urandom > {o}/payload.bin"
NOOP_SAYS = {"dvc_repro": "Data and pipelines are up to date.", "dvc_status": "Data and pipelines are up to date.",
             "snakemake": "Nothing to be done", "olivepipe_apply": "nothing to do",
             "olivepipe_apply_full_path": "nothing to do"}


def peers_venv() -> Path | None:
    env = os.environ.get("OLIVEPIPE_PEERS_VENV")
    for d in ([Path(env)] if env else [REPO.parent / "peers-venv", REPO.parents[1] / "peers-venv"]):
        if (d / "bin" / "dvc").exists() and (d / "bin" / "snakemake").exists():
            return d
    return None


def _inputs(i: int) -> list[str]:
    return INPUTS.get(STAGES[i], [STAGES[i - 1]])


def _seed(d: Path) -> None:
    (d / "base").mkdir(parents=True)
    (d / "base" / "config.bin").write_bytes(os.urandom(4096))
    (d / "travel.jsonl").write_text('{"prompt": "a", "response": "b"}\n' * 8)


def dvc_project(d: Path, venv: Path, env: dict) -> list[str]:
    _seed(d)
    dvc = str(venv / "bin" / "dvc")
    stages = "".join(f"  {s}: {{cmd: {STAGE_CMD.format(o=s)}, deps: [{', '.join(_inputs(i))}], outs: [{s}]}}\n"
                     for i, s in enumerate(STAGES))
    (d / "dvc.yaml").write_text("stages:\n" + stages)
    for args in (["git", "init", "-q"], [dvc, "init", "-q"], [dvc, "config", "core.analytics", "false"],
                 [dvc, "config", "core.check_update", "false"], [dvc, "repro"]):
        run_wall(args, cwd=d, env=env)
    return [dvc]


def snakemake_project(d: Path, venv: Path, env: dict) -> list[str]:
    _seed(d)
    smk = str(venv / "bin" / "snakemake")
    files = lambda names: ", ".join(f'"{n}/payload.bin"' if n in STAGES else f'"{n}"' for n in names)  # noqa: E731
    rules = "".join(f"rule {s}:\n    input: {files(_inputs(i))}\n"
                    f"    output: \"{s}/payload.bin\"\n    shell: \"head -c 4096 /dev/urandom > {{output}}\"\n"
                    for i, s in enumerate(STAGES))
    (d / "Snakefile").write_text(f'rule all:\n    input: "{STAGES[-1]}/payload.bin"\n' + rules)
    run_wall([smk, "--cores", "1"], cwd=d, env=env)
    return [smk]


def _version(args: list[str], env: dict) -> str:
    p = subprocess.run(args, capture_output=True, text=True, env=env)
    return (p.stdout.strip() or p.stderr.strip()).splitlines()[-1] if p.returncode == 0 else f"exit {p.returncode}"


def bench(tmp: Path, chain_pipeline, olive_cached_node=None, rounds: int = 7, olive_runs: int = 3) -> dict:
    """``chain_pipeline(root)``: the olivepipe workflow of the 5-stage chain, its results in the store
    (bench/run.py fake_pipeline). ``olive_cached_node(tmp)``: {"cmd", "env", ...} of an `olive run`
    whose node already ran, or None to leave Olive out."""
    env = bytecode_env(tmp)
    env["DVC_NO_ANALYTICS"] = "1"
    wf, _ = chain_pipeline(tmp / "peers" / "olivepipe")
    run_wall([*OLIVEPIPE, "apply", str(wf)], env=env)  # completes the lock; the next apply writes the stamp
    time.sleep(1.1)  # the stamp trusts no file modified within the last second
    run_wall([*OLIVEPIPE, "apply", str(wf)], env=env)
    full = {**env, "OLIVEPIPE_FASTPATH": "off"}
    cmds = {"bare_python": ([PY, "-c", "pass"], None, env),
            "olivepipe_apply": ([*OLIVEPIPE, "apply", str(wf)], None, env),
            "olivepipe_apply_full_path": ([*OLIVEPIPE, "apply", str(wf)], None, full),
            "olivepipe_status": ([*OLIVEPIPE, "status", str(wf)], None, env)}
    out: dict = {"chain": " -> ".join(STAGES) + " (4 KiB result each; inputs: a base model folder, travel.jsonl)"}
    venv = peers_venv()
    if venv is None:
        out["peers"] = ("skipped: no peers venv (set OLIVEPIPE_PEERS_VENV, or `python3 -m venv ../peers-venv && "
                        "../peers-venv/bin/pip install -r bench/peers-requirements.txt`)")
    else:
        dvc = dvc_project(tmp / "peers" / "dvc", venv, env)
        smk = snakemake_project(tmp / "peers" / "snakemake", venv, env)
        cmds.update({"dvc_repro": ([*dvc, "repro"], tmp / "peers" / "dvc", env),
                     "dvc_status": ([*dvc, "status"], tmp / "peers" / "dvc", env),
                     "snakemake": ([*smk, "--cores", "1"], tmp / "peers" / "snakemake", env)})
        out["peers"] = {"venv": str(venv), "dvc": _version([*dvc, "--version"], env),
                        "snakemake": _version([*smk, "--version"], env)}
    said = {}
    for name, (args, cwd, e) in cmds.items():  # each once untimed (bytecode, caches); a no-op says so
        p, _ = run_wall(args, cwd=cwd, env=e)
        text = p.stdout + p.stderr
        said[name] = next((ln.strip() for ln in text.splitlines() if NOOP_SAYS.get(name, "\0") in ln), None)
        if name in NOOP_SAYS and said[name] is None:
            raise RuntimeError(f"{name} was not a no-op: {text[-1500:]}")
    out["noop_says"] = said
    walls: dict = {k: [] for k in cmds}
    ratios: dict = {k: [] for k in cmds}
    names = list(cmds)
    loads = []
    for i in range(rounds):
        order = names[i % len(names):] + names[:i % len(names)]
        got = {}
        for k in order:
            args, cwd, e = cmds[k]
            got[k] = run_wall(args, cwd=cwd, env=e)[1]
        for k in names:
            walls[k].append(got[k])
            ratios[k].append(got[k] / got["bare_python"])
        loads.append(load()[0])
    out["median_s"] = {k: round(statistics.median(v), 4) for k, v in walls.items()}
    out["x_bare_median"] = {k: round(statistics.median(v), 2) for k, v in ratios.items() if k != "bare_python"}
    out["rounds"] = rounds
    out["load_1min_per_round"] = loads
    if olive_cached_node is not None:
        out["olive_run_cached_node"] = _olive(tmp, olive_cached_node, olive_runs)
    return out


PASS_RE = re.compile(r"Pass (\S+) finished in ([0-9.]+) seconds")


def _olive(tmp: Path, olive_cached_node, n: int) -> dict:
    node = olive_cached_node(tmp)
    runs, passes = [], []
    for _ in range(n):
        p, wall = run_wall(node["cmd"], env=node["env"])
        runs.append(round(wall, 3))
        passes.append(len(PASS_RE.findall(p.stdout + p.stderr)))
    return {**{k: v for k, v in node.items() if k != "env"}, "median_s": round(statistics.median(runs), 3),
            "runs_s": runs, "passes_run_per_run": passes,
            "note": "0 passes run: served from Olive's own cache; the time is Olive's start, cache lookup and copy to output_dir"}
