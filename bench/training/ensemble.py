"""An ensemble of trained models: the folder that names its members, the averaged-probability
model built from them, and its test metrics.

An ensemble folder holds only ``ensemble.json`` (the members' checkpoint folders and record ids);
the members' own folders keep their weights. ``load_model_or_ensemble`` is ``load_trained_model``
for either kind of folder, so ``predict`` and ``export`` take both.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.errors import UserError
from bench.training.metrics import classification_metrics

ENSEMBLE_FILE = "ensemble.json"


def is_ensemble(folder: str | Path) -> bool:
    return (Path(folder) / ENSEMBLE_FILE).is_file()


def write_ensemble(folder: str | Path, members: list[str], member_ids: list[str]) -> Path:
    """Write ``folder/ensemble.json`` naming the members' checkpoint folders (in rank order)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ENSEMBLE_FILE
    path.write_text(json.dumps({"format": 1, "members": [str(m) for m in members],
                                "member_records": list(member_ids)}, indent=2) + "\n")
    return folder


def read_ensemble(folder: str | Path) -> dict:
    data = json.loads((Path(folder) / ENSEMBLE_FILE).read_text())
    if not data.get("members"):
        raise UserError(f"{str(folder)!r} names no ensemble members in its {ENSEMBLE_FILE}")
    return data


def average_probabilities(member_probs: list[np.ndarray]) -> np.ndarray:
    """The ensemble's prediction: the mean of its members' class probabilities (equal weights)."""
    shapes = {p.shape for p in member_probs}
    if len(shapes) != 1:
        raise ValueError(f"ensemble members predicted differently shaped probabilities: {sorted(shapes)}")
    return np.mean(np.stack(member_probs), axis=0)


def ensemble_metrics(member_probs: list[np.ndarray], targets: np.ndarray) -> dict:
    """Test metrics of the averaged probabilities: accuracy, UAR, macro-F1, confusion, and the
    loss as the negative log-likelihood of the averaged probabilities (what cross-entropy is for
    one model)."""
    probs = average_probabilities(member_probs)
    targets = np.asarray(targets, dtype=np.int64)
    metrics = classification_metrics(targets, probs.argmax(1), probs.shape[1])
    picked = probs[np.arange(len(targets)), targets]
    metrics["loss"] = float(-np.mean(np.log(np.clip(picked, 1e-12, None))))
    metrics["samples"] = int(len(targets))
    return metrics


class EnsembleModel(nn.Module):
    """Members run on one input; logits are the log of their mean softmax (so softmax and argmax
    give the averaged probabilities), features the members' features side by side."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        specs = [m.input_spec.to_dict() for m in members]
        if any(s != specs[0] for s in specs[1:]):
            raise UserError("the ensemble's members read different inputs (input specs differ); predict and "
                            "export need members that share one input")
        self.members = nn.ModuleList(members)
        self.input_spec = members[0].input_spec
        self.num_classes = getattr(members[0], "num_classes", None)
        self.num_features = sum(int(getattr(m, "num_features", 0)) for m in members)

    def forward(self, x) -> dict:
        outs = [m(x) for m in self.members]
        probs = torch.stack([o["logits"].float().softmax(-1) for o in outs]).mean(0)
        return {"logits": probs.clamp_min(1e-12).log(), "features": torch.cat([o["features"].float() for o in outs], 1),
                "aux_losses": {}}


def load_model_or_ensemble(folder: str | Path):
    """``training.evaluation.load_trained_model`` for a checkpoint folder, or for an ensemble folder
    an ``EnsembleModel`` with the first member's config and state (class names, input spec); the
    members must share their classes, input and image size."""
    from bench.training.evaluation import load_trained_model

    if not is_ensemble(folder):
        return load_trained_model(folder)
    loaded = [load_trained_model(m) for m in read_ensemble(folder)["members"]]
    _, cfg, state = loaded[0]
    for _, other_cfg, other_state in loaded[1:]:
        if list(other_state["meta"].class_names) != list(state["meta"].class_names):
            raise UserError(f"the ensemble at {str(folder)!r} mixes models with different classes")
        if other_cfg.data.image_size != cfg.data.image_size:
            raise UserError(f"the ensemble at {str(folder)!r} mixes image sizes; predict needs one input")
    model = EnsembleModel([m for m, _, _ in loaded]).eval()
    model.member_names = [c.model.name for _, c, _ in loaded]
    return model, cfg, state


def summed(values: list[float | int | None]) -> float | None:
    """A cost of the whole ensemble: the members' costs added (None when any is unknown)."""
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return None
    return sum(values)
