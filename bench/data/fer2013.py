"""FER2013 (and its FER+ relabelling): 35,887 grey 48x48 face crops.

Layouts read:
- the original ``fer2013.csv`` (``emotion,pixels,Usage``): Training = train, PublicTest = val,
  PrivateTest = test. Parsed once into the cache (keyed by the file's size and mtime).
- the image-folder copy: ``train/``, ``test/``, ``val/`` or ``validation/`` of ``<class>/*.jpg``.
  A file name such as ``PrivateTest_123.jpg`` gives the original split; otherwise the folder does,
  and validation is a stratified, seeded 10% of train when there is no validation folder.
``ferplus`` reads ``fer2013new.csv`` (Microsoft's FER+ votes, row-aligned with ``fer2013.csv``) and
labels each image by the FER+ majority rule: votes of a single annotator are discarded, the top
emotion must have more than half of the rest, and unknown / not-a-face majorities are dropped.
FER2013 holds identical images in different splits; the copies in train/val of an image that is
also in test (and in train of one also in val) are dropped and reported, so test stays official
(``base.keep_official_splits_whole``, the rule of every dataset with official splits).
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import BASIC7, Sample, Skipped
from .face_files import IMAGE_SUFFIXES, SPLIT_ORDER, FaceImageAdapter
from .media_index import walk_files
from .registry import register_dataset

CSV_NAME = "fer2013.csv"
FERPLUS_NAME = "fer2013new.csv"
USAGE_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FOLDER_SPLIT = {"train": "train", "training": "train", "test": "test", "val": "val", "validation": "val"}
FOLDER_CLASSES = {"angry": "angry", "anger": "angry", "disgust": "disgust", "disgusted": "disgust",
                  "fear": "fear", "fearful": "fear", "happy": "happy", "happiness": "happy", "sad": "sad",
                  "sadness": "sad", "surprise": "surprise", "surprised": "surprise", "neutral": "neutral",
                  "contempt": "contempt"}
ORIGINAL_SPLIT_PREFIX = re.compile(r"^(Training|PublicTest|PrivateTest)_", re.IGNORECASE)
# FER+ vote columns, in fer2013new.csv's order, and their canonical names.
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                   "unknown", "NF")
FERPLUS_CANONICAL = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
                     "anger": "angry", "disgust": "disgust", "fear": "fear", "contempt": "contempt"}
PARSE_VERSION = 1


@register_dataset
class Fer2013(FaceImageAdapter):
    name = "fer2013"
    class_names = BASIC7  # FER2013's codes 0-6 are exactly this order
    num_folds = 1
    official_splits_fixed = True
    protocol = "official: Training = train, PublicTest = validation, PrivateTest = test"
    expected_layout = ("fer2013.csv (emotion,pixels,Usage), or the image-folder copy's train/ and test/ "
                       "folders of <class>/*.jpg")
    source = ("FER2013 is on Kaggle (challenges-in-representation-learning-facial-expression-recognition-"
              "challenge); FER+ labels (fer2013new.csv) are at https://github.com/microsoft/FERPlus.")

    def find_layout(self, folder: Path) -> str | None:
        if (folder / CSV_NAME).is_file():
            return "csv"
        if (folder / "train").is_dir() and any((folder / t).is_dir() for t in ("test", "val", "validation")):
            return "folders"
        return None

    # --- indexing ----------------------------------------------------------------------------------
    def scan(self, top: Path, layout: str) -> tuple[list[Sample], list[Skipped]]:
        return self._scan_folders(top)  # the CSV layout is indexed by ``index`` itself

    def index(self, root, cache_dir):
        from .base import IndexResult

        top, layout = self.locate(root)
        if layout == "csv":
            return self.finish_index(IndexResult(*self._index_csv(top, Path(cache_dir))))
        return super().index(root, cache_dir)  # which ends with finish_index

    def _index_csv(self, top: Path, cache_dir: Path) -> tuple[list[Sample], list[Skipped]]:
        table = parsed_csv(top / CSV_NAME, cache_dir)
        labels = self._csv_labels(top, table)
        samples, skipped = [], list(table["skipped"])
        for row, (label, usage, digest) in enumerate(zip(labels, table["usage"], table["sha256"])):
            if usage < 0:
                continue  # skipped while parsing
            if isinstance(label, str):
                skipped.append(Skipped(f"{CSV_NAME}#row{row}", label))
                continue
            samples.append(Sample(f"row{row:05d}", f"{CSV_NAME}#{row}", label, None,
                                  meta={"split": SPLIT_ORDER[usage], "sha256": str(digest), "aligned": True,
                                        "row": row}))
        return samples, skipped

    def _csv_labels(self, top: Path, table: dict) -> list:
        """Per row: a class index, or the reason the row has no usable label."""
        return [int(e) if 0 <= e < len(self.class_names) else f"emotion {e} is not 0-6" for e in table["emotion"]]

    def _scan_folders(self, top: Path) -> tuple[list[Sample], list[Skipped]]:
        samples, skipped = [], []
        for split_dir in sorted(p for p in top.iterdir() if p.is_dir() and p.name.lower() in FOLDER_SPLIT):
            for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
                emotion = FOLDER_CLASSES.get(class_dir.name.lower())
                where = f"{split_dir.name}/{class_dir.name}"
                if emotion is None or emotion not in self.class_names:
                    skipped.append(Skipped(where, f"folder is not one of the classes {', '.join(self.class_names)}"))
                    continue
                files, bad_folders = walk_files(class_dir, IMAGE_SUFFIXES)
                skipped += [Skipped(f"{where}/{b.path}", b.reason) for b in bad_folders]
                for path in files:
                    rel = path.relative_to(top).as_posix()
                    prefix = ORIGINAL_SPLIT_PREFIX.match(path.name)
                    split = (USAGE_SPLIT[next(k for k in USAGE_SPLIT if k.lower() == prefix.group(1).lower())]
                             if prefix else FOLDER_SPLIT[split_dir.name.lower()])
                    samples.append(Sample(rel, rel, self.class_names.index(emotion), None,
                                          meta={"split": split, "aligned": True}))
        return samples, skipped

    def splits(self, samples, fold, seed=0):
        from .base import _check_fold

        _check_fold(fold, self.num_folds)
        return self.official_splits(samples, seed)

    def read_sample(self, sample: Sample, top: Path, rgb: bool = False) -> np.ndarray:
        if "row" not in sample.meta:
            return super().read_sample(sample, top, rgb)
        raise NotImplementedError  # CSV rows are read in bulk by load_arrays

    def load_arrays(self, samples, root, cache_dir):
        top, layout = self.locate(root)
        if layout != "csv":
            return super().load_arrays(samples, root, cache_dir)
        pixels = parsed_csv(top / CSV_NAME, Path(cache_dir))["pixels"]
        return pixels[[s.meta["row"] for s in samples]][..., None]

    @staticmethod
    def make_fake(directory: Path) -> Path:
        """fer2013.csv with 3 Training, 1 PublicTest and 1 PrivateTest rows per class + FER+ votes."""
        top = Path(directory) / "fer2013"
        top.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(4)
        rows, votes = [], []
        for emotion in range(7):
            for usage in ("Training",) * 3 + ("PublicTest", "PrivateTest"):
                pixels = " ".join(str(v) for v in rng.integers(0, 256, size=48 * 48))
                rows.append(f"{emotion},{pixels},{usage}")
                counts = [0] * 10
                counts[FERPLUS_COLUMNS.index(_FERPLUS_OF_BASIC[emotion])] = 8
                counts[0] += 2
                votes.append(f"{usage},fer{len(votes):07d}.png," + ",".join(map(str, counts)))
        (top / CSV_NAME).write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
        header = "Usage,Image name," + ",".join(FERPLUS_COLUMNS)
        (top / FERPLUS_NAME).write_text(header + "\n" + "\n".join(votes) + "\n")
        return Path(directory)


_FERPLUS_OF_BASIC = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")


@register_dataset
class FerPlus(Fer2013):
    name = "ferplus"
    class_names = (*BASIC7, "contempt")
    protocol = "official FER2013 splits with FER+ majority labels (unknown / not-a-face majorities dropped)"
    expected_layout = f"{CSV_NAME} with FER+'s {FERPLUS_NAME} beside it"

    def find_layout(self, folder: Path) -> str | None:
        return "csv" if (folder / CSV_NAME).is_file() else None

    def _csv_labels(self, top: Path, table: dict) -> list:
        votes_file = top / FERPLUS_NAME
        if not votes_file.is_file():
            raise UserError(f"ferplus needs {FERPLUS_NAME} next to {top / CSV_NAME}; get it from "
                            f"https://github.com/microsoft/FERPlus (or use --dataset fer2013)")
        with open(votes_file, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            rows = list(reader)
        missing = [c for c in ("Image name", *FERPLUS_COLUMNS) if c not in header]
        if missing:
            raise UserError(f"{votes_file} lacks the column(s) {', '.join(missing)}; expected FER+'s "
                            f"'Usage,Image name,{','.join(FERPLUS_COLUMNS)}'")
        name_col = header.index("Image name")
        vote_cols = [header.index(c) for c in FERPLUS_COLUMNS]
        labels: list = []
        for row in range(len(table["emotion"])):
            if row >= len(rows):
                labels.append(f"no FER+ votes ({FERPLUS_NAME} has only {len(rows)} rows)")
                continue
            labels.append(self._majority(rows[row], name_col, vote_cols))
        return labels

    def _majority(self, row: list[str], name_col: int, vote_cols: list[int]):
        if len(row) <= max(vote_cols) or not row[name_col].strip():
            return "FER+ gives this image no name and no votes (removed from FER+)"
        try:
            counts = np.array([int(row[c]) for c in vote_cols], dtype=np.int64)
        except ValueError:
            return "FER+ votes are not integers"
        counts[counts <= 1] = 0  # FER+'s rule: a single annotator's vote is noise
        top = int(np.argmax(counts))
        if counts[top] * 2 <= counts.sum():
            return "FER+ votes have no majority"
        column = FERPLUS_COLUMNS[top]
        if column == "unknown":
            return "FER+ majority is 'unknown'"
        if column == "NF":
            return "FER+ majority is 'not a face'"
        return self.class_names.index(FERPLUS_CANONICAL[column])


def parsed_csv(path: Path, cache_dir: Path) -> dict:
    """fer2013.csv as arrays (pixels N x 48 x 48 uint8, emotion, usage index or -1, sha256 of the
    pixel text), parsed once and cached by the file's size and mtime: trials re-index cheaply."""
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{PARSE_VERSION}".encode()).hexdigest()[:16]
    cached = Path(cache_dir) / "fer2013" / f"{key}.npz"
    if not cached.is_file():
        arrays = _parse_csv(path)
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, cached)
    with np.load(cached) as npz:
        data = {k: npz[k] for k in npz.files}
    data["skipped"] = [Skipped(f"{CSV_NAME}#row{r}", str(reason))
                       for r, reason in zip(data.pop("skip_rows"), data.pop("skip_reasons"))]
    return data


def _parse_csv(path: Path) -> dict:
    pixels, emotion, usage, digests, skip_rows, skip_reasons = [], [], [], [], [], []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if not {"emotion", "pixels", "Usage"} <= set(header):
            raise UserError(f"{path} has columns {header}; expected FER2013's 'emotion,pixels,Usage'")
        e_col, p_col, u_col = header.index("emotion"), header.index("pixels"), header.index("Usage")
        for row, fields in enumerate(reader):
            problem, values = None, None
            try:
                values = np.array(fields[p_col].split(), dtype=np.uint8)
                e = int(fields[e_col])
                u = fields[u_col].strip()
                if values.size != 48 * 48:
                    problem = f"pixels holds {values.size} values, not 48x48 = 2304"
                elif u not in USAGE_SPLIT:
                    problem = f"Usage {u!r} is not Training, PublicTest or PrivateTest"
            except (IndexError, ValueError, OverflowError) as exc:
                problem = f"malformed row ({exc})"
            if problem:
                skip_rows.append(row)
                skip_reasons.append(problem)
                pixels.append(np.zeros((48, 48), np.uint8))
                emotion.append(-1)
                usage.append(-1)
                digests.append("")
                continue
            pixels.append(values.reshape(48, 48))
            emotion.append(e)
            usage.append(SPLIT_ORDER.index(USAGE_SPLIT[u]))
            digests.append(hashlib.sha256(values.tobytes()).hexdigest())
    return {"pixels": np.stack(pixels) if pixels else np.zeros((0, 48, 48), np.uint8),
            "emotion": np.array(emotion, dtype=np.int64), "usage": np.array(usage, dtype=np.int64),
            "sha256": np.array(digests, dtype="U64"), "skip_rows": np.array(skip_rows, dtype=np.int64),
            "skip_reasons": np.array(skip_reasons, dtype=str)}
