"""A few synthetic face images, mp4 clips and wav utterances for the preprocessing benchmarks,
rendered by the synthetic datasets' own generators (only as many as a benchmark needs, rather
than the whole synthetic dataset)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.base import BASIC7
from ..data.prep.media_cache import generate_once
from .common import perf_cache


def face_images(cache_dir: Path, count: int) -> np.ndarray:
    """count x 64 x 64 x 3 uint8 from the synthetic face set (generated once into the cache)."""
    from ..data.synthetic import cached_faces

    return cached_faces(cache_dir)["images"][:count]


def _clips(folder: Path, count: int, side: int, length: int) -> None:
    from ..data.synthetic import _identity
    from ..data.synthetic_video import encode_mp4, render_clip

    for i in range(count):
        rng = np.random.default_rng([7, i])
        clip = render_clip(_identity(np.random.default_rng([0, i])), BASIC7[i % 7], 0.9, rng, frames=length, size=side)
        encode_mp4(clip, folder / f"clip{i:03d}.mp4")


def _voices(folder: Path, count: int) -> None:
    import soundfile as sf

    from ..data.synthetic_voice import SAMPLE_RATE, _speaker, synthesize

    for i in range(count):
        rng = np.random.default_rng([7, i, 1])
        wave = synthesize(_speaker(np.random.default_rng([0, i, 1])), BASIC7[i % 7], 0.9, rng)
        sf.write(str(folder / f"voice{i:03d}.wav"), wave, SAMPLE_RATE, subtype="PCM_16")


def video_files(cache_dir: Path, count: int, side: int = 64, length: int = 16) -> list[Path]:
    """``count`` MPEG-4 clips of ``length`` frames of synthetic faces rendered at ``side`` pixels
    (generated once)."""
    name = f"clips-{count}" if (side, length) == (64, 16) else f"clips-{count}-{side}px-{length}f"
    folder = generate_once(perf_cache(cache_dir) / name, lambda tmp: _clips(tmp, count, side, length))
    return sorted(folder.glob("*.mp4"))


def audio_files(cache_dir: Path, count: int) -> list[Path]:
    folder = generate_once(perf_cache(cache_dir) / f"voices-{count}", lambda tmp: _voices(tmp, count))
    return sorted(folder.glob("*.wav"))
