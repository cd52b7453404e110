"""Face-image adapters (RAF-DB, FER2013/FER+, CK+, JAFFE) on generated copies of their native
layouts: indexing, labels, protocols, leakage checks, bad files and wrong layouts."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.data import DATASETS, get_adapter, load_splits
from bench.data.base import CANONICAL_EMOTIONS, LeakageError, describe_copies
from bench.data.ckplus import CkPlus
from bench.data.summary import summarize
from bench.errors import UserError

# every registered face-image adapter that reads a native layout (the synthetic faces are generated)
FACE_DATASETS = tuple(sorted(n for n, c in DATASETS.items() if c.modality == "face" and n != "synthetic"))


@pytest.fixture(scope="module")
def fakes(tmp_path_factory) -> dict[str, Path]:
    roots = {}
    for name in FACE_DATASETS:
        roots[name] = get_adapter(name).make_fake(tmp_path_factory.mktemp(name))
    roots["ck48"] = CkPlus.make_fake_ck48(tmp_path_factory.mktemp("ck48"))
    return roots


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def test_face_adapters_are_registered_with_canonical_classes():
    for name in FACE_DATASETS:
        cls = DATASETS[name]
        assert cls.modality == "face" and cls.protocol and cls.expected_layout
        assert set(cls.class_names) <= set(CANONICAL_EMOTIONS), name
    assert "contempt" in DATASETS["ckplus"].class_names and "contempt" in DATASETS["ferplus"].class_names


@pytest.mark.parametrize("name,files,classes", [("raf", 42, 7), ("fer2013", 35, 7), ("ferplus", 35, 7),
                                                ("ckplus", 210, 7), ("ck48", 210, 7), ("jaffe", 140, 7)])
def test_index_counts_and_labels(fakes, cache_dir, name, files, classes):
    adapter = get_adapter("ckplus" if name == "ck48" else name)
    result = adapter.index(fakes[name], cache_dir)
    assert len(result.samples) == files
    assert len({s.label for s in result.samples}) == classes
    assert all(not os.path.isabs(s.sample_id) for s in result.samples)
    assert len({s.sample_id for s in result.samples}) == files


def test_labels_follow_each_datasets_own_code(fakes, cache_dir):
    jaffe = get_adapter("jaffe")
    by_id = {s.sample_id: s for s in jaffe.index(fakes["jaffe"], cache_dir).samples}
    assert jaffe.class_names[by_id["KA.AN1.1.tiff"].label] == "angry"
    assert by_id["KA.AN1.1.tiff"].subject == "KA"
    raf = get_adapter("raf")
    raf_samples = raf.index(fakes["raf"], cache_dir).samples
    first = next(s for s in raf_samples if s.sample_id.endswith("train_00001_aligned.jpg"))
    assert raf.class_names[first.label] == "surprise"  # RAF label 1
    ck = get_adapter("ckplus")
    seq1 = [s for s in ck.index(fakes["ckplus"], cache_dir).samples if s.clip_id == "S010_001"]
    assert [Path(s.path).name for s in seq1] == [f"S010_001_{f:08d}.png" for f in (2, 3, 4)]  # last 3 frames
    assert {ck.class_names[s.label] for s in seq1} == {"angry"}  # CK+ code 1
    fer = get_adapter("fer2013")
    rows = fer.index(fakes["fer2013"], cache_dir).samples
    assert fer.class_names[rows[0].label] == "angry" and rows[0].meta["split"] == "train"


def test_ckplus_sequences_for_video(fakes):
    seqs = CkPlus().sequences(fakes["ckplus"])
    assert len(seqs.samples) == 70 and seqs.samples[0].path.startswith("cohn-kanade-images/")
    with pytest.raises(UserError, match="no sequences"):
        CkPlus().sequences(fakes["ck48"])


def test_data_root_may_be_the_dataset_folder_or_its_parent(fakes, cache_dir):
    jaffe = get_adapter("jaffe")
    assert len(jaffe.index(fakes["jaffe"] / "jaffe_db", cache_dir).samples) == 140
    assert len(jaffe.index(fakes["jaffe"], cache_dir).samples) == 140


@pytest.mark.parametrize("name", ["ckplus", "jaffe"])
def test_subject_independent_folds(fakes, cache_dir, name):
    adapter = get_adapter(name)
    samples = adapter.index(fakes[name], cache_dir).samples
    tested = set()
    for fold in range(adapter.num_folds):
        parts = adapter.splits(samples, fold)
        subjects = {k: {s.subject for s in v} for k, v in parts.items()}
        assert not subjects["train"] & subjects["test"] and not subjects["val"] & subjects["test"]
        assert not subjects["train"] & subjects["val"]
        assert sum(len(v) for v in parts.values()) == len(samples)
        tested |= subjects["test"]
    assert adapter.num_folds == 10
    if name == "jaffe":
        assert len(tested) == 10  # one poser per fold


def test_official_splits_and_validation_carve_are_stable(fakes, cache_dir):
    raf = get_adapter("raf")
    samples = raf.index(fakes["raf"], cache_dir).samples
    parts = raf.splits(samples, 0, seed=0)
    assert {len(parts["test"]), len(parts["train"]) + len(parts["val"])} == {14, 28}
    assert {s.label for s in parts["val"]} == set(range(7))  # stratified: every class in val
    again = raf.splits(list(reversed(samples)), 0, seed=0)
    assert [s.sample_id for s in sorted(again["val"], key=lambda s: s.sample_id)] == \
        [s.sample_id for s in sorted(parts["val"], key=lambda s: s.sample_id)]
    fer = get_adapter("fer2013")
    fparts = fer.splits(fer.index(fakes["fer2013"], cache_dir).samples, 0)
    assert {k: len(v) for k, v in fparts.items()} == {"train": 21, "val": 7, "test": 7}


def test_jaffe_fold_assignment_is_pinned(fakes, cache_dir):
    """Seeded derivation instead of committed split files: this pins it."""
    jaffe = get_adapter("jaffe")
    samples = jaffe.index(fakes["jaffe"], cache_dir).samples
    parts = jaffe.splits(samples, 0, seed=0)
    assert {s.subject for s in parts["test"]} == {"KA"}
    # validation: StratifiedGroupKFold over the other 9 posers (was {"KM"} before the draw was stratified)
    assert {s.subject for s in parts["val"]} == {"KR"}


def test_planted_duplicate_across_splits_stops_the_run(fakes, tmp_path):
    root = _copy(fakes["jaffe"], tmp_path)
    db = root / "jaffe_db"
    shutil.copyfile(db / "KA.AN1.1.tiff", db / "KL.AN1.999.tiff")  # poser KA's image filed under KL
    with pytest.raises(LeakageError, match="identical media"):
        load_splits("jaffe", 0, root, tmp_path / "cache")


def test_raf_training_copy_of_a_test_image_is_dropped_and_named_and_test_stays_whole(fakes, tmp_path, capsys):
    """The issue's case: one image of RAF-DB's training list byte-identical to one of its test list.
    The official test split is what every published number is on: it stays whole; the copy leaves
    training, counted and named by `data summary`."""
    root = _copy(fakes["raf"], tmp_path)
    aligned = root / "basic" / "Image" / "aligned"
    before = load_splits("raf", 0, root, tmp_path / "cache0")[2]
    shutil.copyfile(aligned / "test_00001_aligned.jpg", aligned / "train_00001_aligned.jpg")
    _, indexed, splits = load_splits("raf", 0, root, tmp_path / "cache")
    assert [s.sample_id for s in splits["test"]] == [s.sample_id for s in before["test"]]
    train_ids = {s.sample_id for s in splits["train"] + splits["val"]}
    assert "Image/aligned/train_00001_aligned.jpg" not in train_ids
    assert len(train_ids) == len(before["train"]) + len(before["val"]) - 1
    assert [c.path for c in indexed.copies] == ["Image/aligned/train_00001_aligned.jpg"]
    assert main(["data", "summary", "--dataset", "raf", "--data-root", str(root),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "dropped copies of official test (or validation) items: 1" in out
    assert "train_00001_aligned.jpg: identical to test item 'Image/aligned/test_00001_aligned.jpg'" in out
    line = describe_copies(indexed.copies, "raf")  # what a sweep prints before it starts
    assert line.startswith("Dropped 1 training/validation item(s)") and "train_00001_aligned.jpg" in line
    assert describe_copies([], "raf") is None


def test_every_dataset_with_an_official_split_keeps_its_test_split_whole():
    """Adapters whose protocol is the owners' split apply the rule; self-drawn folds never do."""
    for name, cls in DATASETS.items():
        official = "official" in cls.protocol.lower()
        assert cls.official_splits_fixed == official, name


def test_fer2013_drops_train_copies_of_test_images(fakes, tmp_path):
    root = _copy(fakes["fer2013"], tmp_path)
    csv_file = root / "fer2013" / "fer2013.csv"
    lines = csv_file.read_text().splitlines()
    test_row = next(line for line in lines if line.endswith("PrivateTest"))
    lines.append(test_row.replace("PrivateTest", "Training"))
    csv_file.write_text("\n".join(lines) + "\n")
    fer = get_adapter("fer2013")
    result = fer.index(root, tmp_path / "cache")
    assert len(result.samples) == 35
    assert any("identical to test item" in s.reason for s in result.skipped)
    assert len(result.copies) == 1 and "dropped from train" in result.copies[0].reason
    fer.splits(result.samples, 0)  # no LeakageError: the copy is gone


def test_corrupt_and_misnamed_files_are_skipped_and_reported(fakes, tmp_path):
    root = _copy(fakes["jaffe"], tmp_path)
    db = root / "jaffe_db"
    (db / "KA.HA1.500.tiff").write_bytes(b"")
    victim = sorted(db.glob("KL.HA*.tiff"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    summary = summarize("jaffe", root, tmp_path / "cache")
    reasons = {s["path"]: s["reason"] for s in summary["skipped"]}
    assert "empty" in reasons["KA.HA1.500.tiff"]
    assert "cannot decode" in reasons[victim.name]
    assert "does not fit" in reasons["not-a-jaffe-name.tiff"]
    assert summary["files"] == 139  # 140 good - 1 truncated; the empty one is extra


def test_truncated_jpeg_and_png_are_skipped(fakes, tmp_path):
    root = _copy(fakes["raf"], tmp_path)
    jpg = root / "basic" / "Image" / "aligned" / "train_00002_aligned.jpg"
    jpg.write_bytes(jpg.read_bytes()[:200])
    ck = _copy(fakes["ck48"], tmp_path / "ck")
    png = next((ck / "CK+48" / "happy").glob("*.png"))
    png.write_bytes(png.read_bytes()[:100])
    raf_result = get_adapter("raf").index(root, tmp_path / "cache")
    ck_result = get_adapter("ckplus").index(ck, tmp_path / "cache")
    assert any(s.path.endswith("train_00002_aligned.jpg") for s in raf_result.skipped)
    assert any(s.path.endswith(png.name) for s in ck_result.skipped)
    assert len(raf_result.samples) == 41 and len(ck_result.samples) == 209


def test_unreadable_folder_is_skipped(fakes, tmp_path, monkeypatch):
    ck = _copy(fakes["ck48"], tmp_path)
    real_scandir = os.scandir

    def scandir(path="."):  # chmod 0 does not stop root (tests may run as root), so fail it here
        if Path(path).name == "fear":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = get_adapter("ckplus").index(ck, tmp_path / "cache")
    assert any("unreadable" in s.reason and "fear" in s.path for s in result.skipped)
    assert len(result.samples) == 180


def test_wrong_layout_is_one_sentence_naming_layout_and_source(fakes, tmp_path, capsys):
    with pytest.raises(UserError, match="list_patition_label.txt.*whdeng"):
        get_adapter("raf").index(fakes["jaffe"], tmp_path)
    assert main(["data", "summary", "--dataset", "jaffe", "--data-root", str(fakes["raf"]),
                 "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fer-bench: error: ") and "KA.AN1.39.tiff" in err and "Zenodo" in err
    with pytest.raises(UserError, match="fer2013new.csv"):
        (fakes["fer2013"] / "fer2013" / "fer2013new.csv").rename(tmp_path / "moved.csv")
        try:
            get_adapter("ferplus").index(fakes["fer2013"], tmp_path)
        finally:
            (tmp_path / "moved.csv").rename(fakes["fer2013"] / "fer2013" / "fer2013new.csv")


def test_ferplus_majority_rule_drops_unknown_and_not_a_face(fakes, tmp_path):
    root = _copy(fakes["fer2013"], tmp_path)
    votes = root / "fer2013" / "fer2013new.csv"
    lines = votes.read_text().splitlines()
    fields = lines[1].split(",")
    fields[2:] = ["0"] * 8 + ["9", "1"]  # unknown wins
    lines[1] = ",".join(fields)
    fields = lines[2].split(",")
    fields[2:] = ["0"] * 9 + ["10"]  # not a face
    lines[2] = ",".join(fields)
    fields = lines[3].split(",")
    fields[2:] = ["0", "0", "0", "0", "0", "0", "0", "10", "0", "0"]  # contempt: kept, not merged
    lines[3] = ",".join(fields)
    votes.write_text("\n".join(lines) + "\n")
    ferplus = get_adapter("ferplus")
    result = ferplus.index(root, tmp_path / "cache")
    reasons = [s.reason for s in result.skipped]
    assert "FER+ majority is 'unknown'" in reasons and "FER+ majority is 'not a face'" in reasons
    assert ferplus.class_names[next(s for s in result.samples if s.sample_id == "row00002").label] == "contempt"


def test_load_arrays_of_face_crop_layouts(fakes, cache_dir):
    fer = get_adapter("fer2013")
    samples = fer.index(fakes["fer2013"], cache_dir).samples[:5]
    arrays = fer.load_arrays(samples, fakes["fer2013"], cache_dir)
    assert arrays.shape == (5, 48, 48, 1) and arrays.dtype == np.uint8
    raf = get_adapter("raf")
    samples = raf.index(fakes["raf"], cache_dir).samples[:3]
    assert raf.load_arrays(samples, fakes["raf"], cache_dir).shape == (3, 32, 32, 3)


def test_summary_json_is_complete(fakes, tmp_path, capsys):
    assert main(["data", "summary", "--dataset", "ckplus", "--data-root", str(fakes["ckplus"]),
                 "--cache-dir", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"] == "ckplus" and summary["files"] == 210 and summary["subjects"] == 10
    assert sum(summary["class_counts"].values()) == 210 and len(summary["splits"]) == 10
    assert summary["skipped"] == []  # unlabelled sequences are not data, not skipped files
    raf = summarize("raf", fakes["raf"], tmp_path)
    assert raf["subjects"] is None and len(raf["splits"]) == 1


def test_reindexing_reads_no_file_again(fakes, tmp_path, monkeypatch):
    from bench.data import media_index

    jaffe = get_adapter("jaffe")
    jaffe.index(fakes["jaffe"], tmp_path)
    reads = []
    original = media_index._inspect
    monkeypatch.setattr(media_index, "_inspect", lambda *a: reads.append(a) or original(*a))
    assert len(jaffe.index(fakes["jaffe"], tmp_path).samples) == 140
    assert reads == []


def test_real_jaffe_summary(shared_data, tmp_path):
    summary = summarize("jaffe", shared_data / "jaffe", tmp_path)
    assert summary["files"] == 213 and summary["subjects"] == 10 and summary["skipped"] == []
    assert summary["class_counts"] == {"angry": 30, "disgust": 29, "fear": 32, "happy": 31, "sad": 31,
                                       "surprise": 30, "neutral": 30}
    assert len(summary["splits"]) == 10 and all(f["test"] >= 20 for f in summary["splits"])
