"""Training state save/load. Loads use ``weights_only=True``: no pickle from user paths.

The model part of a checkpoint (name, kwargs, class names, input spec, weights) is written and read
by ``fer_models.checkpoint``; this module adds the training state beside it (optimizer, scheduler,
scaler, epoch, RNG, the flat trial config and the trial's ``extra``), and gives format-1 files
(written before checkpoints named their classes) their class names from the dataset registry.

A fitted scikit-learn head (a classic-head trial, or the fusion model's SVM) is saved beside
``checkpoint.pt`` as ``head.skops``: skops stores it without pickle, and ``load_estimator`` loads it
only when every type skops does not trust by default is in ``fer_models.classic.ALLOWED_TYPES``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from bench.training.config import TrialConfig, with_image_size
from fer_models.checkpoint import (
    CHECKPOINT_FILE,  # noqa: F401  (re-exported: callers name the file through bench.training.checkpoint)
    ModelMeta,
    model_from_state,
    read_meta,
    read_state,
    save_model,
    write_atomically,
)

HEAD_FILE = "head.skops"
# a k-fold trial's checkpoint: inner fold 0's at the top (the model a sweep's winner is tested with),
# the other inner folds' in <folder>/inner/<j>/, so a resumed trial continues every fold
INNER_FOLDER = "inner"


def model_kwargs(cfg: TrialConfig) -> dict:
    """The keyword arguments a trial passes to ``create_model``: the ``model.*`` keys, and
    ``data.image_size`` as ``image_size`` unless the space sets it for the model itself; under
    ``model.init`` the init checkpoint's architecture fills the keys the trial does not set."""
    kwargs = with_image_size(cfg.model.kwargs, cfg.data.image_size)
    if cfg.model.init != "none":
        from bench.training.init import init_architecture

        kwargs = {**init_architecture(cfg.model.init, cfg.model.name), **kwargs}
    return kwargs


def describe_model(config: dict, class_names=None) -> ModelMeta:
    """The checkpoint's description of the model a flat trial ``config`` builds. ``class_names``:
    the dataset's, looked up in the registry when not given (None when the config names no dataset)."""
    cfg = TrialConfig.from_flat(config)
    if class_names is None and "data.dataset" in config:
        from bench.data import get_adapter

        class_names = get_adapter(cfg.data.dataset).class_names
    return ModelMeta(cfg.model.name, model_kwargs(cfg), tuple(class_names) if class_names is not None else None)


def save_checkpoint(directory: str | Path, *, model, optimizer=None, scheduler=None, scaler=None,
                    epoch: int, config: dict, extra: dict | None = None, train_model=None,
                    class_names=None) -> Path:
    """``model`` is what evaluation loads (the EMA weights when ``train.ema`` is on);
    ``train_model``, when given, the weights the optimizer steps (what a resumed trial continues)."""
    training_state = {
        **({"train_model": train_model.state_dict()} if train_model is not None else {}),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": epoch,
        "rng": torch.get_rng_state(),
        # JSON string: a flat config may hold values weights_only loading would refuse
        "config": json.dumps(config, default=str),
        "extra": json.dumps(extra or {}, default=str),
    }
    return save_model(directory, model, describe_model(config, class_names), training_state)


def load_checkpoint(directory: str | Path, inner: bool = False) -> dict:
    """The checkpoint in ``directory``. ``inner``: also a k-fold trial's other inner folds, when
    saved beside it, as ``state["inner"]`` ({fold index: that fold's state}; what a resumed trial
    needs, nothing that evaluates the model does)."""
    state = read_state(directory)
    state["config"] = json.loads(state["config"])
    state["extra"] = json.loads(state.get("extra") or "{}")
    folder = Path(directory) / INNER_FOLDER
    if inner and folder.is_dir():
        state["inner"] = {int(d.name): load_checkpoint(d) for d in sorted(folder.iterdir())
                          if d.is_dir() and d.name.isdigit()}
    return state


def checkpoint_meta(state: dict, source: str | Path = "checkpoint") -> ModelMeta:
    """The model description of a loaded checkpoint; a format-1 file (no class names) gets the
    kwargs a trial passed and the class names of its config's dataset."""
    meta = read_meta(state, str(source))
    if meta.class_names is not None:
        return meta
    return describe_model(state["config"] if isinstance(state["config"], dict) else json.loads(state["config"]))


def load_checkpoint_model(directory: str | Path, state: dict | None = None):
    """``(model, meta)`` of a bench checkpoint, any format, with its scikit-learn head; the errors
    people can fix (a missing or untrusted head, a model that no longer takes a kwarg) are
    ``UserError``s."""
    from bench.errors import UserError
    from fer_models import ModelConfigError

    path = Path(directory)
    folder = path if path.is_dir() else path.parent
    state = state if state is not None else load_checkpoint(folder)
    try:
        return model_from_state(state, folder, meta=checkpoint_meta(state, folder))
    except (ModelConfigError, ValueError) as exc:  # a bad head kwarg, a head file refused or missing
        raise UserError(str(exc)) from None


def upgrade_checkpoint(directory: str | Path) -> Path:
    """Rewrite a format-1 checkpoint in the current format (the model part gains its class names,
    from the dataset registry, and its input spec); weights and training state are unchanged."""
    path = Path(directory)
    folder = path if path.is_dir() else path.parent
    state = load_checkpoint(folder)
    meta = checkpoint_meta(state, folder)
    model, _ = model_from_state(state, folder, meta=meta, with_head=False)  # the head file stays as it is
    training_state = {k: v for k, v in state.items() if k not in ("format", "model", "model_meta")}
    training_state["config"] = json.dumps(state["config"], default=str)
    training_state["extra"] = json.dumps(state["extra"], default=str)
    return save_model(folder, model, meta, training_state)


def save_estimator(directory: str | Path, estimator) -> Path:
    """Write a fitted scikit-learn estimator as ``directory/head.skops`` (atomically)."""
    import skops.io as sio

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return write_atomically(directory / HEAD_FILE, lambda tmp: sio.dump(estimator, tmp))


def has_estimator(directory: str | Path) -> bool:
    path = Path(directory)
    return (path if path.is_dir() else path.parent).joinpath(HEAD_FILE).is_file()


def load_estimator(directory: str | Path):
    """The estimator in ``directory/head.skops``; a file holding a type outside the allow-list is
    refused before anything in it is built (``fer_models.classic.load_head``)."""
    from bench.errors import UserError
    from fer_models.classic import load_head

    path = Path(directory)
    try:
        return load_head((path if path.is_dir() else path.parent) / HEAD_FILE)
    except ValueError as exc:
        raise UserError(str(exc)) from None
