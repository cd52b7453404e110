"""Face detection (facenet-pytorch MTCNN) and 5-point alignment, cached per image.

One offline pass per dataset: every image that is not already a face crop is detected, the chosen
face is warped by a similarity transform of its 5 landmarks onto a fixed template, and the crop
plus landmark-distance features are written to the cache. Entries are keyed by the image's content
hash and the settings, so re-running (or another dataset holding the same image) costs nothing,
and trials only read.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from ...errors import UserError
from ..base import PrepareReport, Skipped

ALIGN_VERSION = 1  # bump when the algorithm changes, so old cache entries are not reused

# ArcFace's 5-point template for a 112x112 crop: left eye, right eye, nose, mouth left, mouth right
# (as seen in the image), the order MTCNN returns its landmarks in.
_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                          [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)
_PAIRS = list(combinations(range(5), 2))


@dataclass(frozen=True)
class FaceAlignSettings:
    crop_size: int = 112
    select: str = "largest"  # which of several faces: "largest" box or most "confident"
    no_face: str = "centre"  # when none is found: "centre" crop of the image, or "drop" the sample
    min_confidence: float = 0.9  # MTCNN faces below this probability are ignored
    # Bigger images are shrunk to this longer side for detection only (the crop is warped from the
    # original): MTCNN's image pyramid on a 1080p photo costs ~20x a 640-pixel one on a CPU.
    detect_max_side: int = 640
    # <1 shrinks the template about the crop centre, keeping forehead and chin, which carry
    # expression, inside a crop made for face recognition.
    template_scale: float = 0.85

    def __post_init__(self):
        if self.select not in ("largest", "confident"):
            raise UserError(f"face selection must be 'largest' or 'confident', got {self.select!r}")
        if self.no_face not in ("centre", "drop"):
            raise UserError(f"the no-face fallback must be 'centre' or 'drop', got {self.no_face!r}")
        if not 16 <= self.crop_size <= 1024:
            raise UserError(f"the crop size must be between 16 and 1024 pixels, got {self.crop_size}")

    def key(self) -> str:
        text = json.dumps({"v": ALIGN_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def describe_fallback(self) -> str:
        return ("a centre crop of the whole image is used instead" if self.no_face == "centre"
                else "the image is dropped from the dataset")


def template(settings: FaceAlignSettings) -> np.ndarray:
    centre = np.array([56.0, 56.0], dtype=np.float32)
    points = centre + (_TEMPLATE_112 - centre) * settings.template_scale
    return points * (settings.crop_size / 112.0)


def landmark_distances(points: np.ndarray) -> np.ndarray:
    """The 10 pairwise distances of the 5 landmarks over the inter-ocular distance (scale-free)."""
    points = np.asarray(points, dtype=np.float32)
    inter_ocular = max(float(np.linalg.norm(points[0] - points[1])), 1e-6)
    return np.array([np.linalg.norm(points[i] - points[j]) for i, j in _PAIRS], dtype=np.float32) / inter_ocular


@dataclass
class AlignedFace:
    crop: np.ndarray  # crop_size x crop_size x 3 uint8
    landmarks: np.ndarray  # 5 x 2 in the source image's pixels (template points when not detected)
    distances: np.ndarray  # 10 landmark-distance features
    detected: bool
    score: float
    faces: int  # faces MTCNN found (before selection)
    boxes: np.ndarray | None = None  # all faces' boxes (x0, y0, x1, y1) in source pixels; not cached


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return cv2.resize(image[top:top + side, left:left + side], (size, size), interpolation=cv2.INTER_AREA)


def _resized(image: np.ndarray, factor: float) -> np.ndarray:
    import cv2

    if factor >= 1.0:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)


def warp_to_template(image: np.ndarray, points: np.ndarray, settings: FaceAlignSettings) -> np.ndarray | None:
    import cv2

    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(points, np.float32), template(settings),
                                            method=cv2.LMEDS)
    if matrix is None:
        return None
    size = settings.crop_size
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


class FaceAligner:
    """MTCNN (keep_all) + a face-selection policy + similarity alignment; images in batches."""

    def __init__(self, settings: FaceAlignSettings = FaceAlignSettings(), device: str = "cpu"):
        from facenet_pytorch import MTCNN

        self.settings = settings
        self.mtcnn = MTCNN(keep_all=True, device=device)

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Every face MTCNN finds in one H x W x 3 RGB image, detected on the image shrunk to
        ``detect_max_side`` as ``align`` does: (boxes N x 4, probabilities, landmarks N x 5 x 2)
        in source pixels, or None when it finds none (``predict`` uses this)."""
        shrink = min(1.0, self.settings.detect_max_side / max(image.shape[:2]))
        boxes, probs, points = self.mtcnn.detect(_resized(image, shrink), landmarks=True)
        if boxes is None:
            return None
        return (np.asarray(boxes, np.float64) / shrink, probs,
                np.stack([np.asarray(p, np.float32) / shrink for p in points]))

    def align(self, images: list[np.ndarray]) -> list[AlignedFace]:
        """``images``: H x W x 3 uint8 RGB. Same-sized images are detected as one batch."""
        out: list[AlignedFace | None] = [None] * len(images)
        by_shape: dict[tuple, list[int]] = {}
        for i, img in enumerate(images):
            by_shape.setdefault(img.shape, []).append(i)
        for (h, w, *_), indices in by_shape.items():
            shrink = min(1.0, self.settings.detect_max_side / max(h, w))
            batch = np.stack([_resized(images[i], shrink) for i in indices])
            boxes, probs, points = self.mtcnn.detect(batch, landmarks=True)
            for j, i in enumerate(indices):
                found = boxes[j] is not None
                out[i] = self._choose(images[i], np.asarray(boxes[j], np.float32) / shrink if found else None,
                                      probs[j], np.asarray(points[j], np.float32) / shrink if found else None)
        return out  # type: ignore[return-value]

    def _choose(self, image, boxes, probs, points) -> AlignedFace:
        s = self.settings
        faces = 0 if boxes is None else len(boxes)
        if faces:
            probs = np.asarray(probs, dtype=np.float32)
            keep = np.flatnonzero(probs >= s.min_confidence)
            if len(keep):
                if s.select == "largest":
                    area = (boxes[keep, 2] - boxes[keep, 0]) * (boxes[keep, 3] - boxes[keep, 1])
                    best = keep[int(np.argmax(area))]
                else:
                    best = keep[int(np.argmax(probs[keep]))]
                crop = warp_to_template(image, points[best], s)
                if crop is not None:
                    pts = np.asarray(points[best], np.float32)
                    return AlignedFace(crop, pts, landmark_distances(pts), True, float(probs[best]), faces, boxes)
        tpl = template(s)
        return AlignedFace(centre_crop(image, s.crop_size), tpl, landmark_distances(tpl), False, 0.0, faces, boxes)


# --- cache ---------------------------------------------------------------------------------

def entry_path(cache_dir: Path, settings: FaceAlignSettings, sha256: str) -> Path:
    return Path(cache_dir) / "faces" / f"v{ALIGN_VERSION}-{settings.key()}" / sha256[:2] / f"{sha256}.npz"


def write_entry(path: Path, face: AlignedFace) -> None:
    # tempfile + os.replace: a concurrent trial or another node never sees a half-written entry.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, crop=face.crop, landmarks=face.landmarks, distances=face.distances,
                     detected=np.bool_(face.detected), score=np.float32(face.score), faces=np.int32(face.faces))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _settings_file(cache_dir: Path, dataset: str) -> Path:
    return Path(cache_dir) / "faces" / "settings" / f"{dataset}.json"


def active_settings(cache_dir: Path, dataset: str) -> FaceAlignSettings:
    """The settings the last ``data prepare`` of ``dataset`` used (defaults before any), so trials
    read the crops that were made without being told the flags again."""
    try:
        return FaceAlignSettings(**json.loads(_settings_file(cache_dir, dataset).read_text()))
    except (OSError, ValueError, TypeError):
        return FaceAlignSettings()


def remember_settings(cache_dir: Path, dataset: str, settings: FaceAlignSettings) -> None:
    path = _settings_file(cache_dir, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json.tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(settings), f)
    os.replace(tmp, path)


@dataclass(frozen=True)
class FaceJob:
    key: str  # shown in the report (the sample's relative path)
    sha256: str
    load: Callable[[], np.ndarray]  # -> H x W x 3 uint8 RGB


def prepare_faces(jobs: list[FaceJob], cache_dir: Path, settings: FaceAlignSettings, *, progress: bool = True,
                  batch_size: int = 32, aligner: FaceAligner | None = None) -> PrepareReport:
    """Detect and align every job whose entry is missing; count detection failures."""
    from tqdm import tqdm

    start = time.time()
    report = PrepareReport(total=len(jobs))
    todo = []
    seen: set[str] = set()
    for job in jobs:
        if entry_path(cache_dir, settings, job.sha256).is_file() or job.sha256 in seen:
            report.cached += 1  # identical images share one entry
        else:
            seen.add(job.sha256)
            todo.append(job)
    failures: list[str] = []
    if todo:
        aligner = aligner or FaceAligner(settings)
        bar = tqdm(total=len(todo), desc="detect + align faces", unit="img", disable=not progress)
        for i in range(0, len(todo), batch_size):
            batch, images = [], []
            for job in todo[i:i + batch_size]:
                try:
                    images.append(job.load())
                    batch.append(job)
                except Exception as exc:  # a file that changed or broke since indexing: skip it
                    report.skipped.append(Skipped(job.key, f"cannot read image ({exc})"))
            for job, face in zip(batch, aligner.align(images)):
                write_entry(entry_path(cache_dir, settings, job.sha256), face)
                report.computed += 1
                if not face.detected:
                    failures.append(job.key)
            bar.update(len(todo[i:i + batch_size]))
        bar.close()
    processed = report.computed
    report.stats = {"detected": processed - len(failures), "no_face": len(failures),
                    "no_face_files": failures, "crop_size": settings.crop_size, "settings_key": settings.key(),
                    "no_face_option": settings.no_face, "fallback": settings.describe_fallback()}
    report.notes += face_notes(report.stats)
    report.seconds = time.time() - start
    return report


def face_notes(stats: dict) -> list[str]:
    """The report's lines on detection failures, from its stats (so shards' stats, summed, give
    the same lines as one pass: ``bench.data.prepare.merge_reports``)."""
    failures, processed = stats.get("no_face_files", []), stats.get("detected", 0) + stats.get("no_face", 0)
    if not processed:
        return []
    notes = [f"MTCNN found no face in {len(failures)} of {processed} images ({100 * len(failures) / processed:.1f}%); "
             f"for those {stats['fallback']} (--no-face {stats['no_face_option']})."]
    if failures:
        shown = ", ".join(failures[:10]) + (f" and {len(failures) - 10} more" if len(failures) > 10 else "")
        notes.append(f"No face found in: {shown}.")
    return notes


def load_entries(shas: list[str], keys: list[str], cache_dir: Path, settings: FaceAlignSettings,
                 dataset: str) -> dict[str, np.ndarray]:
    """Stack the cached crops (N x S x S x 3 uint8) and landmark features (N x 10) of ``shas``."""
    crops, distances, detected = [], [], []
    for sha, key in zip(shas, keys):
        path = entry_path(cache_dir, settings, sha)
        try:
            with np.load(path) as npz:
                crops.append(npz["crop"])
                distances.append(npz["distances"])
                detected.append(bool(npz["detected"]))
        except FileNotFoundError:
            raise UserError(f"no aligned face cached for {key!r} of dataset {dataset!r}; run "
                            f"`fer-bench data prepare --dataset {dataset} --data-root ...` first") from None
    size = settings.crop_size
    return {"crops": np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8),
            "distances": np.stack(distances) if distances else np.zeros((0, 10), np.float32),
            "detected": np.array(detected, dtype=bool)}


def detected_flags(shas: list[str], cache_dir: Path, settings: FaceAlignSettings) -> dict[str, bool | None]:
    """Per hash: True/False once prepared, None when not prepared yet."""
    out: dict[str, bool | None] = {}
    for sha in shas:
        try:
            with np.load(entry_path(cache_dir, settings, sha)) as npz:
                out[sha] = bool(npz["detected"])
        except (OSError, ValueError, KeyError):
            out[sha] = None
    return out
