"""``residual_vs_rgb_clips``: clips per second of the compressed-domain pipeline over the RGB
pipeline at an identical backbone (``mic`` and its own ``input_frames="rgb"`` ablation: the same
CNN + LSTM), preprocessing included: every clip is decoded from its file each time, as at
inference. Classification only (``forward_features`` + ``forward_head``): MIC's identity branch
and apex decoder serve its training losses, not prediction.

- residual: ``prep.video.sampled_residuals``: one streaming decode with the codec's motion
  vectors; the residual of each sampled frame is computed in the codec's Y/U/V planes (no colour
  conversion). For MPEG-4 Part 2 (the compressed-domain convention of CoViAR and MIC) the decoder
  skips every frame outside the sampled (i-1, i) pairs after parsing its header -- a residual does
  not need a correct reference chain, only the two frames it spans -- and reconstructs at 1/2^k
  size from the DCT coefficients (``lowres``) while S is covered.
- rgb: ``prep.video.sampled_rgb``: the same streaming decode at full size, the sampled frames
  converted to RGB, as RGB video loaders do.

``detail.rgb_lowres`` also times the RGB pipeline given the same reduced-size decode, so the share
of the ratio that comes from DCT-domain decoding is on record. RGB frames cannot skip: frame i is
only right if every frame it predicts from is. PyAV exposes motion vectors but not the
bitstream's stored residual, so the kept frames are still fully reconstructed.

Clips are synthetic faces rendered at ``CLIP_SIDE`` pixels (a face spans roughly 250 px of
CK+'s 640x490 frames; decode cost scales with pixels) and ``CLIP_FRAMES`` frames long (2.6 s at
25 fps; AFEW, MMI and RAVDESS clips run 1-4 s), of which T = 16 are sampled, as video FER models
read them. How the ratio moves with clip length: the RGB pipeline decodes every frame up to the
last sampled one, the residual pipeline only the sampled frames and their predecessors."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from . import media_samples
from .common import interleaved, median

CLIP_SIDE = 256
CLIP_FRAMES = 64
SETTINGS = {"full": {"clips": 16, "frames": 16, "size": 48, "batch": 8, "repeats": 5, "side": CLIP_SIDE,
                     "clip_frames": CLIP_FRAMES},
            "tiny": {"clips": 2, "frames": 4, "size": 32, "batch": 2, "repeats": 1, "side": 64, "clip_frames": 16}}
RESIDUAL_SCALE = 32.0  # residuals are zero-mean pixels in [-255, 255]; a fixed scale stands in for the train RMS


def residual_clip(path: Path, frames: int, size: int) -> dict[str, np.ndarray]:
    from ..data.prep import video as vp

    return {"residual": vp.sampled_residuals(path, frames, size) / RESIDUAL_SCALE}


def rgb_clip(path: Path, frames: int, size: int, mean: np.ndarray, std: np.ndarray,
             lowres: bool = False) -> dict[str, np.ndarray]:
    from ..data.prep import video as vp

    # float32 throughout, as a DataLoader transform would (uint8 / 255.0 would be float64)
    return {"rgb": (vp.sampled_rgb(path, frames, size, lowres=lowres).astype(np.float32) * np.float32(1 / 255)
                    - mean) / std}


def _batch(clips: list[dict]) -> dict[str, torch.Tensor]:
    # T x H x W x C -> B x T x C x H x W
    return {k: torch.from_numpy(np.stack([c[k] for c in clips]).astype(np.float32)).permute(0, 1, 4, 2, 3)
            for k in clips[0]}


def run(size: str, cache_dir: Path) -> dict:
    import fer_models

    s = SETTINGS[size]
    files = media_samples.video_files(cache_dir, s["clips"], side=s["side"], length=s["clip_frames"])
    torch.manual_seed(0)
    models = {key: fer_models.create_model("mic", num_classes=7, input_frames=key, frames=s["frames"],
                                           image_size=s["size"]).eval() for key in ("residual", "rgb")}
    models["rgb_lowres"] = models["rgb"]
    spec = models["rgb"].input_spec
    mean, std = np.array(spec.mean, np.float32), np.array(spec.std, np.float32)
    prepare = {"residual": lambda f: residual_clip(f, s["frames"], s["size"]),
               "rgb": lambda f: rgb_clip(f, s["frames"], s["size"], mean, std),
               "rgb_lowres": lambda f: rgb_clip(f, s["frames"], s["size"], mean, std, lowres=True)}
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

    for key in prepare:  # warm-up
        pipeline(key)
    for parts in split.values():
        parts["prep_s"].clear(), parts["model_s"].clear()
    rates = interleaved({k: (lambda k=k: pipeline(k)) for k in prepare}, s["repeats"])
    detail = {k: {"clips_per_s": median(rates[k]), "prep_s_per_clip": median(split[k]["prep_s"]) / len(files),
                  "model_s_per_clip": median(split[k]["model_s"]) / len(files)} for k in prepare}
    rate = {k: d["clips_per_s"] for k, d in detail.items()}
    prep = {k: d["prep_s_per_clip"] for k, d in detail.items()}
    return {"residual_vs_rgb_clips": rate["residual"] / rate["rgb"],
            "detail": {**s, "model": "mic (residual) vs mic input_frames=rgb", **detail,
                       "residual_vs_rgb_lowres": rate["residual"] / rate["rgb_lowres"],
                       # preprocessing alone: what the pipelines differ in (the model is shared)
                       "prep_rgb_over_residual": prep["rgb"] / prep["residual"]}}
