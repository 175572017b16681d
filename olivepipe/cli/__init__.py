"""Command line: parse arguments, call the library, render.

app.py holds the click group and the one error wrapper; each command module imports it
and registers its commands. ``main`` (the click group with every command registered) is
made on first use, so that the console script (entry.py) can answer a no-op from its
stamp before click is imported at all (olivepipe/fastpath.py).
"""


def __getattr__(name):
    if name != "main":
        raise AttributeError(name)
    from .app import main

    # registration: their commands land on `main` (`cache push|pull` on the `cache` group)
    from . import cache, cache_remote, importer, init, metrics, report_cmd, review, run  # noqa: F401

    globals()["main"] = main
    return main


__all__ = ["main"]
