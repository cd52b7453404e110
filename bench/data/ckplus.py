"""CK+ (extended Cohn-Kanade): posed neutral-to-apex sequences; 327 carry an emotion label.

Layouts read:
- the original: ``cohn-kanade-images/S005/001/S005_001_00000011.png`` and
  ``Emotion/S005/001/S005_001_00000011_emotion.txt`` (one float, 1-7; 0 = neutral never occurs).
  Images = the last 3 frames of every labelled sequence (the apex end), detected and aligned by
  ``prepare``. The first (neutral) frame is not used, so both layouts give the same 7 classes.
- the 48x48 folder-per-class copy: ``CK+48/<class>/S010_004_00000017.png`` (exactly those last 3
  frames, already cropped; read as they are); subject and sequence come from the file name.
Protocol: 10-fold subject-independent. ``sequences()`` gives one sample per labelled sequence
(path = the sequence folder) for the video modality.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import BASIC7, IndexResult, Sample, Skipped
from .face_files import IMAGE_SUFFIXES, FaceImageAdapter
from .media_index import walk_files
from .registry import register_dataset

CLASS_NAMES = (*BASIC7[:6], "contempt")  # no neutral: see the module docstring
# CK+'s emotion codes 1-7.
CK_CODES = {1: "angry", 2: "contempt", 3: "disgust", 4: "fear", 5: "happy", 6: "sad", 7: "surprise"}
# Folder names of the CK+48 copy (and common variants).
FOLDER_NAMES = {"anger": "angry", "angry": "angry", "contempt": "contempt", "disgust": "disgust",
                "fear": "fear", "happy": "happy", "happiness": "happy", "sadness": "sad", "sad": "sad",
                "surprise": "surprise"}
FRAME_NAME = re.compile(r"^(S\d+)_(\d+)_(\d+)\.(png|jpe?g|bmp|tiff?)$", re.IGNORECASE)
LABEL_NAME = re.compile(r"^(S\d+)_(\d+)_(\d+)_emotion\.txt$", re.IGNORECASE)
FRAMES_PER_SEQUENCE = 3


@register_dataset
class CkPlus(FaceImageAdapter):
    name = "ckplus"
    class_names = CLASS_NAMES
    num_folds = 10
    protocol = "10-fold subject-independent; images = the last 3 frames of each labelled sequence"
    expected_layout = ("CK+'s cohn-kanade-images/ and Emotion/ folders, or the 48x48 copy's class folders "
                       "(anger/, contempt/, ... holding S010_004_00000017.png)")
    source = "CK+ is distributed for research by the University of Pittsburgh (https://www.jeffcohn.net/resources/)."

    def find_layout(self, folder: Path) -> str | None:
        if (folder / "cohn-kanade-images").is_dir() and (folder / "Emotion").is_dir():
            return "original"
        with os.scandir(folder) as entries:
            classes = {FOLDER_NAMES.get(e.name.lower()) for e in entries if e.is_dir()} - {None}
        return "ck48" if len(classes) >= 3 else None

    def scan(self, top: Path, layout: str) -> tuple[list[Sample], list[Skipped]]:
        if layout == "ck48":
            return self._scan_ck48(top)
        sequences = self._labelled_sequences(top)
        samples, skipped = [], list(sequences.skipped)
        for seq in sequences.samples:
            frames, problem = _frames(top / seq.path)
            if problem:
                skipped.append(Skipped(seq.path, problem))
                continue
            for frame in frames[-FRAMES_PER_SEQUENCE:]:
                rel = f"{seq.path}/{frame}"
                samples.append(Sample(rel, rel, seq.label, seq.subject, seq.clip_id, meta={"aligned": False}))
        return samples, skipped

    def _scan_ck48(self, top: Path) -> tuple[list[Sample], list[Skipped]]:
        samples, skipped = [], []
        for folder in sorted(p for p in top.iterdir() if p.is_dir() and not p.name.startswith(".")):
            emotion = FOLDER_NAMES.get(folder.name.lower())
            if emotion is None:
                skipped.append(Skipped(folder.name, f"folder is not a CK+ class ({', '.join(sorted(FOLDER_NAMES))})"))
                continue
            files, bad_folders = walk_files(folder, IMAGE_SUFFIXES)
            skipped += [Skipped(f"{folder.name}/{b.path}", b.reason) for b in bad_folders]
            for path in files:
                rel = path.relative_to(top).as_posix()
                match = FRAME_NAME.match(path.name)
                if not match:
                    skipped.append(Skipped(rel, "file name does not fit S<subject>_<sequence>_<frame>.png"))
                    continue
                subject, sequence = match.group(1).upper(), match.group(2)
                samples.append(Sample(rel, rel, self.class_names.index(emotion), subject,
                                      f"{subject}_{sequence}", meta={"aligned": True}))
        return samples, skipped

    def _labelled_sequences(self, top: Path) -> IndexResult:
        samples, skipped = [], []
        files, bad_folders = walk_files(top / "Emotion", (".txt",))
        skipped += [Skipped(f"Emotion/{b.path}", b.reason) for b in bad_folders]
        for path in files:
            rel = path.relative_to(top).as_posix()
            match = LABEL_NAME.match(path.name)
            if not match:
                skipped.append(Skipped(rel, "file name does not fit S<subject>_<sequence>_<frame>_emotion.txt"))
                continue
            try:
                code = int(round(float(path.read_text().split()[0])))
            except (OSError, ValueError, IndexError):
                skipped.append(Skipped(rel, "emotion file does not hold one number 1-7"))
                continue
            if code not in CK_CODES:
                skipped.append(Skipped(rel, f"emotion code {code} is not one of CK+'s 1-7"))
                continue
            subject, sequence = match.group(1).upper(), match.group(2)
            folder = f"cohn-kanade-images/{match.group(1)}/{sequence}"
            samples.append(Sample(f"{subject}/{sequence}", folder, self.class_names.index(CK_CODES[code]),
                                  subject, f"{subject}_{sequence}"))
        return IndexResult(samples, skipped)

    def sequences(self, root: Path | None) -> IndexResult:
        """One sample per labelled sequence, path = its frame folder (relative to the CK+ folder)."""
        top, layout = self.locate(root)
        if layout != "original":
            raise UserError(f"{str(top)!r} is the 48x48 CK+ copy, which has no sequences; the video "
                            f"protocol needs the original cohn-kanade-images/ and Emotion/ folders")
        found = self._labelled_sequences(top)
        samples, skipped = [], list(found.skipped)
        for seq in found.samples:
            frames, problem = _frames(top / seq.path)
            if problem:
                skipped.append(Skipped(seq.path, problem))
            else:
                samples.append(Sample(seq.sample_id, seq.path, seq.label, seq.subject, seq.clip_id,
                                      meta={"frames": len(frames)}))
        return IndexResult(samples, skipped)

    def splits(self, samples, fold, seed=0):
        return self.subject_folds(samples, fold, seed)

    @staticmethod
    def make_fake(directory: Path) -> Path:
        """Original layout: 10 subjects x 7 labelled sequences of 4 frames (64x48 grey PNG) + 1 unlabelled."""
        from PIL import Image

        top = Path(directory) / "CK+"
        rng = np.random.default_rng(2)
        for s in range(10):
            subject = f"S{10 + s:03d}"
            for seq, code in enumerate(CK_CODES, start=1):
                folder = top / "cohn-kanade-images" / subject / f"{seq:03d}"
                folder.mkdir(parents=True, exist_ok=True)
                for frame in range(1, 5):
                    pixels = rng.integers(0, 256, size=(48, 64), dtype=np.uint8)
                    Image.fromarray(pixels, "L").save(folder / f"{subject}_{seq:03d}_{frame:08d}.png")
                labels = top / "Emotion" / subject / f"{seq:03d}"
                labels.mkdir(parents=True, exist_ok=True)
                (labels / f"{subject}_{seq:03d}_00000004_emotion.txt").write_text(f"   {code:.7e}\n")
            unlabelled = top / "cohn-kanade-images" / subject / "008"
            unlabelled.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((48, 64), np.uint8), "L").save(unlabelled / f"{subject}_008_00000001.png")
        return Path(directory)

    @staticmethod
    def make_fake_ck48(directory: Path) -> Path:
        """The 48x48 copy: CK+48/<class>/S0xx_00y_000000zz.png, 10 subjects, 3 frames per class."""
        from PIL import Image

        top = Path(directory) / "CK+48"
        rng = np.random.default_rng(3)
        for seq, folder in enumerate(("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"), 1):
            (top / folder).mkdir(parents=True, exist_ok=True)
            for s in range(10):
                for frame in (10, 11, 12):
                    pixels = rng.integers(0, 256, size=(48, 48), dtype=np.uint8)
                    Image.fromarray(pixels, "L").save(top / folder / f"S{10 + s:03d}_{seq:03d}_{frame:08d}.png")
        return Path(directory)


def _frames(folder: Path) -> tuple[list[str], str | None]:
    try:
        with os.scandir(folder) as entries:
            frames = sorted(e.name for e in entries if e.is_file() and FRAME_NAME.match(e.name))
    except FileNotFoundError:
        return [], "labelled in Emotion/ but its image folder is missing"
    except OSError as exc:
        return [], f"folder unreadable ({exc.strerror or exc})"
    if not frames:
        return [], "labelled sequence folder holds no frames"
    return frames, None
