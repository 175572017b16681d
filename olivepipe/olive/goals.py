"""Metric goals in Olive's vocabulary, judged the way Olive's engine resolves them.

A goal is ``{type, value[, baseline]}`` on one result key (``perplexity``, ``latency_avg``...).
Olive's engine (``Engine.resolve_goals``) turns a goal into a bound from a baseline value and
the metric's direction (``m`` = +1 when higher is better, else -1):

    threshold                value itself
    max-degradation          baseline - m * value
    min-improvement          baseline + m * value
    percent-max-degradation  baseline * (1 - m * value / 100)
    percent-min-improvement  baseline * (1 + m * value / 100)

and a result meets it when ``m * result >= m * bound`` (``SearchResults.meets_goals``). Olive's
baseline is always the pass's input model; here it is another evaluate node's result, or a
number. Pure functions: evaluate nodes use them as gates, select nodes as constraints.
"""
from __future__ import annotations

import math

TYPES = ("threshold", "max-degradation", "percent-max-degradation", "min-improvement", "percent-min-improvement")
RELATIVE = frozenset(TYPES[1:])
_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"

GOAL_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["type", "value"],
    "properties": {
        "type": {"enum": list(TYPES), "description": "Olive's goal types."},
        "value": {"type": "number"},
        "baseline": {"description": "What a relative goal is measured against: another evaluate node "
                                    "(its result for the same metric) or a number.",
                     "oneOf": [{"type": "number"}, {"type": "string", "pattern": _NAME}]},
    },
}
GOALS_SCHEMA = {"type": "object", "minProperties": 1, "additionalProperties": GOAL_SCHEMA,
                "propertyNames": {"pattern": r"^[a-z][a-z0-9_]*$"},
                "description": "Per metric (a result key such as perplexity or latency_p90, or `latency` for "
                               "latency_avg): {type, value, baseline}; type is one of " + ", ".join(TYPES) + "."}
# Olive's MetricGoal range check for percentage goals: (type, higher_is_better) -> open interval
_PERCENT_RANGE = {("percent-min-improvement", True): (0, math.inf), ("percent-min-improvement", False): (0, 100),
                  ("percent-max-degradation", True): (0, 100), ("percent-max-degradation", False): (0, math.inf)}


def result_key(name: str, measured: list[str]) -> str | None:
    """The result key a goal names: the key itself, or a metric (`latency` -> `latency_avg`)."""
    from .evaluate import METRICS, result_keys

    keys = [k for m in measured if m in METRICS for k in result_keys(m)]
    if name in keys:
        return name
    if name in METRICS and name in measured:
        return result_keys(name)[0]
    return None


def higher_is_better(key: str) -> bool:
    from .evaluate import METRICS, result_keys

    return next(spec["higher_is_better"] for m, spec in METRICS.items() if key in result_keys(m))


def check(ctx, where: tuple, goals, measured: list[str], *, owner: str, allow_self: str | None = None) -> list:
    """Located problems of a `goals:` (or `constraints:`) mapping; returns the node names its
    baselines refer to. ``measured``: the metrics the node (or the candidates) measure."""
    from .evaluate import METRICS, result_keys

    refs = []
    if not isinstance(goals, dict):
        return refs  # the schema reported it
    known = [k for m in measured if m in METRICS for k in result_keys(m)]
    for name, goal in goals.items():
        at = where + (name,)
        key = result_key(name, measured)
        if key is None:
            import difflib

            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            ctx.problem(at, f"{owner}: no measured metric '{name}' to set a goal on",
                        (f"did you mean '{close[0]}'? " if close else "") + f"measured: {', '.join(known) or 'none'}")
            continue
        if not isinstance(goal, dict) or goal.get("type") not in TYPES or not isinstance(goal.get("value"), (int, float)):
            continue  # the schema reported it
        kind, value, base = goal["type"], goal["value"], goal.get("baseline")
        if kind == "threshold" and base is not None:
            ctx.problem(at + ("baseline",), f"a threshold goal compares with its own value, not a baseline",
                        "remove `baseline`, or use a relative type such as max-degradation", value=True)
        if kind in RELATIVE:
            if base is None:
                ctx.problem(at, f"a {kind} goal needs a `baseline`",
                            "an evaluate node to compare with (e.g. `baseline: eval-fp32`) or a number")
            if value < 0:
                ctx.problem(at + ("value",), f"a {kind} goal's value must not be negative (Olive's rule)",
                            "e.g. `value: 5`", value=True)
            rng = _PERCENT_RANGE.get((kind, higher_is_better(key)))
            if rng and not rng[0] < value < rng[1]:
                ctx.problem(at + ("value",), f"{kind} {value}% is outside Olive's range {rng} for {key} "
                            f"({'higher' if higher_is_better(key) else 'lower'} is better)",
                            "e.g. `value: 5`", value=True)
        if isinstance(base, str) and base != allow_self:
            refs.append((at + ("baseline",), base))
    return refs


def _metric_key(name: str) -> str:
    from .evaluate import METRICS, result_keys

    return result_keys(name)[0] if name in METRICS else name


def bound(kind: str, value: float, hib: bool, baseline: float | None) -> float:
    m = 1 if hib else -1
    if kind == "threshold":
        return value
    if kind == "max-degradation":
        return baseline - m * value
    if kind == "min-improvement":
        return baseline + m * value
    if kind == "percent-max-degradation":
        return baseline * (1 - m * value / 100)
    return baseline * (1 + m * value / 100)  # percent-min-improvement


def judge(name: str, goal: dict, values: dict, baselines: dict[str, dict]) -> dict:
    """One goal against measured ``values`` ({result key: number}); ``baselines`` maps node
    names to their values. Returns {metric, type, value, baseline, bound, actual, ok, text}."""
    key = name if name in values else _metric_key(name)
    kind, value, base = goal["type"], goal["value"], goal.get("baseline")
    hib = higher_is_better(key)
    out = {"metric": key, "type": kind, "value": value, "baseline": base, "actual": values.get(key)}
    ref = None
    if kind in RELATIVE:
        ref = base if isinstance(base, (int, float)) else (baselines.get(base) or {}).get(key)
        if ref is None:
            return {**out, "ok": False, "bound": None,
                    "text": f"{key}: {kind} {value} from {base}, which has no {key} result"}
    lim = bound(kind, value, hib, ref)
    actual = out["actual"]
    ok = actual is not None and math.isfinite(actual) and (1 if hib else -1) * actual >= (1 if hib else -1) * lim
    rel = "" if kind == "threshold" else (f" from {base}'s {_num(ref)}" if isinstance(base, str) else f" from {_num(ref)}")
    unit = "%" if kind.startswith("percent") else ""
    verb = ">=" if hib else "<="
    text = f"{key} {_num(actual)} {'meets' if ok else 'misses'} {verb} {_num(lim)} ({kind} {_num(value)}{unit}{rel})"
    return {**out, "ok": bool(ok), "bound": lim, "baseline_value": ref, "text": text}


def judge_all(goals: dict, values: dict, baselines: dict[str, dict]) -> list[dict]:
    return [judge(name, goal, values, baselines) for name, goal in (goals or {}).items()]


def _num(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return f"{v:.6g}" if isinstance(v, float) else str(v)
