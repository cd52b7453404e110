"""Built-in synthetic face video: neutral -> apex (some clips back to neutral) sequences of the
procedural faces in ``bench.data.synthetic``, encoded as MPEG-4 Part 2 with one I-frame per clip
(GOP longer than the clip, no B-frames), so residuals and motion vectors are real codec output.

Each clip renders one scene (identity, background, clutter, lighting fixed by a clip seed) with
the expression interpolated frame by frame, then moves it smoothly by a small per-clip drift
and rotation (pose jitter varies across clips, not within one), plus fresh sensor noise.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import synthetic_voice
from .base import BASIC7, IndexResult, subject_kfold
from .media import MediaAdapter
from .prep.media_cache import generate_once
from .registry import register_dataset
from .synthetic import _EXPRESSIONS, _identity, render_face
from .synthetic_voice import clip_intensity, manifest_samples

GENERATOR_VERSION = 1
FRAMES = 16
SIZE = 64
PER_CLASS = 2
FPS = 25


def _ease(x: np.ndarray) -> np.ndarray:
    return x * x * (3 - 2 * x)


def render_clip(identity: dict, emotion: str, intensity: float, rng: np.random.Generator,
                frames: int = FRAMES, size: int = SIZE) -> np.ndarray:
    """frames x size x size x 3 uint8."""
    import cv2

    delta = np.array(_EXPRESSIONS[emotion])
    offset = identity["rest"] + rng.normal(0, 0.1, 7)
    apex_at = rng.integers(frames * 5 // 8, frames - 1)
    onset = rng.integers(0, 3)
    ramp = _ease(np.clip((np.arange(frames) - onset) / max(apex_at - onset, 1), 0, 1))
    if rng.random() < 0.35:  # onset-apex-offset: relax after a short hold
        ramp = np.where(np.arange(frames) > apex_at + 1, ramp * np.linspace(1, 0.4, frames)[::-1][
            np.arange(frames)], ramp)
    scene_seed = int(rng.integers(2**31))
    drift = rng.uniform(-2.5, 2.5, 2)  # pixels over the clip
    spin = rng.uniform(-3, 3)  # degrees over the clip
    clip = []
    for f in range(frames):
        # the same scene seed keeps background, clutter, pose and lighting fixed within the clip
        face = render_face(identity, offset + intensity * ramp[f] * delta, np.random.default_rng(scene_seed), size)
        s = f / max(frames - 1, 1)
        m = cv2.getRotationMatrix2D((size / 2, size / 2), spin * s, 1.0)
        m[:, 2] += drift * s
        moved = cv2.warpAffine(face, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        clip.append(np.clip(moved + rng.normal(0, 2.0, moved.shape), 0, 255).astype(np.uint8))
    return np.stack(clip)


def encode_mp4(frames: np.ndarray, path: Path, fps: int = FPS) -> None:
    """MPEG-4 Part 2, one I-frame then P-frames only (gop_size > clip, max_b_frames 0)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.gop_size = 10 * len(frames)
        stream.max_b_frames = 0
        stream.bit_rate = 400_000
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def generate_video(folder: Path, seed: int = 0, num_subjects: int = 16, per_class: int = PER_CLASS) -> None:
    rows = []
    for subject in range(num_subjects):
        identity = _identity(np.random.default_rng([seed, subject]))  # the face dataset's identities
        for label, emotion in enumerate(BASIC7):
            for k in range(per_class):
                rng = np.random.default_rng([seed, subject, label, k, 2])
                clip = render_clip(identity, emotion, clip_intensity(seed, subject, label, k), rng)
                rel = f"id{subject:02d}/{emotion}_{k}.mp4"
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                encode_mp4(clip, folder / rel)
                rows.append({"path": rel, "label": label, "subject": f"id{subject:02d}", "k": k})
    (folder / "manifest.json").write_text(json.dumps(rows))


def video_folder(cache_dir: Path, seed: int = 0) -> Path:
    subjects = synthetic_voice.NUM_SUBJECTS  # the same identities as the voices, for synthetic-av
    target = Path(cache_dir) / "synthetic" / f"video-v{GENERATOR_VERSION}-seed{seed}-{subjects}x{PER_CLASS}"
    return generate_once(target, lambda tmp: generate_video(tmp, seed, subjects, PER_CLASS))


@register_dataset
class SyntheticVideo(MediaAdapter):
    name = "synthetic-video"
    modality = "video"
    class_names = BASIC7
    num_folds = 5
    protocol = "5-fold subject-independent (about 3 of 16 identities test per fold; 25% of the rest validation)"
    expected_layout = "nothing: generated into the cache on first use"
    prep_size = SIZE

    def index(self, root, cache_dir) -> IndexResult:
        return IndexResult(manifest_samples(video_folder(cache_dir), cache_dir, self.name))

    def splits(self, samples, fold, seed=0):
        return subject_kfold(samples, self.num_folds, fold, seed, val_fraction=0.25)

    @staticmethod
    def make_fake(directory: Path) -> Path:
        return Path(directory)
