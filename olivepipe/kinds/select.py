"""Node kind `select`: choose one model among candidates by their evaluate results.

    best:
      kind: select
      input: eval                # evaluate nodes; a matrix evaluate node brings every variant
      minimize: latency          # or `maximize: throughput`
      constraints:               # optional, Olive's goal vocabulary: a candidate missing one is out
        perplexity: {type: percent-max-degradation, value: 5, baseline: eval-fp32}

Each evaluate node stands for the model it measured; the select node's result is that
model, copied byte for byte, so its consumers read the winner (and key exactly as if they
read it directly). The choice is made where the job runs, from the evaluate results it reads,
by ``decide``: a pure function of the rule and the numbers, ties going to the first candidate
in input order. The key holds the rule and the content digests of every evaluate result and
candidate model, so it changes when a number or the rule changes and at no other time;
the winner and why are recorded with the result (the lock's `result`, shown by plan).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

from ..olive.goals import GOALS_SCHEMA
from .base import NodeKind

_metric = {"type": "string", "pattern": r"^[a-z][a-z0-9_]*$"}


class Select(NodeKind):
    name = "select"
    gathers = True
    fields = {
        "minimize": {**_metric, "description": "The metric to make as small as possible (e.g. latency, size)."},
        "maximize": {**_metric, "description": "The metric to make as large as possible (e.g. throughput)."},
        "constraints": {**GOALS_SCHEMA, "description": "Goals a candidate must meet to be chosen (Olive's goal "
                                                       "vocabulary); one it misses is left out, not failed."},
    }
    option_fields = ("minimize", "maximize", "constraints")

    # -- spec time ------------------------------------------------------------------
    def check(self, ctx, base, n, where):
        if ("minimize" in n) == ("maximize" in n):
            ctx.problem(where, f"a select node needs exactly one of `minimize` and `maximize` ('{base}' has "
                        f"{'both' if 'minimize' in n else 'neither'})", "e.g. `minimize: latency`")
        if "matrix" in n:
            ctx.problem(where + ("matrix",), "a select node takes no matrix; it chooses among its inputs' variants",
                        "put the matrix on the node whose variants it chooses among")
        return {}

    def check_matrix(self, ctx, spec_fields, raw, where):
        return None  # reported by check

    def refs(self, raw):
        c = raw.get("constraints")
        return [(("constraints", m, "baseline"), g["baseline"]) for m, g in c.items()
                if isinstance(g, dict) and isinstance(g.get("baseline"), str)] if isinstance(c, dict) else []

    def finish(self, ctx, spec, where):
        from .. import kinds
        from ..olive import goals
        from .evaluate import resolve_baselines

        evals, models, fmts, ok = list(spec.inputs), [], set(), True
        measured, told = None, set()
        for name in evals:
            up = ctx.built.get(name)
            if up is None or up.kind != "evaluate":
                shown = up.base if up else name  # once per node as written, not per variant
                if shown not in told:
                    told.add(shown)
                    ctx.problem(where + ("input",), f"'{shown}' is {'a ' + up.kind + ' node' if up else 'a model'}"
                                ": a select node chooses among the models its evaluate nodes measured",
                                f"add an evaluate node reading '{shown}' and select over that", value=True)
                ok = False
                continue
            measured = set(up.options.get("metrics") or ()) if measured is None else \
                measured & set(up.options.get("metrics") or ())
            model = up.inputs[0] if up.inputs else None
            if model in ctx.built and kinds.get(ctx.built[model].kind).makes_model:
                fmts.add(kinds.get(ctx.built[model].kind).output_format(ctx.built[model]))
            elif model in ctx.models and ctx.models[model].source == "tiny":
                fmts.add("hf")
            else:
                ctx.problem(where + ("input",), f"'{name}' measures '{model}', which is not a stored "
                            "result: a select node passes on a copy of the winner from the cache",
                            "select among models that nodes of the workflow make (or a `tiny:` model)", value=True)
                ok = False
                continue
            models.append(model)
        if not ok or not evals:
            return spec
        measured = sorted(measured or ())
        opts = dict(spec.options)
        objective = opts.get("minimize") or opts.get("maximize")
        if isinstance(objective, str) and goals.result_key(objective, measured) is None:
            field = "minimize" if "minimize" in opts else "maximize"
            ctx.problem(where + (field,), f"not every candidate measures '{objective}'",
                        f"measured by all: {', '.join(measured) or 'nothing in common'}", value=True)
        goals.check(ctx, where + ("constraints",), opts.get("constraints"), measured,
                    owner=f"constraint of '{spec.base}'")
        spec = resolve_baselines(ctx, spec, where, opts.get("constraints"), ("constraints",), measured,
                                 own=set(evals))
        # a constraint's baseline is read like the candidates' results: an input, so its numbers are in the key
        baselines = [a for a in spec.after if a not in evals]
        inputs = tuple(dict.fromkeys([*evals, *baselines, *models]))
        opts.update(candidates=[[inputs.index(e), inputs.index(m)] for e, m in zip(evals, models)],
                    format=next(iter(fmts)) if len(fmts) == 1 else None)
        return replace(spec, inputs=inputs, after=(), options=opts)

    def output_format(self, node):
        return node.options.get("format")

    # -- records and plan -----------------------------------------------------------
    def record(self, step):
        node = step.node
        o = node.options
        index = {n: i for i, n in enumerate(node.inputs)}
        constraints = {m: {**g, **({"baseline": index.get(g["baseline"], g["baseline"])}
                                   if isinstance(g.get("baseline"), str) else {})}
                       for m, g in (o.get("constraints") or {}).items()}
        rule = {"minimize": o["minimize"]} if o.get("minimize") else {"maximize": o.get("maximize")}
        # names are not in the key: baselines and candidates by input position
        return {"select": {**rule, "constraints": constraints, "candidates": o.get("candidates")}}

    def describe(self, result):
        if not result or not result.get("selected"):
            return None
        return f"selected {result['selected']}: {result.get('why', '')}".rstrip(": ")

    # -- execution ------------------------------------------------------------------
    def job(self, step, inputs):
        node = step.node
        o = node.options
        by_pos = {i: inp for i, inp in enumerate(inputs)}
        return {"node": node.name, "minimize": o.get("minimize"), "maximize": o.get("maximize"),
                "constraints": o.get("constraints") or {},
                "candidates": [{"name": by_pos[m]["name"], "eval": by_pos[e]["name"], "metrics": by_pos[e]["path"],
                                "tree": by_pos[m]["path"], "model": by_pos[m]["model"]} for e, m in o["candidates"]],
                # every evaluate result read (an evaluation carries no model): constraint baselines
                "baselines": {inp["name"]: inp["path"] for inp in inputs if inp.get("model") is None}}

    def run(self, spec, io):
        from ..core.errors import OlivepipeError
        from .evaluate import read_values

        cands = [{"name": c["name"], "eval": c["eval"], "values": read_values(c["metrics"])}
                 for c in spec["candidates"]]
        baselines = {n: read_values(p) for n, p in spec["baselines"].items()}
        baselines.update({c["eval"]: c["values"] for c in cands})
        winner, why, table = decide(spec, cands, baselines)
        print("olivepipe select:\n  " + "\n  ".join(table), flush=True)
        if winner is None:
            raise OlivepipeError(f"no candidate meets the constraints: {why}", "relax a constraint, or add candidates")
        chosen = spec["candidates"][winner]
        _copy_tree(Path(chosen["tree"]), Path(io.out))
        return {"model": _rebase(chosen["model"], chosen["tree"]),
                "result": {"selected": chosen["name"], "eval": chosen["eval"], "why": why, "table": table}}


def decide(rule: dict, cands: list[dict], baselines: dict) -> tuple[int | None, str, list[str]]:
    """(index of the winner or None, why, one line per candidate). ``rule``: minimize/maximize
    and constraints; ``cands``: [{"name", "eval", "values"}] in input order (ties go to the first)."""
    from ..olive.goals import _metric_key, judge_all

    metric = rule.get("minimize") or rule.get("maximize")
    key = metric if any(metric in c["values"] for c in cands) else _metric_key(metric)
    sign = 1 if rule.get("minimize") else -1
    ok, lines = [], []
    for i, c in enumerate(cands):
        misses = [r["text"] for r in judge_all(rule.get("constraints") or {}, c["values"], baselines) if not r["ok"]]
        v = c["values"].get(key)
        if v is None:
            misses.append(f"no {key} result")
        lines.append(f"{c['name']} ({c['eval']}): {key} {_num(v)}" + (f"; out: {'; '.join(misses)}" if misses else ""))
        if not misses:
            ok.append(i)
    if not ok:
        return None, "; ".join(lines), lines
    best = min(ok, key=lambda i: (sign * cands[i]["values"][key], i))
    others = [f"{cands[i]['name']} {_num(cands[i]['values'][key])}" for i in ok if i != best]
    out = len(cands) - len(ok)
    why = (f"{'lowest' if sign > 0 else 'highest'} {key} {_num(cands[best]['values'][key])}"
           + (f" (vs {', '.join(others)})" if others else "")
           + (f"; {out} of {len(cands)} left out by constraints" if out else ""))
    return best, why, lines


def _num(v) -> str:
    return "-" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)


def _copy_tree(src: Path, dst: Path) -> None:
    """The winner's files, byte for byte (store trees are read-only: permissions are not copied)."""
    for folder, dirs, files in os.walk(src):
        rel = Path(folder).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(Path(folder) / f, dst / rel / f)


def _rebase(cfg, tree: str):
    """The winner's model config with its folder as $OUT (the copy is the whole folder)."""
    from ..core.job import OUT

    prefix = str(tree)
    if isinstance(cfg, dict):
        return {k: _rebase(v, tree) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [_rebase(v, tree) for v in cfg]
    if isinstance(cfg, str) and (cfg == prefix or cfg.startswith(prefix + "/")):
        return OUT + cfg[len(prefix):]
    return cfg


KIND = Select()
