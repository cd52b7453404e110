"""The output contract every fer-bench model follows."""
from __future__ import annotations

import torch
import torch.nn as nn

from .spec import InputSpec


class FerModel(nn.Module):
    """Base class: subclasses set ``input_spec`` and ``num_features`` and implement
    ``forward_features`` (inputs -> B x num_features) and ``forward_head``."""

    input_spec: InputSpec
    num_features: int

    def forward_features(self, x) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def aux_losses(self, x, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra loss terms a model contributes (MI, reconstruction, ...); none by default."""
        return {}

    def forward(self, x) -> dict:
        features = self.forward_features(x)
        return {
            "logits": self.forward_head(features),
            "features": features,
            "aux_losses": self.aux_losses(x, features),
        }
