"""Building a trial's model from its config: shared by the network trial (``trainable``) and the
scikit-learn head trial (``classic_trial``), which both sit above it."""
from __future__ import annotations

import torch

import fer_models
from bench.training.checkpoint import model_kwargs
from bench.training.config import TrialConfig


def build_model(cfg: TrialConfig, num_classes: int) -> torch.nn.Module:
    try:  # model_kwargs: the same kwargs the checkpoint records
        return fer_models.create_model(cfg.model.name, num_classes=num_classes, **model_kwargs(cfg))
    except fer_models.ModelConfigError as exc:  # a bad head kwarg (kernel, C): a config error, not a fault
        from bench.errors import UserError

        raise UserError(str(exc)) from None


def num_classes(dataset_name: str) -> int:
    """The class count of the dataset a trial trains on."""
    from bench.data import get_adapter

    return len(get_adapter(dataset_name).class_names)
