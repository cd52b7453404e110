"""AffectNet in both distributed layouts, under both protocols (AffectNet-8 and -7)."""
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.data import get_adapter
from bench.data.affectnet import AffectNet, AffectNet7, five_points


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> Path:
    return AffectNet.make_fake(tmp_path_factory.mktemp("official"))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    return AffectNet7.make_fake(tmp_path_factory.mktemp("folders"))


def test_official_layout_skips_and_counts_non_emotions(official, tmp_path):
    indexed = get_adapter("affectnet").index(official, tmp_path)
    # 8 classes x (3 training + 2 validation rows); codes 8-10 once per file; one missing image per file
    assert len(indexed.samples) == 8 * 5
    reasons = [s.reason for s in indexed.skipped]
    assert sum("(None) is not an emotion" in r for r in reasons) == 2
    assert sum("(Uncertain)" in r for r in reasons) == 2 and sum("(No-Face)" in r for r in reasons) == 2
    assert sum("listed in" in r and "but missing" in r for r in reasons) == 2
    splits = get_adapter("affectnet").splits(indexed.samples, 0)
    # the official validation set is the test set, kept whole; validation is carved from training
    assert len(splits["test"]) == 16 and {s.meta["split"] for s in splits["test"]} == {"test"}
    assert len(splits["train"]) + len(splits["val"]) == 24 and splits["val"]
    assert {s.label for s in splits["test"]} == set(range(8))


def test_affectnet7_drops_contempt_in_both_layouts(official, folders, tmp_path):
    for root in (official, folders):
        indexed = get_adapter("affectnet7").index(root, tmp_path / root.name)
        assert {s.label for s in indexed.samples} == set(range(7))
        assert any("(contempt) is not one of affectnet7's classes" in s.reason for s in indexed.skipped)
    indexed = get_adapter("affectnet").index(folders, tmp_path / "f8")
    assert {s.label for s in indexed.samples} == set(range(8))  # the .npy string '7' is contempt
    assert sum("(None) is not an emotion" in s.reason for s in indexed.skipped) == 5  # code 8: 3 + 2 images


def test_official_faces_are_aligned_by_their_landmarks_and_prepared_once(official, tmp_path):
    adapter = get_adapter("affectnet")
    samples = adapter.index(official, tmp_path).samples
    first = adapter.prepare(samples, official, tmp_path, progress=False)
    assert first.computed == len(samples) and first.cached == 0 and not first.skipped
    again = adapter.prepare(samples, official, tmp_path, progress=False)
    assert again.computed == 0 and again.cached == len(samples)  # a second run does no work
    crops = adapter.load_arrays(samples[:4], official, tmp_path)
    assert crops.shape == (4, 112, 112, 3) and crops.dtype == np.uint8


def test_five_points_come_from_the_68_landmarks():
    pts = np.arange(136, dtype=float).reshape(68, 2)
    five = five_points(";".join(map(str, pts.ravel())))
    assert five[0] == pytest.approx(pts[36:42].mean(0).tolist()) and five[2] == pts[30].tolist()
    assert five[3] == pts[48].tolist() and five[4] == pts[54].tolist()
    assert five_points("") is None and five_points("1;2;3") is None


def test_a_folder_with_neither_layout_is_one_sentence(tmp_path, capsys):
    (tmp_path / "train_set" / "images").mkdir(parents=True)  # half of the shared copy
    code = main(["data", "summary", "--dataset", "affectnet", "--data-root", str(tmp_path),
                 "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "Manually_Annotated_file_lists/training.csv" in err[0] and "annotations/<n>_exp.npy" in err[0]


def test_bad_list_file_is_one_sentence(tmp_path, capsys):
    root = AffectNet.make_fake(tmp_path / "d")
    (root / "AffectNet" / "Manually_Annotated_file_lists" / "training.csv").write_text("a,b\n1,2\n")
    code = main(["data", "summary", "--dataset", "affectnet", "--data-root", str(root), "--cache-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "training.csv lacks the column(s) subDirectory_filePath" in err


def test_a_training_copy_of_a_test_image_is_dropped_and_test_stays_whole(tmp_path):
    import shutil

    root = AffectNet7.make_fake(tmp_path / "d")
    top = root / "affectnet"
    shutil.copy(top / "val_set" / "images" / "27.jpg", top / "train_set" / "images" / "900.jpg")
    shutil.copy(top / "val_set" / "annotations" / "27_exp.npy", top / "train_set" / "annotations" / "900_exp.npy")
    adapter = get_adapter("affectnet7")
    indexed = adapter.index(root, tmp_path / "c")
    splits = adapter.splits(indexed.samples, 0)
    assert "val_set/images/27.jpg" in {s.sample_id for s in splits["test"]}
    assert "train_set/images/900.jpg" not in {s.sample_id for s in indexed.samples}
    assert [c.path for c in indexed.copies] == ["train_set/images/900.jpg"]
