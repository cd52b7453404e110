"""Clip -> video prediction, shared by evaluation and ``fer-bench predict``."""
from __future__ import annotations

import numpy as np
import torch


def aggregate_clips(clip_probs, threshold: float = 0.0) -> tuple[int, np.ndarray]:
    """Average the class probabilities (N clips x K) of the clips the model is confident about.

    Clips whose highest probability is below ``threshold`` are ignored; when none passes, all
    clips are averaged (a video always gets a prediction). Returns ``(label, probs)`` with
    ``probs`` the K averaged probabilities.
    """
    probs = clip_probs.detach().cpu().numpy() if isinstance(clip_probs, torch.Tensor) else np.asarray(clip_probs)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"clip_probs must be a non-empty N x K array, got shape {probs.shape}")
    confident = probs.max(axis=1) >= threshold
    mean = probs[confident].mean(axis=0) if confident.any() else probs.mean(axis=0)
    return int(mean.argmax()), mean
