"""Audio-visual fusion: late-fusion identities, checkpoint-loaded encoders, the SVM head, and
video-level clip aggregation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fer_models import aggregate_clips, create_model, example_inputs
from fer_models.fusion import SVMHeadModel, fit_svm_head

TINY = {"visual_kwargs": {"image_size": 32}, "voice_kwargs": {"n_mels": 32, "frames": 32, "width": 8},
        "hidden": 16}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores: see conftest


def test_late_fusion_with_full_visual_weight_is_the_visual_model():
    torch.manual_seed(0)
    model = create_model("av_fusion", num_classes=6, fusion="late", late_weight=1.0, **TINY).eval()
    x = example_inputs(model, batch_size=4)
    with torch.no_grad():
        fused = F.softmax(model(x)["logits"], 1)
        visual = F.softmax(model.visual(x["visual"])["logits"], 1)
    torch.testing.assert_close(fused, visual)


def test_late_fusion_logits_are_log_mixed_probabilities():
    torch.manual_seed(0)
    model = create_model("av_fusion", num_classes=6, fusion="late", late_weight=0.25, **TINY).eval()
    x = example_inputs(model, batch_size=3)
    with torch.no_grad():
        mixed = (0.25 * F.softmax(model.visual(x["visual"])["logits"], 1)
                 + 0.75 * F.softmax(model.voice(x["voice"])["logits"], 1))
        torch.testing.assert_close(model(x)["logits"].exp(), mixed)
    learned = create_model("av_fusion", num_classes=6, fusion="late", late_weight="learned", **TINY)
    assert learned.late_weight().item() == pytest.approx(0.5)
    assert learned.weight_logit.requires_grad


def test_encoders_load_from_a_bench_checkpoint_and_freeze(tmp_path):
    from bench.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    trained = create_model("fer_cnn", num_classes=6, image_size=32, hidden=24).eval()
    save_checkpoint(tmp_path, model=trained, epoch=3,
                    config={"model.name": "fer_cnn", "model.hidden": 24, "data.image_size": 32, "optim.lr": 0.01})
    model = create_model("av_fusion", num_classes=6, fusion="late", late_weight=1.0, visual_checkpoint=str(tmp_path),
                         freeze_visual=True, voice_kwargs=TINY["voice_kwargs"]).train()
    assert not model.visual.training and model.voice.training
    assert all(not p.requires_grad for p in model.visual.parameters())
    x = example_inputs(model, batch_size=3)
    assert x["visual"].shape == (3, 1, 32, 32)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(F.softmax(model(x)["logits"], 1), F.softmax(trained(x["visual"])["logits"], 1))
    # a different class count keeps the encoder's weights and re-initialises only its classifier
    other = create_model("av_fusion", num_classes=4, visual_checkpoint=str(tmp_path), **{k: v for k, v in TINY.items()
                                                                                           if k != "visual_kwargs"})
    torch.testing.assert_close(other.visual.dense[1].weight, trained.dense[1].weight)


def test_svm_head_predicts_from_frozen_fused_features():
    torch.manual_seed(0)
    model = create_model("av_fusion", num_classes=5, fusion="early", head="svm", svm_kernel="linear", svm_c=2.0,
                         **TINY).eval()
    assert (model.head_type, model.svm_kernel, model.svm_c) == ("svm", "linear", 2.0)
    x = example_inputs(model, batch_size=12)
    with torch.no_grad():
        features = model.forward_features(x)
    labels = np.arange(12) % 4  # class 4 never seen by the SVM
    svc = fit_svm_head(features, labels, kernel="linear", C=2.0)
    wrapped = SVMHeadModel(model, svc, num_classes=5)
    out = wrapped(x)
    assert out["logits"].shape == (12, 5) and out["aux_losses"] == {}
    probs = out["logits"].exp()
    torch.testing.assert_close(probs.sum(1), torch.ones(12, dtype=probs.dtype))
    assert (probs[:, 4] < 1e-6).all()


def test_aggregate_clips_ignores_unsure_clips():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.1, 0.45, 0.45]])
    label, mean = aggregate_clips(probs, threshold=0.6)
    assert label == 0
    np.testing.assert_allclose(mean, probs[0])
    label, mean = aggregate_clips(probs, threshold=0.0)
    np.testing.assert_allclose(mean, probs.mean(0))
    assert label == 0


def test_aggregate_clips_falls_back_to_all_clips():
    probs = torch.tensor([[0.4, 0.35, 0.25], [0.3, 0.45, 0.25]])
    label, mean = aggregate_clips(probs, threshold=0.9)
    np.testing.assert_allclose(mean, probs.mean(0).numpy(), rtol=1e-6)
    assert label == 1
    with pytest.raises(ValueError):
        aggregate_clips(np.zeros((0, 3)), 0.5)


def test_a_new_fusion_kind_is_one_registered_class():
    """What a contributor writes for a new kind (docs/architecture.md): one ``@register_fusion``
    class; ``model.fusion`` then picks it and the registry-wide contract test covers it."""
    from fer_models.fusion_kinds import FUSION_KINDS, FusionKind, register_fusion

    @register_fusion("toy_sum")
    class SumFusion(FusionKind):
        def build(self, model, visual_dim, voice_dim, *, hidden, attn_heads, dropout, late_weight):
            model.proj_visual = torch.nn.Linear(visual_dim, hidden)
            model.proj_voice = torch.nn.Linear(voice_dim, hidden)
            return hidden

        def features(self, model, x):
            return model.proj_visual(model.visual.forward_features(x["visual"])) + \
                model.proj_voice(model.voice.forward_features(x["voice"]))

    try:
        with pytest.raises(ValueError, match="already registered"):
            register_fusion("toy_sum")(SumFusion)
        model = create_model("av_fusion", num_classes=4, fusion="toy_sum", **TINY)
        out = model(example_inputs(model, batch_size=2))
        assert out["logits"].shape == (2, 4) and out["features"].shape == (2, TINY["hidden"])
    finally:
        del FUSION_KINDS["toy_sum"]
