"""Synthetic voice/video/AV: deterministic, cached once, and shaped per the models' InputSpecs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bench.data import create_dataset, load_splits, synthetic_video, synthetic_voice
from bench.data.prep.media_cache import WORK
from bench.data.synthetic import _identity
from bench.data.tensors import TensorBatch
from fer_models import InputSpec

VOICE = InputSpec("voice", (1, 64, 301), (0.0,), (1.0,), sample_rate=16000, n_mels=64)
MFCC = InputSpec("voice", (40, 301), (0.0,), (1.0,), sample_rate=16000, n_mels=64, extras={"features": "mfcc"})
RGB = InputSpec("video", (3, 64, 64), frames=16)
MIC = InputSpec("video", (3, 64, 64), frames=16, extras={"streams": ("residual", "iframe", "apex")})
TWO_STREAM = InputSpec("video", (3, 48, 48), frames=8, extras={"streams": ("rgb", "flow")})


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    """Shrunk generators (6 speakers/identities) keep this file fast; sizes are part of the
    cache folder names, so full-size sets never mix with these."""
    mp = pytest.MonkeyPatch()
    mp.setattr(synthetic_voice, "NUM_SUBJECTS", 6)
    mp.setattr(synthetic_voice, "PER_CLASS", 2)
    mp.setattr(synthetic_video, "PER_CLASS", 1)
    yield tmp_path_factory.mktemp("media-cache")
    mp.undo()


def test_generators_are_deterministic():
    speaker = synthetic_voice._speaker(np.random.default_rng([0, 1, 1]))
    a = synthetic_voice.synthesize(speaker, "angry", 0.8, np.random.default_rng(5))
    b = synthetic_voice.synthesize(speaker, "angry", 0.8, np.random.default_rng(5))
    c = synthetic_voice.synthesize(speaker, "sad", 0.8, np.random.default_rng(5))
    assert a.shape == (40000,) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert 0.005 < np.abs(a).mean() and np.abs(a).max() <= 1
    identity = _identity(np.random.default_rng(0))
    v1 = synthetic_video.render_clip(identity, "happy", 1.0, np.random.default_rng(2))
    v2 = synthetic_video.render_clip(identity, "happy", 1.0, np.random.default_rng(2))
    assert v1.shape == (16, 64, 64, 3) and np.array_equal(v1, v2)
    assert np.abs(v1[-1].astype(int) - v1[0]).mean() > np.abs(v1[1].astype(int) - v1[0]).mean()  # expression grows


def test_generated_once_and_prepared_once(small_cache):
    adapter, indexed, splits = load_splits("synthetic-av", 0, None, small_cache)
    assert len(indexed.samples) == 6 * 7
    assert all(s.meta["audio"].endswith(".wav") and s.path.endswith(".mp4") for s in indexed.samples)
    assert not {s.subject for s in splits["train"]} & {s.subject for s in splits["test"]}
    first = adapter.prepare(indexed.samples, None, small_cache, progress=False)
    assert first.computed == 3 * 42 and not first.skipped
    before = dict(WORK)
    again = load_splits("synthetic-av", 0, None, small_cache)[1]
    second = adapter.prepare(again.samples, None, small_cache, progress=False)
    assert second.computed == 0 and second.cached == 3 * 42
    assert dict(WORK) == before  # no generation, hashing, decoding or features the second time


def test_voice_tensors(small_cache):
    train = create_dataset("synthetic-voice", "train", 0, VOICE, cache_dir=small_cache)
    assert train.inputs.shape[1:] == (1, 64, 301) and train.inputs.dtype == torch.float32
    assert train.labels.dtype == torch.long and train.num_classes == 7 and len(train.subjects) == len(train)
    test = create_dataset("synthetic-voice", "test", 0, MFCC, cache_dir=small_cache)
    assert test.inputs.shape[1:] == (40, 301)
    assert abs(float(train.inputs.mean())) < 1.0  # standardised with train statistics


def test_video_tensors_per_stream(small_cache):
    rgb = create_dataset("synthetic-video", "val", 0, RGB, cache_dir=small_cache)
    assert rgb.inputs.shape[1:] == (16, 3, 64, 64)
    mic = create_dataset("synthetic-video", "train", 0, MIC, cache_dir=small_cache, augment=True)
    x, y = mic[0]
    assert set(x) == {"residual", "iframe", "apex"} and x["residual"].shape == (16, 3, 64, 64)
    assert x["iframe"].shape == (3, 64, 64) and x["apex"].shape == (3, 64, 64)
    two = create_dataset("synthetic-video", "test", 0, TWO_STREAM, cache_dir=small_cache)
    batch, _ = next(iter(DataLoader(two, batch_size=2)))
    assert batch["rgb"].shape == (2, 8, 3, 48, 48) and batch["flow"].shape == (2, 8, 2, 48, 48)
    assert isinstance(two.inputs, TensorBatch) and two.inputs[:1]["flow"].shape[0] == 1


def test_av_tensors(small_cache):
    spec = InputSpec("av", (3, 64, 64), extras={"visual": RGB.to_dict(), "voice": VOICE.to_dict()})
    ds = create_dataset("synthetic-av", "test", 0, spec, cache_dir=small_cache)
    batch, labels = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["visual"].shape == (3, 16, 3, 64, 64) and batch["voice"].shape == (3, 1, 64, 301)
    face = InputSpec("face", (3, 48, 48))
    ds = create_dataset("synthetic-av", "test", 0, InputSpec("av", extras={"visual": face.to_dict(),
                                                                           "voice": MFCC.to_dict()}),
                        cache_dir=small_cache)
    assert ds.inputs["visual"].shape[1:] == (3, 48, 48) and ds.inputs["voice"].shape[1:] == (40, 301)
