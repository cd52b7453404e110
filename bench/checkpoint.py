"""Training state save/load. Loads use ``weights_only=True``: no pickle from user paths.

A fitted scikit-learn head (a classic-head trial, or the fusion model's SVM) is saved beside
``checkpoint.pt`` as ``head.skops``: skops stores it without pickle, and ``load_estimator`` loads it
only when every type skops does not trust by default is in ``fer_models.classic.ALLOWED_TYPES``.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

CHECKPOINT_FILE = "checkpoint.pt"
HEAD_FILE = "head.skops"


def save_checkpoint(directory: str | Path, *, model, optimizer=None, scheduler=None, scaler=None,
                    epoch: int, config: dict, extra: dict | None = None, train_model=None) -> Path:
    """``model`` is what evaluation loads (the EMA weights when ``train.ema`` is on);
    ``train_model``, when given, the weights the optimizer steps (what a resumed trial continues)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
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
    return _write_atomically(directory / CHECKPOINT_FILE, lambda tmp: torch.save(state, tmp))


def _write_atomically(target: Path, write) -> Path:
    """``write(tmp_path)`` then rename onto ``target``: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    os.close(fd)
    write(tmp)
    os.replace(tmp, target)
    return target


def load_checkpoint(directory: str | Path) -> dict:
    path = Path(directory)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    state = torch.load(path, map_location="cpu", weights_only=True)
    state["config"] = json.loads(state["config"])
    state["extra"] = json.loads(state.get("extra") or "{}")
    return state


def save_estimator(directory: str | Path, estimator) -> Path:
    """Write a fitted scikit-learn estimator as ``directory/head.skops`` (atomically)."""
    import skops.io as sio

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return _write_atomically(directory / HEAD_FILE, lambda tmp: sio.dump(estimator, tmp))


def has_estimator(directory: str | Path) -> bool:
    path = Path(directory)
    return (path if path.is_dir() else path.parent).joinpath(HEAD_FILE).is_file()


def load_estimator(directory: str | Path):
    """The estimator in ``directory/head.skops``; a file holding a type outside the allow-list is
    refused before anything in it is built (``fer_models.classic.load_head``)."""
    from fer_models.classic import load_head

    from .errors import UserError

    path = Path(directory)
    try:
        return load_head((path if path.is_dir() else path.parent) / HEAD_FILE)
    except ValueError as exc:
        raise UserError(str(exc)) from None
