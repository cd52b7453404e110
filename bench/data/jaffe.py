"""JAFFE: 213 posed grey 256x256 images of 10 Japanese female posers, 7 expressions.

Layout: one folder of ``KA.AN1.39.tiff`` = poser ``KA``, expression ``AN`` (AN DI FE HA NE SA SU),
repetition 1, image number 39. Protocol: 10 folds, each poser the test set of one fold.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .base import BASIC7, Sample, Skipped
from .face_files import IMAGE_SUFFIXES, FaceImageAdapter
from .registry import register_dataset

FILE_NAME = re.compile(r"^([A-Z]{2})\.([A-Z]{2})(\d+)\.(\d+)\.(tiff?|jpe?g|png)$", re.IGNORECASE)
EMOTION_CODES = {"AN": "angry", "DI": "disgust", "FE": "fear", "HA": "happy", "NE": "neutral",
                 "SA": "sad", "SU": "surprise"}


@register_dataset
class Jaffe(FaceImageAdapter):
    name = "jaffe"
    class_names = BASIC7
    num_folds = 10
    protocol = "10-fold leave-one-poser-out (one of the 10 posers is each fold's test set; one more is validation)"
    expected_layout = "JAFFE's image files named like KA.AN1.39.tiff (poser.EMOTIONn.number.tiff)"
    source = ("JAFFE is free for non-commercial research from M. Lyons on Zenodo "
              "(doi:10.5281/zenodo.3451524).")

    def find_layout(self, folder: Path) -> str | None:
        with os.scandir(folder) as entries:
            return "tiff" if any(FILE_NAME.match(e.name) for e in entries if e.is_file()) else None

    def scan(self, top: Path, layout: str) -> tuple[list[Sample], list[Skipped]]:
        samples, skipped = [], []
        with os.scandir(top) as entries:
            names = sorted(e.name for e in entries if e.is_file() and not e.name.startswith("."))
        for name in names:
            if os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                continue  # README, SOURCE.txt...: not data
            match = FILE_NAME.match(name)
            if not match:
                skipped.append(Skipped(name, "file name does not fit POSER.EMOTIONn.NUMBER.tiff (e.g. KA.AN1.39.tiff)"))
                continue
            poser, code = match.group(1).upper(), match.group(2).upper()
            if code not in EMOTION_CODES:
                skipped.append(Skipped(name, f"unknown expression code {code!r} (expected one of "
                                             f"{', '.join(EMOTION_CODES)})"))
                continue
            label = self.class_names.index(EMOTION_CODES[code])
            samples.append(Sample(name, name, label, poser))
        return samples, skipped

    def splits(self, samples, fold, seed=0):
        return self.subject_folds(samples, fold, seed)

    @staticmethod
    def make_fake(directory: Path) -> Path:
        """2 images per expression for each of 10 posers (grey 64x64 TIFF), plus one badly named file."""
        from PIL import Image

        top = Path(directory) / "jaffe_db"
        top.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        number = 1
        for poser in ("KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM"):
            for code in EMOTION_CODES:
                for rep in (1, 2):
                    pixels = rng.integers(0, 256, size=(64, 64), dtype=np.uint8)
                    Image.fromarray(pixels, "L").save(top / f"{poser}.{code}{rep}.{number}.tiff")
                    number += 1
        Image.fromarray(np.zeros((64, 64), np.uint8), "L").save(top / "not-a-jaffe-name.tiff")
        (top / "README.txt").write_text("fake JAFFE for tests\n")
        return Path(directory)
