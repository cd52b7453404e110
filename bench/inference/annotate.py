"""``predict --annotate``: a copy of a video with each face's box, label and confidence drawn,
encoded by PyAV at the source's frame rate (H.264 via libx264, else MPEG-4 Part 2)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

# One colour per class index (RGB), distinct on skin and background.
_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
            (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60)]


def draw_faces(rgb: np.ndarray, faces: list[dict], class_names: list[str]) -> np.ndarray:
    """A copy of ``rgb`` with each face's box and "label 87%" above it."""
    import cv2

    out = np.ascontiguousarray(rgb).copy()
    h, w = out.shape[:2]
    thickness = max(2, round(min(h, w) / 240))
    scale = max(0.5, min(h, w) / 720)
    for face in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face["box"])
        index = class_names.index(face["label"]) if face["label"] in class_names else 0
        colour = _PALETTE[index % len(_PALETTE)]
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        text = f"{face['label']} {100 * face['probs'][face['label']]:.0f}%"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = y1 - th - base - 4 if y1 - th - base - 4 >= 0 else y2 + 4  # below the box at the top edge
        cv2.rectangle(out, (x1, top), (x1 + tw + 4, top + th + base + 4), colour, -1)
        cv2.putText(out, text, (x1 + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness,
                    cv2.LINE_AA)
    return out


def pick_codec() -> str:
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


class AnnotatedVideo:
    """Frames in (RGB + faces), an annotated video out; ``close()`` flushes the encoder."""

    def __init__(self, path: Path, rate, class_names: list[str], codec: str | None = None):
        self.path = Path(path)
        self.rate = Fraction(rate).limit_denominator(100_000)
        self.class_names = class_names
        self.codec = codec or pick_codec()
        self.frames = 0
        self._container = self._stream = None

    def _open(self, height: int, width: int) -> None:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), "w")
        self._stream = self._container.add_stream(self.codec, rate=self.rate)
        # yuv420p (what players expect) needs even sides; an odd last row/column is dropped
        self._stream.width, self._stream.height = width - width % 2, height - height % 2
        self._stream.pix_fmt = "yuv420p"
        if self.codec == "mpeg4":
            self._stream.bit_rate = 4_000_000  # its default (~200 kb/s) smears the labels

    def write(self, rgb: np.ndarray, faces: list[dict]) -> None:
        import av

        if self._container is None:
            self._open(*rgb.shape[:2])
        image = draw_faces(rgb, faces, self.class_names)[: self._stream.height, : self._stream.width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.frames
        frame.time_base = 1 / self.rate
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None


def annotated_path(out: Path, source: Path, several: bool) -> Path:
    """``out`` for a single video; ``<out stem>-<source stem><out suffix>`` beside it for several."""
    out = Path(out)
    return out.with_name(f"{out.stem}-{source.stem}{out.suffix or '.mp4'}") if several else out
