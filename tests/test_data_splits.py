"""Validation sees every class (issue 12): over every registered dataset's fake copy and over
generated label/subject layouts, every class that at least two training-pool subjects (or words,
or images for datasets without subjects) hold appears in validation; splits stay disjoint; and
each fold's test set is still the protocol's (computed here independently of the adapters)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.data import DATASETS, get_adapter, load_splits, synthetic_video, synthetic_voice
from bench.data.base import Sample, stratified_group_carve, subject_kfold
from bench.data.ckplus import CkPlus
from bench.data.summary import summarize

SYNTHETIC = ("synthetic", "synthetic-voice", "synthetic-video", "synthetic-av")
ON_DISK = tuple(sorted(set(DATASETS) - set(SYNTHETIC)))


def protocol_test_subjects(samples: list[Sample], num_folds: int, fold: int, seed: int = 0) -> set[str]:
    """The subject-k-fold test group as the protocol defines it: sorted subjects (shuffled when
    seed != 0) dealt round-robin into ``num_folds`` groups. Kept apart from bench.data.base on
    purpose: the stratified validation draw must not move a single test subject."""
    subjects = sorted({s.subject for s in samples if s.subject is not None})
    order = list(np.random.default_rng(seed).permutation(subjects)) if seed else subjects
    if num_folds == 1:
        return set(order[-max(1, len(order) // 5):])
    return set(order[fold::num_folds])


def group_of(s: Sample) -> str:
    """What validation is drawn by: TESS words (train and val share the one training speaker),
    else subjects, else identical-image groups / single samples."""
    return s.meta.get("word") or s.subject or s.meta.get("sha256") or s.sample_id


def assert_val_sees_every_shared_class(parts: dict[str, list[Sample]], where: str) -> None:
    holders: dict[int, set[str]] = {}
    for s in parts["train"] + parts["val"]:
        holders.setdefault(s.label, set()).add(group_of(s))
    shared = {c for c, groups in holders.items() if len(groups) >= 2}
    missing = shared - {s.label for s in parts["val"]}
    assert not missing, f"{where}: classes {sorted(missing)} have >= 2 training-pool groups but none in val"


def assert_disjoint(parts: dict[str, list[Sample]], where: str) -> None:
    groups = {k: {group_of(s) for s in v} for k, v in parts.items()}
    subjects = {k: {s.subject for s in v if s.subject is not None} for k, v in parts.items()}
    assert not groups["train"] & groups["val"], where
    assert not (subjects["train"] | subjects["val"]) & subjects["test"], where
    ids = [s.sample_id for v in parts.values() for s in v]
    assert len(ids) == len(set(ids)), f"{where}: a sample is in two splits"


def check_protocol(adapter, samples: list[Sample], seeds=(0, 3)) -> None:
    for seed in seeds:
        for fold in range(adapter.num_folds):
            parts = adapter.splits(samples, fold, seed)
            where = f"{adapter.name} fold {fold} seed {seed}"
            assert sum(len(v) for v in parts.values()) == len(samples), where
            assert_val_sees_every_shared_class(parts, where)
            assert_disjoint(parts, where)
            test_subjects = {s.subject for s in parts["test"]}
            if adapter.name == "tess":  # leave-one-speaker-out, speakers in sorted order
                assert test_subjects == {sorted({s.subject for s in samples})[fold]}, where
            elif adapter.name == "synthetic-fer":  # one split by identity, FER2013's 80/10/10 sizes
                ordered = sorted({s.subject for s in samples})
                held = round(0.8 * len(ordered)) + round(0.1 * len(ordered))
                assert test_subjects == set(ordered[held:]), where
            elif all("split" in s.meta for s in samples):  # official test split
                assert {s.sample_id for s in parts["test"]} == \
                    {s.sample_id for s in samples if s.meta["split"] == "test"}, where
            else:
                assert test_subjects == protocol_test_subjects(samples, adapter.num_folds, fold, seed), where


@pytest.fixture(scope="module")
def fakes(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("split-fakes")
    roots = {name: get_adapter(name).make_fake(base / name) for name in ON_DISK}
    roots["ck48"] = CkPlus.make_fake_ck48(base / "ck48")
    return roots


# the large synthetic sets generate thousands of files (~20 s each): the slow stage checks them
LARGE = {"synthetic-large", "synthetic-voice-large"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n
                                  for n in [*ON_DISK, "ck48"]])
def test_every_fake_dataset_protocol(fakes, tmp_path, name):
    adapter = get_adapter("ckplus" if name == "ck48" else name)
    samples = adapter.index(fakes[name], tmp_path / "cache").samples
    assert samples, name
    check_protocol(adapter, samples)


@pytest.fixture(scope="module")
def small_synthetic(tmp_path_factory):
    """Shrunk voice/video generators (as in test_synthetic_media); synthetic faces at full size."""
    mp = pytest.MonkeyPatch()
    mp.setattr(synthetic_voice, "NUM_SUBJECTS", 6)
    mp.setattr(synthetic_voice, "PER_CLASS", 2)
    mp.setattr(synthetic_video, "PER_CLASS", 1)
    yield tmp_path_factory.mktemp("synthetic-cache")
    mp.undo()


@pytest.mark.parametrize("name", SYNTHETIC)
def test_every_synthetic_dataset_protocol(small_synthetic, name):
    adapter, indexed, _ = load_splits(name, 0, None, small_synthetic)
    check_protocol(adapter, indexed.samples, seeds=(0,))


def random_layout(rng: np.random.Generator) -> list[Sample]:
    """Subjects showing a random subset of the classes (as in CK+, where a few subjects pose
    'contempt' or 'fear'), 1-3 samples per subject and class."""
    n_classes = int(rng.integers(2, 8))
    presence = rng.uniform(0.1, 0.9, size=n_classes)  # some classes rare, some common
    samples = []
    for i in range(int(rng.integers(3, 45))):  # at least 3 subjects: the protocol's minimum
        classes = [c for c in range(n_classes) if rng.random() < presence[c]] or [int(rng.integers(n_classes))]
        for c in classes:
            samples += [Sample(f"S{i:03d}/{c}/{k}", "", c, f"S{i:03d}") for k in range(int(rng.integers(1, 4)))]
    return samples


@pytest.mark.parametrize("layout_seed", range(60))
def test_generated_layouts(layout_seed):
    rng = np.random.default_rng(layout_seed)
    samples = random_layout(rng)
    n_subjects = len({s.subject for s in samples})
    num_folds = int(rng.choice([k for k in (1, 2, 5, 6, 10) if k <= n_subjects]))
    fraction = float(rng.choice([1 / max(num_folds - 1, 4), 0.2, 0.25]))
    for fold in range(num_folds):
        parts = subject_kfold(samples, num_folds, fold, seed=layout_seed % 3, val_fraction=fraction)
        where = f"layout {layout_seed} fold {fold}"
        assert_val_sees_every_shared_class(parts, where)
        assert_disjoint(parts, where)
        assert {s.subject for s in parts["test"]} == \
            protocol_test_subjects(samples, num_folds, fold, layout_seed % 3), where


def test_ckplus_contempt_posed_by_two_subjects_reaches_validation_in_every_fold():
    """CK+'s case: a class only a few subjects pose. Each fold whose training pool still holds two
    of them must show it in validation, whichever subjects the draw starts from."""
    samples = []
    for i in range(40):
        classes = [0, 1, 2] if i not in (7, 23) else [0, 6]  # class 6 ('contempt'): subjects 7 and 23
        samples += [Sample(f"S{i:03d}/{c}/{k}", "", c, f"S{i:03d}") for c in classes for k in range(3)]
    for fold in range(10):
        parts = subject_kfold(samples, 10, fold)
        pool_holders = {s.subject for s in parts["train"] + parts["val"] if s.label == 6}
        if len(pool_holders) == 2:
            assert 6 in {s.label for s in parts["val"]}, fold
            assert 6 in {s.label for s in parts["train"]}, fold  # and one of the two stays in train


def test_carve_is_seeded_and_independent_of_input_order():
    samples = random_layout(np.random.default_rng(11))
    train, val = stratified_group_carve(samples, 0.2, seed=5)
    train2, val2 = stratified_group_carve(list(reversed(samples)), 0.2, seed=5)
    assert {s.sample_id for s in val} == {s.sample_id for s in val2} and val
    assert {s.sample_id for s in train} == {s.sample_id for s in train2}
    draws = {frozenset(s.subject for s in stratified_group_carve(samples, 0.2, seed=k)[1]) for k in range(6)}
    assert len(draws) > 1  # the seed matters


def test_summary_json_has_per_split_class_counts(fakes, tmp_path, capsys):
    assert main(["data", "summary", "--dataset", "ckplus", "--data-root", str(fakes["ck48"]),
                 "--cache-dir", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    for fold in summary["splits"]:
        assert set(fold["class_counts"]) == {"train", "val", "test"}
        for split, per_class in fold["class_counts"].items():
            assert list(per_class) == summary["classes"] and sum(per_class.values()) == fold[split]
        totals = {c: sum(fold["class_counts"][k][c] for k in ("train", "val", "test")) for c in summary["classes"]}
        assert totals == summary["class_counts"]
    assert summary["warnings"] == []  # every fake subject poses every class


def test_summary_warns_once_per_fold_and_split_that_lacks_a_class(fakes, tmp_path, capsys):
    import shutil

    root = tmp_path / "ck48"
    shutil.copytree(fakes["ck48"], root)
    for path in (root / "CK+48" / "contempt").iterdir():
        if not path.name.startswith("S010_"):  # only subject S010 keeps 'contempt'
            path.unlink()
    summary = summarize("ckplus", root, tmp_path / "cache")
    lacking = {(f["fold"], split) for f in summary["splits"]
               for split, per_class in f["class_counts"].items() if per_class["contempt"] == 0}
    assert len(lacking) == 2 * 10  # S010's fold: train and val; every other fold: val and test
    assert sorted(summary["warnings"]) == sorted(f"fold {f} {split} has no contempt sample" for f, split in lacking)
    assert main(["data", "summary", "--dataset", "ckplus", "--data-root", str(root),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    text = capsys.readouterr().out
    assert "  warning: fold 0 train has no contempt sample" in text  # S010 is fold 0's test subject
    assert text.count("warning:") == 20
    header = next(line for line in text.splitlines() if "contempt" in line and "total" in line)
    assert header.split() == [*summary["classes"], "total"]


def test_real_jaffe_and_tess_validation_sees_every_class(shared_data, tmp_path):
    for name in ("jaffe", "tess"):
        root = shared_data / name
        if not root.is_dir():
            pytest.skip(f"{root} is absent")
        summary = summarize(name, root, tmp_path)
        assert summary["warnings"] == [], name
        assert all(min(f["class_counts"]["val"].values()) > 0 for f in summary["splits"]), name
