"""The model contract (docs/architecture.md), checked for every registered model.

New registry entries are picked up automatically; ``SMALL`` only shrinks the ones whose defaults
are too slow for one CPU core.
"""
from __future__ import annotations

import pytest
import torch

import fer_models
from fer_models import create_model, example_inputs

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores: see conftest


NUM_CLASSES = 5
TINY_VIDEO = {"image_size": 32, "frames": 4}
TINY_MEL = {"n_mels": 32, "frames": 32}

SMALL: dict[str, dict] = {
    "fer_cnn": {"image_size": 32},
    "face_timm": {"backbone": "mobilenetv3_small_050", "image_size": 32},
    "cnn_lstm": {**TINY_VIDEO, "hidden": 16},
    "two_stream": {**TINY_VIDEO, "dim": 16},
    "mic": {**TINY_VIDEO, "code_dim": 16, "hidden": 16, "cnn_width": 8, "mine_hidden": 16,
            "identity_backbone": "mobilenetv3_small_050"},
    "voice_cnn1d": {"n_mfcc": 13, "frames": 32, "width": 16},
    "voice_cnn2d": {**TINY_MEL, "width": 8},
    "voice_crnn": {**TINY_MEL, "width": 8, "hidden": 16},
    "voice_timm": {**TINY_MEL, "backbone": "mobilenetv3_small_050"},
    "av_fusion": {"visual_kwargs": {"image_size": 32}, "voice_kwargs": {**TINY_MEL, "width": 8}, "hidden": 16},
}

# (name, extra kwargs) beyond each registered model with its small defaults
VARIANTS = [
    ("timm/mobilenetv3_small_050", {"image_size": 32}),
    ("voice_timm/resnet10t", TINY_MEL),
    ("face_timm", {"landmarks": True, "num_layers": 2, "dense_units": 16, "batch_norm": True}),
    ("cnn_lstm", {"rnn": "gru", "bidirectional": True, "pool": "attention"}),
    ("cnn_lstm", {"pool": "mean", "frame_encoder": "timm/mobilenetv3_small_050"}),
    ("mic", {"input_frames": "rgb", "alpha": 0.0, "beta": 0.0}),
    ("voice_crnn", {"rnn": "lstm", "bidirectional": False, "pool": "last"}),
    ("av_fusion", {"fusion": "late", "late_weight": "learned"}),
    ("av_fusion", {"fusion": "gated", "freeze_voice": True}),
    ("av_fusion", {"fusion": "cross_attention", "visual": "cnn_lstm",
                   "visual_kwargs": {**TINY_VIDEO, "hidden": 16}, "voice": "voice_crnn",
                   "voice_kwargs": {**TINY_MEL, "width": 8, "hidden": 8}}),
]

CASES = [(n, {}) for n in fer_models.list_models()] + VARIANTS


def small_model(name: str, **extra):
    base = SMALL.get(fer_models.model_entry(name).name, {})
    return create_model(name, num_classes=NUM_CLASSES, **{**base, **extra})


def _batch_size(x) -> int:
    return next(iter(x.values())).shape[0] if isinstance(x, dict) else x.shape[0]


@pytest.mark.parametrize("name,extra", CASES, ids=[f"{n}{'-' + '-'.join(map(str, e.values())) if e else ''}"
                                                    for n, e in CASES])
def test_model_contract(name, extra):
    torch.manual_seed(0)
    model = small_model(name, **extra)
    assert "bench" not in type(model).__module__
    assert model.input_spec.modality in ("face", "video", "voice", "av")
    assert model.num_features > 0
    classic = getattr(model, "is_classic", False)
    if classic:
        # a scikit-learn head has no torch parameters: it is fitted once, then obeys the same outputs
        assert sum(p.numel() for p in model.parameters()) == 0
        fit_x = example_inputs(model, batch_size=4 * NUM_CLASSES)
        fit_y = torch.arange(4 * NUM_CLASSES) % NUM_CLASSES
        model.fit(model.forward_features(fit_x).numpy(), fit_y.numpy())
    else:
        assert sum(p.numel() for p in model.parameters()) > 0

    x = example_inputs(model, batch_size=3)
    assert _batch_size(x) == 3

    model.train()
    out = model(x)
    assert set(out) == {"logits", "features", "aux_losses"}
    assert out["logits"].shape == (3, NUM_CLASSES)
    assert out["features"].shape == (3, model.num_features)
    loss = torch.nn.functional.cross_entropy(out["logits"], torch.tensor([0, 1, 2]))
    loss = loss + sum(out["aux_losses"].values())
    assert torch.isfinite(loss)
    if classic:  # log-probabilities of the fitted estimator
        torch.testing.assert_close(out["logits"].exp().sum(-1), torch.ones(3))
    else:
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)

    model.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        first = model(x)
        torch.manual_seed(1)
        second = model(x)
        torch.manual_seed(1)
        features = model.forward_features(x)
    torch.testing.assert_close(first["logits"], second["logits"])
    torch.testing.assert_close(first["features"], second["features"])
    torch.testing.assert_close(features, first["features"])


def test_every_registered_model_is_covered():
    assert {n for n, _ in CASES} >= set(fer_models.list_models())
    assert {"cnn_lstm", "two_stream", "mic", "voice_cnn1d", "voice_cnn2d", "voice_crnn", "voice_timm",
            "av_fusion"} <= set(fer_models.list_models())


def test_example_inputs_follow_the_modality_table():
    video = small_model("two_stream")
    x = example_inputs(video, batch_size=2)
    assert x["rgb"].shape == (2, 4, 3, 32, 32) and x["flow"].shape == (2, 4, 2, 32, 32)
    mic = small_model("mic")
    x = example_inputs(mic)
    assert x["residual"].shape == (2, 4, 3, 32, 32) and x["iframe"].shape == x["apex"].shape == (2, 3, 32, 32)
    assert small_model("mic", input_frames="rgb").input_spec.extras["streams"] == ("rgb", "iframe", "apex")
    assert example_inputs(small_model("cnn_lstm")).shape == (2, 4, 3, 32, 32)
    face = small_model("face_timm", landmarks=True)
    assert face.input_spec.extras["landmarks"] == 10
    assert example_inputs(face)["landmarks"].shape == (2, 10)
    assert example_inputs(small_model("voice_cnn1d")).shape == (2, 13, 32)
    assert small_model("voice_cnn1d").input_spec.extras["features"] == "mfcc"
    assert example_inputs(small_model("voice_crnn")).shape == (2, 1, 32, 32)
    av = example_inputs(small_model("av_fusion"))
    assert av["visual"].shape == (2, 1, 32, 32) and av["voice"].shape == (2, 1, 32, 32)


def test_landmark_distances_are_scale_free():
    from fer_models.face import landmark_distances

    points = torch.tensor([[[30.0, 40.0], [70.0, 40.0], [50.0, 60.0], [35.0, 80.0], [65.0, 80.0]]])
    d = landmark_distances(points)
    assert d.shape == (1, 10) and d[0, 0] == 1.0
    torch.testing.assert_close(landmark_distances(points * 2 + 5), d)


def test_unknown_voice_backbone_is_rejected():
    with pytest.raises(ValueError, match="unknown timm backbone"):
        fer_models.resolve_name("voice_timm/not_a_net")
