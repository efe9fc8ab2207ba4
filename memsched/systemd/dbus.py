"""Load pystemd's D-Bus binding without pystemd's package __init__.

pystemd's ``__init__`` imports its whole object layer (lxml for
introspection), which memsched does not use: it calls methods and reads
properties directly. Loading only ``pystemd.dbuslib`` keeps `memsched status`
fast. Any later ``import pystemd.<module>`` still works (the stand-in package
has pystemd's real search path).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any


def dbuslib() -> Any:
    """Return the ``pystemd.dbuslib`` module."""
    if "pystemd" not in sys.modules:
        spec = importlib.util.find_spec("pystemd")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("pystemd is not installed")
        package = types.ModuleType("pystemd")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        package.__file__ = spec.origin
        sys.modules["pystemd"] = package
    return importlib.import_module("pystemd.dbuslib")
