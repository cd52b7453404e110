"""Tiny generated media for the adapters' ``make_fake`` (never real data): short tones and
few-frame videos, written with the same libraries the real files are read with."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_tone(path: Path, seed: int = 0, seconds: float = 0.4, sample_rate: int = 16000) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = 0.3 * np.sin(2 * np.pi * rng.uniform(120, 300) * t) + 0.01 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave.astype(np.float32), sample_rate, subtype="PCM_16")
    return path


def write_clip(path: Path, seed: int = 0, frames: int = 6, size: int = 32, with_audio: bool = False,
               codec: str = "mpeg4") -> Path:
    """A few frames of moving noise; ``with_audio`` adds an AAC tone track, as in AV datasets."""
    import av

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = (rng.random((size * 2, size * 2, 3)) * 255).astype(np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        audio = None
        if with_audio:
            audio = out.add_stream("aac", rate=16000)
            audio.layout = "mono"
        for i in range(frames):
            image = np.ascontiguousarray(base[i:i + size, i:i + size])
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if audio is not None:
            t = np.arange(int(16000 * frames / 25)) / 16000
            tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in audio.encode(frame):
                out.mux(packet)
            for packet in audio.encode():
                out.mux(packet)
    return path
