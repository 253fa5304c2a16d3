"""One class per backend, holding its loaded model; the stages name them in their registries.

A registry maps a config value to "module:Class", imported only when that backend is selected: the CPU
install has no torch, and a CPU pipeline never imports a model backend.
"""

from __future__ import annotations

import importlib
from typing import Any


def load_backend(spec: str) -> Any:
    """The class a registry names as "package.module:Class"."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)
