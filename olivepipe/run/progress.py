"""What a running node is doing, read from the tail of its log (no cooperation needed).

HF Trainer, autoawq and onnxruntime-genai's builder print tqdm bars (`26/100 [00:10<00:29, 2.51it/s]`);
the last one in the log is the node's step progress."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_BAR = re.compile(r"(?:(?P<desc>[A-Za-z][\w .:-]{0,40}?):\s*)?\d{1,3}%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)\s*\[")
TAIL = 8192


@dataclass(frozen=True)
class StepProgress:
    done: int
    total: int
    what: str = ""

    def __str__(self) -> str:
        return f"{self.what + ' ' if self.what else ''}{self.done}/{self.total}"


def read_progress(log: Path) -> StepProgress | None:
    """The last progress bar in ``log``, or None (no bar yet, or no log)."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - TAIL))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    last = None
    for line in re.split(r"[\r\n]", text):  # tqdm redraws with \r
        for m in _BAR.finditer(line):
            last = m
    if last is None:
        return None
    return StepProgress(int(last["n"]), int(last["total"]), (last["desc"] or "").strip())
