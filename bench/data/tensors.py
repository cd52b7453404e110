"""Turn a dataset's uint8 arrays into the tensors a model's ``input_spec`` asks for."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from fer_models import InputSpec


def images_to_tensor(images: np.ndarray, spec: InputSpec, image_size: int | None = None) -> torch.Tensor:
    """N x H x W x C uint8 -> N x C x S x S float, resized, channel-matched and normalised once
    (the datasets are small enough to hold; doing it per step would dominate a CPU epoch)."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim == 3:
        x = x.unsqueeze(-1)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    channels = spec.channels
    if x.shape[1] == 3 and channels == 1:
        x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    size = image_size or spec.image_size
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous()


class LabelledTensors(Dataset):
    """What every in-memory dataset shares: labels, class names, subjects (for leakage probes) and
    an augmentation generator reseeded per epoch (exact resume)."""

    def __init__(self, inputs, labels, class_names, subjects, augment: bool, seed: int = 0):
        self.inputs = inputs
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.class_names = tuple(class_names)
        self.subjects = list(subjects)
        self.augment = augment
        self._generator = torch.Generator().manual_seed(seed)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def reseed(self, seed: int) -> None:
        self._generator.manual_seed(seed)

    def __len__(self) -> int:
        return len(self.labels)


class TensorFaceDataset(LabelledTensors):
    """In-memory face tensors; training mode adds a horizontal flip and a small random shift."""

    def __init__(self, inputs: torch.Tensor, labels: np.ndarray, class_names, subjects, augment: bool,
                 seed: int = 0):
        super().__init__(inputs, labels, class_names, subjects, augment, seed)

    def __getitem__(self, i: int):
        x = self.inputs[i]
        if self.augment:
            r = torch.rand(3, generator=self._generator)
            if r[0] < 0.5:
                x = x.flip(-1)
            pad = max(1, x.shape[-1] // 16)
            dx, dy = int(r[1] * (2 * pad + 1)) - pad, int(r[2] * (2 * pad + 1)) - pad
            x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
        return x, self.labels[i]


# ---- voice, video and audio-visual samples (arrays come from bench.data.prep's cache) ----

class TensorBatch(dict):
    """A dict of tensors (possibly nested) that moves and slices like one tensor, so code written
    for a single input tensor (``inputs.to(device)``, ``inputs[:1]``) also takes multi-stream input."""

    def to(self, *args, **kwargs) -> TensorBatch:
        return TensorBatch({k: v.to(*args, **kwargs) for k, v in self.items()})

    def __getitem__(self, key):
        if isinstance(key, str):
            return super().__getitem__(key)
        return TensorBatch({k: v[key] for k, v in self.items()})

    @property
    def is_cuda(self) -> bool:
        return any(v.is_cuda for v in self.values())

    def __len__(self) -> int:  # number of samples, like a tensor's first dimension
        return len(next(iter(self.values()))) if dict.__len__(self) else 0


def fit_frames(features: np.ndarray, frames: int, silence: np.ndarray) -> np.ndarray:
    """(bins, L) -> (bins, frames): centre crop, or pad both sides with the silence column."""
    length = features.shape[1]
    if length >= frames:
        start = (length - frames) // 2
        return features[:, start:start + frames]
    left = (frames - length) // 2
    pad = np.repeat(silence[:, None], frames - length, axis=1)
    return np.concatenate([pad[:, :left], features, pad[:, left:]], axis=1)


def feature_stats(features: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and std over every frame of every (uncropped) utterance."""
    stacked = np.concatenate(features, axis=1).astype(np.float64)
    return stacked.mean(axis=1).astype(np.float32), np.maximum(stacked.std(axis=1), 1e-3).astype(np.float32)


def voice_to_tensor(features: list[np.ndarray], frames: int, silence: np.ndarray, mean: np.ndarray,
                    std: np.ndarray, channel_dim: bool) -> torch.Tensor:
    """N x 1 x bins x frames (log-mel, ``channel_dim``) or N x bins x frames (MFCC), standardised
    per bin with the train split's statistics."""
    x = np.stack([(fit_frames(f, frames, silence) - mean[:, None]) / std[:, None] for f in features])
    x = torch.from_numpy(x.astype(np.float32))
    return x.unsqueeze(1).contiguous() if channel_dim else x.contiguous()


def _resize_frames(x: torch.Tensor, size: int) -> torch.Tensor:
    """(..., C, H, W) -> (..., C, size, size)."""
    if x.shape[-1] == size:
        return x
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    flat = F.interpolate(flat, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return flat.reshape(*lead, *flat.shape[-3:])


VIDEO_STREAMS = ("rgb", "flow", "residual", "iframe", "apex", "mv")
MOTION_STREAMS = ("flow", "mv", "residual")  # zero-mean; scaled by the train split's std


def motion_scales(entries: list[dict], streams: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per-channel std of each zero-mean stream over the given (training) clips."""
    scales = {}
    for key in streams:
        if key in MOTION_STREAMS:
            values = np.concatenate([e[key].reshape(-1, e[key].shape[-1]).astype(np.float32) for e in entries])
            scales[key] = np.maximum(np.sqrt((values.astype(np.float64) ** 2).mean(axis=0)), 1e-3).astype(np.float32)
    return scales


def video_to_tensors(entries: list[dict], streams: tuple[str, ...], spec: InputSpec, size: int,
                     scales: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Cached clip streams (HWC, at prep size) -> model tensors at ``size``: RGB-like streams
    (/255 then the spec's mean/std), motion streams divided by their train std (zero mean kept)."""
    out = {}
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(-1, 1, 1)
    for key in streams:
        if key not in VIDEO_STREAMS:
            raise ValueError(f"unknown video stream {key!r}; known: {', '.join(VIDEO_STREAMS)}")
        x = torch.from_numpy(np.stack([e[key] for e in entries]).astype(np.float32))
        x = x.movedim(-1, -3)  # HWC -> CHW
        x = _resize_frames(x, size)
        if key in MOTION_STREAMS:
            scale = torch.from_numpy(scales[key]).view(-1, 1, 1)
            x = x / scale  # flow/mv are in pixels at prep size; dividing by their std makes them unitless
        else:
            x = (x / 255.0 - mean) / std
        out[key] = x.contiguous()
    return out


def _flip_video(x, key: str | None = None):
    if isinstance(x, dict):
        return {k: _flip_video(v, k) for k, v in x.items()}
    x = x.flip(-1)
    if key in ("flow", "mv"):  # a mirrored motion field points the other way horizontally
        x = x.clone()
        x[..., 0, :, :] *= -1
    return x


class TensorMediaDataset(LabelledTensors):
    """In-memory voice/video/AV tensors (a tensor, or a TensorBatch of streams). Training mode
    mirrors video frames (and motion x-components) half of the time; voice is not augmented."""

    def __init__(self, inputs, labels, class_names, subjects, augment: bool = False, seed: int = 0,
                 flip_keys: tuple[str, ...] = ()):
        super().__init__(inputs, labels, class_names, subjects, augment, seed)
        self.flip_keys = flip_keys  # which top-level entries are video (None key = the tensor itself)
        self.skipped: list = []

    def __getitem__(self, i: int):
        x = self.inputs[i]
        if isinstance(x, TensorBatch):
            x = dict(x)
        if self.augment and self.flip_keys and torch.rand(1, generator=self._generator) < 0.5:
            if isinstance(x, dict):
                x = {k: (_flip_video(v, k) if k in self.flip_keys else v) for k, v in x.items()}
            else:
                x = _flip_video(x)
        return x, self.labels[i]
