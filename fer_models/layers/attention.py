"""SAGAN-style self-attention over a CNN feature map (Zhang et al., 2019), multi-head."""
from __future__ import annotations

import torch
import torch.nn as nn


class SelfAttention2d(nn.Module):
    """``x + gamma * attention(x)`` with ``gamma`` starting at 0, so the block begins as identity
    and a pretrained backbone is not disturbed on the first step."""

    def __init__(self, channels: int, heads: int = 1, reduction: int = 8):
        super().__init__()
        if heads < 1:
            raise ValueError(f"attention heads must be >= 1, got {heads}")
        self.heads = heads
        qk = max(channels // reduction, 1)
        self.qk_dim = -(-qk // heads)  # per head, rounded up
        self.v_dim = -(-channels // heads)
        self.query = nn.Conv2d(channels, self.qk_dim * heads, 1)
        self.key = nn.Conv2d(channels, self.qk_dim * heads, 1)
        self.value = nn.Conv2d(channels, self.v_dim * heads, 1)
        self.out = nn.Conv2d(self.v_dim * heads, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        n = h * w
        q = self.query(x).view(b, self.heads, self.qk_dim, n).transpose(2, 3)  # b h n d
        k = self.key(x).view(b, self.heads, self.qk_dim, n).transpose(2, 3)
        v = self.value(x).view(b, self.heads, self.v_dim, n).transpose(2, 3)
        attended = nn.functional.scaled_dot_product_attention(q, k, v)  # b h n dv
        attended = attended.transpose(2, 3).reshape(b, self.heads * self.v_dim, h, w)
        return x + self.gamma * self.out(attended)
