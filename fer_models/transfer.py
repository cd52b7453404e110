"""Start a model from another one's weights: every layer but the classifier, adapted to the input.

``init_from_state(model, state, source_channels=...)`` copies the tensors of ``state`` (a state dict
of the same architecture, e.g. a checkpoint's ``model``) into ``model``, except the classifier
(``head.*``: every fer-bench model names it so; it is rebuilt for the new classes). The input
channels may differ (grey to RGB and back): the first convolution is adapted as timm adapts
ImageNet weights (``timm.models.adapt_input_conv``: RGB -> grey sums the three filters, grey -> RGB
repeats the one and scales it by 1/3). Any other layer whose shape differs (an architecture
keyword that changed, a dense layer sized by the input resolution) is a ``TransferError``: one
sentence naming the first such tensor. A convolutional backbone with global pooling has the same
tensors at any resolution, so a different image size needs nothing here.
"""
from __future__ import annotations

import torch
import torch.nn as nn

HEAD_PREFIX = "head."  # the classifier of every fer-bench model (FerModel.forward_head)


class TransferError(ValueError):
    """The source weights do not fit the model (one sentence)."""


def is_head(key: str) -> bool:
    """The classifier: ``head.*``, and a sub-model's own ``<name>.head`` linear layer (the fusion
    model's visual and voice encoders); a timm backbone's ``head.norm`` is not one."""
    return key.startswith(HEAD_PREFIX) or key.endswith((".head.weight", ".head.bias"))


def init_from_state(model: nn.Module, state: dict, *, source: str = "init", source_channels: int | None = None,
                    target_channels: int | None = None) -> list[str]:
    """Load ``state`` into ``model`` but its classifier; return the names of the loaded parameters
    (what ``optim.init_lr_mult`` and ``train.freeze_epochs`` act on)."""
    own = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for key, target in own.items():
        if is_head(key):
            continue
        if key not in state:
            raise TransferError(f"{source} has no weights for {key!r} of this model (another architecture)")
        value = state[key]
        if value.shape != target.shape:
            value = _adapt_channels(value, target, source_channels, target_channels)
        if value is None:
            raise TransferError(f"{source} does not fit this model: {key!r} is {tuple(state[key].shape)} there, "
                                f"{tuple(target.shape)} here (a different architecture or input size)")
        loaded[key] = value.to(target.dtype)
    if not loaded:
        raise TransferError(f"{source} holds no layer of this model besides the classifier")
    model.load_state_dict(loaded, strict=False)
    names = {name for name, _ in model.named_parameters()}
    return sorted(k for k in loaded if k in names)


def _adapt_channels(value: torch.Tensor, target: torch.Tensor, source_channels: int | None,
                    target_channels: int | None) -> torch.Tensor | None:
    """The first convolution's weight for another number of input channels, or None."""
    if source_channels is None:  # a bare weights file does not say: its tensor does
        source_channels = value.shape[1] if value.ndim == 4 else None
    if source_channels is None or target_channels is None or source_channels == target_channels:
        return None
    if value.ndim != 4 or value.shape[0] != target.shape[0] or value.shape[2:] != target.shape[2:]:
        return None
    if value.shape[1] != source_channels or target.shape[1] != target_channels:
        return None
    from timm.models import adapt_input_conv

    return adapt_input_conv(target_channels, value, base_chans=source_channels)


def shapes_fit(model: nn.Module, shapes: dict[str, tuple], source_channels: int | None = None,
               target_channels: int | None = None) -> str | None:
    """Why weights of ``shapes`` (key -> shape) cannot initialise ``model``, or None: the same rule
    as ``init_from_state`` on shapes alone (the feasibility check builds ``model`` on the meta device)."""
    for key, target in model.state_dict().items():
        if is_head(key):
            continue
        if key not in shapes:
            return f"it has no weights for {key!r} (another architecture)"
        shape = tuple(shapes[key])
        if shape == tuple(target.shape):
            continue
        adapt = (source_channels is not None and target_channels is not None and source_channels != target_channels
                 and len(shape) == 4 and target.ndim == 4 and shape[0] == target.shape[0]
                 and shape[2:] == tuple(target.shape[2:]) and shape[1] == source_channels
                 and target.shape[1] == target_channels)
        if not adapt:
            return f"{key!r} is {shape} there and {tuple(target.shape)} here (another architecture or input size)"
    return None
