"""A strict model registry: names are unique, unknown names fail with suggestions.

Follows torchvision's ``models/_api.py`` (duplicates raise) and timm's ``_registry.py``
(wildcard listing), without timm's pretrained-tag machinery.
"""
from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn


class UnknownModelError(KeyError):
    """Raised for a model name that is not registered; the message lists close matches."""

    def __str__(self) -> str:  # KeyError quotes its message; people should not see the quotes
        return str(self.args[0])


@dataclass(frozen=True)
class ModelEntry:
    name: str
    fn: Callable[..., nn.Module]
    modality: str
    summary: str


_MODELS: dict[str, ModelEntry] = {}
# Prefix routes let one entry serve a family of names, e.g. ``timm/resnet18`` -> face_timm.
_PREFIXES: dict[str, tuple[str, str]] = {}

# The modules whose import registers the built-in families. They are imported on the registry's
# first lookup, not with the package, so ``from fer_models import InputSpec`` (the data pipeline)
# stays free of every model family and of timm.
BUILTIN_FAMILIES = ("classic", "face", "fusion", "mic", "video", "voice")
_builtins_loaded = False


def load_builtin_models() -> None:
    """Import the built-in model families once (each registers its models on import)."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True  # set first: the families' own registry calls must not recurse here
    import importlib

    try:
        for family in BUILTIN_FAMILIES:
            importlib.import_module(f"{__package__}.{family}")
    except BaseException:
        _builtins_loaded = False
        raise


def register_model(name: str | None = None, *, modality: str) -> Callable:
    """Decorator: register a model constructor ``fn(num_classes, **kwargs) -> nn.Module``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        if key in _MODELS:
            raise ValueError(f"model name {key!r} is already registered by {_MODELS[key].fn.__module__}")
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        _MODELS[key] = ModelEntry(key, fn, modality, summary)
        return fn

    return wrap


def register_prefix(prefix: str, model_name: str, kwarg: str) -> None:
    """Route ``<prefix>/<value>`` to ``model_name`` with ``kwarg=value``."""
    if prefix in _PREFIXES:
        raise ValueError(f"model prefix {prefix!r} is already registered")
    _PREFIXES[prefix] = (model_name, kwarg)


def resolve_name(name: str) -> tuple[ModelEntry, dict]:
    """Return the entry for ``name`` and the keyword arguments its name implies."""
    load_builtin_models()
    if name in _MODELS:
        return _MODELS[name], {}
    if "/" in name:
        prefix, value = name.split("/", 1)
        if prefix in _PREFIXES and value:
            target, kwarg = _PREFIXES[prefix]
            entry = _MODELS[target]
            validate = getattr(entry.fn, "validate_" + kwarg, None)
            if validate is not None:
                validate(value)
            return entry, {kwarg: value}
    close = difflib.get_close_matches(name, list(_MODELS) + [p + "/" for p in _PREFIXES], n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}.{hint} `fer-bench models list` shows every registered model."
    )


def is_model(name: str) -> bool:
    try:
        resolve_name(name)
    except (UnknownModelError, ValueError):
        return False
    return True


def list_models(pattern: str = "*", modality: str | None = None) -> list[str]:
    load_builtin_models()
    names = [
        n for n, e in _MODELS.items()
        if fnmatch.fnmatch(n, pattern) and (modality is None or e.modality == modality)
    ]
    return sorted(names)


def model_entry(name: str) -> ModelEntry:
    return resolve_name(name)[0]


def create_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build a registered model. ``name`` may be a prefix route such as ``timm/resnet18``."""
    entry, implied = resolve_name(name)
    model = entry.fn(num_classes=num_classes, **{**implied, **kwargs})
    if not hasattr(model, "input_spec"):
        raise TypeError(f"model {name!r} does not declare input_spec")
    return model
