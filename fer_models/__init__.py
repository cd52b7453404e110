"""fer_models: the model zoo. Never imports ``bench`` or Ray."""
from . import classic, face, fusion, mic, video, voice  # noqa: F401  (registers models)
from .aggregate import aggregate_clips
from .classic import ModelConfigError
from .examples import example_inputs
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
    "aggregate_clips",
    "ModelConfigError",
    "example_inputs",
    "UnknownModelError",
    "create_model",
    "is_model",
    "list_models",
    "model_entry",
    "register_model",
    "resolve_name",
]
