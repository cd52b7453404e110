"""AFEW (Acted Facial Expressions in the Wild, EmotiW): movie clips in 7 emotion folders.

Native layout: ``Train/<Emotion>/*.avi`` and ``Val/<Emotion>/*.avi`` (Angry Disgust Fear Happy
Neutral Sad Surprise; ``Train_AFEW``/``Val_AFEW`` folder names are accepted too). The official
test labels are not public, so the protocol is: test = Val; validation = a seeded, class-
stratified 10% of Train. There are no subject ids (actors recur across movies), so the splits
cannot be subject-independent; clips are kept whole.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import BASIC7, Sample, _check_fold, check_leakage
from .fakes import write_clip
from .media import MediaAdapter
from .registry import register_dataset

_FOLDERS = {"angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy", "neutral": "neutral",
            "sad": "sad", "surprise": "surprise"}


def _split_of(part: str) -> str | None:
    name = part.lower()
    return "train" if name.startswith("train") else "test" if name.startswith("val") else None


@register_dataset
class Afew(MediaAdapter):
    name = "afew"
    modality = "video"
    class_names = BASIC7
    num_folds = 1
    official_splits_fixed = True  # a Train copy of a Val (test) clip is dropped, not refused (base.py)
    protocol = "official Train (10% stratified validation carved from it) / Val as test; no subject ids"
    expected_layout = "Train/<Emotion>/*.avi and Val/<Emotion>/*.avi (Angry Disgust Fear Happy Neutral Sad Surprise)"
    source = "the EmotiW organisers (https://sites.google.com/view/emotiw2020), by licence agreement"
    extensions = (".avi", ".mp4")
    val_fraction = 0.1

    def parse(self, path: Path, root: Path) -> Sample | str:
        parts = path.relative_to(root).parts
        if len(parts) < 3 or _split_of(parts[-3]) is None or parts[-2].lower() not in _FOLDERS:
            return f"not under Train|Val/<Emotion>/: {'/'.join(parts)}"
        split = _split_of(parts[-3])
        label = self.class_names.index(_FOLDERS[parts[-2].lower()])
        rel = "/".join(parts)
        return Sample(rel, str(path), label, None, clip_id=rel, meta={"split": split})

    def splits(self, samples, fold, seed=0):
        _check_fold(fold, self.num_folds)
        train = [s for s in samples if s.meta["split"] == "train"]
        rng = np.random.default_rng(seed + 1000)
        val_ids = set()
        for label in sorted({s.label for s in train}):
            ids = sorted(s.sample_id for s in train if s.label == label)
            n_val = max(1, round(len(ids) * self.val_fraction)) if len(ids) > 1 else 0
            val_ids.update(rng.choice(ids, size=n_val, replace=False).tolist())
        # identical clips go where the first drawn copy went, so the carve itself cannot leak
        val_hashes = {s.meta.get("sha256") for s in train if s.sample_id in val_ids} - {None}
        val_ids.update(s.sample_id for s in train if s.meta.get("sha256") in val_hashes)
        out = {"train": [s for s in train if s.sample_id not in val_ids],
               "val": [s for s in train if s.sample_id in val_ids],
               "test": [s for s in samples if s.meta["split"] == "test"]}
        check_leakage(out, {s.sample_id: s.meta["sha256"] for s in samples if "sha256" in s.meta})
        return out

    @staticmethod
    def make_fake(directory: Path) -> Path:
        root = Path(directory) / "AFEW"
        for split, per_class in (("Train", 3), ("Val", 1)):
            for e, emotion in enumerate(("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")):
                for k in range(per_class):
                    write_clip(root / split / emotion / f"{e:02d}{k}{split[0]}.avi", seed=e * 10 + k + len(split),
                               frames=4)
        return root
