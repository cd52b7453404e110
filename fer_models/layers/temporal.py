"""Sequence encoders and temporal pooling shared by the video, MIC and voice models."""
from __future__ import annotations

import torch
import torch.nn as nn

POOLS = ("last", "mean", "attention")


class AttentionPool(nn.Module):
    """Additive (Bahdanau-style) attention over time: a learned context scores each step."""

    def __init__(self, dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or max(dim // 2, 8)
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1, bias=False))

    def forward(self, seq: torch.Tensor) -> torch.Tensor:  # B x T x D -> B x D
        weights = torch.softmax(self.score(seq).squeeze(-1), dim=1)
        return torch.einsum("bt,btd->bd", weights, seq)


class RecurrentEncoder(nn.Module):
    """LSTM or GRU over B x T x D, then ``last`` / ``mean`` / ``attention`` pooling.

    ``last`` with ``bidirectional`` concatenates the forward direction's final state with the
    backward direction's final state (which has read the whole clip), not the last time step's
    output, whose backward half has seen one frame only.
    """

    def __init__(self, input_dim: int, hidden: int = 128, rnn: str = "lstm", bidirectional: bool = False,
                 num_layers: int = 1, pool: str = "last", dropout: float = 0.0):
        super().__init__()
        if rnn not in ("lstm", "gru"):
            raise ValueError(f"rnn must be 'lstm' or 'gru', got {rnn!r}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        cls = nn.LSTM if rnn == "lstm" else nn.GRU
        self.rnn = cls(input_dim, hidden, num_layers=num_layers, batch_first=True,
                       bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
        self.pool = pool
        self.out_dim = hidden * (2 if bidirectional else 1)
        self.attention = AttentionPool(self.out_dim) if pool == "attention" else None

    def sequence(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """B x T x D -> (per-step outputs B x T x out_dim, final state B x out_dim)."""
        out, state = self.rnn(seq)
        h_n = state[0] if isinstance(state, tuple) else state  # layers*dirs x B x H
        dirs = 2 if self.rnn.bidirectional else 1
        final = h_n[-dirs:].transpose(0, 1).reshape(seq.shape[0], -1)
        return out, final

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        out, final = self.sequence(seq)
        if self.pool == "last":
            return final
        if self.pool == "mean":
            return out.mean(dim=1)
        return self.attention(out)


def per_frame(encoder: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """Run an image encoder's ``forward_features`` on every frame: B x T x C x H x W -> B x T x F."""
    b, t = frames.shape[:2]
    feats = encoder.forward_features(frames.reshape(b * t, *frames.shape[2:]))
    return feats.reshape(b, t, -1)
