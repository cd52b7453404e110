"""The dataset registry: each adapter class registers itself with ``@register_dataset``;
``get_adapter(name)`` builds one. Adapter modules import this module, never the package."""
from __future__ import annotations

import difflib

from ..errors import UserError
from .base import DatasetAdapter

DATASETS: dict[str, type[DatasetAdapter]] = {}


def register_dataset(cls: type[DatasetAdapter]) -> type[DatasetAdapter]:
    """A class decorator: adds an adapter class under its ``name``; a name taken twice is an error."""
    if cls.name in DATASETS:
        raise ValueError(f"dataset {cls.name!r} is already registered")
    DATASETS[cls.name] = cls
    return cls


def get_adapter(name: str) -> DatasetAdapter:
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UserError(f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(sorted(DATASETS))}.")
    return DATASETS[name]()
