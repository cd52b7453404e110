"""AffectNet: ~290k manually annotated in-the-wild faces (8 expressions), its official validation
set (~500 a class) as the test set, as the field reports it.

Two layouts, detected from what is on disk:
- official: ``Manually_Annotated_Images/<dir>/<file>.jpg`` with
  ``Manually_Annotated_file_lists/{training,validation}.csv`` (subDirectory_filePath, face_x,
  face_y, face_width, face_height, facial_landmarks, expression, valence, arousal). Expression
  codes 8 None, 9 Uncertain and 10 No-Face are not emotions: skipped and counted. ``prepare``
  aligns each face by its annotated 68 landmarks (eye centres, nose tip, mouth corners onto the
  same 5-point template MTCNN faces use) or, without usable landmarks, crops its annotated box;
  no detector runs.
- the widely shared copy: ``train_set/`` and ``val_set/`` with ``images/<n>.jpg`` (224x224 face
  crops, read as they are) and ``annotations/<n>_exp.npy`` (a numpy scalar string such as '3').

Codes 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger, 7 Contempt are the class
indices (``affectnet``, AffectNet-8); ``affectnet7`` drops contempt. Validation is a class-stratified,
seeded 5% of training; training copies of a test image are dropped so the test set stays whole
(``base.keep_official_splits_whole``).
"""
from __future__ import annotations

import csv
import hashlib
import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import PrepareReport, Sample, Skipped
from .face_files import FaceImageAdapter, read_image
from .media_index import walk_files
from .prep.faces import (
    AlignedFace,
    FaceAlignSettings,
    active_settings,
    centre_crop,
    entry_path,
    landmark_distances,
    load_entries,
    remember_settings,
    template,
    warp_to_template,
    write_entry,
)
from .registry import register_dataset

IMAGES = "Manually_Annotated_Images"
LISTS = "Manually_Annotated_file_lists"
LIST_SPLIT = {"training.csv": "train", "validation.csv": "test"}  # the official validation set is the test set
FOLDER_SPLIT = {"train_set": "train", "val_set": "test"}
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
           "expression")
AFFECTNET8 = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt")  # codes 0-7
NOT_EMOTIONS = {8: "None", 9: "Uncertain", 10: "No-Face"}
# iBUG 68-point indices of the 5 points of the alignment template, left to right as seen
_EYES = (range(36, 42), range(42, 48))
_NOSE, _MOUTH = 30, (48, 54)


@register_dataset
class AffectNet(FaceImageAdapter):
    name = "affectnet"
    class_names = AFFECTNET8
    num_folds = 1
    protocol = ("affectnet8: official training set (validation = a class-stratified, seeded 5%) and the official "
                "validation set as test")
    expected_layout = (f"AffectNet's {IMAGES}/ with {LISTS}/training.csv and validation.csv, or the shared copy's "
                       "train_set/ and val_set/ folders of images/<n>.jpg and annotations/<n>_exp.npy")
    source = "AffectNet is released for research on request to its authors (http://mohammadmahoor.com/affectnet/)."
    val_fraction = 0.05  # of ~287k: ~14k validation faces, an epoch's evaluation stays a small share of it
    official_splits_fixed = True  # a training copy of a test image is dropped, not refused (base.py)

    # --- layout ----------------------------------------------------------------------------------
    def find_layout(self, folder: Path) -> str | None:
        if (folder / IMAGES).is_dir() and all((folder / LISTS / f).is_file() for f in LIST_SPLIT):
            return "official"
        if all((folder / d / "images").is_dir() and (folder / d / "annotations").is_dir() for d in FOLDER_SPLIT):
            return "folders"
        return None

    def scan(self, top: Path, layout: str) -> tuple[list[Sample], list[Skipped]]:
        return self._scan_lists(top) if layout == "official" else self._scan_folders(top)

    def _label(self, code: int) -> int | str:
        """The class index of an expression code, or why the item is not used."""
        if code in NOT_EMOTIONS:
            return f"expression {code} ({NOT_EMOTIONS[code]}) is not an emotion"
        if not 0 <= code < len(AFFECTNET8):
            return f"expression {code} is not a code 0-10"
        if AFFECTNET8[code] not in self.class_names:
            return f"expression {code} ({AFFECTNET8[code]}) is not one of {self.name}'s classes"
        return self.class_names.index(AFFECTNET8[code])

    def _scan_lists(self, top: Path) -> tuple[list[Sample], list[Skipped]]:
        samples, skipped = [], []
        for file_name, split in LIST_SPLIT.items():
            path = top / LISTS / file_name
            with open(path, newline="", errors="replace") as f:
                reader = csv.DictReader(f)
                missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    raise UserError(f"{path} lacks the column(s) {', '.join(missing)}; expected AffectNet's "
                                    f"{','.join(COLUMNS)},valence,arousal")
                for number, row in enumerate(reader, start=2):
                    where = f"{LISTS}/{file_name}:{number}"
                    try:
                        code = int(row["expression"])
                        box = [float(row[k]) for k in ("face_x", "face_y", "face_width", "face_height")]
                    except (TypeError, ValueError):
                        skipped.append(Skipped(where, "expression or face box is not a number"))
                        continue
                    label = self._label(code)
                    if isinstance(label, str):
                        skipped.append(Skipped(where, label))
                        continue
                    rel = f"{IMAGES}/{row['subDirectory_filePath'].strip()}"
                    if not (top / rel).is_file():
                        skipped.append(Skipped(rel, f"listed in {file_name} but missing"))
                        continue
                    samples.append(Sample(rel, rel, label, None, meta={
                        "split": split, "box": box, "points": five_points(row.get("facial_landmarks") or "")}))
        return samples, skipped

    def _scan_folders(self, top: Path) -> tuple[list[Sample], list[Skipped]]:
        samples, skipped = [], []
        for folder, split in FOLDER_SPLIT.items():
            files, bad = walk_files(top / folder / "images", (".jpg", ".jpeg", ".png"))
            skipped += [Skipped(f"{folder}/images/{b.path}", b.reason) for b in bad]
            for path in files:
                rel = path.relative_to(top).as_posix()
                annotation = top / folder / "annotations" / f"{path.stem}_exp.npy"
                try:
                    code = int(str(np.load(annotation, allow_pickle=False)))
                except FileNotFoundError:
                    skipped.append(Skipped(rel, f"no annotation {folder}/annotations/{path.stem}_exp.npy"))
                    continue
                except (OSError, ValueError) as exc:
                    skipped.append(Skipped(f"{folder}/annotations/{path.stem}_exp.npy",
                                           f"not a numpy expression code ({exc})"))
                    continue
                label = self._label(code)
                if isinstance(label, str):
                    skipped.append(Skipped(rel, label))
                    continue
                samples.append(Sample(rel, rel, label, None, meta={"split": split, "aligned": True}))
        return samples, skipped

    def splits(self, samples, fold, seed=0):
        from .base import _check_fold

        _check_fold(fold, self.num_folds)
        return self.official_splits(samples, seed)

    # --- faces of the official layout: aligned by the annotated landmarks, no detector ----------
    def prepare(self, samples: list[Sample], root: Path | None, cache_dir: Path, progress: bool = True,
                settings: FaceAlignSettings | None = None) -> PrepareReport:
        boxed = [s for s in samples if "box" in s.meta]
        if not boxed:
            return super().prepare(samples, root, cache_dir, progress=progress, settings=settings)
        from tqdm import tqdm

        start = time.time()
        settings = settings or active_settings(cache_dir, self.name)
        top, _ = self.locate(root)
        report = PrepareReport(total=len(samples), cached=len(samples) - len(boxed))
        box_only = 0
        for s in tqdm(boxed, desc="crop + align faces (annotated landmarks)", unit="img", disable=not progress):
            entry = entry_path(cache_dir, settings, face_key(s))
            if entry.is_file():  # per-sample entries: a second or interrupted run redoes nothing done
                report.cached += 1
                continue
            try:
                face = align_annotated(str(top / s.path), s.meta["box"], s.meta["points"], settings)
            except Exception as exc:  # a file that broke since indexing: skipped, counted, named
                report.skipped.append(Skipped(s.path, f"cannot read image ({exc})"))
                continue
            write_entry(entry, face)
            report.computed += 1
            box_only += s.meta["points"] is None
        remember_settings(cache_dir, self.name, settings)
        report.stats = {"crop_size": settings.crop_size, "settings_key": settings.key(), "box_only": box_only}
        report.notes += self.prepare_notes(report.stats)
        report.seconds = time.time() - start
        return report

    def prepare_notes(self, stats: dict) -> list[str]:
        if "box_only" not in stats:
            return super().prepare_notes(stats)
        return [f"{stats['box_only']} faces had no usable 68 landmarks: their annotated box was cropped "
                f"instead of aligned."] if stats["box_only"] else []

    def load_arrays(self, samples: list[Sample], root: Path | None, cache_dir: Path) -> np.ndarray:
        if not any("box" in s.meta for s in samples):
            return super().load_arrays(samples, root, cache_dir)
        settings = active_settings(cache_dir, self.name)
        return load_entries([face_key(s) for s in samples], [s.path for s in samples], cache_dir, settings,
                            self.name)["crops"]

    def load_landmark_features(self, samples, root, cache_dir):
        settings = active_settings(cache_dir, self.name)
        return load_entries([face_key(s) for s in samples], [s.path for s in samples], cache_dir, settings,
                            self.name)["distances"]

    # --- fakes -----------------------------------------------------------------------------------
    @staticmethod
    def make_fake(directory: Path) -> Path:
        """The official layout: 3 training and 2 validation 64x64 images a class, with boxes and 68
        landmarks, plus rows the adapter must skip (codes 8-10, a missing image)."""
        from PIL import Image

        top = Path(directory) / "AffectNet"
        rng = np.random.default_rng(19)
        header = ",".join(COLUMNS) + ",valence,arousal"
        for file_name, per_class in (("training.csv", 3), ("validation.csv", 2)):
            lines = [header]
            for code in range(11):
                for i in range(per_class if code < 8 else 1):
                    rel = f"{code}/{file_name[0]}{code}_{i}.jpg"
                    (top / IMAGES / rel).parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(top / IMAGES / rel)
                    points = ";".join(f"{v:.1f}" for v in _fake_landmarks(rng).ravel())
                    lines.append(f"{rel},8,8,48,48,\"{points}\",{code},0.1,-0.2")
            lines.append("7/missing.jpg,0,0,64,64,,3,0,0")
            (top / LISTS).mkdir(parents=True, exist_ok=True)
            (top / LISTS / file_name).write_text("\n".join(lines) + "\n")
        return Path(directory)


@register_dataset
class AffectNet7(AffectNet):
    name = "affectnet7"
    class_names = AFFECTNET8[:7]
    protocol = ("affectnet7 (contempt dropped): official training set (validation = a class-stratified, seeded 5%) "
                "and the official validation set as test")

    @staticmethod
    def make_fake(directory: Path) -> Path:
        """The shared copy: train_set/ and val_set/ of 48x48 images with <n>_exp.npy codes, contempt
        (7) and a non-emotion code (8) among them."""
        from PIL import Image

        top = Path(directory) / "affectnet"
        rng = np.random.default_rng(7)
        n = 0
        for folder, per_class in (("train_set", 3), ("val_set", 2)):
            (top / folder / "images").mkdir(parents=True, exist_ok=True)
            (top / folder / "annotations").mkdir(parents=True, exist_ok=True)
            for code in range(9):
                for _ in range(per_class):
                    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(
                        top / folder / "images" / f"{n}.jpg")
                    np.save(top / folder / "annotations" / f"{n}_exp.npy", np.array(str(code)))
                    n += 1
        return Path(directory)


def five_points(text: str) -> list[list[float]] | None:
    """The 5 template points (eye centres, nose tip, mouth corners) of AffectNet's 68 landmarks
    ("x1;y1;x2;y2;..."), or None when the field does not hold 68 points."""
    try:
        values = np.array([float(v) for v in text.replace(",", ";").split(";") if v.strip()], np.float32)
    except ValueError:
        return None
    if values.size != 136:
        return None
    pts = values.reshape(68, 2)
    five = [pts[list(_EYES[0])].mean(0), pts[list(_EYES[1])].mean(0), pts[_NOSE], pts[_MOUTH[0]], pts[_MOUTH[1]]]
    return [[round(float(x), 2), round(float(y), 2)] for x, y in five]


def _fake_landmarks(rng) -> np.ndarray:
    """68 points of a 48-pixel face at (8, 8): jittered eyes, nose tip and mouth corners, the rest
    at the face's centre."""
    pts = np.full((68, 2), 32.0, np.float32)
    for indices, (x, y) in ((_EYES[0], (22, 26)), (_EYES[1], (42, 26)), ([_NOSE], (32, 36)),
                            ([_MOUTH[0]], (24, 46)), ([_MOUTH[1]], (40, 46))):
        pts[list(indices)] = np.array([x, y], np.float32) + rng.normal(0, 1, (len(indices), 2))
    return pts


def face_key(sample: Sample) -> str:
    """The face cache's key of an annotated face: its image's content and its box and points."""
    text = f"{sample.meta['sha256']}|{sample.meta['box']}|{sample.meta['points']}"
    return hashlib.sha256(text.encode()).hexdigest()


def align_annotated(path: str, box, points, settings: FaceAlignSettings) -> AlignedFace:
    """A face of the official layout: warped onto the template by its annotated 5 points, else its
    box cropped (clamped to the image) and resized; the centre of the image when the box is empty."""
    import cv2

    image = read_image(Path(path), rgb=True)
    if points is not None:
        crop = warp_to_template(image, np.asarray(points, np.float32), settings)
        if crop is not None:
            pts = np.asarray(points, np.float32)
            return AlignedFace(crop, pts, landmark_distances(pts), True, 1.0, 1)
    h, w = image.shape[:2]
    x, y, bw, bh = box
    x0, y0, x1, y1 = max(0, int(x)), max(0, int(y)), min(w, int(x + bw)), min(h, int(y + bh))
    tpl = template(settings)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return AlignedFace(centre_crop(image, settings.crop_size), tpl, landmark_distances(tpl), False, 0.0, 0)
    crop = cv2.resize(image[y0:y1, x0:x1], (settings.crop_size, settings.crop_size), interpolation=cv2.INTER_AREA)
    return AlignedFace(crop, tpl, landmark_distances(tpl), True, 1.0, 1)
