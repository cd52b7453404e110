"""The fusion model's SVM head: ``fit_svm_head`` on frozen fused features and ``SVMHeadModel``
(network + fitted SVC behind the model output contract). Its own module so the checkpoint loader
can wrap a loaded network without importing the fusion model (which loads encoders through it)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .base import FerModel
from .classic import check_kernel, make_estimator, probabilities


def fit_svm_head(features, labels, kernel: str = "rbf", C: float = 1.0, seed: int = 0):
    """A fitted ``Pipeline(StandardScaler, CalibratedClassifierCV(SVC))`` on frozen fused features
    (N x F, N labels); ``classic.make_estimator`` names the keys ``model.svm_kernel``/``model.svm_c``."""
    from .classic import fit_estimator

    x = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    estimator = make_estimator("svm", kernel=check_kernel("svm_kernel", kernel), C=C, seed=seed,
                               keys={"kernel": "svm_kernel", "C": "svm_c"})
    return fit_estimator(estimator, x, y)


class SVMHeadModel(nn.Module):
    """A trained fusion model's frozen features + a fitted SVC, behind the model output contract.

    ``logits`` are log-probabilities over all ``num_classes`` (classes absent from the SVM's
    training data get probability 0), so argmax and the metrics work unchanged.
    """

    def __init__(self, model: FerModel, svc, num_classes: int):
        super().__init__()
        self.model = model.eval()
        self.svc = svc
        self.num_classes = num_classes
        self.input_spec = model.input_spec
        self.num_features = model.num_features

    def train(self, mode: bool = True):
        return super().train(False)

    @torch.no_grad()
    def forward(self, x) -> dict:
        features = self.model.forward_features(x)
        probs = probabilities(self.svc, features.cpu().numpy(), self.num_classes)
        logits = torch.from_numpy(probs).to(features).clamp_min(1e-12).log()
        return {"logits": logits, "features": features, "aux_losses": {}}
