"""CLI usability: validation that checks data against what reads it, hints that search where
the user meant, workflow identity, the saved plan, and the rough edges a new user hit.

Most tests use the test-only `sleep` kind (fakekinds.py) and never import Olive."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write

from olivepipe.core.errors import SpecError
from olivepipe.spec.workflow import load_workflow

ROWS = '{"prompt": "p1", "response": "r1"}\r\n{"prompt": "p2", "response": "r2"}\r\n'


def problems_of(path: Path) -> list:
    with pytest.raises(SpecError) as e:
        load_workflow(path)
    return e.value.problems


def shown(problems) -> str:
    return "\n".join(f"{p.line}:{p.col}: {p.message} | {p.hint}" for p in problems)


# -- validate checks data against what reads it ------------------------------------------------

def test_a_template_column_the_data_lacks_is_located_on_the_placeholder(tmp_path):
    write(tmp_path / "data" / "t.jsonl", ROWS)
    write(tmp_path / "data" / "t.csv", "prompt,responses\np,r\n")
    wf = write(tmp_path / "w.yaml", (
        "olivepipe: 1\nname: cols\nmodels:\n  m: {tiny: {arch: phi3}}\ndatasets:\n"
        "  travel:\n    files: data/t.jsonl\n"
        '    text_template: "<|user|>\\n{prompt}<|end|>\\n{answer}<|end|>"\n'
        "  sheet: {files: data/t.csv, text_field: response}\n"
        "nodes:\n  ft: {pass: lora, input: m, data: travel, params: {max_steps: 1}}\n"))
    probs = problems_of(wf)
    assert len(probs) == 2, shown(probs)
    line8 = wf.read_text().splitlines()[7]
    tmpl = next(p for p in probs if "text_template" in p.message)
    assert (tmpl.line, tmpl.col) == (8, line8.index("{answer") + 1), shown(probs)
    assert tmpl.message == "text_template reads column 'answer', which 'data/t.jsonl' does not have"
    assert tmpl.hint == "its columns: prompt, response"
    field = next(p for p in probs if "text_field" in p.message)
    assert "'response'" in field.message and "did you mean 'responses'?" in field.hint, shown(probs)
    # fixed: the same file validates
    wf.write_text(wf.read_text().replace("{answer}", "{response}").replace("text_field: response", "text_field: responses"))
    assert load_workflow(wf).name == "cols"


def test_a_row_without_the_column_and_unreadable_data_are_reported(tmp_path, sleep_kind):
    write(tmp_path / "base" / "config.json", "{}")
    write(tmp_path / "a.jsonl", ROWS + '{"prompt": "p3"}\n')
    write(tmp_path / "b.jsonl", '{"prompt": "p"}\nnot json\n')
    wf = write(tmp_path / "w.yaml", (
        "olivepipe: 1\nname: rows\nmodels:\n  base: {path: base}\ndatasets:\n"
        "  a: {files: a.jsonl, text_template: '{prompt} {response}'}\n"
        "  b: {files: b.jsonl, text_template: '{prompt}'}\n"
        "nodes:\n  x: {kind: sleep, input: base, data: a}\n  y: {kind: sleep, input: base, data: b}\n"))
    probs = problems_of(wf)
    text = shown(probs)
    assert "text_template reads column 'response', which row 3 of 'a.jsonl' does not have" in text
    assert "data file b.jsonl:2: not valid JSON" in text, text


def test_the_validation_memo_rechecks_the_data_columns(tmp_path, sleep_kind):
    """apply remembers a validated file; data edited afterwards must not slip past the memo."""
    write(tmp_path / "base" / "config.json", "{}")
    data = write(tmp_path / "t.jsonl", ROWS)
    wf = write(tmp_path / "w.yaml", (
        "olivepipe: 1\nname: memo\nmodels:\n  base: {path: base}\ndatasets:\n"
        "  t: {files: t.jsonl, text_template: '{prompt} {response}'}\n"
        "nodes:\n  x: {kind: sleep, input: base, data: t}\n"))
    load_workflow(wf, remember=True)
    assert load_workflow(wf).name == "memo"  # a memo hit
    data.write_text('{"prompt": "p", "responses": "r"}\n')
    assert "did you mean 'responses'?" in shown(problems_of(wf))


# -- one bad reference hides nothing; hints search where the user meant ---------------------------

def test_every_problem_is_reported_behind_a_bad_reference(tmp_path):
    wf = write(tmp_path / "w.yaml", (
        "olivepipe: 1\nname: many\nmodels:\n  m: {tiny: {arch: phi3}}\n"
        "nodes:\n"
        "  onnx: {pass: model-builder, input: mm, params: {precision: int4}}\n"      # bad reference
        "  adapters: {pass: extract-adaptors, input: onnx}\n"                          # downstream: unknown pass
        "  chat: {kind: generate, input: adapters, prompts: [hi], promts: [x]}\n"      # downstream of that: a typo
        "  q: {pass: model-builder, input: onnx, params: {precison: int4}}\n"))        # downstream: a param typo
    text = shown(problems_of(wf))
    assert "node 'onnx' reads unknown input 'mm'" in text and "did you mean 'm'?" in text, text
    assert "unknown pass 'extract-adaptors'" in text, text
    assert "promts" in text, text
    assert "unknown parameter 'precison' for ModelBuilder" in text, text


def test_hints_search_training_arguments_and_node_names(tmp_path):
    wf = write(tmp_path / "w.yaml", (
        "olivepipe: 1\nname: hints\nmodels:\n  m: {tiny: {arch: phi3}}\n"
        "datasets:\n  d: {hf: org/data, text_field: text}\n"
        "nodes:\n"
        "  finetune: {pass: lora, input: m, data: d, params: {r: 4, max_step: 4}}\n"
        "  onnx: {pass: model-builder, input: finetune-v2, params: {precision: int4}}\n"))
    probs = problems_of(wf)
    text = shown(probs)
    assert "unknown parameter 'max_step' for LoRA | did you mean 'max_steps' (a training argument)?" in text, text
    assert "node 'onnx' reads unknown input 'finetune-v2' | did you mean 'finetune'?" in text, text
    assert "no matrix variant" not in text, text


# -- workflow identity ----------------------------------------------------------------------------

def test_two_files_with_one_name_in_a_folder_are_an_error(tmp_path, sleep_kind):
    """Their lock sections and outputs/<name>/ links would mix: validate refuses, and so does a memo hit
    (the copy is made after the original was applied)."""
    write(tmp_path / "base" / "config.json", "{}")
    orig = write(tmp_path / "lab.yaml", "olivepipe: 1\nname: lab\nmodels:\n  base: {path: base}\n"
                                        "nodes:\n  x: {kind: sleep, input: base}\n")
    load_workflow(orig, remember=True)
    copy = write(tmp_path / "lab-copy.yml", orig.read_text().replace("kind: sleep", "kind: sleep, note: mine"))
    for f, other in ((orig, "lab-copy.yml"), (copy, "lab.yaml")):
        probs = problems_of(f)
        assert [(p.line, p.col) for p in probs] == [(2, 7)], shown(probs)
        assert probs[0].message == f"workflow name 'lab' is also the name of {other} in this folder"
        assert "give each file its own `name:`" in probs[0].hint
    copy.write_text(copy.read_text().replace("name: lab", "name: lab-mine"))
    assert load_workflow(orig).name == "lab" and load_workflow(copy).name == "lab-mine"
    # another folder has its own lock and outputs: the same name there is fine
    write(tmp_path / "sub" / "base" / "config.json", "{}")
    write(tmp_path / "sub" / "lab.yaml", orig.read_text())
    assert load_workflow(tmp_path / "sub" / "lab.yaml").name == "lab"


# -- the HTML report, in a real headless browser --------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# .ci/run installs Chromium and sets this: there the test fails instead of skipping
needs_chromium = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("OLIVEPIPE_REQUIRE_CHROMIUM"),
                                    reason="needs chromium (Debian: apt-get install chromium)")


def chromium(*args, timeout=180) -> subprocess.CompletedProcess:
    assert CHROMIUM, "OLIVEPIPE_REQUIRE_CHROMIUM is set but chromium is not installed"
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


@needs_chromium
def test_report_is_one_self_contained_page_a_browser_renders(tmp_path, sleep_kind):
    from PIL import Image
    from test_terminal_session import run_cli, sleep_workflow

    from olivepipe.report import htmlpage as htmlreport
    from olivepipe.flow.workspace import open_workspace

    wf = sleep_workflow(tmp_path, "rep", "  a: {kind: sleep, input: base, seconds: 0}\n"
                                         "  b: {kind: sleep, input: a, seconds: 0}\n"
                                         "  c: {kind: sleep, input: base, fail: true}\n")
    assert run_cli(tmp_path, "apply", "-q", wf).returncode == 1  # c fails: its log tail must be in the page
    page = tmp_path / "out" / "report.html"
    p = run_cli(tmp_path, "report", wf, "-o", page)
    assert p.returncode == 0 and p.stdout.strip() == f"wrote {page} (3 steps)", p.stdout + p.stderr

    # the metrics section (table, plot, goals) from what `olivepipe metrics` collects, rendered the same way
    data = htmlreport.collect(open_workspace(wf, read_only=True))
    data["metrics"] = {"workflow": "rep", "metrics": ["latency_avg", "perplexity"],
                       "units": {"latency_avg": "ms", "perplexity": ""},
                       "rows": [{"node": "eval-int4", "input": "onnx", "values": {"latency_avg": 3.2, "perplexity": 41.5},
                                 "status": "current"},
                                {"node": "eval-fp32", "input": "fp32", "values": {"latency_avg": 7.9, "perplexity": 40.1},
                                 "status": "stale", "why": "the workflow changed since this was measured"}],
                       "goals": [{"goal": "latency_avg < 5 ms", "node": "eval-int4", "met": True}]}
    with_metrics = tmp_path / "metrics.html"
    with_metrics.write_text(htmlreport.render(data))

    for f in (page, with_metrics):
        text = f.read_text()
        # nothing to load: no external reference of any kind, styles and pictures inline
        assert not re.search(r"""(?:src|href)\s*=|url\(|@import|<link|<script|<img|https?://""", text), f
    shot = tmp_path / "shot.png"
    r = chromium("--window-size=1200,1600", f"--screenshot={shot}", with_metrics.as_uri())
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 1600)
    colors = img.getcolors(maxcolors=1 << 20)
    assert len(colors) > 50  # text, boxes, a plot: not a blank page
    white = sum(n for n, c in colors if c == (255, 255, 255))
    assert 0.3 < white / (1200 * 1600) < 0.98, white
    pixels = {c for _, c in colors}
    assert (0x2e, 0x7d, 0x32) in pixels and (0xb2, 0x6a, 0x00) in pixels  # up-to-date and will-run boxes drawn

    r = chromium("--dump-dom", with_metrics.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    for step, status in (("base", "model"), ("a", "cached"), ("b", "cached"), ("c", "run")):
        assert f'data-step="{step}" data-status="{status}"' in dom, (step, status)
    assert re.search(r'<tr data-step="a"><td>a</td><td>sleep</td>.*?up to date.*?<td class="key">[0-9a-f]{12}</td>'
                     r'<td class="num">[0-9.]+ s</td><td>local \(cpu\)</td>', dom), dom[:3000]
    assert 'data-node="eval-int4"' in dom and ">3.2<" in dom and ">stale<" in dom
    assert dom.count('<g class="point"') == 2 and "latency_avg (ms)" in dom
    assert "<h3>Goals</h3>" in dom and "latency_avg &lt; 5 ms" in dom
    log = re.search(r'<details open="" class="log" data-step="c">(.*?)</details>', dom, re.S)
    assert log and "RuntimeError: c was told to fail" in log.group(1)


# -- a saved plan ---------------------------------------------------------------------------------

def test_a_saved_plan_runs_exactly_or_refuses_with_the_differences(tmp_path):
    from test_terminal_session import run_cli, sleep_workflow

    write(tmp_path / "rows.jsonl", '{"text": "a"}\n')
    wf = sleep_workflow(tmp_path, "saved", "  a: {kind: sleep, input: base, data: rows}\n"
                                           "  b: {kind: sleep, input: a}\n")
    wf.write_text(wf.read_text().replace("nodes:", "datasets:\n  rows: {files: rows.jsonl}\nnodes:"))
    lock = tmp_path / "olivepipe.lock"

    def plan_to(name):
        p = run_cli(tmp_path, "plan", "-o", tmp_path / name, wf, cwd=tmp_path)
        assert p.returncode == 0 and "saved the plan to" in p.stderr, p.stderr
        return tmp_path / name

    # the data changes after the plan: refused, the change named, nothing run or written
    saved = plan_to("plan.json")
    write(tmp_path / "rows.jsonl", '{"text": "b"}\n')
    p = run_cli(tmp_path, "apply", saved, cwd=tmp_path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "the saved plan is out of date; nothing was run" in p.stderr
    assert "step a: data file rows.jsonl changed (" in p.stderr, p.stderr  # said as plan says it
    assert not lock.exists() and not (tmp_path / "outputs").exists()

    # a fresh plan applies as saved
    saved = plan_to("plan.json")
    first = plan_to("first.json")
    p = run_cli(tmp_path, "apply", saved, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp_path / "outputs" / "saved" / "b").exists() and lock.exists()
    # the older plan (made before that apply) is stale now: the lock and the cache moved on
    p = run_cli(tmp_path, "apply", first, cwd=tmp_path)
    assert p.returncode == 1 and "olivepipe.lock changed" in p.stderr, p.stderr
    assert "step a: the plan said run, now cached (its result is in the cache by now)" in p.stderr, p.stderr

    # the workflow, and the package versions a step was planned with
    saved = plan_to("plan.json")
    doc = json.loads(saved.read_text())
    doc["steps"][0]["record"]["packages"] = {"olive-ai": "0.0.1"}
    doc["steps"][0]["key"] = "0" * 64
    saved.write_text(json.dumps(doc))
    wf.write_text(wf.read_text() + "  c: {kind: sleep, input: base}\n")
    p = run_cli(tmp_path, "apply", saved, cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    assert "saved.yaml changed" in p.stderr and "step c: new since the plan" in p.stderr, p.stderr
    assert "packages" in p.stderr and "0.0.1" in p.stderr, p.stderr
    # options belong to the plan
    p = run_cli(tmp_path, "apply", "--target", "a", saved, cwd=tmp_path)
    assert p.returncode == 1 and "a saved plan carries its own" in p.stderr, p.stderr


# -- rough edges ----------------------------------------------------------------------------------

def test_target_a_model_step_plans_it(tmp_path):
    from conftest import MINIMAL

    from olivepipe.flow.plan import make_plan
    from olivepipe.flow.workspace import open_workspace

    write(tmp_path / "travel.jsonl", ROWS)
    ws = open_workspace(write(tmp_path / "w.yaml", MINIMAL), read_only=True)
    steps = make_plan(ws, targets=("base",)).by_name()
    assert steps["base"].status == "run" and steps["finetune"].status == "skip"


def test_gc_keeps_what_only_the_rehearsal_lock_references_and_the_lock_is_checked_first(tmp_path):
    from test_terminal_session import run_cli, sleep_workflow

    from olivepipe.core.mutex import FileMutex

    from olivepipe.core import lock as lockfile

    wf = sleep_workflow(tmp_path, "reh", "  a: {kind: sleep, input: base}\n")
    assert run_cli(tmp_path, "apply", "-q", wf).returncode == 0
    # what `apply --rehearse` leaves (a rehearsal needs a tiny model built: too slow here): its records in
    # .olivepipe/rehearsal.lock under 'reh@rehearsal', none in olivepipe.lock
    lock = tmp_path / "olivepipe.lock"
    lockfile.update(tmp_path / ".olivepipe" / "rehearsal.lock", "reh@rehearsal", lockfile.nodes(lock, "reh"))
    lock.unlink()
    p = run_cli(tmp_path, "cache", "gc", wf)
    assert p.returncode == 0 and p.stdout.startswith("removed 0 entries"), p.stdout + p.stderr
    p = run_cli(tmp_path, "show", wf, "a")  # without --rehearse: the rehearsal result is mentioned
    assert "rehearsal:  a rehearsal result exists" in p.stdout and "show --rehearse reh.yaml a" in p.stdout, p.stdout

    # another apply holds the workflow's lock: refused before any plan is printed
    with FileMutex(tmp_path / ".olivepipe" / "apply-reh.lock"):
        p = run_cli(tmp_path, "apply", wf)
    assert p.returncode == 1 and "another `olivepipe apply` of 'reh' is running" in p.stderr, p.stderr
    assert "Plan for" not in p.stdout, p.stdout


def test_show_names_the_stale_result_outputs_still_links(tmp_path):
    from test_terminal_session import run_cli, sleep_workflow

    wf = sleep_workflow(tmp_path, "st", "  a: {kind: sleep, input: base}\n")
    assert run_cli(tmp_path, "apply", "-q", wf).returncode == 0
    wf.write_text(wf.read_text().replace("kind: sleep", "kind: sleep, note: changed"))
    p = run_cli(tmp_path, "show", wf, "a")
    assert p.returncode == 0
    assert f"output:     {tmp_path / 'outputs' / 'st' / 'a'} (an earlier result: stale" in p.stdout, p.stdout


def test_estimates_scale_with_training_steps_and_leave_out_the_import(tmp_path, sleep_kind):
    from rich.console import Console

    from olivepipe.flow.scheduler import apply
    from olivepipe.flow.plan import Plan, Step
    from olivepipe.flow.status import RUN
    from olivepipe.flow.planned import estimate
    from olivepipe.report.text import plan_text
    from olivepipe.flow.workspace import open_workspace

    prev = {"duration_s": 6.0, "record": {"params": {"training_args": {"max_steps": 4}}}}
    assert estimate(prev, {"params": {"training_args": {"max_steps": 30}}}) == \
        (45.0, "6.0s last time for 4 steps, scaled to 30")
    assert estimate(prev, {"params": {"training_args": {"max_steps": 4}}}) == (6.0, "")
    con = Console(record=True, width=200)
    plan_text(Plan("w", (Step("ft", "olive", "lora", RUN, estimate_s=45.0,
                              estimate_note="6.0s last time for 4 steps, scaled to 30"),)), con)
    assert "(~45.0s: 6.0s last time for 4 steps, scaled to 30)" in con.export_text()

    # a worker's first import (reported by the job as import_s) is not the step's own time
    write(tmp_path / "base" / "config.json", "{}")
    wf = write(tmp_path / "w.yaml", "olivepipe: 1\nname: imp\nmodels:\n  base: {path: base}\n"
                                    "nodes:\n  a: {kind: sleep, input: base, seconds: 0.3, import_s: 0.3}\n")
    ws = open_workspace(wf)
    from olivepipe.flow.plan import make_plan

    res = apply(ws, make_plan(ws))
    took = res.outcomes["a"].seconds
    recorded = ws.lock_nodes()["a"]["duration_s"]
    # recorded before the result is published (took is after): at most took - 0.3, whatever the load
    assert took >= 0.3 and 0 <= recorded <= took - 0.3 + 0.005, (took, recorded)


def test_interrupted_grammar_and_the_last_live_frame(tmp_path):
    from io import StringIO

    from rich.console import Console

    from olivepipe.core.errors import Interrupted, Terminated
    from olivepipe.flow.scheduler import ApplyResult, Event, Outcome
    from olivepipe.flow.plan import Plan, Step
    from olivepipe.flow.status import RUN
    from olivepipe.report.text import Progress

    plan = Plan("w", (Step("a", "sleep", "sleep", RUN), Step("b", "sleep", "sleep", RUN), Step("c", "sleep", "sleep", RUN)))
    res = ApplyResult(plan, {"a": Outcome("a", "ran")})
    assert Interrupted(res, ["b"]).message == "interrupted: stopped b; 1 finished step is cached and in the lock"
    e = Interrupted(res, ["b"], Terminated.signal_name)
    assert e.message.startswith("terminated (SIGTERM): stopped b;") and e.exit_code == 143

    out = StringIO()
    con = Console(file=out, force_terminal=True, width=160)
    with pytest.raises(KeyboardInterrupt):
        with Progress(plan, con) as progress:
            progress(Event("done", "a", seconds=0.1))
            progress(Event("start", "b", "sleep", log=str(tmp_path / "b.log")))
            raise KeyboardInterrupt
    last = re.sub(r"\x1b\[[0-9;?]*[ -/]*[@-~]", "", out.getvalue()).split("\r")[-1]
    frame = last[last.rfind("done"):]  # the last frame: a, then b and c
    assert "running" not in frame and re.search(r"interrupted\s+b", frame) and re.search(r"not started\s+c", frame), frame


def test_sigterm_stops_apply_and_says_so(tmp_path):
    import signal
    import time

    from test_terminal_session import launcher, sleep_workflow

    wf = sleep_workflow(tmp_path, "term", "  slow: {kind: sleep, input: base, seconds: 600}\n")
    proc = subprocess.Popen([sys.executable, str(launcher(tmp_path)), "apply", "--json", str(wf)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # the node has started: its worker runs
            if json.loads(line).get("event") == "start":
                break
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM): stopped slow; 0 finished steps are cached" in err, err
    assert "resume: olivepipe apply --json" in err, err
    print(f"SIGTERM to exit: {time.monotonic() - t0:.2f}s")


def test_help_texts_and_graph_svg_without_output(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from olivepipe.report import render
    from olivepipe.cli import main

    r = CliRunner().invoke(main, ["--help"], terminal_width=80)
    assert r.exit_code == 0 and not re.search(r"\w\.\.\.$", r.output, re.M), r.output
    flat = " ".join(r.output.split())
    assert "diff Semantic diff of two workflow definitions (files or REV:PATH), or of two lock files." in flat
    assert "report Write one HTML page about the workflow" in flat
    r = CliRunner().invoke(main, ["cache", "gc", "--help"], terminal_width=100)
    assert "unreferenced objects" not in r.output and "rehearsal lock" in " ".join(r.output.split()), r.output

    write(tmp_path / "base" / "config.json", "{}")
    wf = write(tmp_path / "g.yaml", "olivepipe: 1\nname: g\nmodels:\n  base: {path: base}\n"
                                    "nodes:\n  a: {pass: rtn, input: base}\n")
    monkeypatch.setattr(render, "render_graph", lambda g, fmt, marks=None: b"<svg>a</svg>" if fmt == "svg" else b"\x89PNG")
    r = CliRunner().invoke(main, ["graph", "--format", "svg", str(wf)])
    assert r.exit_code == 0 and r.output == "<svg>a</svg>", r.output
    r = CliRunner().invoke(main, ["graph", "--format", "png", str(wf)])
    assert r.exit_code == 1 and "pass -o FILE" in r.output


def test_logs_follow_ends_when_no_apply_runs(tmp_path):
    from test_terminal_session import run_cli, sleep_workflow

    wf = sleep_workflow(tmp_path, "lf", "  a: {kind: sleep, input: base}\n")
    assert run_cli(tmp_path, "apply", "-q", wf).returncode == 0
    p = run_cli(tmp_path, "logs", "-f", wf, "a", timeout=120)  # a finished node: no waiting forever
    assert p.returncode == 0 and "runs sleep" in p.stdout
    assert "no apply of 'lf' is running: the log is complete" in p.stderr


def test_verbose_streams_progress_bars_as_they_redraw(tmp_path):
    from io import StringIO

    from rich.console import Console

    from olivepipe.flow.scheduler import Event
    from olivepipe.flow.plan import Plan, Step
    from olivepipe.flow.status import RUN
    from olivepipe.report.text import Progress

    log = tmp_path / "a.log"
    log.write_text("starting\n  0%|          | 0/4 [00:00<?, ?it/s]\r 50%|#####     | 2/4 [00:01<00:01, 2.0it/s]\r")
    out = StringIO()
    progress = Progress(Plan("w", (Step("a", "olive", "lora", RUN),)), Console(file=out, width=200), verbose=True)
    progress(Event("start", "a", "lora", log=str(log)))
    progress._stream_once()
    text = out.getvalue()
    assert "[a] starting" in text and "[a]  50%|#####     | 2/4" in text and "0/4" not in text, text
    with open(log, "a") as f:
        f.write(" 100%|##########| 4/4 [00:02<00:00, 2.0it/s]\n")
    progress._stream_once()
    assert "[a]  100%|##########| 4/4" in out.getvalue()


def test_known_warnings_are_filtered_and_others_kept():
    import warnings

    from olivepipe.olive.runner import quiet_known_noise

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_known_noise()
        warnings.warn("`gradient_checkpointing_enable` is deprecated and will be removed in v6. Use "
                      "`activation_checkpointing_enable` instead.", FutureWarning)
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
        warnings.warn("'pin_memory' argument is set as true but no accelerator is found, then ...", UserWarning)
        warnings.warn("`foo` is deprecated and will be removed in v6.", FutureWarning)
    assert [str(w.message) for w in seen] == ["`foo` is deprecated and will be removed in v6."]


def test_init_in_a_subfolder_and_hooks_without_an_active_venv(tmp_path):
    import shlex

    import yaml
    from conftest import cli

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=60)
    p = cli("init", "sub", cwd=repo, timeout=120)
    assert p.returncode == 0, p.stderr
    assert not (repo / "sub" / ".pre-commit-config.yaml").exists()  # pre-commit would never read it
    assert f"pre-commit reads only {repo / '.pre-commit-config.yaml'}" in p.stdout and "- id: olivepipe-validate" in p.stdout
    p = cli("metrics", "sub/workflow.yaml", cwd=repo, timeout=120)  # the starter measures: metrics works on it
    assert p.returncode == 0 and "eval" in p.stdout, p.stdout + p.stderr

    p = cli("init", cwd=repo, timeout=120)
    assert p.returncode == 0 and (repo / ".pre-commit-config.yaml").is_file(), p.stdout
    hooks = yaml.safe_load((repo / ".pre-commit-config.yaml").read_text())["repos"][0]["hooks"]
    # as pre-commit runs a `language: system` hook: from the repository root, the entry split like a
    # shell would, the files appended; here with no olivepipe on PATH, only the repository's .venv
    (repo / ".venv").symlink_to(Path(sys.executable).parent.parent)
    bare = {**os.environ, "PATH": "/usr/bin:/bin"}
    assert subprocess.run(["sh", "-c", "command -v olivepipe"], env=bare, capture_output=True).returncode != 0
    for hook, want in zip(hooks, ("workflow.yaml: ok", "already formatted")):
        r = subprocess.run([*shlex.split(hook["entry"]), "workflow.yaml"], cwd=repo, env=bare, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0 and want in r.stdout + r.stderr, (hook["id"], r.stdout, r.stderr)
