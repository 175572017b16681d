"""Node kind `evaluate`: measure a model (HF or ONNX, an int4 genai model with its adapter
included) with Olive's own evaluators, as an Olive workflow with `evaluators` and
`evaluate_input_model: true` and no passes.

What Olive can measure in this stack, and how, lives in olivepipe/olive/evaluate.py; this
module adapts it to the node-kind protocol. The result is a folder with `metrics.json`
(plain numbers with units), `report.md` and Olive's own `input_model_metrics.json`;
`olivepipe metrics` reads them back from the store.
"""
from __future__ import annotations

import difflib
import json
import os
import platform
from dataclasses import replace
from pathlib import Path

from ..olive.goals import GOALS_SCHEMA
from .base import Needs, NodeKind, Rehearsal

_ref = {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"}  # as schema.NAME
_int = {"type": "integer"}

# under --rehearse: enough runs to check the pipeline, not to measure it
REHEARSAL_LATENCY = {"warmup": 2, "repeat": 5}
REHEARSAL_SAMPLES = 8
RESULT_FORMAT = 1
EVALUATION = 1  # in every record: bump when olivepipe/olive/evaluate.py changes what a metric measures


class Evaluate(NodeKind):
    name = "evaluate"
    compiles_to_olive = True  # `olivepipe compile --node` shows the Olive evaluation config
    makes_model = False
    fields = {
        "metrics": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "string", "minLength": 1},
                    "description": "What to measure with Olive's evaluators: latency (ms), throughput "
                                   "(sequences/s), perplexity (needs `data`), size (bytes)."},
        "data": _ref,
        "rows": {"type": "string", "pattern": r"^(\d+%?)?:(\d+%?)?$",
                 "description": "The held-out rows of `data` to evaluate on: START:STOP in row numbers or "
                                "percentages, e.g. '28:' or '90%:' (within the dataset's `limit`)."},
        "max_samples": {**_int, "minimum": 1,
                        "description": "Sequences perplexity evaluates (default: the dataset's max_samples)."},
        "latency": {"type": "object", "additionalProperties": False,
                    "description": "How latency and throughput are timed (Olive's defaults: 10 warm-up runs, "
                                   "20 timed runs, batch 1, 8 tokens).",
                    "properties": {"warmup": {**_int, "minimum": 0, "maximum": 100000},
                                   "repeat": {**_int, "minimum": 1, "maximum": 100000},
                                   "batch_size": {**_int, "minimum": 1, "maximum": 4096},
                                   "seq_len": {**_int, "minimum": 1, "maximum": 131072}}},
        "goals": GOALS_SCHEMA,
    }
    # goals are judged, not measured: in options (the job never sees them), never in the record
    option_fields = ("metrics", "rows", "max_samples", "latency", "goals")

    # -- spec time ------------------------------------------------------------------
    def check(self, ctx, base, n, where):
        from ..olive.evaluate import METRICS, REFUSED, parse_rows

        metrics = n.get("metrics")
        wanted = set()
        if metrics is None:
            ctx.problem(where, "an evaluate node needs `metrics`",
                        f"e.g. `metrics: [latency, perplexity]` (known: {', '.join(METRICS)})")
        for i, m in enumerate(metrics if isinstance(metrics, list) else []):
            if not isinstance(m, str):
                continue  # the schema said so
            if m in METRICS:
                wanted.add(m)
            elif m.lower() in REFUSED:
                why, instead = REFUSED[m.lower()]
                ctx.problem(where + ("metrics", i), f"metric '{m}' does not work in this stack: {why}", instead,
                            value=True)
            else:
                close = difflib.get_close_matches(m, list(METRICS), n=1, cutoff=0.6)
                ctx.problem(where + ("metrics", i), f"unknown metric '{m}'",
                            f"did you mean '{close[0]}'?" if close else f"known metrics: {', '.join(METRICS)}",
                            value=True)
        if isinstance(n.get("input"), list) and len(n["input"]) > 1:
            ctx.problem(where + ("input",), f"an evaluate node measures one model; '{base}' lists {len(n['input'])}",
                        "write one evaluate node per model (reading a matrix node evaluates each of its variants)",
                        value=True)
        data, datasets = n.get("data"), ctx.datasets
        needs_data = sorted(m for m in wanted if METRICS[m]["data"])
        if data is None and needs_data:
            ctx.problem(where, f"{' and '.join(needs_data)} needs `data`",
                        "add `data: <dataset>` with a held-out slice, e.g. `rows: '28:'`")
        if data is not None:
            if data not in datasets:
                close = difflib.get_close_matches(data, list(datasets), n=1, cutoff=0.6) if len(datasets) <= 200 else []
                ctx.problem(where + ("data",), f"unknown dataset '{data}'",
                            f"did you mean '{close[0]}'?" if close else
                            f"known datasets: {', '.join(list(datasets)[:10]) or 'none'}", value=True)
            elif wanted and not needs_data:
                ctx.problem(where + ("data",), f"no metric of '{base}' reads data ({', '.join(sorted(wanted))})",
                            "remove `data:`, or add `perplexity` to metrics", value=True)
        for field in ("rows", "max_samples"):
            if field in n and data is None:
                ctx.problem(where + (field,), f"`{field}` selects from `data`, which '{base}' does not set",
                            "add `data: <dataset>`, or remove it")
        rows = n.get("rows")
        if isinstance(rows, str) and data in datasets:
            self._check_rows(ctx, where + ("rows",), rows, datasets[data], parse_rows(rows))
        if "latency" in n and not wanted & {"latency", "throughput"}:
            ctx.problem(where + ("latency",), "`latency` options time latency and throughput, which "
                        f"'{base}' does not measure", "add `latency` to metrics, or remove the options")
        if "goals" in n:
            from ..olive import goals

            goals.check(ctx, where + ("goals",), n["goals"], sorted(wanted), owner=f"goal of '{base}'")
        return {}

    def refs(self, raw):
        goals = raw.get("goals")
        return _baselines(goals, ("goals",)) if isinstance(goals, dict) else []

    @staticmethod
    def _check_rows(ctx, at, rows, ds, parsed):
        if parsed is None:
            return  # the schema's pattern reported it
        start, stop = parsed
        pct = [v for v in (start, stop) if v and v.endswith("%")]
        if pct and len(pct) != len([v for v in (start, stop) if v]):
            ctx.problem(at, f"rows '{rows}' mixes row numbers and percentages", "use one, e.g. '28:' or '80%:'",
                        value=True)
            return
        if pct and ds.limit:
            ctx.problem(at, f"rows '{rows}' are percentages of a dataset with `limit: {ds.limit}`",
                        "write row numbers (e.g. '28:'), which are counted inside the limit", value=True)
            return
        if pct and any(int(v[:-1]) > 100 for v in pct):
            ctx.problem(at, f"rows '{rows}': a percentage above 100", "e.g. '90%:'", value=True)
            return
        lo = int(start.rstrip("%")) if start else 0
        hi = int(stop.rstrip("%")) if stop else None
        if hi is not None and hi <= lo:
            ctx.problem(at, f"rows '{rows}' select nothing (STOP <= START)", "e.g. '28:' (row 28 to the end)",
                        value=True)
        elif not pct and ds.limit and lo >= ds.limit:
            ctx.problem(at, f"rows '{rows}' start at or past the dataset's `limit: {ds.limit}`",
                        f"start below {ds.limit}, or raise the dataset's limit", value=True)

    def finish(self, ctx, spec, where):
        from .. import kinds
        from ..olive import passes

        spec = resolve_baselines(ctx, spec, where, spec.options.get("goals"), ("goals",),
                                 spec.options.get("metrics") or ())
        if not spec.inputs:
            return spec
        name = spec.inputs[0]
        up = ctx.built.get(name)
        if up is not None:
            k = kinds.get(up.kind)
            if not k.makes_model:
                ctx.problem(where + ("input",), f"'{name}' is a {up.kind} node: it makes no model to evaluate",
                            "evaluate a model: a `models:` entry or an Olive pass node", value=True)
            elif (up.kind == "olive" and k.output_format(up) == "hf" and passes.info(up.pass_type).cuda
                  and spec.device != "gpu"):
                ctx.problem(where + ("input",), f"'{name}' holds a {up.pass_type} checkpoint, which loads only with "
                            f"its CUDA kernels ({passes.info(up.pass_type).note or 'CUDA only'}); this node runs on "
                            f"{spec.device}", "set `device: gpu`, or evaluate the ONNX model built from it "
                            "(model-builder)", value=True)
        return spec

    # -- records and plan -----------------------------------------------------------
    @staticmethod
    def _settings(node) -> dict:
        """Effective settings (defaults filled in): writing a default changes no key."""
        from ..olive.evaluate import LATENCY_DEFAULTS, ordered

        opts = node.options
        metrics = ordered(opts.get("metrics") or ())
        out = {"metrics": metrics}
        if {"latency", "throughput"} & set(metrics):
            out["latency"] = {**LATENCY_DEFAULTS, **(opts.get("latency") or {})}
        for k in ("rows", "max_samples"):
            if opts.get(k) is not None:
                out[k] = opts[k]
        return out

    def record(self, step):
        from ..olive.compile import preprocess_options

        node = step.node
        rec = {"evaluation": EVALUATION, **self._settings(node)}
        if node.data:
            rec["data"] = {**step.dataset_record(), "preprocess": preprocess_options(step.dataset)}
        return rec

    def needs(self, step):
        node = step.node
        return Needs(packages=("olive-ai", "onnxruntime", "torchmetrics") + (("datasets",) if node.data else ()))

    def package_names(self, step):
        from ..olive.passes import BASE_PACKAGES

        # perplexity: tokenization, data loading and the metric; HF inputs: peft loads adapters
        return tuple(sorted(set(BASE_PACKAGES + ("torchmetrics", "datasets", "tokenizers", "peft"))))

    def rehearse(self, node, catalog, can_run):
        from ..olive.catalog import EXECUTION_PROVIDERS

        notes = []
        if not can_run(node, node.device):
            node = replace(node, device="cpu", provider=EXECUTION_PROVIDERS["cpu"])
            notes.append("evaluates on cpu")
        opts = dict(node.options)
        settings = self._settings(node)
        if "latency" in settings:
            lat = settings["latency"]
            small = {k: min(lat[k], v) for k, v in REHEARSAL_LATENCY.items()}
            if small != {k: lat[k] for k in small}:
                opts["latency"] = {**(opts.get("latency") or {}), **small}
                notes.append(f"{small['warmup']} warm-up and {small['repeat']} timed runs "
                             f"(was {lat['warmup']} and {lat['repeat']})")
        if node.data and (opts.get("max_samples") or REHEARSAL_SAMPLES + 1) > REHEARSAL_SAMPLES:
            notes.append(f"perplexity over at most {REHEARSAL_SAMPLES} sequences")
            opts["max_samples"] = REHEARSAL_SAMPLES
        return Rehearsal(replace(node, options=opts), note="evaluate: " + "; ".join(notes) if notes else "")

    # -- judging and history --------------------------------------------------------------
    def verdict(self, node, tree, after):
        from ..olive.goals import judge_all

        goals = node.options.get("goals")
        if not goals:
            return None
        own = read_values(tree)
        baselines = {n: read_values(t) for n, t in after.items()}
        baselines[node.name] = own
        missed = [r["text"] for r in judge_all(goals, own, baselines) if not r["ok"]]
        return f"goal missed: {'; '.join(missed)}" if missed else None

    def history(self, node, tree):
        doc = json.loads((Path(tree) / "metrics.json").read_text())
        return {k: doc.get(k) for k in ("node", "model", "metrics", "device", "provider", "host", "settings")}

    # -- execution ------------------------------------------------------------------
    def job(self, step, inputs):
        from ..core.errors import OlivepipeError
        from ..olive import evaluate as ev

        node = step.node
        inp = inputs[0]
        if not inp.get("model") or ev.model_type(inp["model"]) is None:
            raise OlivepipeError(f"node '{node.name}': its input '{inp['name']}' has no model Olive can evaluate",
                                 "evaluate an HF or ONNX model (an Olive pass node or a `models:` entry)")
        settings = self._settings(node)
        refs, dataset = {}, None
        if node.data:
            refs = step.data_refs()
            dataset = step.dataset
            if settings.get("max_samples"):
                dataset = replace(dataset, max_samples=settings["max_samples"])
        source = step.source
        config = ev.build_config(
            inp["model"], settings["metrics"], device=node.device, provider=node.provider,
            latency=settings.get("latency"), dataset=dataset, data_files=sorted(refs), rows=settings.get("rows"),
            output_dir="$OUT", cache_dir="$SCRATCH/olive-cache",
            # olivepipe's own data-loader component, for `olivepipe compile` output to run as is;
            # a worker points it at its own installed copy (run below)
            user_script=str(Path(ev.__file__).resolve()),
            trust_remote_code=bool(source and source.trust_remote_code))
        return {"config": config, "refs": refs, "metrics": settings["metrics"], "settings": settings,
                "input": inp["name"], "node": node.name, "device": node.device, "provider": node.provider}

    def run(self, spec, io):
        from ..olive import evaluate as ev

        config = ev.fix_bare_onnx_folder(ev.point_user_script(spec["config"], str(Path(ev.__file__).resolve())))
        raw = ev.run_evaluation(config, io.log)
        results = ev.read_results(raw, spec["metrics"])
        out = Path(io.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "run_history.txt").unlink(missing_ok=True)  # Olive's, empty without passes
        doc = {"format": RESULT_FORMAT, "node": spec["node"], "model": spec["input"],
               "model_type": ev.model_type(config["input_model"]), "device": spec["device"],
               "provider": spec["provider"], "evaluator": config["evaluators"][ev.EVALUATOR_NAME]["type"],
               "metrics": results, "settings": spec["settings"],

               # latency depends on the machine, which is not in the key: say which one measured it
               "host": {"machine": platform.machine(), "processor": platform.processor() or None,
                        "cpus": os.cpu_count()}}
        (out / "metrics.json").write_text(json.dumps(doc, indent=2) + "\n")
        (out / "report.md").write_text(report_markdown(doc))
        return {"model": None, "summary": {k: v["value"] for k, v in results.items()}}


def _baselines(goals: dict, at: tuple) -> list[tuple[tuple, str]]:
    return [(at + (m, "baseline"), g["baseline"]) for m, g in goals.items()
            if isinstance(g, dict) and isinstance(g.get("baseline"), str)]


def resolve_baselines(ctx, spec, where, goals, at: tuple, metrics, *, own: set | None = None):
    """``spec`` with ``after`` naming the evaluate nodes its goals compare with (expanded names).
    A baseline is one evaluate node, or one variant of a matrix evaluate node (``eval-fp32``)
    that measures the goal's metric. ``own``: the names the node itself reads (no ``after`` needed)."""
    from dataclasses import replace as _replace

    from ..olive.goals import result_key

    if not isinstance(goals, dict):
        return spec
    after = list(spec.after)
    for (metric, _b), ref in _baselines(goals, ()):
        loc = where + at + (metric, "baseline")
        if ref == spec.name or (own and ref in own):
            continue
        if ctx.ref_base(ref, {}) == spec.base:  # a sibling variant: built in this same expansion
            after.append(ref)  # spec.build checks that it exists
            continue
        variants = [n for n, b in ctx.built.items() if b.base == ref] if ref not in ctx.built else [ref]
        if len(variants) != 1:
            ctx.problem(loc, f"baseline '{ref}' has {len(variants)} variants", "name one of them: "
                        + ", ".join(variants[:8]), value=True)
            continue
        b = ctx.built[variants[0]]
        if b.kind != "evaluate":
            ctx.problem(loc, f"baseline '{ref}' is a {b.kind} node, not an evaluate node",
                        "compare with an evaluate node's result, or give a number", value=True)
        elif result_key(metric, list(b.options.get("metrics") or ())) is None:
            ctx.problem(loc, f"baseline '{ref}' does not measure {metric}",
                        f"add it to that node's metrics (it measures {', '.join(b.options.get('metrics') or ())})",
                        value=True)
        else:
            after.append(variants[0])
    return _replace(spec, after=tuple(dict.fromkeys(after)))


def read_values(tree: Path) -> dict:
    """{result key: number} of an evaluate result folder."""
    doc = json.loads((Path(tree) / "metrics.json").read_text())
    return {k: m["value"] for k, m in doc["metrics"].items()}


def report_markdown(doc: dict) -> str:
    s = doc.get("settings") or {}
    lines = [f"# Evaluation: {doc['model']}", "",
             f"Olive {doc['evaluator']} on {doc['device']} ({doc['provider']}), node `{doc['node']}`.", "",
             "| metric | value | unit |", "|---|---:|---|"]
    for k, m in doc["metrics"].items():
        lines.append(f"| {k} | {_num(m['value'])} | {m['unit']} |")
    lines.append("")
    if "latency" in s:
        lat = s["latency"]
        lines.append(f"Latency: {lat['warmup']} warm-up and {lat['repeat']} timed forward passes of "
                     f"{lat['batch_size']} x {lat['seq_len']} tokens.")
    if "perplexity" in doc["metrics"]:
        lines.append(f"Perplexity: rows {s.get('rows') or 'all'} of the dataset"
                     + (f", at most {s['max_samples']} sequences." if s.get("max_samples") else "."))
    return "\n".join(lines) + "\n"


def _num(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


KIND = Evaluate()
