"""Self-describing checkpoints: the one writer and the one reader of a checkpoint's model part.

A checkpoint is a folder holding ``checkpoint.pt`` (read with ``torch.load(weights_only=True)``: no
pickle from user paths) and, for a scikit-learn head, ``head.skops`` beside it. The model part of
``checkpoint.pt``:

- ``"format"``: ``FORMAT_VERSION`` (2);
- ``"model"``: the state dict;
- ``"model_meta"``: a JSON string ``{"name", "kwargs", "class_names", "input_spec"}``: what
  ``create_model(name, num_classes=len(class_names), **kwargs)`` rebuilds, and the input contract.

A trainer adds its own state beside these keys (bench: optimizer, scheduler, epoch, config...).
``load_model(path)`` needs nothing else: no dataset registry, no trainer.

Format 1 (checkpoints written before the format was versioned) has no ``model_meta``: the name and
kwargs are read from the trainer's flat config (``model.*`` keys, plus ``data.image_size`` as the
``image_size`` kwarg, which is what bench passed to the model), and the class names are not in the
file: the caller gives them (bench takes them from the dataset registry) or the class count.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from .spec import InputSpec

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT_VERSION = 2
MODEL_KEYS = ("format", "model", "model_meta")  # what this module owns in a checkpoint file
HOW_TO_CONVERT = ("convert it once with `python -c \"from bench.training.checkpoint import upgrade_checkpoint; "
                  "upgrade_checkpoint('{folder}')\"`")


@dataclass(frozen=True)
class ModelMeta:
    """What a checkpoint says about its model."""

    name: str
    kwargs: dict = field(default_factory=dict)
    class_names: tuple[str, ...] | None = None  # None: a format-1 file, names not stored
    input_spec: InputSpec | None = None
    format: int = FORMAT_VERSION

    @property
    def num_classes(self) -> int | None:
        return len(self.class_names) if self.class_names is not None else None

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "kwargs": self.kwargs,
                           "class_names": list(self.class_names) if self.class_names is not None else None,
                           "input_spec": self.input_spec.to_dict() if self.input_spec is not None else None},
                          default=str)


def checkpoint_file(path: str | Path) -> Path:
    """``path`` is a checkpoint folder or its ``checkpoint.pt``."""
    path = Path(path).expanduser()
    return path / CHECKPOINT_FILE if path.is_dir() else path


def write_atomically(target: Path, write: Callable[[str], object]) -> Path:
    """``write(tmp_path)`` then rename onto ``target``: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    os.close(fd)
    write(tmp)
    os.replace(tmp, target)
    return target


def model_part(model: nn.Module, meta: ModelMeta) -> dict:
    """The keys this module owns in a checkpoint file, for ``model`` described by ``meta``."""
    spec = meta.input_spec if meta.input_spec is not None else getattr(model, "input_spec", None)
    meta = ModelMeta(meta.name, dict(meta.kwargs), meta.class_names and tuple(meta.class_names), spec)
    return {"format": FORMAT_VERSION, "model": model.state_dict(), "model_meta": meta.to_json()}


def save_model(folder: str | Path, model: nn.Module, meta: ModelMeta, extra_state: dict | None = None) -> Path:
    """Write ``folder/checkpoint.pt`` (atomically): the model part plus a trainer's ``extra_state``
    (tensors, numbers, strings, and dicts/lists of them: what ``weights_only`` loading accepts)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clash = set(MODEL_KEYS) & set(extra_state or {})
    if clash:
        raise ValueError(f"extra_state may not use the model part's keys {sorted(clash)}")
    state = {**(extra_state or {}), **model_part(model, meta)}
    return write_atomically(folder / CHECKPOINT_FILE, lambda tmp: torch.save(state, tmp))


def read_state(path: str | Path) -> dict:
    """The raw contents of a checkpoint file (tensors on the CPU)."""
    file = checkpoint_file(path)
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint {str(file)!r} does not exist")
    return torch.load(file, map_location="cpu", weights_only=True)


def read_meta(state: dict, source: str = "checkpoint") -> ModelMeta:
    """The model description of a loaded checkpoint, format 2 or 1 (see the module docstring)."""
    if "model_meta" in state:
        raw = json.loads(state["model_meta"])
        spec = InputSpec.from_dict(raw["input_spec"]) if raw.get("input_spec") else None
        names = tuple(raw["class_names"]) if raw.get("class_names") is not None else None
        return ModelMeta(raw["name"], dict(raw.get("kwargs") or {}), names, spec, int(state.get("format", 2)))
    config = state.get("config") or {}
    config = json.loads(config) if isinstance(config, str) else config
    if "model.name" not in config:
        raise ValueError(f"checkpoint {source!r} has no model description (no model_meta, and no model.name in "
                         f"its config)")
    kwargs = {k[len("model."):]: v for k, v in config.items() if k.startswith("model.") and k != "model.name"}
    if config.get("data.image_size") and "image_size" not in kwargs:  # what bench passed to the model
        kwargs["image_size"] = config["data.image_size"]
    return ModelMeta(config["model.name"], kwargs, None, None, 1)


def _load_weights(model: nn.Module, weights: dict, source: str, name: str, head_may_differ: bool) -> None:
    if not head_may_differ:
        model.load_state_dict(weights)
        return
    own = model.state_dict()
    usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(own) - set(usable))
    if any(not k.startswith("head.") for k in skipped):
        raise ValueError(f"checkpoint {source!r} does not fit {name!r}: missing or mismatched {skipped[:3]}")
    model.load_state_dict(usable, strict=False)


def _attach_head(model: nn.Module, meta: ModelMeta, folder: Path, num_classes: int) -> nn.Module:
    """A fitted scikit-learn head beside the file: a classic model's estimator, or the SVM a fusion
    model with ``head="svm"`` is scored with (wrapped in ``SVMHeadModel``)."""
    from .classic import HEAD_FILE, load_head

    wants_head = getattr(model, "is_classic", False) or meta.kwargs.get("head") == "svm"
    if not wants_head:
        return model
    if not (folder / HEAD_FILE).is_file():
        raise ValueError(f"checkpoint {str(folder)!r} is a {meta.name} with a scikit-learn head but holds no fitted "
                         f"head ({HEAD_FILE}); it predates saved heads: train it again")
    estimator = load_head(folder / HEAD_FILE)
    if getattr(model, "is_classic", False):
        return model.set_estimator(estimator)
    from .svm_head import SVMHeadModel

    return SVMHeadModel(model, estimator, num_classes)


def model_from_state(state: dict, folder: str | Path, *, meta: ModelMeta | None = None,
                     num_classes: int | None = None, head_may_differ: bool = False,
                     with_head: bool = True) -> tuple[nn.Module, ModelMeta]:
    """Rebuild the model a loaded checkpoint describes (``meta``: its description, when the caller
    supplies one for a format-1 file). ``num_classes`` overrides the stored class count; with
    ``head_may_differ`` a classifier of another size is left freshly initialised."""
    from .registry import create_model

    folder = Path(folder)
    meta = meta or read_meta(state, str(folder))
    classes = num_classes or meta.num_classes
    if classes is None:
        raise ValueError(f"checkpoint {str(folder)!r} was written before checkpoints stored their class names "
                         f"(format 1); {HOW_TO_CONVERT.format(folder=folder)}")
    model = create_model(meta.name, num_classes=classes, **meta.kwargs)
    _load_weights(model, state["model"], str(folder), meta.name, head_may_differ)
    if with_head:
        model = _attach_head(model, meta, folder, classes)
    return model, meta


def load_model(path: str | Path, *, num_classes: int | None = None, head_may_differ: bool = False,
               with_head: bool = True) -> tuple[nn.Module, ModelMeta]:
    """``(model, meta)`` from a checkpoint folder (or its ``checkpoint.pt``), in eval mode, with its
    fitted scikit-learn head when it has one. Needs no dataset: the class names are in the file."""
    file = checkpoint_file(path)
    model, meta = model_from_state(read_state(file), file.parent, num_classes=num_classes,
                                   head_may_differ=head_may_differ, with_head=with_head)
    return model.eval(), meta
