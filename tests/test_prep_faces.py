"""Face preparation: real MTCNN on real photos, 5-point alignment, landmark features, and the
content-keyed cache (a second prepare does no work; trials only read)."""
from __future__ import annotations

import numpy as np
import pytest

from bench.data import get_adapter
from bench.data.face_files import read_image
from bench.data.prep import faces
from bench.data.prep.faces import FaceAligner, FaceAlignSettings, landmark_distances, template, warp_to_template
from bench.errors import UserError


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    return FaceAligner(FaceAlignSettings())  # building MTCNN costs ~1 s: once per module


class _NoFaceMTCNN:
    """Stands in for MTCNN where a test is about the cache, not detection: finds nothing, instantly."""

    def detect(self, batch, landmarks=True):
        return [None] * len(batch), [None] * len(batch), [None] * len(batch)


def _counting(monkeypatch, mtcnn) -> dict:
    """Count how often a prepare builds an aligner and how many images it aligns."""
    calls = {"built": 0, "images": 0}

    class Counting(FaceAligner):
        def __init__(self, settings):
            calls["built"] += 1
            self.settings, self.mtcnn = settings, mtcnn

        def align(self, images):
            calls["images"] += len(images)
            return super().align(images)

    monkeypatch.setattr(faces, "FaceAligner", Counting)
    return calls


@pytest.fixture
def counting_aligner(monkeypatch):
    return _counting(monkeypatch, _NoFaceMTCNN())


@pytest.fixture(scope="module")
def fake_jaffe(tmp_path_factory):
    return get_adapter("jaffe").make_fake(tmp_path_factory.mktemp("jaffe"))


@pytest.fixture(scope="module")
def photos(shared_data, aligner):
    names = ["single_face.jpg", "multi_face.jpg", "free-mountain-vector-01.jpg"]
    return aligner.align([read_image(shared_data / "media" / n, rgb=True) for n in names])


def test_mtcnn_counts_faces_in_real_photos(photos):
    assert [r.faces for r in photos] == [1, 5, 0]
    assert [r.detected for r in photos] == [True, True, False]
    for r in photos:
        assert r.crop.shape == (112, 112, 3) and r.crop.dtype == np.uint8 and r.distances.shape == (10,)


def test_largest_face_policy_picks_the_biggest_box(photos):
    group = photos[1]
    areas = (group.boxes[:, 2] - group.boxes[:, 0]) * (group.boxes[:, 3] - group.boxes[:, 1])
    x0, y0, x1, y1 = group.boxes[int(np.argmax(areas))]
    eyes = group.landmarks[:2]
    assert ((eyes[:, 0] > x0) & (eyes[:, 0] < x1) & (eyes[:, 1] > y0) & (eyes[:, 1] < y1)).all()
    assert group.score >= 0.9


def test_landmark_distances_are_scale_free():
    points = template(FaceAlignSettings())
    d = landmark_distances(points)
    assert d.shape == (10,) and d[0] == pytest.approx(1.0)  # pair (0, 1) is the inter-ocular distance
    assert np.allclose(landmark_distances(points * 3 + 7), d, atol=1e-5)


def test_alignment_puts_the_landmarks_on_the_template():
    settings = FaceAlignSettings(crop_size=64)
    target = template(settings)
    angle, scale, shift = np.deg2rad(20), 2.5, np.array([40.0, 25.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
    source = target @ rot.T + shift  # the template seen rotated, scaled and moved in a bigger image
    image = np.zeros((300, 300, 3), np.uint8)
    for x, y in source.astype(int):
        image[y - 1:y + 2, x - 1:x + 2] = 255
    crop = warp_to_template(image, source, settings)
    assert crop.shape == (64, 64, 3)
    for x, y in np.rint(target).astype(int):
        assert crop[y - 1:y + 2, x - 1:x + 2].max() > 100  # each landmark lands on its template point


def test_prepare_fills_the_cache_once_and_reports_failures(fake_jaffe, tmp_path, aligner, monkeypatch):
    counting_aligner = _counting(monkeypatch, aligner.mtcnn)  # the real MTCNN
    jaffe = get_adapter("jaffe")
    samples = jaffe.index(fake_jaffe, tmp_path).samples
    first = jaffe.prepare(samples, fake_jaffe, tmp_path, progress=False)
    assert first.computed == len(samples) == 140 and first.cached == 0
    assert counting_aligner == {"built": 1, "images": 140}
    assert first.stats["no_face"] == 140  # noise images hold no face: the centre-crop fallback
    assert "no face in 140 of 140 images (100.0%)" in first.notes[0] and "centre crop" in first.notes[0]
    second = jaffe.prepare(jaffe.index(fake_jaffe, tmp_path).samples, fake_jaffe, tmp_path, progress=False)
    assert second.computed == 0 and second.cached == 140
    assert counting_aligner == {"built": 1, "images": 140}  # no MTCNN built, no image aligned
    crops = jaffe.load_arrays(samples[:4], fake_jaffe, tmp_path)
    assert crops.shape == (4, 112, 112, 3) and crops.dtype == np.uint8
    assert jaffe.load_landmark_features(samples[:4], fake_jaffe, tmp_path).shape == (4, 10)
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temp files behind


def test_settings_change_the_cache_key(fake_jaffe, tmp_path, counting_aligner):
    from bench.data.prepare import prepare_dataset

    prepare_dataset("jaffe", fake_jaffe, tmp_path, progress=False, settings=FaceAlignSettings(crop_size=48))
    _, report = prepare_dataset("jaffe", fake_jaffe, tmp_path, progress=False, settings=FaceAlignSettings(crop_size=48))
    assert report.computed == 0
    jaffe = get_adapter("jaffe")
    samples = jaffe.index(fake_jaffe, tmp_path).samples[:2]
    assert jaffe.load_arrays(samples, fake_jaffe, tmp_path).shape == (2, 48, 48, 3)  # trials read what was made


def test_drop_policy_removes_faceless_images(fake_jaffe, tmp_path, counting_aligner):
    from bench.data.prepare import prepare_dataset

    prepare_dataset("jaffe", fake_jaffe, tmp_path, progress=False, settings=FaceAlignSettings(no_face="drop"))
    result = get_adapter("jaffe").index(fake_jaffe, tmp_path)
    assert result.samples == []
    assert sum("no face detected" in s.reason for s in result.skipped) == 140


def test_trials_never_detect_they_ask_for_prepare(fake_jaffe, tmp_path, counting_aligner):
    jaffe = get_adapter("jaffe")
    samples = jaffe.index(fake_jaffe, tmp_path).samples[:2]
    with pytest.raises(UserError, match="fer-bench data prepare --dataset jaffe"):
        jaffe.load_arrays(samples, fake_jaffe, tmp_path)
    assert counting_aligner["built"] == 0


def test_prepare_cli_reports_and_second_run_is_free(fake_jaffe, tmp_path, counting_aligner, capsys):
    from bench.cli import main

    args = ["data", "prepare", "--dataset", "jaffe", "--data-root", str(fake_jaffe), "--cache-dir", str(tmp_path),
            "--crop-size", "32", "--quiet", "--workers", "1"]  # in this process: the counting aligner is patched here
    assert main(args) == 0
    assert "140 prepared now" in capsys.readouterr().out
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "0 prepared now, 140 already cached" in out and "not-a-jaffe-name.tiff" in out


def test_landmark_branch_gets_image_and_landmarks(fake_jaffe, tmp_path, counting_aligner):
    from bench.data import create_dataset
    from fer_models import InputSpec

    get_adapter("jaffe").prepare(get_adapter("jaffe").index(fake_jaffe, tmp_path).samples, fake_jaffe, tmp_path,
                                 progress=False)
    spec = InputSpec("face", (3, 64, 64), mean=(0.5,) * 3, std=(0.5,) * 3, extras={"landmarks": 10})
    dataset = create_dataset("jaffe", "train", 0, spec, cache_dir=tmp_path, data_root=fake_jaffe)
    x, y = dataset[0]
    assert x["image"].shape == (3, 64, 64) and x["landmarks"].shape == (10,)
    example = dataset.inputs[:1].to("cpu")  # what latency timing feeds the model
    assert example["image"].shape == (1, 3, 64, 64) and example["landmarks"].shape == (1, 10)
    plain = create_dataset("jaffe", "train", 0, InputSpec("face", (1, 48, 48), mean=(0.5,), std=(0.5,)),
                           cache_dir=tmp_path,
                           data_root=fake_jaffe)
    assert plain[0][0].shape == (1, 48, 48)
