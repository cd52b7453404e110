"""Audio-visual fusion of a visual (face or video) encoder and a voice encoder.

``fusion`` names a registered kind (``fusion_kinds.FUSION_KINDS``: early, late, gated,
cross_attention; each kind's class there says what it does). A new kind is one
``@register_fusion`` class in ``fusion_kinds.py``.

Encoders come from the registry (``visual="cnn_lstm"``, ``visual_kwargs={...}``) or from a
bench checkpoint (``visual_checkpoint=PATH``), and can be frozen.

SVM head (``head="svm"``): the network trains as with the linear head; after each epoch bench's
trial extracts ``forward_features`` of the (frozen) network on the training split, fits
``fit_svm_head(features, labels, svm_kernel, svm_c)`` (``classic.make_estimator``: scaler +
Platt-calibrated SVC) and reports the validation metrics of ``SVMHeadModel(model, svm)``; the
checkpoint keeps the SVM as ``head.skops``. The model records the choice (``model.head_type``,
``svm_kernel``, ``svm_c``), checked when it is built.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from .base import FerModel
from .checkpoint import checkpoint_file, load_model
from .classic import ModelConfigError, make_estimator
from .fusion_kinds import FusionKind, get_fusion
from .registry import create_model, register_model
from .spec import InputSpec
from .svm_head import SVMHeadModel, fit_svm_head  # noqa: F401  (fusion's SVM head, where it always was)


def load_checkpoint_model(path: str | Path, num_classes: int) -> FerModel:
    """The model of a checkpoint folder (``fer_models.checkpoint.load_model``). A classifier whose
    class count differs from ``num_classes`` is left freshly initialised."""
    file = checkpoint_file(path)
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint {str(file)!r} does not exist")
    model, _ = load_model(file, num_classes=num_classes, head_may_differ=True)
    return model.train()  # as create_model leaves a model; _encoder freezes it when asked


def _encoder(name: str, kwargs: dict | None, checkpoint: str | None, num_classes: int, freeze: bool) -> FerModel:
    model = load_checkpoint_model(checkpoint, num_classes) if checkpoint else \
        create_model(name, num_classes=num_classes, **(kwargs or {}))
    if freeze:
        model.requires_grad_(False).eval()
    return model


class AVFusion(FerModel):
    def __init__(self, num_classes: int, fusion: str = "early", visual: str = "fer_cnn",
                 visual_kwargs: dict | None = None, voice: str = "voice_cnn2d", voice_kwargs: dict | None = None,
                 visual_checkpoint: str | None = None, voice_checkpoint: str | None = None,
                 freeze_visual: bool = False, freeze_voice: bool = False, late_weight: float | str = 0.5,
                 hidden: int = 128, attn_heads: int = 1, dropout: float = 0.0, head: str = "linear",
                 svm_kernel: str = "rbf", svm_c: float = 1.0, image_size: int | None = None):
        super().__init__()
        kind = get_fusion(fusion)  # an unknown kind fails here, with close matches
        if head not in ("linear", "svm"):
            raise ModelConfigError(f"model.head must be 'linear' or 'svm', got {head!r}")
        if head == "svm":  # a bad kernel or C fails here, before any epoch is spent
            make_estimator("svm", kernel=svm_kernel, C=svm_c, keys={"kernel": "svm_kernel", "C": "svm_c"})
            if not kind.fused_head:
                raise ModelConfigError(f"model.head=svm needs a fused feature vector; {fusion} fusion mixes the "
                                       f"encoders' own heads (use early, gated or cross_attention)")
        visual_kwargs = dict(visual_kwargs or {})
        if image_size is not None and not visual_checkpoint:  # bench passes data.image_size to the model
            visual_kwargs.setdefault("image_size", image_size)
        self.visual = _encoder(visual, visual_kwargs, visual_checkpoint, num_classes, freeze_visual)
        self.voice = _encoder(voice, voice_kwargs, voice_checkpoint, num_classes, freeze_voice)
        self.frozen = {"visual": freeze_visual, "voice": freeze_voice}
        self.fusion = fusion
        self.head_type, self.svm_kernel, self.svm_c = head, svm_kernel, float(svm_c)
        self.input_spec = InputSpec("av", (), extras={"visual": self.visual.input_spec.to_dict(),
                                                      "voice": self.voice.input_spec.to_dict()})
        self.num_features = kind.build(self, self.visual.num_features, self.voice.num_features, hidden=hidden,
                                       attn_heads=attn_heads, dropout=dropout, late_weight=late_weight)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.num_features, num_classes) if kind.fused_head else None

    @property
    def fusion_kind(self) -> FusionKind:
        return get_fusion(self.fusion)

    def train(self, mode: bool = True):
        super().train(mode)
        for name, frozen in self.frozen.items():
            if frozen:  # frozen encoders keep their BatchNorm statistics and no dropout
                getattr(self, name).eval()
        return self

    def late_weight(self) -> torch.Tensor:
        return torch.sigmoid(self.weight_logit) if self.learned_weight else self.weight

    def forward_features(self, x: dict) -> torch.Tensor:
        return self.fusion_kind.features(self, x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fusion_kind.head(self, features)


@register_model(modality="fusion")
def av_fusion(num_classes: int, **kwargs) -> AVFusion:
    """Audio-visual fusion of a visual and a voice encoder (a registered fusion kind); optional SVM head."""
    return AVFusion(num_classes, **kwargs)
