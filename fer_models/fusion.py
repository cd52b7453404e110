"""Audio-visual fusion of a visual (face or video) encoder and a voice encoder.

``fusion``:
- ``early``: concatenate both encoders' features -> MLP -> classifier.
- ``late``: mix the encoders' own class probabilities, ``w * p_visual + (1 - w) * p_voice`` with
  ``late_weight = w`` or ``"learned"`` (``w = sigmoid(param)``); ``logits`` is the *log* of the
  mixture, so cross-entropy on it is the NLL of the mixed prediction.
- ``gated``: per-sample softmax gates over the two projected feature vectors.
- ``cross_attention``: each modality's tokens attend to the other's (per-frame / per-time tokens
  when the encoder has ``forward_tokens``, otherwise its feature vector as one token).

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

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import FerModel
from .classic import HEAD_FILE, ModelConfigError, check_kernel, load_head, make_estimator, probabilities
from .registry import create_model, register_model
from .spec import InputSpec

FUSIONS = ("early", "late", "gated", "cross_attention")
CHECKPOINT_FILE = "checkpoint.pt"  # bench/checkpoint.py's file name inside a checkpoint folder


def load_checkpoint_model(path: str | Path, num_classes: int) -> FerModel:
    """Rebuild and load a model saved by bench's ``save_checkpoint`` (read here without importing
    bench): ``state["config"]`` is the JSON flat config, ``state["model"]`` the state dict.

    A classifier whose class count differs from ``num_classes`` is left freshly initialised.
    """
    file = Path(path).expanduser()
    if file.is_dir():
        file = file / CHECKPOINT_FILE
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint {str(file)!r} does not exist")
    state = torch.load(file, map_location="cpu", weights_only=True)
    config = json.loads(state["config"]) if isinstance(state["config"], str) else state["config"]
    if "model.name" not in config:
        raise ValueError(f"checkpoint {str(file)!r} has no model.name in its config")
    kwargs = {k[len("model."):]: v for k, v in config.items() if k.startswith("model.") and k != "model.name"}
    if config.get("data.image_size") and "image_size" not in kwargs:  # what bench's build_model adds
        kwargs["image_size"] = config["data.image_size"]
    model = create_model(config["model.name"], num_classes=num_classes, **kwargs)
    own = model.state_dict()
    usable = {k: v for k, v in state["model"].items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(own) - set(usable))
    if any(not k.startswith("head.") for k in skipped):
        raise ValueError(f"checkpoint {str(file)!r} does not fit {config['model.name']!r}: "
                         f"missing or mismatched {skipped[:3]}")
    model.load_state_dict(usable, strict=False)
    if getattr(model, "is_classic", False) and (file.parent / HEAD_FILE).is_file():
        model.set_estimator(load_head(file.parent / HEAD_FILE))  # a classic head's fitted estimator
    return model


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
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if head not in ("linear", "svm"):
            raise ModelConfigError(f"model.head must be 'linear' or 'svm', got {head!r}")
        if head == "svm":  # a bad kernel or C fails here, before any epoch is spent
            make_estimator("svm", kernel=svm_kernel, C=svm_c, keys={"kernel": "svm_kernel", "C": "svm_c"})
            if fusion == "late":
                raise ModelConfigError("model.head=svm needs a fused feature vector; late fusion mixes the "
                                       "encoders' own heads (use early, gated or cross_attention)")
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
        fv, fa = self.visual.num_features, self.voice.num_features
        if fusion == "late":
            self.learned_weight = late_weight == "learned"
            if self.learned_weight:
                self.weight_logit = nn.Parameter(torch.zeros(()))  # w starts at 0.5
            else:
                self.register_buffer("weight", torch.tensor(float(late_weight)))
            self.num_features = fv + fa
        elif fusion == "early":
            self.mlp = nn.Sequential(nn.Linear(fv + fa, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))
            self.num_features = hidden
        elif fusion == "gated":
            self.proj_visual, self.proj_voice = nn.Linear(fv, hidden), nn.Linear(fa, hidden)
            self.gate = nn.Linear(fv + fa, 2)
            self.num_features = hidden
        else:
            dv = getattr(self.visual, "token_dim", fv)
            da = getattr(self.voice, "token_dim", fa)
            self.proj_visual, self.proj_voice = nn.Linear(dv, hidden), nn.Linear(da, hidden)
            self.visual_to_voice = nn.MultiheadAttention(hidden, attn_heads, batch_first=True)
            self.voice_to_visual = nn.MultiheadAttention(hidden, attn_heads, batch_first=True)
            self.norm_visual, self.norm_voice = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
            self.num_features = 2 * hidden
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.num_features, num_classes) if fusion != "late" else None

    def train(self, mode: bool = True):
        super().train(mode)
        for name, frozen in self.frozen.items():
            if frozen:  # frozen encoders keep their BatchNorm statistics and no dropout
                getattr(self, name).eval()
        return self

    def late_weight(self) -> torch.Tensor:
        return torch.sigmoid(self.weight_logit) if self.learned_weight else self.weight

    def _encode(self, x: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.visual.forward_features(x["visual"]), self.voice.forward_features(x["voice"])

    @staticmethod
    def _tokens(encoder: FerModel, x) -> torch.Tensor:
        if hasattr(encoder, "forward_tokens"):
            return encoder.forward_tokens(x)
        return encoder.forward_features(x).unsqueeze(1)

    def forward_features(self, x: dict) -> torch.Tensor:
        if self.fusion == "cross_attention":
            v = self.proj_visual(self._tokens(self.visual, x["visual"]))
            a = self.proj_voice(self._tokens(self.voice, x["voice"]))
            v2 = self.norm_visual(v + self.visual_to_voice(v, a, a, need_weights=False)[0])
            a2 = self.norm_voice(a + self.voice_to_visual(a, v, v, need_weights=False)[0])
            return torch.cat([v2.mean(1), a2.mean(1)], dim=1)
        fv, fa = self._encode(x)
        if self.fusion == "early":
            return self.mlp(torch.cat([fv, fa], dim=1))
        if self.fusion == "gated":
            gates = torch.softmax(self.gate(torch.cat([fv, fa], dim=1)), dim=1)
            return gates[:, :1] * torch.relu(self.proj_visual(fv)) + gates[:, 1:] * torch.relu(self.proj_voice(fa))
        return torch.cat([fv, fa], dim=1)  # late: both feature vectors, for an SVM or probe

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        if self.fusion != "late":
            return self.head(self.dropout(features))
        fv, fa = features.split([self.visual.num_features, self.voice.num_features], dim=1)
        w = self.late_weight()
        probs = w * F.softmax(self.visual.forward_head(fv), 1) + (1 - w) * F.softmax(self.voice.forward_head(fa), 1)
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


@register_model(modality="fusion")
def av_fusion(num_classes: int, **kwargs) -> AVFusion:
    """Audio-visual fusion: early / late / gated / cross-attention; optional SVM head."""
    return AVFusion(num_classes, **kwargs)


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
