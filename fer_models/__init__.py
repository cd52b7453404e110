"""fer_models: the model zoo. Never imports ``bench`` or Ray."""
from . import face  # noqa: F401  (registers models)
from .registry import (
    UnknownModelError,
    create_model,
    is_model,
    list_models,
    model_entry,
    register_model,
    resolve_name,
)
from .spec import InputSpec

__all__ = [
    "InputSpec",
    "UnknownModelError",
    "create_model",
    "is_model",
    "list_models",
    "model_entry",
    "register_model",
    "resolve_name",
]
