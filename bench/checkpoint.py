"""Training state save/load. Loads use ``weights_only=True``: no pickle from user paths."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(directory: str | Path, *, model, optimizer=None, scheduler=None, scaler=None,
                    epoch: int, config: dict, extra: dict | None = None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": epoch,
        "rng": torch.get_rng_state(),
        # JSON string: a flat config may hold values weights_only loading would refuse
        "config": json.dumps(config, default=str),
        "extra": json.dumps(extra or {}, default=str),
    }
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    os.close(fd)
    torch.save(state, tmp)
    os.replace(tmp, directory / CHECKPOINT_FILE)
    return directory / CHECKPOINT_FILE


def load_checkpoint(directory: str | Path) -> dict:
    path = Path(directory)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    state = torch.load(path, map_location="cpu", weights_only=True)
    state["config"] = json.loads(state["config"])
    state["extra"] = json.loads(state.get("extra") or "{}")
    return state
