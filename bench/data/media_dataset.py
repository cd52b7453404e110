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
from .base import DatasetAdapter, Sample, Skipped
from .prep import audio as audio_prep
from .prep import video as video_prep
from .prep.media_cache import Busy, MediaError
from .tensors import TensorBatch, TensorMediaDataset
from .transforms import eval_transform


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
    """One stream's loader: per-sample cached arrays, and the stream's transform (``transforms``)
    fitted on the training split."""

    def __init__(self, adapter: DatasetAdapter, spec: InputSpec, transform, cache_dir: Path):
        self.adapter, self.spec, self.cache_dir, self.transform = adapter, spec, cache_dir, transform
        if spec.modality == "voice":
            self.params = transform.params
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

    def tensors(self, values: list, train_values: list, subjects: list, train_subjects: list):
        if self.spec.modality == "face":  # a face model in an AV pair sees the clip's apex frame
            return self.transform(np.stack([v["apex"] for v in values]))
        return self.transform.fit(train_values, train_subjects)(values, subjects)


def create_media_dataset(adapter: DatasetAdapter, splits: dict[str, list[Sample]], split: str,
                         input_spec: InputSpec, *, cache_dir: Path, image_size: int | None = None,
                         augment: bool = False, seed: int = 0) -> TensorMediaDataset:
    # the transform predict builds too (an AV model's holds one per stream)
    transform = eval_transform(input_spec, image_size=image_size, cache_dir=cache_dir)
    if adapter.modality == "av":
        parts = {role: _Part(adapter, spec, part, cache_dir) for role, (spec, part) in transform.parts().items()}
    else:
        parts = {None: _Part(adapter, input_spec, transform, cache_dir)}
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
    dataset.preprocessing = transform  # fitted on the training split: what a checkpoint keeps
    return dataset
