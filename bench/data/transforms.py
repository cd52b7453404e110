"""One preprocessing path: from a model's ``InputSpec`` to the transform that turns cached arrays
(aligned face crops, voice features, video streams) into the tensors the model reads.

``create_dataset`` (training and evaluation) and ``bench.inference.predict.Predictor`` build the transform with
``eval_transform(spec)``, so a model sees at predict time what it saw in training. Statistics a
transform needs (voice standardisation, motion-stream scales) are fitted on the fold's training
split with ``fit``. Train-time augmentation is not here: the datasets add it on top, in training only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fer_models import InputSpec

from ..errors import UserError
from .prep import audio as audio_prep
from .tensors import (
    TensorBatch,
    feature_stats,
    images_to_tensor,
    motion_scales,
    vector_stats,
    vectors_to_tensor,
    video_to_tensors,
    voice_to_tensor,
)


def voice_request(spec: InputSpec, cache_dir: Path | None = None) -> tuple[dict, int | None, bool]:
    """(feature params, frames or None for one vector/matrix per utterance, whether a channel dim
    is added) for a voice spec (see ``fer_models.voice_features``)."""
    kind = spec.extras.get("features", "logmel")
    sr = spec.sample_rate or audio_prep.SAMPLE_RATE
    if kind == "logmel":
        n_bins, frames = spec.input_size[-2], spec.input_size[-1]
        return audio_prep.feature_params("logmel", n_bins, n_bins, sr), frames, True
    if kind == "mfcc":
        n_bins, frames = spec.input_size[0], spec.input_size[-1]
        return audio_prep.feature_params("mfcc", n_bins, spec.n_mels or 64, sr), frames, False
    if kind == "opensmile":
        level = spec.extras.get("level", "functionals")
        params = audio_prep.feature_params("opensmile", sample_rate=sr, feature_set=spec.extras.get("feature_set"),
                                           level=level)
        return params, (spec.input_size[-1] if level == "lld" else None), False
    if kind == "ssl":
        params = audio_prep.feature_params("ssl", sample_rate=sr, encoder=spec.extras.get("encoder"),
                                           weights=spec.extras.get("weights"), cache_dir=cache_dir)
        return params, None, False
    raise UserError(f"voice input_spec.extras['features'] must be 'logmel', 'mfcc', 'opensmile' or 'ssl', "
                    f"got {kind!r}")


class FaceTransform:
    """Aligned face crops (N x H x W x C uint8) -> N x C x S x S, resized, channel-matched and
    normalised with the spec's mean/std; with ``landmarks`` (N x 10 distances) and a model that
    reads them, ``{"image", "landmarks"}``."""

    def __init__(self, spec: InputSpec, image_size: int | None = None):
        self.spec, self.image_size = spec, image_size

    def fit(self, train_values) -> FaceTransform:  # nothing is learned from the data
        return self

    def __call__(self, crops: np.ndarray, landmarks: np.ndarray | None = None):
        x = images_to_tensor(crops, self.spec, self.image_size)
        if landmarks is not None and self.spec.extras.get("landmarks"):
            return {"image": x, "landmarks": torch.as_tensor(np.asarray(landmarks), dtype=torch.float32)}
        return x


class VoiceTransform:
    """Cached voice features -> model tensors: (bins, L) matrices centre-cropped or padded to the
    model's frames (N x 1 x bins x frames for log-mel, else N x bins x frames), or one vector /
    (L, D) matrix per file (N x D, N x L x D); standardised with the training split's statistics."""

    def __init__(self, spec: InputSpec, cache_dir: Path | None = None):
        self.spec = spec
        self.params, self.frames, self.channel_dim = voice_request(spec, cache_dir)
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    @property
    def per_file(self) -> bool:
        """One vector (functionals) or L x D matrix (encoder layers) per file, no frames axis."""
        return self.frames is None

    def fit(self, train_values: list[np.ndarray]) -> VoiceTransform:
        self.mean, self.std = vector_stats(train_values) if self.per_file else feature_stats(train_values)
        return self

    def silence(self) -> np.ndarray:
        """The column short inputs are padded with: silence for spectra, the train mean for LLDs
        (0 once standardised)."""
        if self.params["kind"] in ("logmel", "mfcc"):
            return audio_prep.silence_column(self.params["kind"], self.params["n_bins"], self.params["n_mels"])
        return self.mean

    def __call__(self, values: list[np.ndarray]) -> torch.Tensor:
        if self.mean is None:
            raise RuntimeError("VoiceTransform.fit(train features) must run before the transform is used")
        if self.per_file:
            return vectors_to_tensor(values, self.mean, self.std)
        return voice_to_tensor(values, self.frames, self.silence(), self.mean, self.std, self.channel_dim)


class VideoTransform:
    """Cached clip streams (HWC at prep size) -> B x T x C x S x S tensors (a TensorBatch for
    several streams): RGB-like streams use the spec's mean/std, motion streams their train RMS."""

    def __init__(self, spec: InputSpec, image_size: int | None = None):
        self.spec = spec
        self.image_size = image_size or spec.image_size
        self.streams = tuple(spec.extras.get("streams", ("rgb",)))
        self.scales: dict[str, np.ndarray] | None = None

    def fit(self, train_entries: list[dict]) -> VideoTransform:
        self.scales = motion_scales(train_entries, self.streams)
        return self

    def __call__(self, entries: list[dict]):
        x = video_to_tensors(entries, self.streams, self.spec, self.image_size, self.scales or {})
        return x["rgb"] if self.streams == ("rgb",) else TensorBatch(x)


class AVTransform:
    """An audio-visual model's two transforms (``visual``: face or video, ``voice``)."""

    def __init__(self, spec: InputSpec, image_size: int | None = None, cache_dir: Path | None = None):
        extras = spec.extras
        if "visual" not in extras or "voice" not in extras:
            raise UserError("an av model's input_spec.extras must hold 'visual' and 'voice' spec dicts")
        self.visual = eval_transform(InputSpec.from_dict(extras["visual"]), image_size=image_size, cache_dir=cache_dir)
        self.voice = eval_transform(InputSpec.from_dict(extras["voice"]), cache_dir=cache_dir)

    def __call__(self, visual, voice) -> TensorBatch:
        return TensorBatch({"visual": self.visual(visual), "voice": self.voice(voice)})


def eval_transform(spec: InputSpec, *, image_size: int | None = None, cache_dir: Path | None = None):
    """The transform for ``spec``: cached arrays -> the model's input (no augmentation).
    ``image_size`` is the trial's ``data.image_size`` (None: the spec's)."""
    if spec.modality == "face":
        return FaceTransform(spec, image_size)
    if spec.modality == "voice":
        return VoiceTransform(spec, cache_dir)
    if spec.modality == "video":
        return VideoTransform(spec, image_size)
    if spec.modality == "av":
        return AVTransform(spec, image_size, cache_dir)
    raise UserError(f"no input transform for modality {spec.modality!r}; known: face, voice, video, av")
