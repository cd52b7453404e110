"""MMI Facial Expression Database: posed clips, neutral -> apex -> neutral, about 30 subjects.

MMI is distributed through a web interface without a fixed folder scheme, so this adapter reads
a manifest the user writes: ``manifest.csv`` at the dataset's top folder with a header and the
columns ``path,label,subject``: ``path`` relative to the manifest's folder, ``label`` an emotion
name (angry/anger, disgust, fear, happy/happiness, sad/sadness, surprise) or MMI's code 1-6
(1 anger, 2 disgust, 3 fear, 4 happiness, 5 sadness, 6 surprise), ``subject`` any id. Rows whose
file is missing or whose label is unknown are skipped with a reason.
Protocol: 10-fold subject-independent; validation subjects carved from the rest.
"""
from __future__ import annotations

import csv
from pathlib import Path

from .base import IndexResult, Sample, Skipped, subject_kfold
from .fakes import write_clip
from .media import MediaAdapter
from .prep.media_cache import file_info
from .registry import register_dataset

CLASS_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise")
_ALIASES = {"anger": "angry", "happiness": "happy", "sadness": "sad", "surprised": "surprise",
            "1": "angry", "2": "disgust", "3": "fear", "4": "happy", "5": "sad", "6": "surprise"}
MANIFEST = "manifest.csv"


@register_dataset
class Mmi(MediaAdapter):
    name = "mmi"
    modality = "video"
    class_names = CLASS_NAMES
    num_folds = 10
    protocol = "10-fold subject-independent (from manifest.csv subjects); validation subjects from the rest"
    expected_layout = "manifest.csv (columns path,label,subject; paths relative to it) beside the clips"
    source = "https://mmifacedb.eu (registration required); write manifest.csv as described in docs/datasets.md"
    extensions = (".avi", ".mp4", ".mov", ".wmv")

    def _find_manifest(self, root: Path) -> Path:
        for candidate in [root / MANIFEST, *sorted(root.glob(f"*/{MANIFEST}"))]:
            if candidate.is_file():
                return candidate
        raise self.layout_error(root, f"no {MANIFEST} in {str(root)!r} or the folders directly inside it")

    def index(self, root: Path | None, cache_dir: Path) -> IndexResult:
        if root is None or not Path(root).is_dir():
            raise self.layout_error(root, f"data root {str(root)!r} is not a folder")
        manifest = self._find_manifest(Path(root))
        samples, skipped = [], []
        with open(manifest, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"path", "label", "subject"} - set(reader.fieldnames or ())
            if missing:
                raise self.layout_error(root, f"{manifest} lacks the column(s) {', '.join(sorted(missing))}")
            for line, row in enumerate(reader, start=2):
                path = manifest.parent / row["path"].strip()
                label = row["label"].strip().lower()
                label = _ALIASES.get(label, label)
                where = f"{manifest.name} line {line}"
                if label not in self.class_names:
                    skipped.append(Skipped(str(path), f"{where}: unknown label {row['label']!r}"))
                    continue
                if not path.is_file():
                    skipped.append(Skipped(str(path), f"{where}: file not found"))
                    continue
                info = file_info(path, cache_dir, self.probe)
                if info["problem"]:
                    skipped.append(Skipped(str(path), info["problem"]))
                    continue
                rel = Path(row["path"].strip()).as_posix()
                samples.append(Sample(rel, str(path), self.class_names.index(label), row["subject"].strip() or None,
                                      clip_id=rel, meta={"sha256": info["sha256"]}))
        return IndexResult(samples, skipped)

    def splits(self, samples, fold, seed=0):
        return subject_kfold(samples, self.num_folds, fold, seed)

    @staticmethod
    def make_fake(directory: Path) -> Path:
        root = Path(directory) / "mmi"
        rows = ["path,label,subject"]
        for subject in range(1, 13):
            for e, label in enumerate(("anger", "2", "fear", "happy", "sadness", "6")):
                rel = f"Sessions/S{subject:03d}_{e}/clip.avi"
                write_clip(root / rel, seed=subject * 10 + e, frames=4)
                rows.append(f"{rel},{label},S{subject:03d}")
        rows.append("Sessions/missing.avi,happy,S001")
        (root / MANIFEST).write_text("\n".join(rows) + "\n")
        return root
