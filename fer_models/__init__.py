"""fer_models: the model zoo. Never imports ``bench`` or Ray.

Importing the package loads only the input contract (``InputSpec``, a leaf module). Everything
else is loaded on first use (PEP 562 ``__getattr__``), and the registry imports the model
families on its first lookup, so a data pipeline that needs ``InputSpec`` pulls in no model.
"""
from __future__ import annotations

import importlib

from .spec import InputSpec

# public name -> the submodule that defines it
_LAZY = {
    "aggregate_clips": "aggregate",
    "ModelConfigError": "classic",
    "example_inputs": "examples",
    "UnknownModelError": "registry",
    "create_model": "registry",
    "is_model": "registry",
    "list_models": "registry",
    "model_entry": "registry",
    "register_model": "registry",
    "resolve_name": "registry",
    "load_model": "checkpoint",
    "save_model": "checkpoint",
    "ModelMeta": "checkpoint",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["InputSpec", *_LAZY]
