"""An ensemble of trained models: which members and weights (``ensemble_selection``), the folder
that names them, the weighted-average-probability model built from them, and its test metrics.

An ensemble folder holds only ``ensemble.json`` (the members' checkpoint folders, record ids and
weights); the members' own folders keep their parameters. ``load_model_or_ensemble`` is ``load_trained_model``
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
# forward-selection rounds: the weights are multiples of 1/25 (AutoGluon's weighted ensemble's
# default ensemble size; auto-sklearn uses 50 on libraries of hundreds of models)
SELECTION_ROUNDS = 25


def is_ensemble(folder: str | Path) -> bool:
    return (Path(folder) / ENSEMBLE_FILE).is_file()


def write_ensemble(folder: str | Path, members: list[str], member_ids: list[str],
                   weights: list[float] | None = None) -> Path:
    """Write ``folder/ensemble.json`` naming the members' checkpoint folders (in rank order) and
    their weights (default: equal)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ENSEMBLE_FILE
    weights = list(weights) if weights is not None else [1 / len(members)] * len(members)
    path.write_text(json.dumps({"format": 1, "members": [str(m) for m in members],
                                "member_records": list(member_ids), "weights": weights}, indent=2) + "\n")
    return folder


def read_ensemble(folder: str | Path) -> dict:
    data = json.loads((Path(folder) / ENSEMBLE_FILE).read_text())
    if not data.get("members"):
        raise UserError(f"{str(folder)!r} names no ensemble members in its {ENSEMBLE_FILE}")
    return data


def average_probabilities(member_probs: list[np.ndarray], weights: list[float] | None = None) -> np.ndarray:
    """The ensemble's prediction: the weighted mean of its members' class probabilities (default:
    equal weights)."""
    shapes = {p.shape for p in member_probs}
    if len(shapes) != 1:
        raise ValueError(f"ensemble members predicted differently shaped probabilities: {sorted(shapes)}")
    return np.average(np.stack(member_probs), axis=0, weights=weights)


def _nll(probs: np.ndarray, targets: np.ndarray) -> float:
    """The negative log-likelihood of averaged probabilities: what cross-entropy is for one model."""
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(targets)), targets], 1e-12, None))))


def ensemble_metrics(member_probs: list[np.ndarray], targets: np.ndarray, weights: list[float] | None = None) -> dict:
    """Test metrics of the (weighted) averaged probabilities: accuracy, UAR, macro-F1, confusion,
    and the loss as their negative log-likelihood."""
    probs = average_probabilities(member_probs, weights)
    targets = np.asarray(targets, dtype=np.int64)
    metrics = classification_metrics(targets, probs.argmax(1), probs.shape[1])
    metrics["loss"] = _nll(probs, targets)
    metrics["samples"] = int(len(targets))
    return metrics


def ensemble_selection(member_probs: list[np.ndarray], targets: np.ndarray, metric: str, mode: str, *,
                       max_members: int, rounds: int = SELECTION_ROUNDS) -> list[float]:
    """Each candidate's weight by Caruana et al.'s ensemble selection (ICML 2004; AutoGluon's and
    auto-sklearn's): starting empty, each round adds the candidate, a repeat included, whose
    addition gives the averaged validation probabilities the best ``metric`` (``val/uar``,
    ``val/accuracy``, ``val/macro_f1`` or ``val/loss``; equal scores: the lower log-loss, then
    the better-ranked candidate), with at most ``max_members`` distinct. The weights are the
    counts of the best round's ensemble over its size (the earliest best round), so a candidate
    that does not help the ensemble on validation weighs 0 and a leader no mix beats weighs 1.
    ``member_probs`` are in rank order, on the same validation samples as ``targets``."""
    if not member_probs:
        raise ValueError("ensemble selection needs at least one candidate")
    targets = np.asarray(targets, dtype=np.int64)
    key = metric.split("/", 1)[-1]
    if key not in ("uar", "accuracy", "macro_f1", "loss"):
        raise ValueError(f"ensemble selection scores uar, accuracy, macro_f1 or loss, not {metric!r}")
    sign = -1.0 if mode == "max" else 1.0

    def cost(probs: np.ndarray) -> tuple[float, float]:
        nll = _nll(probs, targets)
        if key == "loss":
            return nll, 0.0
        return sign * classification_metrics(targets, probs.argmax(1), probs.shape[1])[key], nll

    counts = np.zeros(len(member_probs), dtype=np.int64)
    total = np.zeros(member_probs[0].shape, dtype=np.float64)
    best: tuple | None = None
    for size in range(1, rounds + 1):
        allowed = [i for i in range(len(member_probs)) if counts[i] or np.count_nonzero(counts) < max_members]
        score, pick = min((cost((total + member_probs[i]) / size), i) for i in allowed)
        counts[pick] += 1
        total += member_probs[pick]
        if best is None or score < best[0]:
            best = (score, counts.copy())
    return (best[1] / best[1].sum()).tolist()


class EnsembleModel(nn.Module):
    """Members run on one input; logits are the log of their weighted mean softmax (so softmax and
    argmax give the ensemble's probabilities), features the members' features side by side."""

    def __init__(self, members: list[nn.Module], weights: list[float] | None = None):
        super().__init__()
        specs = [m.input_spec.to_dict() for m in members]
        if any(s != specs[0] for s in specs[1:]):
            raise UserError("the ensemble's members read different inputs (input specs differ); predict and "
                            "export need members that share one input")
        self.members = nn.ModuleList(members)
        self.input_spec = members[0].input_spec
        self.num_classes = getattr(members[0], "num_classes", None)
        self.num_features = sum(int(getattr(m, "num_features", 0)) for m in members)
        weights = torch.tensor(weights if weights is not None else [1.0] * len(members), dtype=torch.float32)
        self.register_buffer("weights", weights / weights.sum(), persistent=False)

    def forward(self, x) -> dict:
        outs = [m(x) for m in self.members]
        stacked = torch.stack([o["logits"].float().softmax(-1) for o in outs])
        probs = (self.weights.view(-1, 1, 1) * stacked).sum(0)
        return {"logits": probs.clamp_min(1e-12).log(), "features": torch.cat([o["features"].float() for o in outs], 1),
                "aux_losses": {}}


def load_model_or_ensemble(folder: str | Path):
    """``training.evaluation.load_trained_model`` for a checkpoint folder, or for an ensemble folder
    an ``EnsembleModel`` with the first member's config and state (class names, input spec); the
    members must share their classes, input and image size."""
    from bench.training.evaluation import load_trained_model

    if not is_ensemble(folder):
        return load_trained_model(folder)
    described = read_ensemble(folder)
    loaded = [load_trained_model(m) for m in described["members"]]
    _, cfg, state = loaded[0]
    for _, other_cfg, other_state in loaded[1:]:
        if list(other_state["meta"].class_names) != list(state["meta"].class_names):
            raise UserError(f"the ensemble at {str(folder)!r} mixes models with different classes")
        if other_cfg.data.image_size != cfg.data.image_size:
            raise UserError(f"the ensemble at {str(folder)!r} mixes image sizes; predict needs one input")
    model = EnsembleModel([m for m, _, _ in loaded], described.get("weights")).eval()
    model.member_names = [c.model.name for _, c, _ in loaded]
    return model, cfg, state


def summed(values: list[float | int | None]) -> float | None:
    """A cost of the whole ensemble: the members' costs added (None when any is unknown)."""
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return None
    return sum(values)
