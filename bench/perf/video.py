"""``residual_vs_rgb_clips``: clips per second of the compressed-domain pipeline (decode the mp4
with the codec's motion vectors, residual = frame - motion-compensated predecessor for the T
sampled frames, MIC's residual CNN + LSTM) over the RGB pipeline (decode the mp4, T sampled
frames, the same CNN + LSTM on RGB: ``mic`` with ``input_frames="rgb"``, its own ablation, so
the backbone is identical). Preprocessing is inside the timing: every clip is decoded from its
mp4 each time, as at inference. Classification only (``forward_features`` + ``forward_head``):
MIC's identity branch and apex decoder serve its training losses, not prediction.

PyAV exposes motion vectors but not the codec's stored residual, so the residual is rebuilt
from fully decoded frames here; the measured ratio is what this pipeline costs, not what a
bitstream-level residual reader could reach."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from . import media_samples
from .common import interleaved, median

SETTINGS = {"full": {"clips": 16, "frames": 8, "size": 48, "batch": 8, "repeats": 5},
            "tiny": {"clips": 2, "frames": 4, "size": 32, "batch": 2, "repeats": 1}}
RESIDUAL_SCALE = 32.0  # residuals are zero-mean pixels in [-255, 255]; a fixed scale stands in for the train RMS


def residual_clip(path: Path, frames: int, size: int) -> dict[str, np.ndarray]:
    from ..data.prep import video as vp

    decoded = list(vp.decode_frames(path, motion_vectors=True))
    idx = vp.sample_indices(len(decoded), frames)
    residuals = []
    for i in idx:
        if i == 0:
            residuals.append(np.zeros((size, size, 3), np.float32))
        else:
            current, _, mvs = decoded[i]
            residuals.append(vp._crop_resize(vp.residual_frame(current, decoded[i - 1][0], mvs), size))
    return {"residual": np.stack(residuals) / RESIDUAL_SCALE}


def rgb_clip(path: Path, frames: int, size: int, mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
    from ..data.prep import video as vp

    decoded = [rgb for rgb, _, _ in vp.decode_frames(path, motion_vectors=False)]
    idx = vp.sample_indices(len(decoded), frames)
    return {"rgb": (np.stack([vp._crop_resize(decoded[i], size) for i in idx]) / 255.0 - mean) / std}


def _batch(clips: list[dict]) -> dict[str, torch.Tensor]:
    # T x H x W x C -> B x T x C x H x W
    return {k: torch.from_numpy(np.stack([c[k] for c in clips]).astype(np.float32)).permute(0, 1, 4, 2, 3)
            for k in clips[0]}


def run(size: str, cache_dir: Path) -> dict:
    import fer_models

    s = SETTINGS[size]
    files = media_samples.video_files(cache_dir, s["clips"])
    torch.manual_seed(0)
    models = {key: fer_models.create_model("mic", num_classes=7, input_frames=key, frames=s["frames"],
                                           image_size=s["size"]).eval() for key in ("residual", "rgb")}
    spec = models["rgb"].input_spec
    mean, std = np.array(spec.mean, np.float32), np.array(spec.std, np.float32)
    prepare = {"residual": lambda f: residual_clip(f, s["frames"], s["size"]),
               "rgb": lambda f: rgb_clip(f, s["frames"], s["size"], mean, std)}
    split: dict[str, dict[str, list[float]]] = {k: {"prep_s": [], "model_s": []} for k in prepare}

    def pipeline(key: str) -> float:
        model, prep_s, model_s = models[key], 0.0, 0.0
        for i in range(0, len(files), s["batch"]):
            start = time.perf_counter()
            batch = _batch([prepare[key](f) for f in files[i:i + s["batch"]]])
            mid = time.perf_counter()
            with torch.no_grad():
                model.forward_head(model.forward_features(batch))
            prep_s, model_s = prep_s + mid - start, model_s + time.perf_counter() - mid
        split[key]["prep_s"].append(prep_s)
        split[key]["model_s"].append(model_s)
        return len(files) / (prep_s + model_s)

    pipeline("residual"), pipeline("rgb")  # warm-up
    for parts in split.values():
        parts["prep_s"].clear(), parts["model_s"].clear()
    rates = interleaved({k: (lambda k=k: pipeline(k)) for k in prepare}, s["repeats"])
    detail = {k: {"clips_per_s": median(rates[k]), "prep_s_per_clip": median(split[k]["prep_s"]) / len(files),
                  "model_s_per_clip": median(split[k]["model_s"]) / len(files)} for k in prepare}
    return {"residual_vs_rgb_clips": detail["residual"]["clips_per_s"] / detail["rgb"]["clips_per_s"],
            "detail": {**{k: v for k, v in s.items()}, "model": "mic (residual) vs mic input_frames=rgb", **detail}}
