"""Turn a dataset's uint8 arrays into the tensors a model's ``input_spec`` asks for."""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from fer_models.spec import MOTION_STREAMS, VIDEO_STREAMS, InputSpec

from ..errors import UserError


def images_to_tensor(images: np.ndarray, spec: InputSpec, image_size: int | None = None) -> torch.Tensor:
    """N x H x W x C uint8 -> N x C x S x S float, resized, channel-matched and normalised once
    (the datasets are small enough to hold; doing it per step would dominate a CPU epoch)."""
    # a pack is a read-only memory map: copy the uint8 pixels once (torch wants writable memory)
    x = torch.from_numpy(np.array(images) if not images.flags.writeable else np.ascontiguousarray(images))
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


@contextlib.contextmanager
def _seeded_global_rngs(seed: int):
    """timm's RandAugment and RandomErasing draw from Python's and NumPy's global RNGs: seed
    both for one sample and put them back, so augmentation follows the dataset's per-epoch seed
    (exact resume) and leaves every other user of those RNGs undisturbed."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


class FaceRecipe:
    """timm's image augmentations on one normalised face tensor (C x S x S): RandAugment
    (``rand_augment_transform``, on a PIL image, so the tensor goes to uint8 and back) and
    random erasing (``RandomErasing``, on the normalised tensor; erased pixels become the mean)."""

    def __init__(self, auto_augment: str = "none", re_prob: float = 0.0, *, mean, std):
        from timm.data.random_erasing import RandomErasing

        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.rand_augment = None
        self.auto_augment = (auto_augment or "none").strip()
        if self.auto_augment.lower() not in ("none", ""):
            if not self.auto_augment.startswith("rand"):
                raise UserError(f"data.auto_augment={self.auto_augment!r} is not a RandAugment string; "
                                f"use 'none' or one like 'rand-m9-mstd0.5' (timm's rand_augment_transform)")
            self._hparams = lambda size, channels: dict(
                translate_const=int(size * 0.45),  # timm's create_transform uses 45% of the image size
                img_mean=tuple(round(255 * m) for m in mean) if channels == 3 else round(255 * mean[0]))
            self._built_for = None
            self._augment_op(48, 1)  # a bad string fails here, before any epoch runs
        self.erase = RandomErasing(probability=re_prob, mode="const", device="cpu") if re_prob > 0 else None

    @property
    def active(self) -> bool:
        return self.auto_augment.lower() not in ("none", "") or self.erase is not None

    def _augment_op(self, size: int, channels: int):
        from timm.data import rand_augment_transform

        if self._built_for != (size, channels):
            try:
                self.rand_augment = rand_augment_transform(self.auto_augment, self._hparams(size, channels))
            except (AssertionError, ValueError, KeyError) as exc:
                raise UserError(f"data.auto_augment={self.auto_augment!r} is not a valid RandAugment string "
                                f"({type(exc).__name__} {exc}); use one like 'rand-m9-mstd0.5'") from None
            self._built_for = (size, channels)
        return self.rand_augment

    def batch(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """The recipe on a batch (B x C x S x S), image i under ``seeds[i]``: bitwise what
        ``self(x[i], seeds[i])`` gives, with the global RNGs saved and restored once per batch
        instead of once per image and the uint8 round trip done on the whole batch (both cost
        more than timm's PIL op itself on a 48 px face). Erasing after RandAugment draws its box
        right after the image's op, as the per-image path does, but on a keep-mask: the erased
        pixels become 0 (the mean, normalised) once the batch is a tensor again."""
        from PIL import Image

        rand = self.auto_augment.lower() not in ("none", "")
        x = x.clone()
        with _seeded_global_rngs(seeds[0] if seeds else 0):
            if rand:
                op = self._augment_op(x.shape[-1], x.shape[1])
                pixels = ((x * self.std + self.mean).clamp_(0, 1) * 255).round_().to(torch.uint8)
                arrays = pixels[:, 0].numpy() if x.shape[1] == 1 else pixels.permute(0, 2, 3, 1).numpy()
                outs = np.empty_like(arrays)
                keep = torch.ones(x.shape, dtype=torch.bool) if self.erase is not None else None
            for i, seed in enumerate(seeds):
                random.seed(seed)
                np.random.seed(seed)
                if rand:
                    outs[i] = np.asarray(op(Image.fromarray(arrays[i])))
                    if keep is not None:  # erasing draws after RandAugment, from the same stream
                        self.erase(keep[i])
                elif self.erase is not None:
                    self.erase(x[i])  # in place on the batch's own copy
            if rand:
                out = torch.from_numpy(outs).view(len(seeds), x.shape[-2], x.shape[-1], -1)
                x = (out.permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std
                if keep is not None:
                    x = torch.where(keep, x, 0.0)
        return x.contiguous()

    def __call__(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        from PIL import Image

        with _seeded_global_rngs(seed):
            if self.auto_augment.lower() not in ("none", ""):
                op = self._augment_op(x.shape[-1], x.shape[0])
                pixels = ((x * self.std + self.mean).clamp_(0, 1) * 255).round_().to(torch.uint8)
                array = pixels[0].numpy() if x.shape[0] == 1 else pixels.permute(1, 2, 0).numpy()
                out = np.asarray(op(Image.fromarray(array)), dtype=np.float32)
                out = torch.from_numpy(out).view(x.shape[-2], x.shape[-1], -1).permute(2, 0, 1)
                x = (out / 255.0 - self.mean) / self.std
            if self.erase is not None:
                x = self.erase(x.clone())
        return x.contiguous()


class TensorFaceDataset(LabelledTensors):
    """In-memory face tensors; training mode adds a horizontal flip and a small random shift, and
    ``set_recipe`` adds timm's RandAugment / random erasing after them."""

    def __init__(self, inputs: torch.Tensor, labels: np.ndarray, class_names, subjects, augment: bool,
                 seed: int = 0):
        super().__init__(inputs, labels, class_names, subjects, augment, seed)
        self.recipe: FaceRecipe | None = None

    def set_recipe(self, recipe: FaceRecipe | None) -> None:
        self.recipe = recipe if recipe is not None and recipe.active else None

    def __getitem__(self, i: int):
        x = self.inputs[i]
        if self.augment:
            r = torch.rand(3, generator=self._generator)
            if r[0] < 0.5:
                x = x.flip(-1)
            pad = max(1, x.shape[-1] // 16)
            dx, dy = int(r[1] * (2 * pad + 1)) - pad, int(r[2] * (2 * pad + 1)) - pad
            x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
            if self.recipe is not None:  # drawn only when on: the plain recipe's stream is unchanged
                x = self.recipe(x, int(torch.randint(2**31 - 1, (1,), generator=self._generator)))
        return x, self.labels[i]

    def __getitems__(self, indices: list[int]) -> list:
        """A whole batch (what DataLoader asks for when a dataset has this method): the same draws
        from the epoch's generator, in the same order, as ``__getitem__`` one index at a time, with
        the flip, shift and recipe applied to the batch: bitwise the per-sample result, faster."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        x = self.inputs[idx]
        if self.augment and len(indices):
            draws, seeds = [], []
            for _ in indices:
                draws.append(torch.rand(3, generator=self._generator))
                if self.recipe is not None:
                    seeds.append(int(torch.randint(2**31 - 1, (1,), generator=self._generator)))
            x = flip_and_shift(x, torch.stack(draws))
            if self.recipe is not None:
                x = self.recipe.batch(x, seeds)
        labels = self.labels[idx]
        return [(x[k], labels[k]) for k in range(len(indices))]


def flip_and_shift(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Per image of a B x C x H x W batch: mirror where ``r[:, 0] < 0.5``, then a circular shift of up
    to W/16 pixels (``torch.roll``) by ``r[:, 1]`` (x) and ``r[:, 2]`` (y), as two gathers."""
    b, _, h, w = x.shape
    flip = r[:, 0] < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    pad = max(1, w // 16)
    dx = (r[:, 1] * (2 * pad + 1)).long() - pad
    dy = (r[:, 2] * (2 * pad + 1)).long() - pad
    rows = (torch.arange(h).view(1, h) - dy.view(b, 1)) % h  # roll: out[i] = in[(i - shift) mod n]
    cols = (torch.arange(w).view(1, w) - dx.view(b, 1)) % w
    x = x.gather(2, rows.view(b, 1, h, 1).expand(x.shape))
    return x.gather(3, cols.view(b, 1, 1, w).expand(x.shape))


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


def vector_stats(values: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-element mean and std over utterances (functionals: per feature; encoder layers: per
    layer and unit)."""
    stacked = np.stack(values).astype(np.float64)
    return stacked.mean(axis=0).astype(np.float32), np.maximum(stacked.std(axis=0), 1e-6).astype(np.float32)


def vectors_to_tensor(values: list[np.ndarray], mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """N x D (or N x L x D) standardised with the train split's statistics; openSMILE features
    that are constant on the train split come out as 0, never inf."""
    x = (np.stack(values).astype(np.float32) - mean) / std
    return torch.from_numpy(np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)).contiguous()


def speaker_normalise(values: list[np.ndarray], subjects: list, framewise: bool) -> list[np.ndarray]:
    """Z-score each speaker's features with that speaker's own statistics (no labels used): over
    utterances for per-file vectors, over every frame for (bins, frames) features (``framewise``). Samples
    without a speaker id form one group. Standard speaker normalisation in speech-emotion work."""
    groups: dict = {}
    for i, s in enumerate(subjects):
        groups.setdefault(s, []).append(i)
    out: list = [None] * len(values)
    for idx in groups.values():
        own = [values[i] for i in idx]
        if framewise:
            mean, std = feature_stats(own)
            mean, std = mean[:, None], std[:, None]
        else:
            mean, std = vector_stats(own)
        for i in idx:
            out[i] = ((values[i] - mean) / std).astype(np.float32)
    return out


def _resize_frames(x: torch.Tensor, size: int) -> torch.Tensor:
    """(..., C, H, W) -> (..., C, size, size)."""
    if x.shape[-1] == size:
        return x
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    flat = F.interpolate(flat, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return flat.reshape(*lead, *flat.shape[-3:])




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
