"""JSON from untrusted places (a shared cache's manifests, an imported Olive config), parsed
with bounds: nesting measured before the (recursive) parser sees the text, integers of at most
40 digits (int() of 100,000 digits is slow, and Python refuses them anyway), and no NaN or
Infinity (not JSON, though Python's parser takes them). Every failure is one ValueError."""
from __future__ import annotations

import json


def depth(raw: bytes | str) -> int:
    """The deepest nesting of ``[``/``{`` in JSON text, strings skipped."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    deepest = level = 0
    in_str = esc = False
    for c in text:
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            level += 1
            deepest = max(deepest, level)
        elif c in "]}":
            level -= 1
    return deepest


def loads(raw: bytes | str, *, max_depth: int):
    """Parsed JSON; ValueError (with a short reason) when it breaks a bound or is not JSON."""
    if depth(raw) > max_depth:
        raise ValueError(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(raw, parse_constant=_no_constant, parse_int=_small_int)
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _small_int(text: str) -> int:
    if len(text.lstrip("-")) > 40:
        raise ValueError(f"a {len(text)}-digit number")
    return int(text)
