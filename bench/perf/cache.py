"""``cache_speedup``: first pass (computing into an empty cache) over a cached pass (reading it),
through the same functions trials and ``data prepare`` use:

- faces: ``prep.faces.prepare_faces`` (MTCNN detect + align + write) vs ``load_entries``; the
  MTCNN networks are built before timing (a one-off per process, not per image);
- video: ``prep.video.cached_streams`` (decode with motion vectors, residuals, Farneback flow,
  write) on an empty cache, hashing the file first, vs the same call on the filled one with the
  hash already known, which is how trials call it (the dataset index carries each file's hash);
- audio: ``prep.audio.cached_features`` (decode, log-mel, write) likewise.

The synthetic faces are 64-pixel drawings; real face datasets are photos of hundreds of pixels
(CK+ 640x490, RAF-DB originals larger still), so they are upscaled to ``FACE_SIDE`` before
detection, and MTCNN's image pyramid costs what it costs on a photo.

The key holds the smallest of the three speedups; ``detail`` has each."""
from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np

from . import media_samples
from .common import median

FACE_SIDE = 480

SETTINGS = {"full": {"faces": 64, "clips": 8, "voices": 16, "repeats": 3},
            "tiny": {"faces": 4, "clips": 1, "voices": 2, "repeats": 1}}


def _faces(cache_dir: Path, count: int, repeats: int) -> tuple[float, float]:
    import cv2

    from ..data.prep.faces import FaceAligner, FaceAlignSettings, FaceJob, load_entries, prepare_faces

    images = [cv2.resize(img, (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_CUBIC)
              for img in media_samples.face_images(cache_dir, count)]
    shas = [hashlib.sha256(img.tobytes()).hexdigest() for img in images]
    jobs = [FaceJob(f"face{i}", sha, lambda img=img: img) for i, (sha, img) in enumerate(zip(shas, images))]
    settings = FaceAlignSettings()
    aligner = FaceAligner(settings)
    first, cached = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="fer-perf-faces-") as tmp:
            start = time.perf_counter()
            prepare_faces(jobs, Path(tmp), settings, progress=False, aligner=aligner)
            first.append(time.perf_counter() - start)
            start = time.perf_counter()
            load_entries(shas, [j.key for j in jobs], Path(tmp), settings, "perf")
            cached.append(time.perf_counter() - start)
    return median(first), median(cached)


def _media(files: list[Path], load, probe, params: dict, repeats: int) -> tuple[float, float]:
    from ..data.prep.media_cache import file_info

    first, cached = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="fer-perf-media-") as tmp:
            start = time.perf_counter()
            shas = [file_info(f, Path(tmp), probe)["sha256"] for f in files]
            for f, sha in zip(files, shas):
                load(f, Path(tmp), params, sha)
            first.append(time.perf_counter() - start)
            start = time.perf_counter()
            for f, sha in zip(files, shas):
                load(f, Path(tmp), params, sha)
            cached.append(time.perf_counter() - start)
    return median(first), median(cached)


def run(size: str, cache_dir: Path) -> dict:
    from ..data.prep import audio, video

    s = SETTINGS[size]
    clips = media_samples.video_files(cache_dir, s["clips"])
    voices = media_samples.audio_files(cache_dir, s["voices"])
    # torchaudio's import and mel filter bank, once, outside the timed first pass
    audio.log_mel(np.zeros(audio.N_FFT, dtype=np.float32))
    timings = {
        "faces": _faces(cache_dir, s["faces"], s["repeats"]),
        "video": _media(clips, video.cached_streams, video.probe_video, video.video_params(frames=8, size=48),
                        s["repeats"]),
        "audio": _media(voices, audio.cached_features, audio.probe_audio, audio.feature_params("logmel", 64),
                        s["repeats"]),
    }
    counts = {"faces": s["faces"], "video": s["clips"], "audio": s["voices"]}
    detail = {k: {"items": counts[k], "first_pass_s": a, "cached_s": b, "speedup": a / b}
              for k, (a, b) in timings.items()}
    return {"cache_speedup": min(d["speedup"] for d in detail.values()), "detail": detail}
