"""What the face-image adapters (RAF-DB, FER2013, CK+, JAFFE) share: finding the dataset under a
data root, checking and hashing every file, official-split and leakage helpers, and reading
images either as they are (datasets shipped as face crops) or from the aligned-face cache.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import DatasetAdapter, IndexResult, PrepareReport, Sample, Skipped, check_leakage, subject_kfold
from .media_index import inspect_media
from .packed import packed_arrays
from .prep.faces import (
    FaceAlignSettings,
    FaceJob,
    active_settings,
    detected_flags,
    face_notes,
    load_entries,
    prepare_faces,
    remember_settings,
)
from .tensors import TensorBatch, TensorFaceDataset

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
SPLIT_ORDER = ("train", "val", "test")


def content_hashes(samples: list[Sample]) -> dict[str, str]:
    return {s.sample_id: s.meta["sha256"] for s in samples if s.meta.get("sha256")}


def read_image(path: Path, rgb: bool = False) -> np.ndarray:
    """H x W (grey) or H x W x 3 uint8; ``rgb=True`` always gives 3 channels (for MTCNN)."""
    from PIL import Image

    with Image.open(path) as img:
        grey = img.mode in ("L", "I;16", "I", "1") or (img.mode == "P" and _palette_is_grey(img))
        return np.asarray(img.convert("RGB" if rgb or not grey else "L"))


def _palette_is_grey(img) -> bool:
    palette = np.asarray(img.convert("RGB"))
    return bool((palette[..., 0] == palette[..., 1]).all() and (palette[..., 1] == palette[..., 2]).all())


def carve_validation(train: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Stratified, seeded validation subset of ``train``. Identical images (same content hash) and
    one subject's images stay together, so the carve cannot itself leak."""
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in sorted(train, key=lambda s: s.sample_id):  # input order must not change the result
        groups[s.subject or s.meta.get("sha256") or s.sample_id].append(s)
    by_class: dict[int, list[str]] = defaultdict(list)
    for key, members in groups.items():
        by_class[members[0].label].append(key)
    val_keys: set[str] = set()
    rng = np.random.default_rng(seed)
    for label in sorted(by_class):
        keys = sorted(by_class[label])
        n_val = int(round(len(keys) * fraction))
        if len(keys) > 1:
            n_val = max(1, n_val)
        val_keys.update(keys[i] for i in rng.permutation(len(keys))[:n_val])
    kept = [s for k, m in groups.items() if k not in val_keys for s in m]
    val = [s for k, m in groups.items() if k in val_keys for s in m]
    return kept, val


class FaceImageAdapter(DatasetAdapter):
    """Base of the file-based face datasets. Subclasses implement ``find_layout`` and ``scan``."""

    modality = "face"
    source = ""  # where a user obtains the dataset; ends the wrong-layout error
    val_fraction = 0.1  # of train, for datasets whose official split has no validation part

    # --- what a subclass provides -------------------------------------------------------------
    def find_layout(self, folder: Path) -> str | None:
        """The name of the layout ``folder`` holds, or None."""
        raise NotImplementedError

    def scan(self, top: Path, layout: str) -> tuple[list[Sample], list[Skipped]]:
        """Samples (path relative to ``top``; meta may carry 'split' and 'aligned') + skipped files."""
        raise NotImplementedError

    # --- locating the dataset ------------------------------------------------------------------
    def locate(self, root: Path | None) -> tuple[Path, str]:
        """``root`` is the dataset's top folder or the folder containing it."""
        if root is None:
            raise UserError(f"dataset {self.name!r} needs --data-root (or FER_BENCH_DATA) pointing at "
                            f"{self.expected_layout}")
        root = Path(root).expanduser()
        if not root.is_dir():
            raise UserError(f"data root {str(root)!r} is not a folder; dataset {self.name!r} expects "
                            f"{self.expected_layout}")
        try:
            children = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            children = []
        for folder in (root, *children):
            try:
                layout = self.find_layout(folder)
            except OSError:  # an unreadable sub-folder is not the dataset
                layout = None
            if layout:
                return folder.resolve(), layout
        raise UserError(f"{str(root)!r} does not hold the {self.name} layout: expected {self.expected_layout} "
                        f"in it or in a folder directly inside it. {self.source}")

    # --- indexing --------------------------------------------------------------------------------
    def index(self, root: Path | None, cache_dir: Path) -> IndexResult:
        top, layout = self.locate(root)
        candidates, skipped = self.scan(top, layout)
        tag = hashlib.sha1(str(top).encode()).hexdigest()[:12]
        infos = inspect_media({s.path: top / s.path for s in candidates},
                              Path(cache_dir) / "index" / f"{self.name}-{tag}.json")
        samples = []
        for s in candidates:
            info = infos[s.path]
            if info.error:
                skipped.append(Skipped(s.path, info.error))
            else:
                samples.append(replace(s, meta={**s.meta, "sha256": info.sha256}))
        samples = self._drop_faceless(samples, skipped, cache_dir)
        return self.finish_index(IndexResult(samples, skipped))

    def _drop_faceless(self, samples: list[Sample], skipped: list[Skipped], cache_dir: Path) -> list[Sample]:
        """With ``prepare --no-face drop``, images MTCNN found no face in leave the dataset."""
        to_align = [s for s in samples if not s.meta.get("aligned")]
        settings = active_settings(cache_dir, self.name) if to_align else None
        if settings is None or settings.no_face != "drop":
            return samples
        flags = detected_flags([s.meta["sha256"] for s in to_align], cache_dir, settings)
        kept = []
        for s in samples:
            if not s.meta.get("aligned") and flags.get(s.meta["sha256"]) is False:
                skipped.append(Skipped(s.path, "no face detected (prepared with --no-face drop)"))
            else:
                kept.append(s)
        return kept

    # --- protocols -------------------------------------------------------------------------------
    def official_splits(self, samples: list[Sample], seed: int = 0) -> dict[str, list[Sample]]:
        """The dataset's own train/test (and val, when it has one; else carved from train)."""
        out = {name: [s for s in samples if s.meta.get("split") == name] for name in SPLIT_ORDER}
        if not out["val"]:
            out["train"], out["val"] = carve_validation(out["train"], self.val_fraction, seed)
        check_leakage(out, content_hashes(samples))
        return out

    def subject_folds(self, samples: list[Sample], fold: int, seed: int = 0) -> dict[str, list[Sample]]:
        subjects = {s.subject for s in samples if s.subject is not None}
        if len(subjects) < self.num_folds:
            raise UserError(f"{self.name}'s {self.num_folds}-fold subject-independent protocol needs at least "
                            f"{self.num_folds} subjects, but the data root holds {len(subjects)}")
        out = subject_kfold(samples, self.num_folds, fold, seed)
        check_leakage(out, content_hashes(samples))  # subject_kfold checks subjects; media here
        return out

    # --- reading -------------------------------------------------------------------------------
    def read_sample(self, sample: Sample, top: Path, rgb: bool = False) -> np.ndarray:
        return read_image(top / sample.path, rgb=rgb)

    def prepare(self, samples: list[Sample], root: Path | None, cache_dir: Path, progress: bool = True,
                settings: FaceAlignSettings | None = None) -> PrepareReport:
        """Detect and align the faces of every image that is not already a face crop."""
        to_align = [s for s in samples if not s.meta.get("aligned")]
        if not to_align:
            return PrepareReport(total=len(samples), cached=len(samples), notes=[
                "images in this layout are already face crops: read as they are, nothing to detect"])
        settings = settings or active_settings(cache_dir, self.name)
        top, _ = self.locate(root)
        jobs = [FaceJob(s.path, s.meta["sha256"], partial(self.read_sample, s, top, True)) for s in to_align]
        report = prepare_faces(jobs, cache_dir, settings, progress=progress)
        remember_settings(cache_dir, self.name, settings)
        report.total += len(samples) - len(to_align)
        report.cached += len(samples) - len(to_align)
        return report

    def prepare_notes(self, stats: dict) -> list[str]:
        """The report's notes from its (possibly summed over shards) stats."""
        return face_notes(stats)

    def load_arrays(self, samples: list[Sample], root: Path | None, cache_dir: Path) -> np.ndarray:
        """N x H x W x C uint8: aligned crops from the cache, or the dataset's own face crops; read
        from the split's pack (``packed``) after the first time."""
        top, _ = self.locate(root)
        aligned = [s for s in samples if not s.meta.get("aligned")]
        settings = active_settings(cache_dir, self.name).key() if aligned else ""
        return packed_arrays(cache_dir, self.name, samples, lambda: self._decode(samples, top, cache_dir),
                             settings=settings)

    def _decode(self, samples: list[Sample], top: Path, cache_dir: Path) -> np.ndarray:
        if samples and not any(s.meta.get("aligned") for s in samples):
            settings = active_settings(cache_dir, self.name)
            return load_entries([s.meta["sha256"] for s in samples], [s.path for s in samples],
                                cache_dir, settings, self.name)["crops"]
        images = [self._as_crop(s, top, cache_dir) for s in samples]
        if not images:
            return np.zeros((0, 1, 1, 1), np.uint8)
        return _stack_same_size(images)

    def load_landmark_features(self, samples: list[Sample], root: Path | None, cache_dir: Path) -> np.ndarray:
        """N x 10 landmark distances over the inter-ocular distance (for a landmark branch)."""
        settings = active_settings(cache_dir, self.name)
        return load_entries([s.meta["sha256"] for s in samples], [s.path for s in samples],
                            cache_dir, settings, self.name)["distances"]

    def _as_crop(self, sample: Sample, top: Path, cache_dir: Path) -> np.ndarray:
        if sample.meta.get("aligned"):
            return self.read_sample(sample, top)
        settings = active_settings(cache_dir, self.name)
        return load_entries([sample.meta["sha256"]], [sample.path], cache_dir, settings, self.name)["crops"][0]


def _stack_same_size(images: list[np.ndarray]) -> np.ndarray:
    """Stack as N x H x W x C at the most common size and channel count (copies that mix a few odd
    sizes or grey/colour files are resized/converted, not rejected)."""
    import cv2

    shapes = [img.shape[:2] for img in images]
    size = max(set(shapes), key=shapes.count)
    channels = 3 if sum(img.ndim == 3 for img in images) * 2 > len(images) else 1
    out = []
    for img in images:
        if img.shape[:2] != size:
            img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        if channels == 3 and img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        elif channels == 1 and img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        out.append(img if img.ndim == 3 else img[..., None])
    return np.stack(out)


def landmark_face_dataset(adapter: DatasetAdapter, samples: list[Sample], inputs, root: Path | None,
                          cache_dir: Path, *, augment: bool, seed: int):
    """Face tensors plus each face's 10 landmark distances, yielded as ``{"image", "landmarks"}``
    for models with a landmark branch (``input_spec.extras["landmarks"]``)."""
    if not isinstance(adapter, FaceImageAdapter) or any(s.meta.get("aligned") for s in samples):
        raise UserError(f"model.landmarks=true needs MTCNN landmarks, but dataset {adapter.name!r} (in this "
                        f"layout) ships ready-made face crops without them; set model.landmarks to false")
    landmarks = adapter.load_landmark_features(samples, root, cache_dir)
    return LandmarkFaceDataset(inputs, [s.label for s in samples], adapter.class_names, [s.subject for s in samples],
                               augment=augment, seed=seed, landmarks=landmarks)


class LandmarkFaceDataset(TensorFaceDataset):
    """Images augmented as in TensorFaceDataset, each with its landmark distances. ``inputs`` is a
    TensorBatch so code written for one input tensor (latency timing: ``inputs[:1].to(device)``)
    gets both. A horizontal flip swaps left/right in the image but not in the distances; the
    image branch's augmentation does not depend on them."""

    def __init__(self, inputs, *args, landmarks: np.ndarray, **kwargs):
        import torch

        super().__init__(inputs, *args, **kwargs)
        self._faces = TensorFaceDataset(inputs, *args, **kwargs)  # augments the image alone
        self.landmarks = torch.as_tensor(np.asarray(landmarks), dtype=torch.float32)
        self.inputs = TensorBatch({"image": inputs, "landmarks": self.landmarks})

    # the image branch's augmentation lives in ``_faces``: its generator is the one reseeded per
    # epoch (exact resume) and its recipe the one applied
    def reseed(self, seed: int) -> None:
        self._faces.reseed(seed)

    def set_recipe(self, recipe) -> None:
        self._faces.set_recipe(recipe)

    def __getitem__(self, i: int):
        x, y = self._faces[i]
        return {"image": x, "landmarks": self.landmarks[i]}, y

    def __getitems__(self, indices: list[int]) -> list:
        faces = self._faces.__getitems__(indices)
        return [({"image": x, "landmarks": self.landmarks[i]}, y) for (x, y), i in zip(faces, indices)]
