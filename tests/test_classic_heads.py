"""Classic scikit-learn heads as trials (sk_svm / sk_logreg / sk_mlp), the fusion model's SVM head,
skops checkpoints with an allow-list, predict/export of both, and clip thresholds chosen on validation."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import fer_models
from bench.errors import UserError
from bench.training.checkpoint import HEAD_FILE, load_checkpoint, load_estimator
from bench.training.classic_trial import tune_clip_threshold
from bench.training.evaluation import evaluate_checkpoint, load_trained_model
from bench.training.trainable import run_trial

# frames=600 covers every synthetic utterance, so the dataset's centre crop and predict's one
# window hold the same frames (both pad with silence around the whole utterance)
SVM = {"model.name": "sk_svm", "model.features": "logmel", "model.frames": 600, "model.kernel": "rbf",
       "model.C": 1.0, "model.class_weight": "balanced", "data.dataset": "synthetic-voice", "train.max_epochs": 20}


def _keep(folder: Path, reports: list):
    def report(metrics, directory):
        reports.append(metrics)
        shutil.copytree(directory, folder, dirs_exist_ok=True)
    return report


@pytest.fixture(scope="module")
def svm_trial(tmp_path_factory, cache_dir):
    folder, reports = tmp_path_factory.mktemp("models") / "svm", []
    run_trial(SVM, cache_dir=cache_dir, report=_keep(folder, reports))
    return folder, reports


def test_classic_trial_fits_once_and_reports_its_validation_metrics(svm_trial, cache_dir):
    folder, reports = svm_trial
    assert len(reports) == 1 and reports[0]["epoch"] == 1  # train.max_epochs=20 does not apply
    metrics = reports[0]
    assert 0.0 <= metrics["val/uar"] <= 1.0 and metrics["params"] > 0
    assert (folder / HEAD_FILE).is_file() and load_checkpoint(folder)["config"] == SVM
    again = evaluate_checkpoint(folder, split="val", cache_dir=cache_dir)  # the saved head, reloaded
    assert again["uar"] == pytest.approx(metrics["val/uar"]) and again["loss"] == pytest.approx(metrics["val/loss"])


def test_each_classic_head_learns_above_chance(cache_dir):
    for name, extra in (("sk_logreg", {"model.C": 0.5}), ("sk_mlp", {"model.hidden": 32})):
        reports: list = []
        run_trial({"model.name": name, "model.features": "mfcc", "data.dataset": "synthetic-voice", **extra},
                  cache_dir=cache_dir, report=lambda m, d, out=reports: out.append(m))
        assert reports[0]["val/uar"] > 1 / 7 + 0.05, name


def test_skops_head_loads_with_the_allow_list_and_refuses_other_types(svm_trial, tmp_path):
    import skops.io as sio

    folder, _ = svm_trial
    estimator = load_estimator(folder)
    assert type(estimator).__name__ == "Pipeline"
    bad = tmp_path / "bad"
    bad.mkdir()
    estimator.steps[0][1].planted = Planted()  # a type outside the allow-list, inside the pipeline
    sio.dump(estimator, bad / HEAD_FILE)
    with pytest.raises(UserError, match="Planted"):
        load_estimator(bad)


class Planted:
    """Stands for anything a tampered file could ask skops to build."""


def test_malformed_head_config_is_one_sentence_naming_the_key(cache_dir):
    for kwargs, key in (({"kernel": "sigmoid"}, "model.kernel"), ({"C": 0}, "model.C"), ({"C": -1.0}, "model.C")):
        with pytest.raises(fer_models.ModelConfigError, match=key):
            fer_models.create_model("sk_svm", 7, **kwargs)
    with pytest.raises(fer_models.ModelConfigError, match="model.svm_c"):
        fer_models.create_model("av_fusion", 7, head="svm", svm_c=0.0)
    with pytest.raises(UserError, match="model.kernel"):  # in a trial: a config error (not retried)
        run_trial({**SVM, "model.kernel": "poly"}, cache_dir=cache_dir, report=lambda m, d: None)


def test_predict_gives_the_probabilities_evaluation_gives(svm_trial, cache_dir):
    from bench.data import create_dataset, load_splits
    from bench.inference.predict import Predictor, predict_audio

    folder, _ = svm_trial
    model, cfg, _ = load_trained_model(folder)
    _, _, splits = load_splits(cfg.data.dataset, cfg.data.fold, None, cache_dir)
    val = create_dataset(cfg.data.dataset, "val", cfg.data.fold, model.input_spec, cache_dir=cache_dir)
    with torch.no_grad():
        want = model(val.inputs[:3])["logits"].double().softmax(1).numpy()
    predictor = Predictor(folder, cache_dir=cache_dir)
    for sample, expected in zip(splits["val"][:3], want):
        got = predict_audio(predictor, Path(sample.path))
        assert len(got["frames"]) == 1
        probs = np.array([got["frames"][0]["probs"][c] for c in predictor.class_names])
        np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_export_onnx_of_a_classic_head_matches_scikit_learn(svm_trial, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from bench.inference.export import PARITY_TOLERANCE, export_onnx

    folder, _ = svm_trial
    report = export_onnx(folder, tmp_path / "svm.onnx")
    assert report.ok and report.max_abs_diff < PARITY_TOLERANCE
    model, _, _ = load_trained_model(folder)  # and directly against scikit-learn's predict_proba
    x = torch.randn(5, *model.input_spec.input_size)
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    logits, _ = session.run(["logits", "features"], {"input": x.numpy()})
    want = model.estimator.predict_proba(model.forward_features(x).numpy())
    np.testing.assert_allclose(np.exp(logits), want, atol=PARITY_TOLERANCE)


FUSION = {"model.name": "av_fusion", "model.fusion": "early", "model.visual": "fer_cnn",
          "model.voice": "voice_cnn2d", "model.hidden": 32, "data.dataset": "synthetic-av", "data.image_size": 32,
          "train.batch_size": 32, "optim.lr": 3e-3, "train.max_epochs": 1}


def test_fusion_svm_head_reports_the_svms_metrics_and_predicts_and_exports(tmp_path, cache_dir):
    from bench.inference.export import export_onnx
    from bench.inference.predict import Predictor
    from bench.training.engine import evaluate
    from bench.training.tasks import create_task
    from fer_models.fusion import SVMHeadModel

    folder, reports = tmp_path / "svm", []
    config = {**FUSION, "model.head": "svm", "model.svm_kernel": "linear", "model.svm_c": 1.0}
    run_trial(config, cache_dir=cache_dir, report=_keep(folder, reports))
    assert (folder / HEAD_FILE).is_file()
    model, cfg, _ = load_trained_model(folder)
    assert isinstance(model, SVMHeadModel)
    again = evaluate_checkpoint(folder, split="val", cache_dir=cache_dir)
    assert again["uar"] == pytest.approx(reports[0]["val/uar"])
    assert again["loss"] == pytest.approx(reports[0]["val/loss"], rel=1e-4)
    # the same trained network's own linear head answers differently: the reported numbers are the SVM's
    from torch.utils.data import DataLoader

    from bench.data import create_dataset

    val = create_dataset(cfg.data.dataset, "val", 0, model.input_spec, cache_dir=cache_dir, image_size=32)
    linear = evaluate(model.model, DataLoader(val, batch_size=128), create_task("classification"))
    assert linear["loss"] != pytest.approx(reports[0]["val/loss"], rel=1e-3)
    assert Predictor(folder, cache_dir=cache_dir).model is not None  # predict accepts it
    pytest.importorskip("onnxruntime")
    assert export_onnx(folder, tmp_path / "fusion.onnx").ok


def test_clip_threshold_prefers_confident_frames_when_they_are_right():
    # two clips of class 0: one confident right frame and two less sure wrong ones, which outvote
    # it unless the threshold (> 0.75) sets them aside
    probs = np.array([[0.9, 0.1], [0.25, 0.75], [0.25, 0.75]] * 2 + [[0.2, 0.8]] * 3 * 2)
    labels = np.array([0] * 6 + [1] * 6)
    clips = ["a"] * 3 + ["b"] * 3 + ["c"] * 3 + ["d"] * 3
    threshold, uar = tune_clip_threshold(probs, labels, clips)
    assert 0.75 < threshold <= 0.9 and uar == 1.0
    assert tune_clip_threshold(probs[6:], labels[6:], clips[6:])[0] == 0.0  # nothing to gain: count every frame


def test_clip_threshold_is_chosen_on_validation_stored_and_read_by_predict(tmp_path_factory, cache_dir):
    from bench.data.ckplus import CkPlus
    from bench.inference.predict import Predictor

    root = CkPlus.make_fake_ck48(tmp_path_factory.mktemp("ck48"))  # 3 frames per sequence share clip_id
    folder, reports = tmp_path_factory.mktemp("models") / "ck", []
    config = {"model.name": "fer_cnn", "data.dataset": "ckplus", "data.data_root": str(root),
              "data.image_size": 32, "train.max_epochs": 1, "train.batch_size": 32}
    run_trial(config, cache_dir=cache_dir, report=_keep(folder, reports))
    stored = load_checkpoint(folder)["extra"]
    assert "clip_threshold" in stored and 0.0 <= stored["clip_threshold"] < 1.0
    assert reports[0]["val/clip_uar"] == stored["val_clip_uar"]
    assert Predictor(folder, cache_dir=cache_dir).threshold == stored["clip_threshold"]
    assert Predictor(folder, cache_dir=cache_dir, threshold=0.3).threshold == 0.3  # --threshold still wins


def test_pooling_per_representation_and_layer_choice(empty_encoder_env):
    # functionals as they are; low-level descriptors -> mean + std over time; encoder layers -> one layer
    assert fer_models.create_model("sk_logreg", 7, features="egemaps").num_features == 88
    assert fer_models.create_model("sk_logreg", 7, features="egemaps_lld").num_features == 2 * 25
    head = fer_models.create_model("sk_logreg", 3, features="wav2vec2_base", layer=4)  # no weights: bundle shape
    layers, dim = head.input_spec.input_size
    x = torch.randn(30, layers, dim)
    assert torch.equal(head.forward_features(x), x[:, 4])
    head.fit(head.forward_features(x).numpy(), np.arange(30) % 3)
    assert head(x)["logits"].exp().sum(1).allclose(torch.ones(30, dtype=torch.float32))
    with pytest.raises(fer_models.ModelConfigError, match="model.layer"):
        fer_models.create_model("sk_svm", 3, features="wav2vec2_base", layer=layers)


@pytest.fixture
def empty_encoder_env(tmp_path, monkeypatch):
    """No weights from this machine's torch hub or environment: the spec then uses the bundle's shape."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    for name in ("WAVLM_BASE", "HUBERT_BASE", "WAV2VEC2_BASE"):
        monkeypatch.delenv(f"FER_BENCH_{name}_WEIGHTS", raising=False)


def test_voice_clip_threshold_is_tuned_on_the_windows_predict_cuts(tmp_path, cache_dir):
    from bench.data import load_splits
    from bench.inference.predict import Predictor, predict_audio
    from bench.training.metrics import classification_metrics

    # 32-frame windows: every synthetic utterance is cut into several, as predict cuts a file
    config = {"model.name": "voice_cnn1d", "model.frames": 32, "model.width": 16, "data.dataset": "synthetic-voice",
              "train.max_epochs": 1, "train.batch_size": 32}
    folder, reports = tmp_path / "cnn", []
    run_trial(config, cache_dir=cache_dir, report=_keep(folder, reports))
    stored = load_checkpoint(folder)["extra"]
    assert "clip_threshold" in stored and reports[0]["val/clip_uar"] == stored["val_clip_uar"]
    predictor = Predictor(folder, cache_dir=cache_dir)
    assert predictor.threshold == stored["clip_threshold"]
    _, _, splits = load_splits("synthetic-voice", 0, None, cache_dir)
    results = [predict_audio(predictor, Path(s.path)) for s in splits["val"]]
    assert max(len(r["frames"]) for r in results) > 1
    truth = [s.label for s in splits["val"]]
    labels = [predictor.class_names.index(r["label"]) for r in results]
    # predict's utterance labels, with the stored threshold, score what validation said they would
    assert classification_metrics(truth, labels, 7)["uar"] == pytest.approx(stored["val_clip_uar"])
