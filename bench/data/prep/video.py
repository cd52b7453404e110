"""Video preprocessing: PyAV decode, frame sampling, and the streams video models read.

Streams, all computed in one decode pass and cached together (``clip_streams``):

- ``rgb``: T sampled frames, centre-cropped square and resized to S.
- ``flow``: OpenCV Farneback optical flow from the previous sampled frame to each sampled frame
  (pixels at size S; zero for the first frame of a clip) for two-stream models.
- ``residual``: the codec's prediction error in the codec's own colour space (Y, U, V planes,
  chroma upsampled): frame minus its predecessor warped by the decoder's own motion vectors
  (``flags2=+export_mvs``), for compressed-domain (MIC) models. Frames without motion vectors
  (I-frames, codecs that do not export them such as HEVC) fall back to zero-motion prediction,
  i.e. a plain frame difference. No RGB conversion is involved: the planes are read as decoded.
- ``mv``: the dense motion-vector field (pixels at size S) of each sampled frame.
- ``iframe``: the key frame that opens the sampled window; ``apex``: the frame that differs most
  from it (for neutral -> apex clips, the expression peak).

Real videos are centre-cropped (a face detector is not run here); synthetic clips are already
face-centred.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .media_cache import WORK, MediaError, cached_entry, file_info, params_tag

SAMPLING = ("uniform", "apex")


def video_params(frames: int = 16, size: int = 112, sampling: str = "uniform") -> dict:
    if sampling not in SAMPLING:
        raise ValueError(f"frame sampling must be one of {SAMPLING}, got {sampling!r}")
    # v2: residuals in the codec's YUV planes (v1: RGB)
    return {"frames": int(frames), "size": int(size), "sampling": sampling, "crop": "centre", "v": 2}


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


# Decoders FFmpeg can run at 1/2, 1/4 or 1/8 size straight from the DCT coefficients (the
# ``lowres`` option: reduced IDCT and motion compensation). H.264 and HEVC decode at full size only.
LOWRES_DECODERS = frozenset({"mpeg4", "h263", "h263p", "mpeg1video", "mpeg2video", "mjpeg"})


def _open(path: Path):
    import av

    try:
        container = av.open(str(path))
    except Exception as e:
        raise MediaError(f"cannot open video {path}: {type(e).__name__}: {e}") from None
    if not container.streams.video:
        container.close()
        raise MediaError(f"{path} has no video stream")
    return container, container.streams.video[0]


def _set_decoder(stream, motion_vectors: bool, lowres: int) -> None:
    options = {}
    if motion_vectors:
        options["flags2"] = "+export_mvs"
    if lowres:
        options["lowres"] = str(lowres)
    stream.codec_context.options = options


def _motion_vectors(frame) -> np.ndarray | None:
    mvs = frame.side_data.get("MOTION_VECTORS")
    return mvs.to_ndarray() if mvs is not None and len(mvs) else None


def _decoded(container, stream, motion_vectors: bool, lowres: int = 0):
    """Yield ``(frame, motion vectors structured array or None)``; a damaged tail ends the clip."""
    import av

    _set_decoder(stream, motion_vectors, lowres)
    try:
        for frame in container.decode(stream):
            yield frame, (_motion_vectors(frame) if motion_vectors else None)
    except av.error.FFmpegError:
        WORK["truncated"] += 1  # keep the frames decoded so far


def _indexed(container, stream, lowres: int):
    """``_decoded`` with motion vectors, as ``(index, frame, motion vectors)``."""
    for index, (frame, mvs) in enumerate(_decoded(container, stream, True, lowres)):
        yield index, frame, mvs


def rgb_converter():
    """``to_rgb(frame, short_side=None)`` -> H x W x 3 uint8 RGB through one swscale context for
    a whole clip (``frame.to_ndarray(format="rgb24")`` builds a new context per frame, which costs
    more than decoding the frame: 0.4 vs 0.24 ms for 256 px MPEG-4; identical pixels). With
    ``short_side``, swscale also scales (area filter) while it converts."""
    from av.video.reformatter import VideoReformatter

    reformatter = VideoReformatter()

    def to_rgb(frame, short_side: int | None = None) -> np.ndarray:
        if short_side is None:
            return reformatter.reformat(frame, format="rgb24").to_ndarray()
        short = min(frame.width, frame.height)
        return reformatter.reformat(frame, width=round(frame.width * short_side / short),
                                    height=round(frame.height * short_side / short), format="rgb24",
                                    interpolation="AREA").to_ndarray()

    return to_rgb


def decode_frames(path: Path, motion_vectors: bool = True):
    """Yield ``(rgb H x W x 3 uint8, is_key_frame, motion vectors structured array or None)``."""
    container, stream = _open(path)
    to_rgb = rgb_converter()
    with container:
        for frame, mvs in _decoded(container, stream, motion_vectors):
            yield to_rgb(frame), frame.key_frame, mvs


def decode_yuv(path: Path, motion_vectors: bool = True, lowres: int = 0):
    """Yield ``(Y, U, V uint8 planes, is_key_frame, motion vectors or None)``, decoded at
    1/2^``lowres`` size where the decoder supports it (motion vectors stay in coded pixels)."""
    container, stream = _open(path)
    with container:
        for frame, mvs in _decoded(container, stream, motion_vectors, lowres):
            yield yuv_planes(frame), frame.key_frame, mvs


def yuv_planes(frame) -> list[np.ndarray]:
    """Y, U, V of a decoded frame as uint8 views of the decoder's buffers (no colour conversion)."""
    if frame.format.name not in ("yuv420p", "yuvj420p"):
        frame = frame.reformat(format="yuv420p")
    return [np.frombuffer(p, np.uint8, count=p.line_size * p.height).reshape(p.height, p.line_size)[:, :p.width]
            for p in frame.planes]


def motion_fields(vectors: list[np.ndarray | None], height: int, width: int, scale: int = 1) -> np.ndarray:
    """N x H x W x 2 displacement (dx, dy) to the past reference, pred(p) = prev(p + d), of N
    frames decoded at 1/``scale`` of their coded size (vectors are in coded pixels). Vectors
    pointing to a future reference (B-frames) are ignored: that frame is not at hand."""
    given = [(f, m) for f, m in enumerate(vectors) if m is not None and len(m)]
    if not given:
        return np.zeros((len(vectors), height, width, 2), dtype=np.float32)
    # one structured array for all frames, joined as bytes (np.concatenate promotes structured
    # dtypes field by field, which cost more than the painting below)
    every = np.frombuffer(b"".join(m.tobytes() for _, m in given), dtype=given[0][1].dtype)
    frame = np.repeat([f for f, _ in given], [len(m) for _, m in given])
    past = every["source"] < 0
    frame = frame[past]
    ws, hs, xs, ys, mx, my, ms = (every[k][past].astype(np.int64) for k in
                                  ("w", "h", "dst_x", "dst_y", "motion_x", "motion_y", "motion_scale"))
    if not len(frame):
        return np.zeros((len(vectors), height, width, 2), dtype=np.float32)
    # Blocks tile a grid whose cell is the smallest block side (codecs align blocks to their
    # size): paint one value per cell, then expand, instead of writing every pixel of every block.
    cell = max(int(min(ws.min(), hs.min())) // scale, 1)  # decoded pixels per grid cell
    rows, cols = -(-height // cell), -(-width // cell)
    grid = np.zeros((len(vectors), rows, cols, 2), dtype=np.float32)
    motion_scale = np.maximum(ms, 1).astype(np.float32) * scale
    d = np.stack([mx / motion_scale, my / motion_scale], axis=1).astype(np.float32)
    x0 = ((xs - ws // 2) // scale) // cell
    y0 = ((ys - hs // 2) // scale) // cell
    span_x, span_y = np.maximum(ws // scale // cell, 1), np.maximum(hs // scale // cell, 1)
    for dy in range(int(span_y.max())):
        for dx in range(int(span_x.max())):
            ys, xs = y0 + dy, x0 + dx
            ok = (dy < span_y) & (dx < span_x) & (ys >= 0) & (ys < rows) & (xs >= 0) & (xs < cols)
            grid[frame[ok], ys[ok], xs[ok]] = d[ok]
    if cell == 1:
        return grid
    return np.repeat(np.repeat(grid, cell, axis=1), cell, axis=2)[:, :height, :width]


@functools.lru_cache(maxsize=16)
def _pixel_grid(height: int, width: int) -> np.ndarray:
    """H x W x 2 float32 (x, y) of every pixel: remap's identity map."""
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return np.dstack([gx, gy])


def motion_compensate(previous: np.ndarray, fields: np.ndarray) -> np.ndarray:
    """Predict N frames' planes from their references ``previous`` (N x h x w [x c] uint8) and
    dense motion ``fields`` (N x h x w x 2): bilinear at sub-pixel offsets, rounded to uint8 as
    the codec's own half-pel prediction is, edges replicated. The N planes are stacked into one
    tall image for a single ``cv2.remap``, with each map clamped inside its own frame."""
    import cv2

    n, h, w = previous.shape[:3]
    maps = _pixel_grid(h, w)[None] + fields
    np.clip(maps[..., 0], 0, w - 1, out=maps[..., 0])
    np.clip(maps[..., 1], 0, h - 1, out=maps[..., 1])
    out = np.empty_like(previous)
    step = max((32000 // h), 1)  # remap's coordinates are 16-bit: at most ~32k rows per call
    for a in range(0, n, step):
        b = min(a + step, n)
        chunk = maps[a:b].copy()
        chunk[..., 1] += (np.arange(b - a, dtype=np.float32) * h)[:, None, None]
        tall = np.ascontiguousarray(previous[a:b]).reshape((b - a) * h, w, *previous.shape[3:])
        out[a:b] = cv2.remap(tall, chunk.reshape((b - a) * h, w, 2), None, interpolation=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE).reshape(out[a:b].shape)
    return out


def residual_stack(current: list[list[np.ndarray]], previous: list[list[np.ndarray]],
                   vectors: list[np.ndarray | None], scale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Prediction errors (float32, in [-255, 255]) of N frames (each [Y, U, V] uint8 planes) from
    their predecessors warped by the codec's motion vectors: (N x H x W luma, N x H/2 x W/2 x 2
    chroma); chroma moves by half the luma vector."""
    height, width = current[0][0].shape
    fields = motion_fields(vectors, height, width, scale)
    luma = np.subtract(np.stack([c[0] for c in current]),
                       motion_compensate(np.stack([p[0] for p in previous]), fields), dtype=np.float32)
    cur_uv = np.stack([np.stack(c[1:], axis=-1) for c in current])
    ch, cw = cur_uv.shape[1:3]
    pred_uv = motion_compensate(np.stack([np.stack(p[1:], axis=-1) for p in previous]),
                                fields[:, ::2, ::2][:, :ch, :cw] / 2)
    return luma, np.subtract(cur_uv, pred_uv, dtype=np.float32)


def residual_planes(current: list[np.ndarray], previous: list[np.ndarray], mvs: np.ndarray | None,
                    scale: int = 1) -> list[np.ndarray]:
    """Y, U, V prediction errors of one frame (see ``residual_stack``)."""
    luma, chroma = residual_stack([current], [previous], [mvs], scale)
    return [luma[0], chroma[0, ..., 0], chroma[0, ..., 1]]


def _resize_stack(planes: np.ndarray, size: int, upscale: int) -> np.ndarray:
    """N x s x s [x c] -> N x S x S [x c]. Downscaling by area maps each frame's rows onto its own
    output rows, so the N planes go through one ``cv2.resize`` as a tall image; so does nearest
    upscaling. Other upscaling (``upscale``: a cv2 flag) is done frame by frame."""
    import cv2

    n, side = planes.shape[:2]
    if side == size:
        return np.ascontiguousarray(planes)
    if side > size or upscale == cv2.INTER_NEAREST:
        tall = np.ascontiguousarray(planes).reshape(n * side, side, *planes.shape[3:])
        out = cv2.resize(tall, (size, n * size), interpolation=cv2.INTER_AREA if side > size else upscale)
        return out.reshape(n, size, size, *planes.shape[3:])
    return np.stack([cv2.resize(np.ascontiguousarray(f), (size, size), interpolation=upscale) for f in planes])


def residual_images(current: list[list[np.ndarray]], previous: list[list[np.ndarray]],
                    vectors: list[np.ndarray | None], size: int, scale: int = 1) -> np.ndarray:
    """N x S x S x 3 (Y, U, V) residuals: each plane centre-cropped and resized to S (chroma,
    half-size, is upsampled by replication as decoders display it)."""
    import cv2

    luma, chroma = residual_stack(current, previous, vectors, scale)
    rows, cols = centre_square(*luma.shape[1:])
    crows, ccols = slice(rows.start // 2, (rows.stop + 1) // 2), slice(cols.start // 2, (cols.stop + 1) // 2)
    crows = slice(crows.start, crows.start + min(crows.stop - crows.start, ccols.stop - ccols.start))
    ccols = slice(ccols.start, ccols.start + (crows.stop - crows.start))
    y = _resize_stack(luma[:, rows, cols], size, cv2.INTER_LINEAR)
    uv = _resize_stack(chroma[:, crows, ccols], size, cv2.INTER_NEAREST)
    return np.concatenate([y[..., None], uv], axis=-1)


def frame_count(container, stream) -> int:
    """Frames in the stream: the container's count, or its packets when the header lacks one."""
    if stream.frames:
        return int(stream.frames)
    count = sum(1 for packet in container.demux(stream) if packet.size)
    container.seek(0)
    return count


# Decoders whose P-frames predict from the one previous frame and whose skipped frames cost only
# a header parse (``skip_frame``): decode(i) = MC(decode(i-1), mv_i) + residual_i holds whatever
# the reference holds, so a residual needs frames i-1 and i decoded, not the whole chain before
# them. (H.264/HEVC predict from several references and are decoded in full.)
SKIPPING_DECODERS = frozenset({"mpeg4", "h263", "h263p", "mpeg1video", "mpeg2video"})


class _Reordered(Exception):
    """The stream reorders frames (B-frames): packet order is not display order."""


def _decoded_subset(container, stream, keep: set[int], lowres: int):
    """Yield ``(index, frame, motion vectors)`` for the frames in ``keep`` only; every other frame
    is skipped by the decoder after its header. Raises _Reordered when decode order is not
    display order (the skipped frames could then be the ones wanted)."""
    import av

    ctx = stream.codec_context
    _set_decoder(stream, True, lowres)
    last = max(keep)
    try:
        # demuxing alone is cheap and shows the order before anything is skipped (a B-frame
        # shown early may be stored after the last frame wanted, so every packet is read)
        packets = [packet for packet in container.demux(stream) if packet.size]
        stamps = [packet.pts for packet in packets]
        if None in stamps or any(b <= a for a, b in zip(stamps, stamps[1:])):
            raise _Reordered
        for index, packet in enumerate(packets[:last + 1]):
            ctx.skip_frame = "DEFAULT" if index in keep else "NONKEY"
            for frame in packet.decode():
                if frame.pts != packet.pts:
                    raise _Reordered
                yield index, frame, _motion_vectors(frame)
    except av.error.FFmpegError:
        WORK["truncated"] += 1


def sampled_residuals(path: Path, frames: int, size: int, lowres: bool = True) -> np.ndarray:
    """T x S x S x 3 (Y, U, V) residuals of T uniformly sampled frames, computed in one streaming
    decode that touches only the sampled frames and their predecessors (the first frame's
    residual is zero). Compressed-domain shortcuts, where the codec allows them: the decoder skips
    every other frame after parsing its header (``SKIPPING_DECODERS``), and reconstructs at the
    smallest 1/2^k size whose short side still covers S (``lowres``: reduced IDCT). Planes are
    read as decoded, without colour conversion."""
    container, stream = _open(path)
    with container:
        idx = sample_indices(max(frame_count(container, stream), 1), frames)
        wanted = set(idx.tolist())
        keep = wanted | {i - 1 for i in wanted if i > 0}
        level = _lowres_level(stream, size) if lowres else 0
        skipping = stream.codec_context.name in SKIPPING_DECODERS
        try:
            decoded = (_decoded_subset(container, stream, keep, level) if skipping
                       else _indexed(container, stream, level))
            residuals = _residuals(decoded, wanted, keep, idx[-1], size, 1 << level)
        except _Reordered:
            container, stream = _open(path)  # decode every frame, in display order
            with container:
                residuals = _residuals(_indexed(container, stream, level), wanted, keep, idx[-1], size, 1 << level)
    return _stack_sampled(residuals, idx, path)


def _stack_sampled(images: dict[int, np.ndarray], idx: np.ndarray, path: Path) -> np.ndarray:
    """The sampled frames' images in order; a truncated clip repeats its last one."""
    if not images:
        raise MediaError(f"no decodable video frames in {path}")
    WORK["video_decode"] += 1
    last = images[max(images)]
    return np.stack([images.get(i, last) for i in idx.tolist()])


def _residuals(decoded, wanted: set[int], keep: set[int], last: int, size: int,
               scale: int = 1) -> dict[int, np.ndarray]:
    """Residual images of the ``wanted`` frames from ``decoded`` (index, frame, vectors), frames
    decoded at 1/``scale`` size; a wanted frame whose predecessor is missing gets zeros."""
    kept, vectors = {}, {}
    for i, frame, mvs in decoded:
        if i > last:
            break
        if i in keep:
            kept[i], vectors[i] = yuv_planes(frame), mvs
    pairs = sorted(i for i in wanted if i in kept and i - 1 in kept)
    out = {i: np.zeros((size, size, 3), np.float32) for i in wanted if i in kept and i - 1 not in kept}
    if pairs:
        images = residual_images([kept[i] for i in pairs], [kept[i - 1] for i in pairs], [vectors[i] for i in pairs],
                                 size, scale=scale)
        out.update(zip(pairs, images))
    return out


def _lowres_level(stream, size: int) -> int:
    """The largest k <= 3 whose 1/2^k decode keeps the short side >= ``size`` (0: full size)."""
    if stream.codec_context.name not in LOWRES_DECODERS:
        return 0
    side, level = min(stream.codec_context.width, stream.codec_context.height), 0
    while level < 3 and side >> (level + 1) >= size:
        level += 1
    return level


def sampled_rgb(path: Path, frames: int, size: int, lowres: bool = False) -> np.ndarray:
    """T x S x S x 3 uint8 RGB of T uniformly sampled frames, one streaming decode: only the
    sampled frames are converted, and swscale scales while it converts (area filter, short side
    to S, then the centre square is cut): a cv2 area resize of the full-size RGB frame cost five
    times the conversion (measured, 256 px). ``lowres`` as in ``sampled_residuals`` (RGB models
    are fed full-size decodes by default, as every RGB video loader does)."""
    container, stream = _open(path)
    with container:
        idx = sample_indices(max(frame_count(container, stream), 1), frames)
        wanted, images = set(idx.tolist()), {}
        level = _lowres_level(stream, size) if lowres else 0
        to_rgb = rgb_converter()
        for i, (frame, _) in enumerate(_decoded(container, stream, False, level)):
            if i > idx[-1]:
                break
            if i in wanted:
                rgb = to_rgb(frame, short_side=size)
                images[i] = np.ascontiguousarray(rgb[centre_square(*rgb.shape[:2])])
    return _stack_sampled(images, idx, path)


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
    crops, planes, vectors, keys = [], [], [], []
    container, stream = _open(path)
    to_rgb = rgb_converter()
    with container:
        for frame, mvs in _decoded(container, stream, True):
            crops.append(_crop_resize(to_rgb(frame), size))
            planes.append(yuv_planes(frame))
            vectors.append(mvs)
            keys.append(bool(frame.key_frame))
    if not crops:
        raise MediaError(f"no decodable video frames in {path}")
    WORK["video_decode"] += 1
    first = crops[0].astype(np.int16)
    change = np.array([np.abs(c.astype(np.int16) - first).mean() for c in crops])
    apex = int(change.argmax())
    idx = sample_indices(len(crops), params["frames"], params["sampling"], apex)
    key_before = [i for i in range(idx[0] + 1) if keys[i]]
    iframe = crops[key_before[-1] if key_before else 0]
    height, width = planes[0][0].shape
    pairs = [int(i) for i in idx if i > 0]
    residuals = dict(zip(pairs, residual_images([planes[i] for i in pairs], [planes[i - 1] for i in pairs],
                                                [vectors[i] for i in pairs], size))) if pairs else {}
    # the first frame of a clip has no vectors, so its field is zero
    fields = [_crop_resize(f, size) * (size / min(height, width))
              for f in motion_fields([vectors[i] for i in idx], height, width)]
    flows = []
    for t, i in enumerate(idx):
        ref = idx[t - 1] if t > 0 else max(i - 1, 0)
        flows.append(np.zeros((size, size, 2), np.float32) if ref == i else farneback_flow(crops[ref], crops[i]))
    return {
        "rgb": np.stack([crops[i] for i in idx]),
        "flow": np.stack(flows).astype(np.float16),
        "residual": np.stack([residuals.get(int(i), np.zeros((size, size, 3), np.float32))
                              for i in idx]).astype(np.float16),
        "mv": np.stack(fields).astype(np.float16),
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
