"""Tasks turn a model's output dict and targets into ``{"loss", "logits", ...}`` (timm's
``task/classification.py`` pattern): the engine never knows which losses a model adds."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Classification(nn.Module):
    """Cross-entropy (optionally class-weighted, label-smoothed; class indices or soft N x K
    targets) plus the model's aux losses."""

    def __init__(self, class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.register_buffer("class_weights", class_weights)
        self.label_smoothing = label_smoothing

    def forward(self, output: dict, target: torch.Tensor) -> dict:
        logits = output["logits"]
        # soft targets (N x K probabilities from mixup/cutmix) already carry their label smoothing
        smoothing = 0.0 if target.is_floating_point() else self.label_smoothing
        ce = F.cross_entropy(logits.float(), target, weight=self.class_weights, label_smoothing=smoothing)
        aux = output.get("aux_losses") or {}
        loss = ce + sum(aux.values()) if aux else ce
        return {"loss": loss, "ce": ce.detach(), "logits": logits,
                **{f"aux/{k}": v.detach() for k, v in aux.items()}}


def class_weights_from_labels(labels, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1; absent classes get weight 0."""
    counts = torch.bincount(torch.as_tensor(labels), minlength=num_classes).float()
    weights = torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp(min=1)), 0.0)
    return weights


def create_task(name: str, *, class_weights: torch.Tensor | None = None,
                label_smoothing: float = 0.0) -> nn.Module:
    if name == "classification":
        return Classification(class_weights, label_smoothing)
    raise ValueError(f"unknown task {name!r}; available: classification")
