"""Face-video models: a per-frame CNN + LSTM/GRU, and a two-stream RGB + optical-flow network
fused by attention over streams and time.

Input (docs/architecture.md, "Inputs by modality"): ``B x T x 3 x S x S`` for ``cnn_lstm``;
``{"rgb": B x T x 3 x S x S, "flow": B x T x 2 x S x S}`` for ``two_stream``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .base import FerModel
from .layers import RecurrentEncoder, per_frame
from .registry import create_model, register_model
from .spec import InputSpec


def build_frame_encoder(name: str, image_size: int, in_chans: int, kwargs: dict | None) -> FerModel:
    """Any registered face model as a per-frame feature extractor (its classifier is unused)."""
    encoder = create_model(name, num_classes=1, **{"image_size": image_size, "in_chans": in_chans,
                                                   **(kwargs or {})})
    if encoder.input_spec.modality != "face":
        raise ValueError(f"frame_encoder must be a face model, got {name!r} ({encoder.input_spec.modality})")
    return encoder


def video_spec(encoder: FerModel, frames: int, streams: tuple[str, ...], image_size: int) -> InputSpec:
    spec = encoder.input_spec
    return InputSpec("video", (3, image_size, image_size), mean=tuple(spec.mean), std=tuple(spec.std),
                     frames=frames, extras={"streams": streams})


class CnnLstm(FerModel):
    """Per-frame encoder -> LSTM/GRU (optionally bidirectional) -> temporal pooling -> linear."""

    def __init__(self, num_classes: int, frame_encoder: str = "fer_cnn", frame_kwargs: dict | None = None,
                 rnn: str = "lstm", hidden: int = 128, bidirectional: bool = False, num_layers: int = 1,
                 pool: str = "last", dropout: float = 0.0, frames: int = 8, image_size: int = 48):
        super().__init__()
        self.encoder = build_frame_encoder(frame_encoder, image_size, 3, frame_kwargs)
        self.temporal = RecurrentEncoder(self.encoder.num_features, hidden, rnn, bidirectional, num_layers,
                                         pool, dropout)
        self.input_spec = video_spec(self.encoder, frames, ("rgb",), image_size)
        self.num_features = self.temporal.out_dim
        self.token_dim = self.temporal.out_dim
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal(per_frame(self.encoder, x))

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Per-frame recurrent outputs, B x T x token_dim (the tokens cross-attention fusion uses)."""
        return self.temporal.sequence(per_frame(self.encoder, x))[0]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(features))


class StreamTimeAttention(nn.Module):
    """Context attention over (stream, time) tokens: a learned context query attends to every
    frame of every stream, so the model learns which stream matters at which moment."""

    def __init__(self, dim: int, streams: int, frames: int, heads: int = 1):
        super().__init__()
        self.stream_embed = nn.Parameter(torch.zeros(streams, 1, dim))
        self.time_embed = nn.Parameter(torch.zeros(1, frames, dim))
        self.context = nn.Parameter(torch.randn(1, 1, dim) * dim ** -0.5)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, per_stream: list[torch.Tensor]) -> torch.Tensor:  # each B x T x dim
        t = per_stream[0].shape[1]
        if t > self.time_embed.shape[1]:
            raise ValueError(f"clip has {t} frames but the model was built for frames={self.time_embed.shape[1]}")
        tokens = torch.cat([s + self.stream_embed[i] + self.time_embed[:, :t] for i, s in enumerate(per_stream)], 1)
        query = self.context.expand(tokens.shape[0], -1, -1)
        fused, _ = self.attention(query, tokens, tokens, need_weights=False)
        return self.norm(fused.squeeze(1))


class TwoStream(FerModel):
    """RGB frames and optical flow, each through its own per-frame encoder, projected to ``dim``
    and fused by context attention over streams and time (static-image + optical-flow +
    context-attention design)."""

    def __init__(self, num_classes: int, frame_encoder: str = "fer_cnn", flow_encoder: str = "fer_cnn",
                 frame_kwargs: dict | None = None, flow_kwargs: dict | None = None, dim: int = 128,
                 attn_heads: int = 1, dropout: float = 0.0, frames: int = 8, image_size: int = 48):
        super().__init__()
        self.rgb = build_frame_encoder(frame_encoder, image_size, 3, frame_kwargs)
        self.flow = build_frame_encoder(flow_encoder, image_size, 2, flow_kwargs)
        self.rgb_proj = nn.Linear(self.rgb.num_features, dim)
        self.flow_proj = nn.Linear(self.flow.num_features, dim)
        self.fusion = StreamTimeAttention(dim, 2, frames, attn_heads)
        self.input_spec = video_spec(self.rgb, frames, ("rgb", "flow"), image_size)
        self.num_features = dim
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dim, num_classes)

    def forward_features(self, x: dict) -> torch.Tensor:
        rgb = self.rgb_proj(per_frame(self.rgb, x["rgb"]))
        flow = self.flow_proj(per_frame(self.flow, x["flow"]))
        return self.fusion([rgb, flow])

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(features))


@register_model(modality="video")
def cnn_lstm(num_classes: int, **kwargs) -> CnnLstm:
    """Per-frame face encoder + LSTM/GRU (bi-directional optional) + last/mean/attention pooling."""
    return CnnLstm(num_classes, **kwargs)


@register_model(modality="video")
def two_stream(num_classes: int, **kwargs) -> TwoStream:
    """RGB + optical-flow streams fused by context attention over streams and time."""
    return TwoStream(num_classes, **kwargs)
