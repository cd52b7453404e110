"""`fer-bench predict` on real photos and videos (../shared/data/media) with a checkpoint trained
here for one epoch on synthetic faces: MTCNN face counts, per-frame results, clip labels, HEVC,
corrupt files, `best:` resolution and the annotated copy."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.errors import UserError
from bench.inference.model_ref import resolve_model_ref
from bench.inference.predict import Predictor, expand_inputs, predict, predict_file
from bench.inference.predict_output import format_csv
from bench.results.store import append_record
from bench.training.trainable import run_trial

TINY = {"model.name": "fer_cnn", "data.dataset": "synthetic", "data.image_size": 32,
        "train.batch_size": 64, "optim.lr": 3e-3, "train.max_epochs": 1}


@pytest.fixture(scope="module")
def media(shared_data) -> Path:
    folder = shared_data / "media"
    if not folder.is_dir():
        pytest.skip(f"real media folder {folder} is absent")
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, cache_dir) -> Path:
    """One epoch of fer_cnn on synthetic faces: a real trained checkpoint in ~30 s."""
    keep = tmp_path_factory.mktemp("models") / "tiny"

    def copy(metrics, directory):
        shutil.copytree(directory, keep, dirs_exist_ok=True)

    run_trial(TINY, cache_dir=cache_dir, report=copy)
    return keep


@pytest.fixture(scope="module")
def predictor(checkpoint, cache_dir) -> Predictor:
    return Predictor(checkpoint, cache_dir=cache_dir, fps=1.0)  # one MTCNN for the module


def _all_probs(item):
    for frame in item["frames"]:
        for face in frame.get("faces", []):
            yield face["probs"]
    if item.get("probs"):
        yield item["probs"]


def test_photos_count_faces_and_probabilities_sum_to_one(predictor, media):
    single = predict_file(predictor, media / "single_face.jpg")
    multi = predict_file(predictor, media / "multi_face.jpg")
    empty = predict_file(predictor, media / "free-mountain-vector-01.jpg")
    assert len(single["frames"][0]["faces"]) == 1
    assert len(multi["frames"][0]["faces"]) == 5
    assert empty["frames"][0]["faces"] == [] and empty["frames"][0]["note"] == "no face found"
    assert empty["label"] is None and "error" not in empty
    for item in (single, multi):
        assert item["label"] in predictor.class_names
        for probs in _all_probs(item):
            assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)
        for face in item["frames"][0]["faces"]:
            x1, y1, x2, y2 = face["box"]
            assert x2 > x1 and y2 > y1 and face["label"] == max(face["probs"], key=face["probs"].get)


def test_videos_sample_frames_and_label_the_clip(predictor, media):
    none = predict_file(predictor, media / "no_face.mp4")
    assert none["type"] == "video" and "error" not in none
    assert len(none["frames"]) == 4 and all(f["faces"] == [] for f in none["frames"])  # ~3.9 s at 1 fps
    assert none["label"] is None and "no face" in none["note"]
    single = predict_file(predictor, media / "single_face.mp4")
    assert [f["index"] for f in single["frames"]] == [0, 30, 60]  # 30 fps, one frame a second
    assert all(len(f["faces"]) == 1 for f in single["frames"])
    assert single["label"] in predictor.class_names
    assert sum(single["probs"].values()) == pytest.approx(1.0, abs=1e-6)
    hevc = predict_file(predictor, media / "face_noface.mov")  # HEVC: the face leaves mid-clip
    with_face = [bool(f["faces"]) for f in hevc["frames"]]
    assert hevc["decoded_frames"] == 169 and any(with_face) and not all(with_face)
    assert hevc["label"] in predictor.class_names


def test_annotated_copy_has_every_frame_and_boxes_drawn(predictor, media, tmp_path):
    import av

    from bench.inference.annotate import AnnotatedVideo

    out = tmp_path / "annotated.mp4"
    result = predict(predictor, [media / "single_face.mp4"],
                     lambda path, video: AnnotatedVideo(out, video.rate, predictor.class_names))["inputs"][0]
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 30
        written = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    with av.open(str(media / "single_face.mp4")) as container:
        source = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert len(written) == result["decoded_frames"] == 72  # same frame count and rate as the source
    x1, y1, x2, y2 = (int(round(v)) for v in result["frames"][0]["faces"][0]["box"])
    edge = np.abs(written[0][y1 - 1:y1 + 3, x1:x2].astype(int) - source[y1 - 1:y1 + 3, x1:x2]).mean()
    inside = np.abs(written[0][y1 + 40:y2 - 40, x1 + 40:x2 - 40].astype(int)
                    - source[y1 + 40:y2 - 40, x1 + 40:x2 - 40]).mean()
    assert edge > 40 > 8 > inside  # the box's top edge is drawn; the face itself is only re-encoded


def test_cli_resolves_best_and_skips_a_corrupt_file(checkpoint, media, cache_dir, tmp_path, capsys):
    results = tmp_path / "results"
    # chosen on validation: the record with the better test UAR (0.9) has the worse validation UAR
    for val, test, ckpt in ((0.2, 0.9, tmp_path / "missing"), (0.5, 0.5, checkpoint)):
        append_record(results, {"kind": "search", "dataset": "synthetic", "modality": "face", "selection": "val",
                                "val": {"uar": val}, "test": {"uar": test}, "checkpoint": str(ckpt),
                                "run": f"run-{val}"})
    append_record(results, {"kind": "search", "dataset": "synthetic", "modality": "face", "selection": "test",
                            "test": {"uar": 0.9}, "checkpoint": str(tmp_path / "missing")})  # never a leader
    assert resolve_model_ref("best:synthetic/face", results) == checkpoint
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    code = main(["predict", "best:synthetic/face", str(broken), str(media / "multi_face.jpg"), "--json",
                 "--results-dir", str(results), "--cache-dir", str(cache_dir)])
    out = json.loads(capsys.readouterr().out)
    assert code == 1  # something was skipped; the rest was still predicted
    assert out["model"] == "fer_cnn" and [i["type"] for i in out["inputs"]] == ["video", "image"]
    assert "cannot open video broken.mp4" in out["inputs"][0]["error"]
    assert len(out["inputs"][1]["frames"][0]["faces"]) == 5
    assert len(format_csv(out).strip().splitlines()) == 1 + 1 + 5  # header, the skipped file, one row per face


def test_bad_references_and_inputs_are_one_sentence_and_exit_2(checkpoint, tmp_path, capsys):
    with pytest.raises(UserError, match=r"no leader recorded for raf/face .*fer-bench search face --dataset raf"):
        resolve_model_ref("best:raf/face", tmp_path)
    assert main(["predict", "best:raf/face", str(tmp_path), "--results-dir", str(tmp_path)]) == 2
    assert main(["predict", str(tmp_path / "nope"), str(tmp_path)]) == 2
    assert main(["predict", "best:raf", str(tmp_path)]) == 2
    with pytest.raises(UserError, match="does not exist"):
        expand_inputs([str(tmp_path / "missing.jpg")])
    err = capsys.readouterr().err
    assert err.count("fer-bench: error:") == 3 and all(len(line) < 400 for line in err.splitlines())
