"""The cyclic garbage collector, kept off the objects that live as long as the process.

Importing torch and pandas makes hundreds of thousands of objects that are never garbage; each
automatic collection of the oldest generation walks all of them again. Measured on this machine,
that is 0.6-0.9 s of a `dltrain fit` of 4 s. `settled()` pauses the collector while such objects
are made (imports, building the parts) and then freezes them (`gc.freeze`): later collections
skip them, and the collector runs as usual on everything made afterwards.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType


@contextmanager
def settled() -> Iterator[None]:
    """No collection inside; what was made by the end is frozen (moved out of every collection)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def load(module: str) -> ModuleType:
    """Import `module` (one of dltrain's that bring torch and pandas) under `settled()`."""
    with settled():
        return importlib.import_module(module)
