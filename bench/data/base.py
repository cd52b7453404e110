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
    # training/validation items identical to an item of a later official split, dropped by
    # ``keep_official_splits_whole`` (also listed in ``skipped``, with that reason)
    copies: list[Skipped] = field(default_factory=list)


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
    # The dataset's owners fix its splits (RAF-DB, FER2013, FER+, AffectNet, AFEW): a training or
    # validation item identical to a test item is dropped (``keep_official_splits_whole``, applied by
    # ``finish_index``), since every published number is on the whole official test split. Splits
    # fer-bench draws itself keep refusing such an overlap (``check_leakage``): there it is a bug.
    official_splits_fixed: bool = False
    # Audio-visual datasets: the single-modality datasets whose winners `search fusion` combines,
    # e.g. {"visual": "ravdess-video", "voice": "ravdess"}; their folds must match this one's.
    fusion_sources: dict = {}

    def index(self, root: Path | None, cache_dir: Path) -> IndexResult:
        raise NotImplementedError

    def finish_index(self, result: IndexResult) -> IndexResult:
        """The last step of every ``index``: the official-split rule, for datasets that have one."""
        return keep_official_splits_whole(result) if self.official_splits_fixed else result

    def splits(self, samples: list[Sample], fold: int, seed: int = 0) -> dict[str, list[Sample]]:
        """Default protocol: subject-independent k-fold; validation subjects carved from train."""
        return subject_kfold(samples, self.num_folds, fold, seed)

    def validation_group(self, sample: Sample):
        """What validation is carved by, whole (a k-fold objective's inner folds too): the subject."""
        return sample.subject

    def prepare(self, samples: list[Sample], root: Path | None, cache_dir: Path,
                progress: bool = True) -> PrepareReport:
        """Fill the cache trials read (aligned faces, spectrograms...) once, on the driver.
        Default: nothing to prepare."""
        return PrepareReport(total=len(samples), cached=len(samples))

    def prepare_notes(self, stats: dict) -> list[str]:
        """The notes ``prepare`` derives from its stats (rates, counts): a prepare split in shards
        (``fer-bench data prepare`` over Ray) sums the shards' stats and asks again."""
        return []

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
    """Test = the fold's subject group; validation = whole subjects of the rest, stratified by class.

    Subjects are shuffled with ``seed`` and dealt into ``num_folds`` groups so each fold's test
    set is a fixed, disjoint group; validation subjects come from ``stratified_group_carve`` over
    the other subjects; no subject is in two splits.
    """
    _check_fold(fold, num_folds)
    subjects = sorted({s.subject for s in samples if s.subject is not None})
    if len(subjects) < 3:
        raise UserError(f"a subject-independent split needs at least 3 subjects, found {len(subjects)}")
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(subjects)) if seed else subjects
    groups = [order[i::num_folds] for i in range(num_folds)] if num_folds > 1 else [order]
    test_subjects = set(groups[fold]) if num_folds > 1 else set(order[-max(1, len(order) // 5):])
    frac = val_fraction if val_fraction is not None else 1.0 / max(num_folds - 1, 4)
    pool = [s for s in samples if s.subject is not None and s.subject not in test_subjects]
    _, val = stratified_group_carve(pool, frac, seed + 1000 + fold)
    val_subjects = {s.subject for s in val}
    out: dict[str, list[Sample]] = {"train": [], "val": [], "test": []}
    for s in samples:
        key = "test" if s.subject in test_subjects else "val" if s.subject in val_subjects else "train"
        out[key].append(s)
    check_leakage(out)
    return out


def stratified_group_carve(pool: list[Sample], fraction: float, seed: int,
                           group_of=lambda s: s.subject) -> tuple[list[Sample], list[Sample]]:
    """Split ``pool`` into (train, val) by whole groups (subjects, words...), stratified by class.

    scikit-learn's ``StratifiedGroupKFold`` deals the groups into ``round(1 / fraction)`` folds
    with matching class distributions; the fold that holds the most classes is validation. Its
    heuristic does not promise that every class reaches that fold (a class only two subjects
    show can land in two other folds: CK+ fold 0 once had no 'contempt' in validation), so
    afterwards each class that at least two groups hold, but validation lacks, brings one more
    of its groups into validation (preferring one whose move leaves every class in train), and a
    class the draw took wholly out of train gets a group back when validation can spare it.
    The result depends on the pool's content, not its order.
    """
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    classes_of: dict[str, dict[int, int]] = {}
    for s in pool:
        counts = classes_of.setdefault(group_of(s), {})
        counts[s.label] = counts.get(s.label, 0) + 1
    names = sorted(classes_of)
    if len(names) < 2:  # nothing to carve: one group cannot be both train and val
        return list(pool), []
    holders: dict[int, set[str]] = {}
    for name in names:
        for label in classes_of[name]:
            holders.setdefault(label, set()).add(name)
    shared = sorted(c for c, gs in holders.items() if len(gs) >= 2)  # the classes val must show
    target = fraction * len(pool)
    n_splits = min(len(names), max(2, round(1 / fraction)))
    labels = [label for name in names for label, n in sorted(classes_of[name].items()) for _ in range(n)]
    group_ids = [i for i, name in enumerate(names) for n in classes_of[name].values() for _ in range(n)]
    folds: list[set[str]] = []
    try:
        with warnings.catch_warnings():  # "least populated class has fewer members than n_splits"
            warnings.simplefilter("ignore", UserWarning)
            sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            for _, idx in sgkf.split(np.zeros(len(labels)), labels, group_ids):
                folds.append({names[group_ids[i]] for i in idx})
    except ValueError:  # every class smaller than n_splits: start from a seeded pick, repaired below
        order = np.random.default_rng(seed).permutation(len(names))
        folds = [{names[i] for i in order[:max(1, round(len(names) * fraction))]}]

    def size(gs: set[str]) -> int:
        return sum(sum(classes_of[g].values()) for g in gs)

    val = set(min(enumerate(folds), key=lambda kv: (-sum(bool(holders[c] & kv[1]) for c in shared),
                                                     abs(size(kv[1]) - target), kv[0]))[1])
    tiebreak = {name: i for i, name in enumerate(np.random.default_rng(seed).permutation(names).tolist())}
    for c in shared:  # every class two groups hold must be in val
        if holders[c] & val:
            continue
        def emptied(g: str) -> int:  # classes whose last training group g is
            return sum(1 for d in classes_of[g] if d in shared and not holders[d] - val - {g})
        val.add(min(holders[c] - val, key=lambda g: (emptied(g), size({g}), tiebreak[g])))
    for c in shared:  # ... and in train, when val can give a group back without losing a class
        if holders[c] - val:
            continue
        spare = [g for g in holders[c] & val
                 if all(d not in shared or (holders[d] & val) - {g} for d in classes_of[g])]
        if spare:
            val.discard(min(spare, key=lambda g: (size({g}), tiebreak[g])))
    if not val:  # no class is shared by two groups: still keep one group for validation
        val = {min(names, key=tiebreak.__getitem__)}
    return [s for s in pool if group_of(s) not in val], [s for s in pool if group_of(s) in val]


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


# Official splits, earliest first: a copy is kept only in the latest split that holds it.
OFFICIAL_SPLIT_ORDER = ("train", "val", "test")


def keep_official_splits_whole(result: IndexResult) -> IndexResult:
    """Drop each item whose content (``meta["sha256"]``) is identical to an item of a later official
    split (test > val > train; ``meta["split"]``), so the later split stays whole: the test split
    is never changed, and validation (when official) only loses copies of test items. Each dropped
    copy is named in ``copies`` and ``skipped``. Items without a content hash or a split are kept."""
    rank = {name: i for i, name in enumerate(OFFICIAL_SPLIT_ORDER)}
    owner: dict[str, Sample] = {}
    for s in result.samples:
        digest, split = s.meta.get("sha256"), s.meta.get("split")
        if digest and split in rank and (digest not in owner or rank[split] > rank[owner[digest].meta["split"]]):
            owner[digest] = s
    kept, copies = [], []
    for s in result.samples:
        first = owner.get(s.meta.get("sha256"))
        if first is not None and s.meta.get("split") in rank and first.meta["split"] != s.meta["split"]:
            copies.append(Skipped(s.path, f"identical to {first.meta['split']} item {first.sample_id!r}; dropped "
                                          f"from {s.meta['split']} so the official {first.meta['split']} split "
                                          f"stays whole"))
        else:
            kept.append(s)
    return IndexResult(kept, [*result.skipped, *copies], [*result.copies, *copies])


def describe_copies(copies: list[Skipped], dataset: str, shown: int = 3) -> str | None:
    """One line for a sweep's output: how many copies of official test items left training, the
    first few by name, and where the full list is; None when there were none."""
    if not copies:
        return None
    names = "; ".join(f"{c.path} ({c.reason.split(';')[0]})" for c in copies[:shown])
    more = f"; and {len(copies) - shown} more" if len(copies) > shown else ""
    return (f"Dropped {len(copies)} training/validation item(s) identical to an official test (or validation) "
            f"item, so the official split stays whole: {names}{more} (`fer-bench data summary --dataset "
            f"{dataset}` lists them).")


def file_hash(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def content_digests(adapter: DatasetAdapter, samples: list[Sample], root: Path | None,
                    cache_dir: Path) -> dict[str, str]:
    """``sample_id -> sha256`` of each sample's media: the file's hash that indexing stored
    (``meta["sha256"]``), else (generated data, no file) the hash of its decoded array. What
    ``check_leakage`` compares within a dataset, and ``shared_content`` across two."""
    out = {s.sample_id: s.meta["sha256"] for s in samples if s.meta.get("sha256")}
    rest = [s for s in samples if s.sample_id not in out]
    if rest:
        arrays = adapter.load_arrays(rest, root, cache_dir)
        out.update({s.sample_id: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
                    for s, a in zip(rest, arrays)})
    return out


def shared_content(a: dict[str, str], b: dict[str, str]) -> int:
    """How many samples of ``b`` have media identical (by content hash) to a sample of ``a``: the
    cross-dataset form of ``check_leakage``'s media rule (subjects are named per dataset, so only
    content can be compared across two)."""
    digests = set(a.values())
    return sum(1 for d in b.values() if d in digests)
