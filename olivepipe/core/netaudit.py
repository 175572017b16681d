"""Opt-in record of a process's network activity: OLIVEPIPE_NETWORK_AUDIT=/path/file.jsonl.

Installed when the olivepipe package is imported (see __init__), so it covers the
orchestrator and every worker, and whatever Olive, onnxruntime, transformers or the hub
client do inside them. One JSON line per event: connects of non-local-IPC sockets,
datagrams sent, and name lookups (a DNS query is traffic even when no connect follows),
with the Python frames that caused it; plus one `audit.start` line per process. Tests fail
on any other line (tests/test_crash_safety_e2e.py).
"""
from __future__ import annotations

import json
import os
import socket
import sys
import traceback

EVENTS = {"socket.connect", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo", "socket.gethostbyname",
          "socket.gethostbyaddr"}
_installed: set[str] = set()


def install(path: str) -> None:
    """Add the audit hook (once per process and file; audit hooks cannot be removed)."""
    if path in _installed:
        return
    _installed.add(path)
    busy = []  # the hook itself opens a file: never audit our own writing

    def hook(event, args):
        if event not in EVENTS or busy:
            return
        if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            address = args[1] if len(args) > 1 else None
            if isinstance(address, (str, bytes)) or getattr(args[0], "family", None) == getattr(socket, "AF_UNIX", -1):
                return  # AF_UNIX: local IPC, not the network
            target = [str(a) for a in address] if isinstance(address, tuple) else str(address)
        else:
            target = [str(a) for a in args[:2]]
        busy.append(1)
        try:
            frames = [f"{f.filename}:{f.lineno} {f.name}" for f in traceback.extract_stack(limit=12)[:-1]]
            with open(path, "a") as f:
                f.write(json.dumps({"pid": os.getpid(), "argv": _argv(), "event": event, "target": target,
                                    "stack": frames}) + "\n")
        except Exception:  # noqa: BLE001 - auditing must never break the audited program
            pass
        finally:
            busy.pop()

    sys.addaudithook(hook)
    try:  # one line per audited process, so a test can tell "silent" from "not audited"
        with open(path, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "argv": _argv(), "event": "audit.start"}) + "\n")
    except OSError:
        pass


def _argv() -> list[str]:
    return [str(a) for a in getattr(sys, "orig_argv", sys.argv)[1:4]]


def install_from_env() -> None:
    path = os.environ.get("OLIVEPIPE_NETWORK_AUDIT")
    if path:
        install(path)
