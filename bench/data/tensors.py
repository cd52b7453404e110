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


class TensorFaceDataset(Dataset):
    """In-memory face tensors; training mode adds a horizontal flip and a small random shift."""

    def __init__(self, inputs: torch.Tensor, labels: np.ndarray, class_names, subjects, augment: bool,
                 seed: int = 0):
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
