"""What `olivepipe init` writes into a repository: a starter workflow, its data, ignore rules, hooks.

The library decides and writes; the CLI (olivepipe/cli/init.py) only renders. Nothing that
exists is overwritten (only the workflow file, and only with ``force``): a user's own
.gitignore gets a marked block appended, a user's own .pre-commit-config.yaml is left alone
and the entries to add are returned instead.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import OlivepipeError
from ..core.safefs import check_confined

WORKFLOW = "workflow.yaml"
DATA = "data/travel.jsonl"

# The README's tiny travel pipeline: a locally built random-weight Phi-3, so the first apply
# needs no model hub, no GPU and about a minute of CPU.
WORKFLOW_TEXT = """\
# A starter olivepipe workflow (format: docs/workflow-format.md in olivepipe's repository).
# `olivepipe plan workflow.yaml` shows what would run; `olivepipe apply workflow.yaml` runs it.
# Replace the tiny model with a real one, e.g. `phi3: {hf: microsoft/Phi-3.5-mini-instruct}`.
olivepipe: 1
name: travel-tiny
models:
  phi3-tiny:
    tiny: {arch: phi3, layers: 2, hidden: 64}
datasets:
  travel:
    files: data/travel.jsonl
    text_template: "<|user|>\\n{prompt}<|end|>\\n<|assistant|>\\n{response}<|end|>"
    max_seq_len: 64
nodes:
  finetune:
    pass: lora
    input: phi3-tiny
    data: travel
    params: {r: 4, max_steps: 4, torch_dtype: float32}
  onnx:
    pass: model-builder
    input: finetune
    params: {precision: int4}
  adapters:
    pass: extract-adapters
    input: onnx
  chat:
    kind: generate
    input: adapters
    prompts: ["what is the best thing to see in chicago"]
  # What the int4 model with its adapter costs, through Olive's evaluators:
  # `olivepipe metrics workflow.yaml` prints it, `olivepipe report workflow.yaml -o report.html` draws it.
  eval:
    kind: evaluate
    input: adapters
    metrics: [latency, size]
"""

_ROWS = [
    ("what is the best thing to see in chicago", "In Chicago, see the Art Institute and a boat tour on the river."),
    ("plan one day in chicago", "Start early at the Art Institute, take a river boat tour, then rest at a cafe."),
    ("when should I visit chicago", "Spring and autumn are mild in Chicago; book the Art Institute ahead."),
    ("what is the best thing to see in paris", "In Paris, see the Musee d'Orsay and walk along the Seine at dusk."),
    ("plan one day in paris", "Start at the Musee d'Orsay, lunch in Saint-Germain, then walk along the Seine."),
    ("when should I visit paris", "April to June and September are pleasant in Paris and less crowded."),
    ("what is the best thing to see in tokyo", "In Tokyo, see the Senso-ji temple and the view from Shibuya Sky."),
    ("plan one day in tokyo", "Visit Senso-ji early, eat at Tsukiji outer market, then see Shibuya at night."),
    ("when should I visit tokyo", "Late March for cherry blossoms, or November for autumn colors, suit Tokyo."),
    ("what is the best thing to see in rome", "In Rome, see the Colosseum and the Vatican Museums."),
    ("plan one day in rome", "See the Colosseum at opening, the Pantheon at noon and Trastevere for dinner."),
    ("when should I visit rome", "April, May and October are warm but not hot in Rome."),
]
DATA_TEXT = "".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in _ROWS)

GITIGNORE_BEGIN = "# >>> olivepipe (written by `olivepipe init`)"
GITIGNORE_END = "# <<< olivepipe"
# the cache, logs and compiled configs, and the links to results: per machine, never committed
IGNORED = (".olivepipe/", "outputs/")
GITIGNORE_BLOCK = "\n".join([GITIGNORE_BEGIN, *IGNORED, GITIGNORE_END]) + "\n"

# The same `files` pattern as olivepipe's .pre-commit-hooks.yaml (workflow.yaml, *.olivepipe.yaml,
# YAML in a workflows/ folder except GitHub's CI files). `repo: local` + `language: system` runs the
# olivepipe of the repository's own environment: the Olive stack is too big for pre-commit to build.
FILES = r"(^|/)(workflow|[^/]+\.olivepipe)\.ya?ml$|^(?!\.github/)(.*/)?workflows/[^/]+\.ya?ml$"
VENV = ".venv"  # where the README's set-up puts the environment


def _entry(command: str, venv: str = VENV) -> str:
    """The hook's command: olivepipe from PATH when an environment is active, else the repository's
    own venv (a `git commit` from a shell without `. .venv/bin/activate` must not fail with
    "olivepipe: not found"). pre-commit runs hooks from the repository root."""
    script = f'exec "$(command -v olivepipe || echo {venv}/bin/olivepipe)" {command} "$@"'
    return json.dumps(f"sh -c '{script}' olivepipe")  # a JSON string is a YAML double-quoted scalar


def hooks(venv: str = VENV) -> str:
    return f"""\
  - repo: local
    hooks:
      - id: olivepipe-validate
        name: olivepipe validate
        entry: {_entry("validate", venv)}
        language: system
        files: '{FILES}'
      - id: olivepipe-fmt
        name: olivepipe fmt --check
        entry: {_entry("fmt --check", venv)}
        language: system
        files: '{FILES}'
"""


HOOKS = hooks()
PRECOMMIT_HEAD = "# pre-commit hooks (https://pre-commit.com): `pre-commit install` once per clone.\nrepos:\n"
PRECOMMIT_TEXT = PRECOMMIT_HEAD + HOOKS


@dataclass
class InitResult:
    root: Path
    wrote: list[str] = field(default_factory=list)      # relative paths created or replaced
    appended: list[str] = field(default_factory=list)   # files that got our block appended
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    add_to_precommit: str | None = None  # hooks to add by hand to an existing .pre-commit-config.yaml


def _write_new(path: Path, text: str, *, replace: bool = False) -> None:
    """Create ``path`` (exclusively unless ``replace``), never through a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:  # a race with another writer, a read-only folder, a link (ELOOP)
        raise OlivepipeError(f"cannot write {path}: {e.strerror}", "check the folder's permissions") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def init_repo(root: Path, *, force: bool = False) -> InitResult:
    """Write the starter files into ``root`` (created if missing). ``force`` replaces only the workflow."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise OlivepipeError(f"{root} exists and is not a folder", "give a folder to set up (default: .)")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OlivepipeError(f"cannot create {root}: {e.strerror}", "check the path and its permissions") from None
    res = InitResult(root)
    # a committed symlink (data -> elsewhere) would make init write outside the repository
    for rel in (WORKFLOW, DATA, ".gitignore", ".pre-commit-config.yaml"):
        check_confined(root, root / rel)

    wf = root / WORKFLOW
    if os.path.lexists(wf) and not force:
        res.skipped.append((WORKFLOW, "exists (--force replaces it)"))
    else:
        _write_new(wf, WORKFLOW_TEXT, replace=True)
        res.wrote.append(WORKFLOW)

    data = root / DATA
    if os.path.lexists(data):
        # --force is for the workflow only: a data file may be the user's own by now
        res.skipped.append((DATA, "exists"))
    else:
        data.parent.mkdir(exist_ok=True)
        _write_new(data, DATA_TEXT)
        res.wrote.append(DATA)

    gi = root / ".gitignore"
    if not os.path.lexists(gi):
        _write_new(gi, GITIGNORE_BLOCK)
        res.wrote.append(".gitignore")
    else:
        text = gi.read_text(encoding="utf-8", errors="replace")
        lines = {ln.strip() for ln in text.splitlines()}
        if GITIGNORE_BEGIN in lines or all(p in lines or "/" + p in lines for p in IGNORED):
            res.skipped.append((".gitignore", "already ignores " + " and ".join(IGNORED)))
        else:
            with open(gi, "a", encoding="utf-8") as f:
                f.write(("" if not text or text.endswith("\n") else "\n") + "\n" + GITIGNORE_BLOCK)
            res.appended.append(".gitignore")

    repo = _git_root(root)
    venv = _venv_of(repo or root)
    if repo is not None and repo != root.resolve():
        # pre-commit reads only the repository root's config: one written here would never run
        pc = repo / ".pre-commit-config.yaml"
        has = os.path.isfile(pc) and "olivepipe-validate" in pc.read_text(encoding="utf-8", errors="replace")
        if has:
            res.skipped.append((".pre-commit-config.yaml", f"the repository's {pc} has olivepipe's hooks"))
        else:
            res.skipped.append((".pre-commit-config.yaml", f"pre-commit reads only {pc} (the repository root): "
                                "add the entries below there" if os.path.lexists(pc) else
                                f"pre-commit reads only {pc} (the repository root): create it with "
                                "`repos:` and the entries below"))
            res.add_to_precommit = hooks(venv)
        return res
    pc = root / ".pre-commit-config.yaml"
    if os.path.lexists(pc):
        text = pc.read_text(encoding="utf-8", errors="replace")
        if "olivepipe-validate" in text and "olivepipe-fmt" in text:
            res.skipped.append((".pre-commit-config.yaml", "exists and has olivepipe's hooks"))
        else:
            res.skipped.append((".pre-commit-config.yaml", "exists: add the entries below under `repos:`"))
            res.add_to_precommit = hooks(venv)
    else:
        _write_new(pc, PRECOMMIT_HEAD + hooks(venv))
        res.wrote.append(".pre-commit-config.yaml")
    return res


def _git_root(start: Path) -> Path | None:
    """The enclosing git repository's root (a folder with .git), or None outside any."""
    start = start.resolve()
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    return None


def _venv_of(repo: Path) -> str:
    """The environment running this olivepipe, relative to ``repo`` when it lives inside it
    (e.g. `.venv`, `env`); else the README's `.venv`."""
    import sys

    prefix = Path(sys.prefix).resolve()
    if prefix != Path(sys.base_prefix).resolve():
        try:
            return prefix.relative_to(repo.resolve()).as_posix()
        except ValueError:
            pass
    return VENV


__all__ = ["DATA", "GITIGNORE_BLOCK", "HOOKS", "WORKFLOW", "InitResult", "init_repo"]
