"""timm's training recipe as config fields: RandAugment / random erasing on face tensors, mixup and
cutmix soft targets, weight EMA in validation and checkpoints, horizontal-flip TTA at evaluation."""
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fer_models
from bench.data.tensors import FaceRecipe, TensorFaceDataset
from bench.errors import UserError
from bench.training.checkpoint import load_checkpoint
from bench.training.config import TrialConfig
from bench.training.engine import evaluate
from bench.training.tasks import Classification
from bench.training.trainable import SeededMixup, run_trial


def _faces(n=16, channels=1, size=48):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, channels, size, size, generator=g) * 2 - 1  # normalised with mean = std = 0.5
    return TensorFaceDataset(x, [i % 3 for i in range(n)], ("a", "b", "c"), [f"s{i}" for i in range(n)],
                             augment=True, seed=0)


def _epoch(ds, seed):
    ds.reseed(seed)
    return [ds[i][0] for i in range(len(ds))]


@pytest.mark.parametrize("channels", [1, 3])
def test_rand_augment_changes_images_keeps_shape_and_replays_under_the_epoch_seed(channels):
    ds = _faces(channels=channels)
    plain = _epoch(ds, 7)
    ds.set_recipe(FaceRecipe("rand-m9-n2-p1.0", 0.0, mean=(0.5,) * channels, std=(0.5,) * channels))
    augmented = _epoch(ds, 7)
    assert all(a.shape == p.shape and a.dtype == torch.float32 for a, p in zip(augmented, plain))
    assert sum(not torch.allclose(a, p, atol=0.02) for a, p in zip(augmented, plain)) >= len(ds) // 2
    assert all(torch.equal(a, b) for a, b in zip(augmented, _epoch(ds, 7)))  # same epoch seed, same images
    assert any(not torch.equal(a, b) for a, b in zip(augmented, _epoch(ds, 8)))
    assert float(torch.stack(augmented).min()) >= -1.0 - 1e-5 and float(torch.stack(augmented).max()) <= 1.0 + 1e-5


def test_random_erasing_fills_a_block_with_the_mean_and_leaves_the_stored_tensor_alone():
    ds = _faces()
    stored = ds.inputs.clone()
    ds.set_recipe(FaceRecipe("none", 1.0, mean=(0.5,), std=(0.5,)))
    erased = _epoch(ds, 3)
    assert all(int((x == 0).sum()) >= 0.02 * 48 * 48 for x in erased)  # 0 = the mean after normalising
    assert torch.equal(ds.inputs, stored)


def test_a_bad_rand_augment_string_is_a_user_error():
    with pytest.raises(UserError, match="data.auto_augment"):
        FaceRecipe("rand-q9", 0.0, mean=(0.5,), std=(0.5,))
    with pytest.raises(UserError, match="data.auto_augment"):
        FaceRecipe("autoaug", 0.0, mean=(0.5,), std=(0.5,))


@pytest.mark.parametrize("batch", [8, 7])
def test_mixup_targets_are_distributions_and_replay_under_the_epoch_seed(batch):
    cfg = TrialConfig.from_flat({"data.mixup": 0.4, "data.cutmix": 1.0, "train.label_smoothing": 0.1})
    mix = SeededMixup(cfg, num_classes=5)
    x, y = torch.randn(batch, 1, 16, 16), torch.arange(batch) % 5
    mix.reseed(11)
    mixed, soft = mix(x, y)
    assert mixed.shape == x.shape and soft.shape == (batch, 5)
    assert torch.allclose(soft.sum(1), torch.ones(batch))
    assert (soft.max(1).values < 1.0).all()  # smoothed, and mixed where lam < 1
    mix.reseed(11)
    again, soft_again = mix(x, y)
    assert torch.equal(mixed, again) and torch.equal(soft, soft_again)
    loss = Classification(label_smoothing=0.1)({"logits": torch.zeros(batch, 5)}, soft)["loss"]
    assert loss == pytest.approx(torch.log(torch.tensor(5.0)).item(), rel=1e-5)  # uniform logits: log K


TINY = {"model.name": "fer_cnn", "data.dataset": "synthetic", "data.image_size": 32,
        "train.batch_size": 64, "optim.lr": 3e-3, "train.max_epochs": 2}


def test_ema_weights_differ_from_the_trained_ones_and_are_what_the_checkpoint_holds(cache_dir):
    states = []
    run_trial({**TINY, "train.ema": True, "train.ema_decay": 0.99}, cache_dir=cache_dir,
              report=lambda m, d: states.append((m, load_checkpoint(d))))
    metrics, state = states[-1]
    ema, raw = state["model"], state["train_model"]
    assert ema.keys() == raw.keys()
    assert any(not torch.equal(ema[k], raw[k]) for k in ema if ema[k].is_floating_point())
    # validation scored the EMA weights: reloading "model" reproduces the reported val/uar
    from bench.training.trainable import build_parts

    parts = build_parts(TrialConfig.from_flat({**TINY, "train.ema": True}), cache_dir)
    parts.model.load_state_dict(ema)
    val = evaluate(parts.model, parts.val_loader, parts.task)
    assert val["uar"] == pytest.approx(metrics["val/uar"])
    parts.model.load_state_dict(raw)
    assert evaluate(parts.model, parts.val_loader, parts.task)["loss"] != pytest.approx(metrics["val/loss"])


def test_recipe_trial_resumes_exactly(cache_dir):
    cfg = {**TINY, "train.max_epochs": 3, "train.batch_size": 63, "data.auto_augment": "rand-m7-mstd0.5",
           "data.re_prob": 0.25, "data.mixup": 0.2, "data.cutmix": 1.0, "train.ema": True, "data.tta": True}
    full, saved = [], {}

    def keep(m, d):
        full.append(m)
        if m["epoch"] == 1:
            saved["state"] = load_checkpoint(d)

    run_trial(cfg, cache_dir=cache_dir, report=keep)
    resumed = []
    run_trial(cfg, cache_dir=cache_dir, report=lambda m, d: resumed.append(m), resume_state=saved["state"])
    for a, b in zip(full[1:], resumed, strict=True):
        assert a["val/uar"] == b["val/uar"]
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-5)


class _LeftHalf(torch.nn.Module):
    """Logits from the left half of the image only: mirroring the input changes them."""

    def forward(self, x):
        left = x[..., : x.shape[-1] // 2].mean(dim=(1, 2, 3))
        logits = torch.stack([left, -left], dim=1)
        return {"logits": logits, "features": logits}


def test_tta_averages_the_mirrored_pass():
    torch.manual_seed(0)
    asymmetric = torch.randn(6, 1, 8, 8)
    symmetric = torch.cat([asymmetric[..., :4], asymmetric[..., :4].flip(-1)], dim=-1)
    model, task = _LeftHalf(), Classification()
    for x, differs in ((asymmetric, True), (symmetric, False)):
        loader = DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=6)
        plain = evaluate(model, loader, task)["loss"]
        tta = evaluate(model, loader, task, tta=True)["loss"]
        assert (plain != pytest.approx(tta)) is differs
    # on an asymmetric input, the TTA logits are the mean of the image's and its mirror's
    from bench.training.engine import forward_tta

    out = forward_tta(model, asymmetric, tta=True)["logits"]
    expected = (model(asymmetric)["logits"] + model(asymmetric.flip(-1))["logits"]) / 2
    assert torch.allclose(out, expected)


def test_a_real_model_gives_different_logits_with_tta():
    torch.manual_seed(0)
    model = fer_models.create_model("fer_cnn", num_classes=3, image_size=16).eval()
    from bench.training.engine import forward_tta

    x = torch.randn(4, 1, 16, 16)
    assert not torch.allclose(forward_tta(model, x)["logits"], forward_tta(model, x, tta=True)["logits"])
    mirror_symmetric = torch.cat([x[..., :8], x[..., :8].flip(-1)], dim=-1)
    assert torch.allclose(forward_tta(model, mirror_symmetric)["logits"],
                          forward_tta(model, mirror_symmetric, tta=True)["logits"], atol=1e-5)


def test_fer_cnn_capacity_knobs_default_to_the_classic_baseline():
    classic = fer_models.create_model("fer_cnn", num_classes=7)
    explicit = fer_models.create_model("fer_cnn", num_classes=7, blocks=2, width=32, convs=1)
    assert {k: v.shape for k, v in classic.state_dict().items()} == \
        {k: v.shape for k, v in explicit.state_dict().items()}
    deeper = fer_models.create_model("fer_cnn", num_classes=7, blocks=4, convs=2, width=16)
    convs = [m for m in deeper.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 8 and convs[-1].out_channels == 128
    assert deeper(torch.randn(2, 1, 48, 48))["logits"].shape == (2, 7)
    with pytest.raises(ValueError, match="blocks"):
        fer_models.create_model("fer_cnn", num_classes=7, image_size=16, blocks=5)
