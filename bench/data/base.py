"""What every dataset adapter provides, and the split/leakage rules all of them share.

An adapter indexes its dataset's native on-disk layout into ``Sample`` rows, declares its
protocol (folds) and its class names, and turns a list of samples into arrays for training.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError

# Canonical emotion names; adapters map their own labels onto these. Extra classes a dataset
# has (RAVDESS calm, EMO-DB boredom, CK+ contempt) keep their own canonical name.
CANONICAL_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
                      "contempt", "calm", "boredom")
BASIC7 = CANONICAL_EMOTIONS[:7]


@dataclass(frozen=True)
class Sample:
    sample_id: str  # stable across machines: relative path or generated id, never absolute
    path: str
    label: int  # index into the adapter's class_names
    subject: str | None
    clip_id: str | None = None  # one recorded utterance/clip; its AV and audio copies share it
    meta: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class IndexResult:
    samples: list[Sample]
    skipped: list[Skipped] = field(default_factory=list)


@dataclass
class PrepareReport:
    """What one offline preprocessing pass did; ``computed == 0`` means the cache was complete."""

    total: int = 0
    computed: int = 0  # cache entries written by this pass
    cached: int = 0  # entries found already in the cache
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. a detection failure rate and its fallback
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0


class LeakageError(UserError):
    """Two splits share a subject, a clip or identical media."""


class DatasetAdapter:
    """Base class. Subclasses set the class attributes and implement ``index``."""

    name: str = ""
    modality: str = "face"
    class_names: tuple[str, ...] = BASIC7
    num_folds: int = 1
    protocol: str = ""
    expected_layout: str = ""  # shown when a data root does not look like this dataset
    # Audio-visual datasets: the single-modality datasets whose winners `search fusion` combines,
    # e.g. {"visual": "ravdess-video", "voice": "ravdess"}; their folds must match this one's.
    fusion_sources: dict = {}

    def index(self, root: Path | None, cache_dir: Path) -> IndexResult:
        raise NotImplementedError

    def splits(self, samples: list[Sample], fold: int, seed: int = 0) -> dict[str, list[Sample]]:
        """Default protocol: subject-independent k-fold; validation subjects carved from train."""
        return subject_kfold(samples, self.num_folds, fold, seed)

    def prepare(self, samples: list[Sample], root: Path | None, cache_dir: Path,
                progress: bool = True) -> PrepareReport:
        """Fill the cache trials read (aligned faces, spectrograms...) once, on the driver.
        Default: nothing to prepare."""
        return PrepareReport(total=len(samples), cached=len(samples))

    def load_arrays(self, samples: list[Sample], root: Path | None, cache_dir: Path) -> np.ndarray:
        """Return the samples' media as one uint8 array (N x H x W x C for images)."""
        raise NotImplementedError

    @staticmethod
    def make_fake(directory: Path) -> Path:
        """Write a tiny copy of the native layout under ``directory``; return the data root."""
        raise NotImplementedError


def _check_fold(fold: int, num_folds: int) -> None:
    if not 0 <= fold < num_folds:
        raise UserError(f"fold {fold} does not exist: this protocol has folds 0..{num_folds - 1}")


def subject_kfold(samples: list[Sample], num_folds: int, fold: int, seed: int = 0,
                  val_fraction: float | None = None) -> dict[str, list[Sample]]:
    """Test = the fold's subject group; validation = a seeded subset of the other subjects.

    Subjects are shuffled with ``seed`` and dealt into ``num_folds`` groups so each fold's test
    set is a fixed, disjoint group; no subject is in two splits.
    """
    _check_fold(fold, num_folds)
    subjects = sorted({s.subject for s in samples if s.subject is not None})
    if len(subjects) < 3:
        raise UserError(f"a subject-independent split needs at least 3 subjects, found {len(subjects)}")
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(subjects)) if seed else subjects
    groups = [order[i::num_folds] for i in range(num_folds)] if num_folds > 1 else [order]
    test_subjects = set(groups[fold]) if num_folds > 1 else set(order[-max(1, len(order) // 5):])
    rest = [s for s in order if s not in test_subjects]
    frac = val_fraction if val_fraction is not None else 1.0 / max(num_folds - 1, 4)
    n_val = max(1, round(len(rest) * frac))
    val_rng = np.random.default_rng(seed + 1000 + fold)
    val_subjects = set(val_rng.choice(rest, size=n_val, replace=False).tolist())
    out: dict[str, list[Sample]] = {"train": [], "val": [], "test": []}
    for s in samples:
        key = "test" if s.subject in test_subjects else "val" if s.subject in val_subjects else "train"
        out[key].append(s)
    check_leakage(out)
    return out


def check_leakage(splits: dict[str, list[Sample]], content_hashes: dict[str, str] | None = None) -> None:
    """Stop when two splits share a subject, a clip, or identical media (by content hash)."""
    names = list(splits)
    for attr, what in (("subject", "subject"), ("clip_id", "recording")):
        owners: dict[str, str] = {}
        for name in names:
            for s in splits[name]:
                key = getattr(s, attr)
                if key is None:
                    continue
                other = owners.setdefault(key, name)
                if other != name:
                    raise LeakageError(f"{what} {key!r} appears in both the {other} and the {name} "
                                       f"split (e.g. sample {s.sample_id!r}); splits must be {what}-disjoint")
    if content_hashes:
        seen: dict[str, tuple[str, str]] = {}
        for name in names:
            for s in splits[name]:
                digest = content_hashes.get(s.sample_id)
                if digest is None:
                    continue
                prev = seen.setdefault(digest, (name, s.sample_id))
                if prev[0] != name:
                    raise LeakageError(f"identical media in the {prev[0]} and the {name} split: "
                                       f"{prev[1]!r} and {s.sample_id!r}")


def file_hash(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
