"""Command line: parse arguments, call the library, render.

app.py holds the click group and the one error wrapper; each command module imports it
and registers its commands. The imports below are that registration, and the only
place the package refers to its command modules. (The console script enters through
olivepipe/fastpath.py, which answers a no-op from its stamp before this package loads.)
"""
from .app import main

from . import cache, review, run  # noqa: E402,F401  (registration: their commands land on `main`)

__all__ = ["main"]
from . import cache_remote  # noqa: E402,F401  (registration: `cache push|pull` on the `cache` group)
from . import importer  # noqa: E402,F401  (registration: `olivepipe import`)
from . import metrics  # noqa: E402,F401  (registration: `olivepipe metrics`)
from . import init  # noqa: E402,F401  (registration: `olivepipe init`)
from . import report_cmd  # noqa: E402,F401  (registration: `olivepipe report`)
from . import exp  # noqa: E402,F401  (registration: `olivepipe exp show|diff|apply`)
