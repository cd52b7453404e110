"""Fusion kinds: how ``av_fusion`` combines a visual and a voice encoder, one small class each.

A kind registers like a model (``@register_fusion("name")``); ``model.fusion`` picks it by name,
an unknown name fails with close matches, and tests iterate ``FUSION_KINDS``, so a new kind is one
class here (plus, when it is to be searched, its name in ``search_spaces/fusion.yaml``).

A kind builds its layers as attributes of the ``AVFusion`` model rather than owning them: the
attribute names are the keys of every saved fusion checkpoint, and building them in the same
order keeps the same initial weights for a given seed.
"""
from __future__ import annotations

import difflib

import torch
import torch.nn as nn
import torch.nn.functional as F

from .classic import ModelConfigError


class UnknownFusionError(ModelConfigError):
    """``model.fusion`` names no registered kind; the message lists close matches."""


class FusionKind:
    """One way to fuse the two encoders. Subclasses set ``name`` (by ``register_fusion``) and
    implement ``build`` and ``features``."""

    name: str = ""
    # False: the kind has no fused feature vector for a classifier (late fusion mixes the encoders'
    # own heads), so it gets no linear head and cannot take an SVM head.
    fused_head: bool = True

    def build(self, model: nn.Module, visual_dim: int, voice_dim: int, *, hidden: int, attn_heads: int,
              dropout: float, late_weight: float | str) -> int:
        """Add this kind's layers to ``model``; return the fused feature size."""
        raise NotImplementedError

    def features(self, model: nn.Module, x: dict) -> torch.Tensor:
        """B x num_features fused features of the input dict ``{"visual": ..., "voice": ...}``."""
        raise NotImplementedError

    def head(self, model: nn.Module, features: torch.Tensor) -> torch.Tensor:
        return model.head(model.dropout(features))


FUSION_KINDS: dict[str, FusionKind] = {}


def register_fusion(name: str):
    """Class decorator: register a ``FusionKind`` subclass under ``name`` (duplicates raise)."""

    def wrap(cls: type[FusionKind]) -> type[FusionKind]:
        if name in FUSION_KINDS:
            raise ValueError(f"fusion kind {name!r} is already registered by {type(FUSION_KINDS[name]).__module__}")
        cls.name = name
        FUSION_KINDS[name] = cls()
        return cls

    return wrap


def get_fusion(name: str) -> FusionKind:
    if name in FUSION_KINDS:
        return FUSION_KINDS[name]
    close = difflib.get_close_matches(str(name), list(FUSION_KINDS), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownFusionError(f"unknown fusion kind {name!r} in model.fusion.{hint} "
                             f"Registered kinds: {', '.join(FUSION_KINDS)}.")


def _encode(model: nn.Module, x: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return model.visual.forward_features(x["visual"]), model.voice.forward_features(x["voice"])


@register_fusion("early")
class EarlyFusion(FusionKind):
    """Concatenate both encoders' features -> MLP -> classifier."""

    def build(self, model, visual_dim, voice_dim, *, hidden, attn_heads, dropout, late_weight):
        model.mlp = nn.Sequential(nn.Linear(visual_dim + voice_dim, hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout))
        return hidden

    def features(self, model, x):
        fv, fa = _encode(model, x)
        return model.mlp(torch.cat([fv, fa], dim=1))


@register_fusion("late")
class LateFusion(FusionKind):
    """Mix the encoders' own class probabilities, ``w * p_visual + (1 - w) * p_voice`` with
    ``late_weight = w`` or ``"learned"`` (``w = sigmoid(param)``); the logits are the *log* of the
    mixture, so cross-entropy on them is the NLL of the mixed prediction."""

    fused_head = False

    def build(self, model, visual_dim, voice_dim, *, hidden, attn_heads, dropout, late_weight):
        model.learned_weight = late_weight == "learned"
        if model.learned_weight:
            model.weight_logit = nn.Parameter(torch.zeros(()))  # w starts at 0.5
        else:
            model.register_buffer("weight", torch.tensor(float(late_weight)))
        return visual_dim + voice_dim

    def features(self, model, x):
        return torch.cat(_encode(model, x), dim=1)  # both feature vectors, for a probe

    def head(self, model, features):
        fv, fa = features.split([model.visual.num_features, model.voice.num_features], dim=1)
        w = model.late_weight()
        probs = w * F.softmax(model.visual.forward_head(fv), 1) + (1 - w) * F.softmax(model.voice.forward_head(fa), 1)
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


@register_fusion("gated")
class GatedFusion(FusionKind):
    """Per-sample softmax gates over the two projected feature vectors."""

    def build(self, model, visual_dim, voice_dim, *, hidden, attn_heads, dropout, late_weight):
        model.proj_visual, model.proj_voice = nn.Linear(visual_dim, hidden), nn.Linear(voice_dim, hidden)
        model.gate = nn.Linear(visual_dim + voice_dim, 2)
        return hidden

    def features(self, model, x):
        fv, fa = _encode(model, x)
        gates = torch.softmax(model.gate(torch.cat([fv, fa], dim=1)), dim=1)
        return gates[:, :1] * torch.relu(model.proj_visual(fv)) + gates[:, 1:] * torch.relu(model.proj_voice(fa))


@register_fusion("cross_attention")
class CrossAttentionFusion(FusionKind):
    """Each modality's tokens attend to the other's (per-frame / per-time tokens when the encoder
    has ``forward_tokens``, otherwise its feature vector as one token)."""

    def build(self, model, visual_dim, voice_dim, *, hidden, attn_heads, dropout, late_weight):
        dv = getattr(model.visual, "token_dim", visual_dim)
        da = getattr(model.voice, "token_dim", voice_dim)
        model.proj_visual, model.proj_voice = nn.Linear(dv, hidden), nn.Linear(da, hidden)
        model.visual_to_voice = nn.MultiheadAttention(hidden, attn_heads, batch_first=True)
        model.voice_to_visual = nn.MultiheadAttention(hidden, attn_heads, batch_first=True)
        model.norm_visual, model.norm_voice = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        return 2 * hidden

    @staticmethod
    def _tokens(encoder: nn.Module, x) -> torch.Tensor:
        if hasattr(encoder, "forward_tokens"):
            return encoder.forward_tokens(x)
        return encoder.forward_features(x).unsqueeze(1)

    def features(self, model, x):
        v = model.proj_visual(self._tokens(model.visual, x["visual"]))
        a = model.proj_voice(self._tokens(model.voice, x["voice"]))
        v2 = model.norm_visual(v + model.visual_to_voice(v, a, a, need_weights=False)[0])
        a2 = model.norm_voice(a + model.voice_to_visual(a, v, v, need_weights=False)[0])
        return torch.cat([v2.mean(1), a2.mean(1)], dim=1)
