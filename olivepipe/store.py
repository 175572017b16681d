"""Older name of the local store, kept for existing callers: ``olivepipe.store`` *is*
``olivepipe.stores.local`` (the same module object), so ``Store``, ``Entry``,
``materialize``, ``MANIFEST`` import as before and tests that patch module functions
(``_write_durable``) patch the code that runs. New code imports ``olivepipe.stores``.
"""
import sys

from .stores import local as _local

sys.modules[__name__] = _local
