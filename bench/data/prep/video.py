"""Video preprocessing: PyAV decode, frame sampling, and the streams video models read.

Streams, all computed in one decode pass and cached together (``clip_streams``):

- ``rgb``: T sampled frames, centre-cropped square and resized to S.
- ``flow``: OpenCV Farneback optical flow from the previous sampled frame to each sampled frame
  (pixels at size S; zero for the first frame of a clip) for two-stream models.
- ``residual``: the codec's prediction error: frame minus its predecessor warped by the
  decoder's own motion vectors (``flags2=+export_mvs``), for compressed-domain (MIC) models.
  Frames without motion vectors (I-frames, codecs that do not export them such as HEVC) fall
  back to zero-motion prediction, i.e. a plain frame difference.
- ``mv``: the dense motion-vector field (pixels at size S) of each sampled frame.
- ``iframe``: the key frame that opens the sampled window; ``apex``: the frame that differs most
  from it (for neutral -> apex clips, the expression peak).

Real videos are centre-cropped (a face detector is not run here); synthetic clips are already
face-centred.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .media_cache import WORK, MediaError, cached_entry, file_info, params_tag

SAMPLING = ("uniform", "apex")


def video_params(frames: int = 16, size: int = 112, sampling: str = "uniform") -> dict:
    if sampling not in SAMPLING:
        raise ValueError(f"frame sampling must be one of {SAMPLING}, got {sampling!r}")
    return {"frames": int(frames), "size": int(size), "sampling": sampling, "crop": "centre", "v": 1}


def probe_video(path: Path) -> str | None:
    """Why ``path`` is not a usable video, or None (opens it and decodes one frame)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return "no video stream"
            for _ in container.decode(video=0):
                return None
        return "no decodable video frame"
    except Exception as e:
        return f"unreadable video ({type(e).__name__}: {e})"


def decode_frames(path: Path, motion_vectors: bool = True):
    """Yield ``(rgb H x W x 3 uint8, is_key_frame, motion vectors structured array or None)``."""
    import av

    try:
        container = av.open(str(path))
    except Exception as e:
        raise MediaError(f"cannot open video {path}: {type(e).__name__}: {e}") from None
    with container:
        if not container.streams.video:
            raise MediaError(f"{path} has no video stream")
        stream = container.streams.video[0]
        if motion_vectors:
            stream.codec_context.options = {"flags2": "+export_mvs"}
        try:
            for frame in container.decode(stream):
                mvs = frame.side_data.get("MOTION_VECTORS") if motion_vectors else None
                yield frame.to_ndarray(format="rgb24"), frame.key_frame, (
                    mvs.to_ndarray() if mvs is not None and len(mvs) else None)
        except av.error.FFmpegError:
            # a truncated or damaged tail: keep the frames decoded so far
            WORK["truncated"] += 1


def motion_field(mvs: np.ndarray | None, height: int, width: int) -> np.ndarray:
    """Dense H x W x 2 displacement (dx, dy) to the past reference: pred(p) = prev(p + d).
    Vectors pointing to a future reference (B-frames) are ignored: that frame is not at hand."""
    field = np.zeros((height, width, 2), dtype=np.float32)
    if mvs is None:
        return field
    past = mvs[mvs["source"] < 0]
    ws, hs = past["w"].astype(np.int64), past["h"].astype(np.int64)
    x0s, y0s = past["dst_x"].astype(np.int64) - ws // 2, past["dst_y"].astype(np.int64) - hs // 2
    scales = np.maximum(past["motion_scale"].astype(np.float32), 1)
    dxs, dys = past["motion_x"] / scales, past["motion_y"] / scales
    for x0, y0, w, h, dx, dy in zip(x0s, y0s, ws, hs, dxs, dys):
        x1, y1 = min(x0 + w, width), min(y0 + h, height)
        x0, y0 = max(x0, 0), max(y0, 0)
        if x1 > x0 and y1 > y0:
            field[y0:y1, x0:x1] = (dx, dy)
    return field


def motion_compensate(previous: np.ndarray, field: np.ndarray) -> np.ndarray:
    """Predict the current frame from ``previous`` and a dense motion field (float32)."""
    import cv2

    h, w = previous.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(previous.astype(np.float32), gx + field[..., 0], gy + field[..., 1],
                     interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def residual_frame(current: np.ndarray, previous: np.ndarray, mvs: np.ndarray | None) -> np.ndarray:
    """current - motion-compensated previous, float32 in [-255, 255]."""
    field = motion_field(mvs, *current.shape[:2])
    return current.astype(np.float32) - motion_compensate(previous, field)


def centre_square(height: int, width: int) -> tuple[slice, slice]:
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return slice(top, top + side), slice(left, left + side)


def _crop_resize(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    rows, cols = centre_square(*image.shape[:2])
    crop = image[rows, cols]
    if crop.shape[0] == size:
        return np.ascontiguousarray(crop)
    interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)


def farneback_flow(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """H x W x 2 optical flow between two RGB frames (OpenCV Farneback, float32 pixels)."""
    import cv2

    a = cv2.cvtColor(previous, cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(current, cv2.COLOR_RGB2GRAY)
    return cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=2, winsize=9, iterations=3,
                                        poly_n=5, poly_sigma=1.1, flags=0)


def sample_indices(num_frames: int, frames: int, sampling: str = "uniform", apex: int | None = None) -> np.ndarray:
    """``frames`` indices into a clip of ``num_frames``: evenly spread over the clip, or a
    contiguous window centred on the apex (repeating frames when the clip is short)."""
    if sampling == "uniform" or apex is None:
        return np.round(np.linspace(0, num_frames - 1, frames)).astype(np.int64)
    start = int(np.clip(apex - frames // 2, 0, max(num_frames - frames, 0)))
    return np.minimum(np.arange(start, start + frames), num_frames - 1).astype(np.int64)


def clip_streams(path: Path, params: dict) -> dict[str, np.ndarray]:
    """Decode ``path`` once and return every stream (see the module docstring)."""
    size = params["size"]
    crops, residuals, fields, keys = [], [], [], []
    previous = None
    for rgb, is_key, mvs in decode_frames(path):
        crops.append(_crop_resize(rgb, size))
        keys.append(bool(is_key))
        if previous is None:
            residuals.append(np.zeros((size, size, 3), np.float32))
            fields.append(np.zeros((size, size, 2), np.float32))
        else:
            res = residual_frame(rgb, previous, mvs)
            residuals.append(_crop_resize(res, size))
            field = motion_field(mvs, *rgb.shape[:2])
            side = min(rgb.shape[:2])
            fields.append(_crop_resize(field, size) * (size / side))
        previous = rgb
    if not crops:
        raise MediaError(f"no decodable video frames in {path}")
    WORK["video_decode"] += 1
    first = crops[0].astype(np.int16)
    change = np.array([np.abs(c.astype(np.int16) - first).mean() for c in crops])
    apex = int(change.argmax())
    idx = sample_indices(len(crops), params["frames"], params["sampling"], apex)
    key_before = [i for i in range(idx[0] + 1) if keys[i]]
    iframe = crops[key_before[-1] if key_before else 0]
    flows = []
    for t, i in enumerate(idx):
        ref = idx[t - 1] if t > 0 else max(i - 1, 0)
        flows.append(np.zeros((size, size, 2), np.float32) if ref == i else farneback_flow(crops[ref], crops[i]))
    return {
        "rgb": np.stack([crops[i] for i in idx]),
        "flow": np.stack(flows).astype(np.float16),
        "residual": np.stack([residuals[i] for i in idx]).astype(np.float16),
        "mv": np.stack([fields[i] for i in idx]).astype(np.float16),
        "iframe": iframe,
        "apex": crops[apex],
        "indices": idx,
        "num_frames": np.array(len(crops)),
        "key_frames": np.array(keys),
    }


def cached_streams(path: Path, cache_dir: Path, params: dict, sha256: str | None = None) -> dict[str, np.ndarray]:
    """``clip_streams`` through the cache. Raises MediaError for a file that cannot be decoded."""
    sha256 = sha256 or file_info(path, cache_dir, probe_video)["sha256"]
    return cached_entry(cache_dir, params_tag("video", params), sha256, lambda: clip_streams(path, params))
