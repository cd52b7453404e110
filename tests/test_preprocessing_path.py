"""One preprocessing path (issue 14, point 3): the data pipeline imports no model family, and
``predict`` on a dataset sample gives the logits evaluation gives for it (both go through
``bench.data.transforms.eval_transform``)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fer_models
from bench.data import create_dataset, get_adapter, load_splits, synthetic_voice
from bench.inference.predict import Face, Predictor, predict_file, read_image
from bench.training.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_data_pipeline_imports_no_model_family():
    code = ("import sys, bench.data, bench.data.transforms\n"
            "from fer_models import InputSpec\n"
            "from fer_models.spec import VIDEO_STREAMS\n"
            # the voice representations' registry (a leaf: torch, the spec and the plugin variable's
            # reader) is no model family
            "heavy = [m for m in sys.modules if m in ('timm', 'sklearn', 'skops') or m.split('.')[0] == 'fer_models'"
            " and m not in ('fer_models', 'fer_models.spec', 'fer_models.plugins', 'fer_models.voice_features')]\n"
            "print(heavy)\n"
            "assert not heavy, heavy\n"
            # the data layer sits below the trial, the sweep and the families: it imports none of them
            "upward = [m for m in sys.modules if m.startswith(('bench.training', 'bench.sweep', 'bench.families'))]\n"
            "assert not upward, upward\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_registry_loads_the_families_on_first_use():
    assert "fer_cnn" in fer_models.list_models() and fer_models.is_model("timm/resnet18")
    from fer_models import InputSpec, create_model, example_inputs  # every name the package exported

    assert isinstance(create_model("fer_cnn", num_classes=3).input_spec, InputSpec) and callable(example_inputs)


def test_one_stream_vocabulary():
    from bench.data import tensors
    from fer_models import examples, spec

    assert tensors.VIDEO_STREAMS is spec.VIDEO_STREAMS and examples.STREAM_CHANNELS is spec.STREAM_CHANNELS
    assert set(spec.MOTION_STREAMS) <= set(spec.VIDEO_STREAMS) and spec.SEQUENCE_STREAMS <= set(spec.VIDEO_STREAMS)


def _fresh_checkpoint(folder: Path, name: str, dataset: str, **config) -> Path:
    """A seeded, untrained model saved as a sweep saves one (parity needs no training)."""
    torch.manual_seed(0)
    flat = {"model.name": name, "data.dataset": dataset, **config}
    kwargs = {k[len("model."):]: v for k, v in config.items() if k.startswith("model.")}
    if "data.image_size" in config:
        kwargs["image_size"] = config["data.image_size"]
    model = fer_models.create_model(name, num_classes=len(get_adapter(dataset).class_names), **kwargs)
    save_checkpoint(folder, model=model, epoch=0, config=flat)
    return folder


def test_predict_on_a_face_sample_gives_the_evaluation_logits(tmp_path, cache_dir, monkeypatch):
    from PIL import Image

    ckpt = _fresh_checkpoint(tmp_path / "face", "fer_cnn", "synthetic", **{"data.image_size": 32})
    predictor = Predictor(ckpt, cache_dir=cache_dir)
    model = predictor.model
    test = create_dataset("synthetic", "test", 0, model.input_spec, cache_dir=cache_dir, image_size=32)
    with torch.no_grad():
        want = model(test.inputs[:3])["logits"]
    # the same samples as files: the cached crops written as PNGs, read back as predict reads a photo
    _, _, splits = load_splits("synthetic", 0, None, cache_dir)
    crops = get_adapter("synthetic").load_arrays(splits["test"][:3], None, cache_dir)
    paths = []
    for i, crop in enumerate(crops):
        paths.append(tmp_path / f"face{i}.png")
        Image.fromarray(crop.squeeze(-1) if crop.shape[-1] == 1 else crop).save(paths[-1])
    # a crop is already the aligned face: detection is not what this test is about
    def whole_image_is_the_face(image):
        return [Face([0, 0, image.shape[1], image.shape[0]], 1.0, image, np.zeros(10, np.float32))]

    monkeypatch.setattr(predictor, "detect_faces", whole_image_is_the_face)
    with torch.no_grad():
        got = torch.cat([model(predictor.face_inputs(predictor.detect_faces(read_image(p))))["logits"] for p in paths])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    for path, logits in zip(paths, want):
        probs = predict_file(predictor, path)["probs"]
        expected = torch.softmax(logits.double(), 0).numpy()
        np.testing.assert_allclose([probs[c] for c in predictor.class_names], expected, atol=1e-6)


@pytest.fixture
def small_voice(tmp_path, monkeypatch):
    """Six synthetic speakers (as in test_synthetic_media): enough for a fold, quick to generate."""
    monkeypatch.setattr(synthetic_voice, "NUM_SUBJECTS", 6)
    monkeypatch.setattr(synthetic_voice, "PER_CLASS", 2)
    return tmp_path / "voice-cache"


def test_predict_on_a_voice_clip_gives_the_evaluation_logits(tmp_path, small_voice):
    ckpt = _fresh_checkpoint(tmp_path / "voice", "voice_cnn2d", "synthetic-voice", **{"model.frames": 301})
    predictor = Predictor(ckpt, cache_dir=small_voice)
    model = predictor.model
    test = create_dataset("synthetic-voice", "test", 0, model.input_spec, cache_dir=small_voice)
    _, _, splits = load_splits("synthetic-voice", 0, None, small_voice)
    with torch.no_grad():
        want = model(test.inputs[:2])["logits"]
    for sample, logits in zip(splits["test"][:2], want):
        result = predict_file(predictor, Path(sample.path))
        assert len(result["frames"]) == 1  # a 2.5 s clip fits one window of the model's 301 frames
        expected = torch.softmax(logits.double(), 0).numpy()
        np.testing.assert_allclose([result["probs"][c] for c in predictor.class_names], expected, atol=1e-6)


def test_predict_needs_no_training_data_the_checkpoint_keeps_the_fitted_voice_statistics(tmp_path, small_voice):
    """A trial saves its training split's fitted voice transform (statistics and the speaker-
    normalisation fallback) in its checkpoint; predict reads it there, so moving the training data
    away changes no probability and predict does not go looking for (or regenerate) that data."""
    import shutil

    from bench.inference.predict import predict_audio
    from bench.training.checkpoint import load_checkpoint
    from bench.training.trainable import run_trial

    folder = tmp_path / "model"

    def keep(metrics, directory):
        shutil.copytree(directory, folder, dirs_exist_ok=True)

    # 32-frame windows (each synthetic utterance is cut into several) and speaker normalisation
    config = {"model.name": "sk_logreg", "model.features": "logmel", "model.frames": 32, "model.speaker_norm": True,
              "data.dataset": "synthetic-voice"}
    run_trial(config, cache_dir=small_voice, report=keep)
    state = load_checkpoint(folder)["extra"]["preprocessing"]
    assert state["mean"] and state["raw_mean"] and state["raw_mean"] != state["mean"]
    _, _, splits = load_splits("synthetic-voice", 0, None, small_voice)
    clips = []
    for i, sample in enumerate(splits["test"][:3]):  # the inputs live outside the training data
        clips.append(tmp_path / f"clip{i}.wav")
        shutil.copy(sample.path, clips[-1])

    def probabilities(predictor):
        return [[w["probs"][c] for w in predict_audio(predictor, clip)["frames"] for c in predictor.class_names]
                for clip in clips]

    with_data = Predictor(folder, cache_dir=small_voice)
    want = probabilities(with_data)
    assert max(len(p) for p in want) > len(with_data.class_names)  # several windows per clip
    shutil.move(small_voice, tmp_path / "moved-away")
    without_data = Predictor(folder, cache_dir=small_voice)
    got = probabilities(without_data)
    assert got == want
    assert not small_voice.exists()  # the training data was neither read nor generated again
    assert not any("not available" in note for note in without_data.notes)
