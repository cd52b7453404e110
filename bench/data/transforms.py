"""One preprocessing path: from a model's ``InputSpec`` to the transform that turns cached arrays
(aligned face crops, voice features, video streams) into the tensors the model reads.

One object per modality (``FaceTransform``, ``VoiceTransform``, ``VideoTransform``,
``AVTransform``), built by ``eval_transform(spec)``: ``create_dataset`` (training, evaluation, the
classic heads' features) and ``bench.inference.predict.Predictor`` use it, so a model sees at
predict time what it saw in training. Statistics a transform needs (voice standardisation and its
speaker-normalisation fallback, motion-stream scales) are fitted on the fold's training split with
``fit``; ``state_dict()`` is what a trial saves in its checkpoint (``extra["preprocessing"]``) and
``load_state_dict`` what predict restores, so predict needs no dataset. Train-time augmentation is
not here: the datasets add it on top, in training only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fer_models import InputSpec
from fer_models.voice_features import kind_of

from ..errors import UserError
from .prep import audio as audio_prep
from .tensors import (
    TensorBatch,
    feature_stats,
    images_to_tensor,
    motion_scales,
    speaker_normalise,
    vector_stats,
    vectors_to_tensor,
    video_to_tensors,
    voice_to_tensor,
)


def voice_request(spec: InputSpec, cache_dir: Path | None = None) -> tuple[dict, int | None, bool]:
    """(feature params, frames or None for one vector/matrix per utterance, whether a channel dim
    is added) for a voice spec: its kind's (``fer_models.voice_features``)."""
    try:
        kind = kind_of(spec)
        return kind.request(spec, spec.sample_rate or audio_prep.SAMPLE_RATE, audio_prep.file_digest(cache_dir))
    except ValueError as exc:
        raise UserError(str(exc)) from None


class FaceTransform:
    """Aligned face crops (N x H x W x C uint8) -> N x C x S x S, resized, channel-matched and
    normalised with the spec's mean/std; with ``landmarks`` (N x 10 distances) and a model that
    reads them, ``{"image", "landmarks"}``."""

    def __init__(self, spec: InputSpec, image_size: int | None = None):
        self.spec, self.image_size = spec, image_size

    def fit(self, train_values, speakers=None) -> FaceTransform:  # nothing is learned from the data
        return self

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> FaceTransform:
        return self

    def __call__(self, crops: np.ndarray, landmarks: np.ndarray | None = None):
        x = images_to_tensor(crops, self.spec, self.image_size)
        if landmarks is not None and self.spec.extras.get("landmarks"):
            return {"image": x, "landmarks": torch.as_tensor(np.asarray(landmarks), dtype=torch.float32)}
        return x


class VoiceTransform:
    """Cached voice features -> model tensors: (bins, L) matrices centre-cropped or padded to the
    model's frames (N x 1 x bins x frames for log-mel, else N x bins x frames), or one vector /
    (L, D) matrix per file (N x D, N x L x D); standardised with the training split's statistics.

    With ``speaker_norm`` in the spec, each speaker's features are first z-scored with that
    speaker's own statistics (``speakers`` given: training and evaluation data); an input without
    speakers (one new file at predict time has no speaker statistics of its own) is standardised
    with the training split's statistics of the raw features instead, the fallback ``fit`` keeps."""

    def __init__(self, spec: InputSpec, cache_dir: Path | None = None):
        self.spec = spec
        self.params, self.frames, self.channel_dim = voice_request(spec, cache_dir)
        self.speaker_norm = bool(spec.extras.get("speaker_norm"))
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        # the training split's statistics before speaker normalisation (speaker_norm only)
        self.raw_mean: np.ndarray | None = None
        self.raw_std: np.ndarray | None = None

    @property
    def per_file(self) -> bool:
        """One vector (functionals) or L x D matrix (encoder layers) per file, no frames axis."""
        return self.frames is None

    def _stats(self, values: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return vector_stats(values) if self.per_file else feature_stats(values)

    def fit(self, train_values: list[np.ndarray], speakers: list | None = None) -> VoiceTransform:
        """The training split's statistics (``speakers``: each value's speaker; with speaker
        normalisation, None puts every value in one group)."""
        if self.speaker_norm:
            self.raw_mean, self.raw_std = self._stats(train_values)
            train_values = self.normalise_speakers(train_values, speakers)
        self.mean, self.std = self._stats(train_values)
        return self

    def normalise_speakers(self, values: list[np.ndarray], speakers: list | None) -> list[np.ndarray]:
        """Each speaker's features z-scored with its own statistics (without ``speaker_norm``: as given)."""
        if not self.speaker_norm:
            return values
        return speaker_normalise(values, list(speakers) if speakers is not None else [None] * len(values),
                                 not self.per_file)

    def silence(self, mean: np.ndarray | None = None) -> np.ndarray:
        """The column short inputs are padded with: silence for spectra, the train mean for LLDs
        (0 once standardised)."""
        column = kind_of(self.spec).silence(self.params)
        if column is not None:
            return column
        return self.mean if mean is None else mean

    def __call__(self, values: list[np.ndarray], speakers: list | None = None) -> torch.Tensor:
        """Whole utterances, cropped or padded to the model's frames."""
        return self.windows(values, [[0]] * len(values), speakers, whole=True)

    def window_starts(self, length: int) -> list[int]:
        """Where ``predict`` cuts an utterance of ``length`` frames (one window per file for
        per-file features)."""
        return [0] if self.per_file else voice_window_starts(length, self.frames)

    def windows(self, values: list[np.ndarray], starts: list[list[int]] | None = None, speakers: list | None = None,
                *, whole: bool = False) -> torch.Tensor:
        """Each utterance cut into windows of the model's frames (``starts[i]``: where ``values[i]``'s
        windows start; default ``window_starts``), in order; speaker normalisation (``speakers``)
        comes before the cut, as in training. A per-file input is its own every window."""
        if self.mean is None:
            raise RuntimeError("VoiceTransform.fit(train features) or load_state_dict must run before it is used")
        if speakers is not None:
            values = self.normalise_speakers(values, speakers)
            mean, std = self.mean, self.std
        else:  # no speaker statistics of its own: the raw features' training statistics
            mean, std = (self.raw_mean, self.raw_std) if self.speaker_norm else (self.mean, self.std)
        starts = starts if starts is not None else [self.window_starts(v.shape[-1]) for v in values]
        if self.per_file:
            return vectors_to_tensor([v for v, at in zip(values, starts) for _ in at], mean, std)
        pieces = [v if whole else v[:, s:s + self.frames] for v, at in zip(values, starts) for s in at]
        return voice_to_tensor(pieces, self.frames, self.silence(mean), mean, std, self.channel_dim)

    def state_dict(self) -> dict:
        """The fitted statistics as JSON-ready lists (float32 values round-trip exactly)."""
        return {k: None if v is None else v.tolist()
                for k, v in (("mean", self.mean), ("std", self.std), ("raw_mean", self.raw_mean),
                             ("raw_std", self.raw_std))}

    def load_state_dict(self, state: dict) -> VoiceTransform:
        for key in ("mean", "std", "raw_mean", "raw_std"):
            value = state.get(key)
            setattr(self, key, None if value is None else np.asarray(value, dtype=np.float32))
        if self.speaker_norm and self.raw_mean is None:
            raise UserError("this checkpoint's voice statistics lack the speaker-normalisation fallback; "
                            "train the model again")
        return self


def voice_window_starts(length: int, frames: int) -> list[int]:
    """Windows of ``frames`` frames, half-overlapping, the last one flush with the end: how
    ``predict`` cuts an utterance (and how validation utterances are cut to tune its threshold)."""
    if length <= frames:
        return [0]
    starts = list(range(0, length - frames + 1, max(frames // 2, 1)))
    return starts + ([length - frames] if starts[-1] != length - frames else [])


class VideoTransform:
    """Cached clip streams (HWC at prep size) -> B x T x C x S x S tensors (a TensorBatch for
    several streams): RGB-like streams use the spec's mean/std, motion streams their train RMS."""

    def __init__(self, spec: InputSpec, image_size: int | None = None):
        self.spec = spec
        self.image_size = image_size or spec.image_size
        self.streams = tuple(spec.extras.get("streams", ("rgb",)))
        self.scales: dict[str, np.ndarray] | None = None

    def fit(self, train_entries: list[dict], speakers=None) -> VideoTransform:
        self.scales = motion_scales(train_entries, self.streams)
        return self

    def state_dict(self) -> dict:
        return {"scales": None if self.scales is None else {k: v.tolist() for k, v in self.scales.items()}}

    def load_state_dict(self, state: dict) -> VideoTransform:
        scales = state.get("scales")
        self.scales = None if scales is None else {k: np.asarray(v, dtype=np.float32) for k, v in scales.items()}
        return self

    def __call__(self, entries: list[dict], speakers=None):
        x = video_to_tensors(entries, self.streams, self.spec, self.image_size, self.scales or {})
        return x["rgb"] if self.streams == ("rgb",) else TensorBatch(x)


class AVTransform:
    """An audio-visual model's two transforms (``visual``: face or video, ``voice``), each fitted
    on its own stream of the training split."""

    def __init__(self, spec: InputSpec, image_size: int | None = None, cache_dir: Path | None = None):
        extras = spec.extras
        if "visual" not in extras or "voice" not in extras:
            raise UserError("an av model's input_spec.extras must hold 'visual' and 'voice' spec dicts")
        self.visual_spec = InputSpec.from_dict(extras["visual"])
        self.voice_spec = InputSpec.from_dict(extras["voice"])
        self.visual = eval_transform(self.visual_spec, image_size=image_size, cache_dir=cache_dir)
        self.voice = eval_transform(self.voice_spec, cache_dir=cache_dir)

    def parts(self) -> dict:
        """role -> (its spec, its transform)."""
        return {"visual": (self.visual_spec, self.visual), "voice": (self.voice_spec, self.voice)}

    def __call__(self, visual, voice) -> TensorBatch:
        return TensorBatch({"visual": self.visual(visual), "voice": self.voice(voice)})

    def state_dict(self) -> dict:
        return {"visual": self.visual.state_dict(), "voice": self.voice.state_dict()}

    def load_state_dict(self, state: dict) -> AVTransform:
        self.visual.load_state_dict(state.get("visual") or {})
        self.voice.load_state_dict(state.get("voice") or {})
        return self


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


def fitted_state(dataset) -> dict:
    """What a checkpoint keeps of a training dataset's fitted transform (``extra["preprocessing"]``):
    empty for data whose transform learns nothing (faces)."""
    transform = getattr(dataset, "preprocessing", None)
    return transform.state_dict() if transform is not None else {}
