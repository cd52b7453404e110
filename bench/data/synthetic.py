"""Built-in synthetic face data: procedural faces whose identity and expression are separate
factors, so a model must learn expression under identity, pose, lighting and clutter changes.

Identity (per subject): head shape, skin tone, eye spacing/size, brow thickness, mouth width,
hair. Expression (per sample): mouth curvature and opening, brow angle and height, eye opening,
nose wrinkle, each scaled by a random intensity so weak expressions sit close to neutral.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .base import BASIC7, DatasetAdapter, IndexResult, Sample
from .registry import register_dataset

GENERATOR_VERSION = 1
IMAGE_SIZE = 64
_RENDER = 2  # draw at 2x and downsample, for anti-aliased edges

# Expression deltas from neutral, per class (order of BASIC7):
# mouth_curve, mouth_open, mouth_width, brow_angle, brow_raise, eye_open, nose_wrinkle
_EXPRESSIONS = {
    "angry":    (-0.3, 0.0, -0.2, 1.0, -0.5, -0.3, 0.3),
    "disgust":  (-0.6, 0.15, 0.0, 0.5, -0.2, -0.45, 1.0),
    "fear":     (-0.2, 0.5, 0.25, -0.7, 0.6, 0.45, 0.0),
    "happy":    (1.0, 0.3, 0.25, 0.0, 0.05, -0.2, 0.0),
    "sad":      (-0.9, 0.0, -0.1, -1.0, 0.15, -0.2, 0.0),
    "surprise": (0.0, 1.0, -0.35, 0.0, 1.0, 0.55, 0.0),
    "neutral":  (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
}


def _identity(rng: np.random.Generator) -> dict:
    skin = np.array([rng.uniform(120, 245), rng.uniform(85, 200), rng.uniform(60, 170)])
    skin = np.clip(skin, 0, 255)
    return {
        "head_w": rng.uniform(0.30, 0.38), "head_h": rng.uniform(0.38, 0.46),
        "skin": tuple(int(c) for c in skin),
        "hair": tuple(int(c) for c in rng.uniform(10, 140, size=3)),
        "hairline": rng.uniform(0.0, 0.12),
        "eye_dx": rng.uniform(0.11, 0.16), "eye_y": rng.uniform(-0.08, -0.02),
        "eye_w": rng.uniform(0.045, 0.065), "eye_h": rng.uniform(0.018, 0.03),
        "brow_thick": rng.uniform(0.012, 0.026), "brow_gap": rng.uniform(0.045, 0.07),
        "mouth_w": rng.uniform(0.09, 0.14), "mouth_y": rng.uniform(0.17, 0.23),
        "nose_len": rng.uniform(0.07, 0.12),
        # each person's resting face differs a little (some look slightly sad or stern)
        "rest": rng.normal(0, 0.15, size=7),
    }


def render_face(identity: dict, expression: np.ndarray, rng: np.random.Generator,
                size: int = IMAGE_SIZE) -> np.ndarray:
    """Draw one face; ``expression`` holds the 7 expression factors. Returns H x W x 3 uint8."""
    s = size * _RENDER
    curve, mopen, mwidth, bangle, braise, eopen, wrinkle = expression
    bg_a, bg_b = rng.uniform(30, 220, size=3), rng.uniform(30, 220, size=3)
    ramp = np.linspace(0, 1, s)[None, :, None]
    background = (bg_a * (1 - ramp) + bg_b * ramp).repeat(s, axis=0).astype(np.uint8)
    img = Image.fromarray(background)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(2, 6)):  # clutter
        x0, y0 = rng.uniform(0, s, size=2)
        x1, y1 = x0 + rng.uniform(5, s / 2), y0 + rng.uniform(5, s / 2)
        color = tuple(int(c) for c in rng.uniform(0, 255, size=3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=color)

    def p(x, y):  # face-relative coordinates (centre 0,0; unit = image size) to pixels
        return (s / 2 + x * s, s / 2 + y * s)

    hw, hh = identity["head_w"], identity["head_h"]
    draw.ellipse([*p(-hw - 0.01, -hh - 0.02), *p(hw + 0.01, hh * 0.2)], fill=identity["hair"])
    draw.ellipse([*p(-hw, -hh + identity["hairline"]), *p(hw, hh)], fill=identity["skin"])
    dark = (40, 25, 20)
    # eyes
    ey, ew = identity["eye_y"], identity["eye_w"]
    eh = identity["eye_h"] * max(0.15, 1 + eopen)
    for side in (-1, 1):
        ex = side * identity["eye_dx"]
        draw.ellipse([*p(ex - ew, ey - eh), *p(ex + ew, ey + eh)], fill=(250, 250, 250))
        r = min(eh, ew) * 0.8
        draw.ellipse([*p(ex - r, ey - r), *p(ex + r, ey + r)], fill=dark)
        # brows: inner end moves down for positive angle (anger), up for negative (sadness)
        by = ey - identity["brow_gap"] - 0.03 * braise
        inner = (ex - side * ew * 0.2, by + 0.03 * bangle)
        outer = (ex + side * ew * 1.3, by - 0.01 * bangle)
        draw.line([p(*inner), p(*outer)], fill=identity["hair"], width=max(1, int(identity["brow_thick"] * s)))
    # nose, with wrinkle lines for disgust
    nl = identity["nose_len"]
    draw.line([p(0, ey + 0.02), p(0.015, ey + nl), p(-0.01, ey + nl + 0.01)], fill=dark, width=max(1, s // 90))
    if wrinkle > 0.2:
        for k in range(int(1 + 3 * min(wrinkle, 1.5))):
            y = ey + 0.03 + 0.012 * k
            draw.line([p(-0.03, y), p(0.03, y + 0.004)], fill=(110, 60, 50), width=max(1, s // 110))
    # mouth: a parabola through the corners, bent by curvature, opened by mopen
    mw = identity["mouth_w"] * max(0.4, 1 + mwidth)
    my = identity["mouth_y"]
    xs = np.linspace(-mw, mw, 24)
    bend = 0.06 * curve
    upper = my - bend * (1 - (xs / mw) ** 2) - 0.02 * max(wrinkle, 0) * 0.5
    opening = 0.055 * max(mopen, 0)
    lower = upper + opening * (1 - (xs / mw) ** 2) ** 0.7
    if opening > 0.004:
        poly = [p(x, y) for x, y in zip(xs, upper)] + [p(x, y) for x, y in zip(xs[::-1], lower[::-1])]
        draw.polygon(poly, fill=(90, 20, 30))
    draw.line([p(x, y) for x, y in zip(xs, upper)], fill=(150, 40, 50), width=max(1, s // 60))
    # pose: rotation, scale and shift of the whole image; lighting ramp and sensor noise
    angle = rng.uniform(-12, 12)
    scale = rng.uniform(0.9, 1.1)
    shift = rng.uniform(-0.06, 0.06, size=2) * s
    img = img.rotate(angle, resample=Image.BILINEAR, translate=tuple(shift), fillcolor=tuple(int(c) for c in bg_a))
    if scale != 1:
        crop = s / scale
        off = (s - crop) / 2
        img = img.transform((s, s), Image.EXTENT, (off, off, off + crop, off + crop), Image.BILINEAR)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2))).resize((size, size), Image.LANCZOS)
    arr = np.asarray(img).astype(np.float32)
    light = rng.uniform(0.75, 1.2) + rng.uniform(-0.25, 0.25) * np.linspace(-1, 1, size)[None, :, None]
    arr = arr * light + rng.normal(0, 8, size=arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def generate_faces(num_subjects: int = 30, per_class: int = 12, seed: int = 0,
                   size: int = IMAGE_SIZE) -> dict[str, np.ndarray]:
    """Deterministic from ``seed``: images (N,H,W,3) uint8, labels, subjects, intensities."""
    images, labels, subjects, intensities = [], [], [], []
    for subject in range(num_subjects):
        rng = np.random.default_rng([seed, subject])
        identity = _identity(rng)
        for label, name in enumerate(BASIC7):
            delta = np.array(_EXPRESSIONS[name])
            for _ in range(per_class):
                intensity = 0.0 if name == "neutral" else rng.uniform(0.35, 1.0)
                expression = identity["rest"] + intensity * delta + rng.normal(0, 0.12, size=7)
                images.append(render_face(identity, expression, rng, size))
                labels.append(label)
                subjects.append(subject)
                intensities.append(intensity)
    return {
        "images": np.stack(images),
        "labels": np.array(labels, dtype=np.int64),
        "subjects": np.array(subjects, dtype=np.int64),
        "intensities": np.array(intensities, dtype=np.float32),
    }


def cached_faces(cache_dir: Path, seed: int = 0, **kwargs) -> dict[str, np.ndarray]:
    """Generate once into the cache (atomically: concurrent trials may race here)."""
    tag = "-".join(f"{k}{v}" for k, v in sorted(kwargs.items()))
    path = Path(cache_dir) / "synthetic" / f"faces-v{GENERATOR_VERSION}-seed{seed}{'-' + tag if tag else ''}.npz"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        data = generate_faces(seed=seed, **kwargs)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **data)
        os.replace(tmp, path)
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


@register_dataset
class SyntheticFaces(DatasetAdapter):
    name = "synthetic"
    modality = "face"
    class_names = BASIC7
    num_folds = 5
    protocol = "5-fold subject-independent (6 of 30 identities test per fold; 6 more validation)"
    expected_layout = "nothing: generated into the cache on first use"

    def index(self, root, cache_dir) -> IndexResult:
        data = cached_faces(cache_dir)
        samples = [
            Sample(f"synthetic/{i:05d}", f"synthetic:{i}", int(label), f"id{subject:02d}")
            for i, (label, subject) in enumerate(zip(data["labels"], data["subjects"]))
        ]
        return IndexResult(samples)

    def splits(self, samples, fold, seed=0):
        from .base import subject_kfold

        return subject_kfold(samples, self.num_folds, fold, seed, val_fraction=0.25)

    def load_arrays(self, samples, root, cache_dir) -> np.ndarray:
        images = cached_faces(cache_dir)["images"]
        return images[[int(s.path.split(":")[1]) for s in samples]]

    @staticmethod
    def make_fake(directory: Path) -> Path:
        return Path(directory)  # generated, no layout to fake


@register_dataset
class SyntheticFacesLarge(SyntheticFaces):
    """A large synthetic face set (1,000 identities, 7,000 faces) from another seed, so none of its
    identities is one of ``synthetic``'s: the stand-in for FER2013 / RAF-DB when measuring
    ``model.init`` (pretrain here, fine-tune on a small set) on a machine without them."""

    name = "synthetic-large"
    protocol = "5-fold subject-independent (200 of 1,000 identities test per fold; 25% of the rest validation)"
    num_subjects, per_class, seed = 1000, 1, 1

    def _data(self, cache_dir):
        return cached_faces(cache_dir, seed=self.seed, num_subjects=self.num_subjects, per_class=self.per_class)

    def index(self, root, cache_dir) -> IndexResult:
        data = self._data(cache_dir)
        samples = [
            Sample(f"{self.name}/{i:06d}", f"{self.name}:{i}", int(label), f"id{subject:04d}")
            for i, (label, subject) in enumerate(zip(data["labels"], data["subjects"]))
        ]
        return IndexResult(samples)

    def load_arrays(self, samples, root, cache_dir) -> np.ndarray:
        return self._data(cache_dir)["images"][[int(s.path.split(":")[1]) for s in samples]]


@register_dataset
class SyntheticFer(SyntheticFaces):
    """FER2013-sized synthetic faces (48 px grey, 35,868 faces of 427 identities, one split by
    identity of 28,728 / 3,612 / 3,528, FER2013's 28,709 / 3,589 / 3,589): a stand-in of FER2013's
    size and shape for timing sweeps and checking that the large-set defaults run end to end. Its
    accuracy says nothing about FER2013's. A data root holding ``synthetic-fer.json`` ({"subjects":
    n, "per_class": k}) makes a smaller copy (``make_fake``: the tests' one)."""

    name = "synthetic-fer"
    num_folds = 1
    protocol = "one split by identity: 80 % of the identities train, 10 % validation, 10 % test (FER2013's sizes)"
    SUBJECTS, PER_CLASS, SIZE = 427, 12, 48
    SPEC = "synthetic-fer.json"

    def _size(self, root) -> tuple[int, int]:
        spec = Path(root) / self.SPEC if root else None
        if spec is None or not spec.is_file():
            return self.SUBJECTS, self.PER_CLASS
        import json

        data = json.loads(spec.read_text())
        return int(data["subjects"]), int(data["per_class"])

    def _faces(self, root, cache_dir) -> dict[str, np.ndarray]:
        subjects, per_class = self._size(root)
        return cached_faces(cache_dir, num_subjects=subjects, per_class=per_class, size=self.SIZE)

    def index(self, root, cache_dir) -> IndexResult:
        data = self._faces(root, cache_dir)
        return IndexResult([Sample(f"synthetic-fer/{i:05d}", f"synthetic-fer:{i}", int(label), f"id{subject:03d}")
                            for i, (label, subject) in enumerate(zip(data["labels"], data["subjects"]))])

    def splits(self, samples, fold, seed=0):
        from .base import _check_fold

        _check_fold(fold, self.num_folds)
        subjects = len({s.subject for s in samples})
        train, val = round(0.8 * subjects), round(0.1 * subjects)
        out = {"train": [], "val": [], "test": []}
        for s in samples:
            subject = int(s.subject[2:])
            out["train" if subject < train else "val" if subject < train + val else "test"].append(s)
        return out

    def load_arrays(self, samples, root, cache_dir) -> np.ndarray:
        rgb = self._faces(root, cache_dir)["images"][[int(s.path.split(":")[1]) for s in samples]]
        grey = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # FER2013 is grey
        return np.clip(grey + 0.5, 0, 255).astype(np.uint8)[..., None]

    @staticmethod
    def make_fake(directory: Path) -> Path:
        """A 14-identity copy (196 faces): the spec file in an otherwise empty data root."""
        import json

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / SyntheticFer.SPEC).write_text(json.dumps({"subjects": 14, "per_class": 2}))
        return directory
