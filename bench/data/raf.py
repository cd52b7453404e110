"""RAF-DB (basic): ~15k in-the-wild face images, 7 classes, official train/test split.

Layout (the ``basic/`` folder of the download): ``EmoLabel/list_patition_label.txt`` with lines
``train_00001.jpg 5`` and ``Image/aligned/train_00001_aligned.jpg`` (100x100 face crops, read as
they are) or ``Image/original/train_00001.jpg`` (whole photos, detected and aligned by ``prepare``).
RAF-DB has no subject ids, so content hashes guard its splits: a training image identical to a
test image is dropped from training and reported (the official test split stays whole), and the
validation carve keeps identical images together.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import BASIC7, Sample, Skipped
from .face_files import FaceImageAdapter
from .registry import register_dataset

LABEL_FILE = "EmoLabel/list_patition_label.txt"
# RAF-DB's labels 1..7, in its own order.
RAF_LABELS = ("surprise", "fear", "disgust", "happy", "sad", "angry", "neutral")


@register_dataset
class RafDb(FaceImageAdapter):
    name = "raf"
    class_names = BASIC7
    num_folds = 1
    official_splits_fixed = True  # a training copy of a test image is dropped, not refused (base.py)
    protocol = "official train/test; validation = a stratified, seeded 10% of train"
    expected_layout = ("RAF-DB's basic folder: EmoLabel/list_patition_label.txt and Image/aligned/ "
                       "(or Image/original/)")
    source = ("RAF-DB is released for non-commercial research on request to its authors "
              "(http://www.whdeng.cn/raf/model1.html).")

    def find_layout(self, folder: Path) -> str | None:
        if not (folder / LABEL_FILE).is_file():
            return None
        for layout in ("aligned", "original"):
            if (folder / "Image" / layout).is_dir():
                return layout
        return None

    def scan(self, top: Path, layout: str) -> tuple[list[Sample], list[Skipped]]:
        samples, skipped = [], []
        for number, line in enumerate((top / LABEL_FILE).read_text(errors="replace").splitlines(), start=1):
            where = f"{LABEL_FILE}:{number}"
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].isdigit() or not 1 <= int(parts[1]) <= 7:
                skipped.append(Skipped(where, f"expected '<image> <label 1-7>', got {line.strip()!r}"))
                continue
            image, label = parts[0], int(parts[1])
            split = "train" if image.startswith("train_") else "test" if image.startswith("test_") else None
            if split is None:
                skipped.append(Skipped(where, f"image name {image!r} starts with neither train_ nor test_"))
                continue
            stem, ext = image.rsplit(".", 1) if "." in image else (image, "jpg")
            rel = f"Image/aligned/{stem}_aligned.{ext}" if layout == "aligned" else f"Image/original/{image}"
            if not (top / rel).is_file():
                skipped.append(Skipped(rel, f"listed in {LABEL_FILE} but missing"))
                continue
            samples.append(Sample(rel, rel, self.class_names.index(RAF_LABELS[label - 1]), None,
                                  meta={"split": split, "aligned": layout == "aligned"}))
        return samples, skipped

    def splits(self, samples, fold, seed=0):
        from .base import _check_fold

        _check_fold(fold, self.num_folds)
        return self.official_splits(samples, seed)

    @staticmethod
    def make_fake(directory: Path) -> Path:
        """basic/ with 4 train and 2 test aligned 32x32 colour images per class."""
        from PIL import Image

        top = Path(directory) / "basic"
        (top / "EmoLabel").mkdir(parents=True, exist_ok=True)
        (top / "Image" / "aligned").mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(1)
        lines = []
        counters = {"train": 0, "test": 0}
        for label in range(1, 8):
            for split, count in (("train", 4), ("test", 2)):
                for _ in range(count):
                    counters[split] += 1
                    name = f"{split}_{counters[split]:05d}"
                    pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(top / "Image" / "aligned" / f"{name}_aligned.jpg", quality=95)
                    lines.append(f"{name}.jpg {label}")
        (top / LABEL_FILE).write_text("\n".join(lines) + "\n")
        return Path(directory)
