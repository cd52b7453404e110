import numpy as np

from bench.data import get_adapter, load_splits
from bench.data.synthetic import generate_faces


def test_generation_is_deterministic_and_seed_dependent():
    a = generate_faces(num_subjects=2, per_class=2, seed=3)
    b = generate_faces(num_subjects=2, per_class=2, seed=3)
    c = generate_faces(num_subjects=2, per_class=2, seed=4)
    assert np.array_equal(a["images"], b["images"])
    assert not np.array_equal(a["images"], c["images"])
    assert a["images"].shape == (2 * 7 * 2, 64, 64, 3) and a["images"].dtype == np.uint8


def test_synthetic_has_seven_classes_and_enough_identities(cache_dir):
    adapter, indexed, _ = load_splits("synthetic", 0, None, cache_dir)
    labels = {s.label for s in indexed.samples}
    subjects = {s.subject for s in indexed.samples}
    assert labels == set(range(7)) and len(adapter.class_names) == 7
    assert len(subjects) >= 20


def test_every_fold_is_subject_independent_and_covers_all_identities(cache_dir):
    adapter = get_adapter("synthetic")
    test_subjects = set()
    for fold in range(adapter.num_folds):
        _, indexed, splits = load_splits("synthetic", fold, None, cache_dir)
        per_split = {name: {s.subject for s in samples} for name, samples in splits.items()}
        assert not per_split["train"] & per_split["val"]
        assert not per_split["train"] & per_split["test"]
        assert not per_split["val"] & per_split["test"]
        assert sum(len(v) for v in splits.values()) == len(indexed.samples)
        assert test_subjects.isdisjoint(per_split["test"])
        test_subjects |= per_split["test"]
    assert len(test_subjects) == len({s.subject for s in indexed.samples})


def test_splits_are_stable_across_calls(cache_dir):
    _, _, a = load_splits("synthetic", 1, None, cache_dir)
    _, _, b = load_splits("synthetic", 1, None, cache_dir)
    assert [s.sample_id for s in a["test"]] == [s.sample_id for s in b["test"]]
