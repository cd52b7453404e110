"""Voice, video and audio-visual splits as in-memory tensors shaped by a model's InputSpec.

Reads the prep cache (``fer-bench data prepare`` fills it; a miss is computed here, once). Every
sample that cannot be decoded is dropped, counted and warned about, never fatal. Normalisation
statistics come from the fold's train split only, so val/test never inform them:
voice features are standardised per bin; flow, motion vectors and residuals are divided by their
per-channel RMS; RGB-like frames use the spec's mean/std like face images.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from fer_models import InputSpec

from ..errors import UserError
from ..feasibility import register_check
from .base import DatasetAdapter, Sample, Skipped
from .prep import audio as audio_prep
from .prep import video as video_prep
from .prep.media_cache import Busy, MediaError
from .tensors import (
    TensorBatch,
    TensorMediaDataset,
    feature_stats,
    images_to_tensor,
    motion_scales,
    speaker_normalise,
    vector_stats,
    vectors_to_tensor,
    video_to_tensors,
    voice_to_tensor,
)


def spec_from_dict(spec: InputSpec | dict) -> InputSpec:
    if isinstance(spec, InputSpec):
        return spec
    fields = dict(spec)
    for key in ("input_size", "mean", "std"):
        if key in fields:
            fields[key] = tuple(fields[key])
    return InputSpec(**fields)


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


@register_check(keys=["model.features"])
def _encoder_weights_here(key, value, ctx) -> str | None:
    """A speech encoder whose weights are not on this machine leaves the space (never downloaded)."""
    from fer_models.voice_features import SSL_ENCODERS, find_weights, weights_env

    if value not in SSL_ENCODERS:
        return None
    try:
        path = find_weights(str(value), ctx.fixed.get("model.weights"))
    except ValueError as exc:
        return str(exc)
    if path is None:
        return f"no local weights: {SSL_ENCODERS[value]['file']} not in the torch hub checkpoints, " \
               f"${weights_env(str(value))} unset"
    return None


def _audio_source(sample: Sample) -> tuple[Path, str | None]:
    if "audio" in sample.meta:
        return Path(sample.meta["audio"]), sample.meta.get("audio_sha256")
    return Path(sample.path), sample.meta.get("sha256")


def _load(samples: list[Sample], load_one, wait_one=None) -> tuple[list, list[Skipped]]:
    """Every sample's cached arrays (None where it cannot be decoded). With ``wait_one``, entries
    another process is computing (``Busy``) are left to it and collected at the end, so two
    trials that need the same new representation share the work instead of doubling it."""
    values, skipped, later = [], [], []
    for i, s in enumerate(samples):
        try:
            values.append(load_one(s))
        except Busy:
            values.append(None)
            later.append(i)
        except MediaError as e:
            values.append(None)
            skipped.append(Skipped(s.path, str(e)))
    for i in later:
        try:
            values[i] = wait_one(samples[i])
        except MediaError as e:
            skipped.append(Skipped(samples[i].path, str(e)))
    return values, skipped


class _Part:
    """One modality's loader: per-sample cached arrays, train statistics, tensors."""

    def __init__(self, adapter: DatasetAdapter, spec: InputSpec, cache_dir: Path, image_size: int | None):
        self.adapter, self.spec, self.cache_dir = adapter, spec, cache_dir
        self.image_size = image_size or spec.image_size
        if spec.modality == "voice":
            self.params, self.frames, self.channel_dim = voice_request(spec, cache_dir)
        else:
            frames = spec.frames or 16
            self.params = video_prep.video_params(frames, getattr(adapter, "prep_size", 112),
                                                  spec.extras.get("sampling", "uniform"))

    def load_one(self, sample: Sample):
        if self.spec.modality == "voice":
            path, sha = _audio_source(sample)
            return audio_prep.cached_features(path, self.cache_dir, self.params, sha, claim=True)
        return video_prep.cached_streams(Path(sample.path), self.cache_dir, self.params, sample.meta.get("sha256"))

    def wait_one(self, sample: Sample):
        path, sha = _audio_source(sample)
        return audio_prep.wait_for_features(path, self.cache_dir, self.params, sha)

    def streams(self) -> tuple[str, ...]:
        return tuple(self.spec.extras.get("streams", ("rgb",))) if self.spec.modality == "video" else ("apex",)

    def tensors(self, values: list, train_values: list, subjects: list | None = None,
                train_subjects: list | None = None):
        if self.spec.modality == "voice":
            if self.spec.extras.get("speaker_norm"):
                framewise = self.frames is not None
                values = speaker_normalise(values, subjects or [None] * len(values), framewise)
                train_values = speaker_normalise(train_values, train_subjects or [None] * len(train_values),
                                                 framewise)
            if self.frames is None:  # one vector (functionals) or L x D matrix (encoder layers) per file
                return vectors_to_tensor(values, *vector_stats(train_values))
            mean, std = feature_stats(train_values)
            if self.params["kind"] in ("logmel", "mfcc"):
                silence = audio_prep.silence_column(self.params["kind"], self.params["n_bins"], self.params["n_mels"])
            else:  # low-level descriptors: pad with the train mean (0 once standardised)
                silence = mean
            return voice_to_tensor(values, self.frames, silence, mean, std, self.channel_dim)
        if self.spec.modality == "face":  # a face model in an AV pair sees the clip's apex frame
            return images_to_tensor(np.stack([v["apex"] for v in values]), self.spec, self.image_size)
        streams = self.streams()
        x = video_to_tensors(values, streams, self.spec, self.image_size, motion_scales(train_values, streams))
        return x["rgb"] if streams == ("rgb",) else TensorBatch(x)


def create_media_dataset(adapter: DatasetAdapter, splits: dict[str, list[Sample]], split: str,
                         input_spec: InputSpec, *, cache_dir: Path, image_size: int | None = None,
                         augment: bool = False, seed: int = 0) -> TensorMediaDataset:
    if adapter.modality == "av":
        extras = input_spec.extras
        if "visual" not in extras or "voice" not in extras:
            raise UserError("an av model's input_spec.extras must hold 'visual' and 'voice' spec dicts")
        parts = {"visual": _Part(adapter, spec_from_dict(extras["visual"]), cache_dir, image_size),
                 "voice": _Part(adapter, spec_from_dict(extras["voice"]), cache_dir, None)}
    else:
        parts = {None: _Part(adapter, input_spec, cache_dir, image_size)}
    samples, train = splits[split], splits["train"]
    loaded, train_loaded, skipped = {}, {}, []
    for key, part in parts.items():
        loaded[key], bad = _load(samples, part.load_one, part.wait_one)
        skipped += bad
        train_loaded[key] = loaded[key] if split == "train" else _load(train, part.load_one, part.wait_one)[0]
    keep = [i for i in range(len(samples)) if all(loaded[k][i] is not None for k in parts)]
    keep_train = [i for i in range(len(train)) if all(train_loaded[k][i] is not None for k in parts)]
    if skipped:
        warnings.warn(f"{adapter.name} {split}: skipped {len(samples) - len(keep)} of {len(samples)} samples "
                      f"that could not be decoded (first: {skipped[0].path}: {skipped[0].reason})", stacklevel=2)
    if not keep or not keep_train:
        raise UserError(f"dataset {adapter.name!r}: no decodable samples in the {split if not keep else 'train'} "
                        f"split; run `fer-bench data prepare` to see which files fail")
    inputs = {k: part.tensors([loaded[k][i] for i in keep], [train_loaded[k][i] for i in keep_train],
                              [samples[i].subject for i in keep], [train[i].subject for i in keep_train])
              for k, part in parts.items()}
    kept = [samples[i] for i in keep]
    if adapter.modality == "av":
        flip = ("visual",)
        x = TensorBatch(inputs)
    else:
        x = inputs[None]
        flip = (tuple(x) if isinstance(x, TensorBatch) else (None,)) if adapter.modality == "video" else ()
    dataset = TensorMediaDataset(x, [s.label for s in kept], adapter.class_names, [s.subject for s in kept],
                                 augment=augment and split == "train", seed=seed, flip_keys=flip)
    dataset.skipped = skipped
    return dataset
