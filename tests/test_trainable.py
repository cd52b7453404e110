import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fer_models
from bench.training.checkpoint import load_checkpoint
from bench.training.engine import NonFiniteLossError, evaluate, train_one_epoch
from bench.training.tasks import Classification, class_weights_from_labels
from bench.training.trainable import run_trial

TINY = {"model.name": "fer_cnn", "data.dataset": "synthetic", "data.image_size": 32,
        "train.batch_size": 64, "optim.lr": 3e-3, "train.max_epochs": 3}


def test_trial_learns_and_reports_every_epoch(cache_dir):
    reports = []
    run_trial(TINY, cache_dir=cache_dir, report=lambda m, d: reports.append((m, load_checkpoint(d))))
    assert [m["epoch"] for m, _ in reports] == [1, 2, 3]
    first, last = reports[0][0], reports[-1][0]
    assert last["train/loss"] < first["train/loss"]
    assert last["val/uar"] > 1 / 7 + 0.05  # clearly above chance on held-out identities
    assert reports[-1][1]["epoch"] == 2 and reports[-1][1]["config"] == TINY


def test_resume_from_checkpoint_replays_the_same_trial(cache_dir):
    full, saved = [], {}

    def keep(m, d):
        full.append(m)
        if m["epoch"] == 1:
            saved["state"] = load_checkpoint(d)

    run_trial(TINY, cache_dir=cache_dir, report=keep)
    resumed = []
    run_trial(TINY, cache_dir=cache_dir, report=lambda m, d: resumed.append(m), resume_state=saved["state"])
    assert [m["epoch"] for m in resumed] == [2, 3]
    for a, b in zip(full[1:], resumed):
        assert a["val/uar"] == b["val/uar"]
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-5)


def test_nan_loss_stops_the_epoch_with_a_reason():
    model = fer_models.create_model("fer_cnn", num_classes=3, image_size=16)
    x = torch.full((8, 1, 16, 16), float("nan"))
    loader = DataLoader(TensorDataset(x, torch.zeros(8, dtype=torch.long)), batch_size=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteLossError, match="loss became nan"):
        train_one_epoch(model, loader, Classification(), opt)


def test_evaluate_reports_metrics_consistent_with_predictions():
    torch.manual_seed(0)
    model = fer_models.create_model("fer_cnn", num_classes=3, image_size=16)
    x, y = torch.randn(20, 1, 16, 16), torch.randint(0, 3, (20,))
    metrics = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=7), Classification())
    model.eval()
    with torch.no_grad():
        pred = model(x)["logits"].argmax(-1)
    assert metrics["accuracy"] == pytest.approx((pred == y).float().mean().item())
    assert sum(map(sum, metrics["confusion"])) == 20 and math.isfinite(metrics["loss"])


def test_class_weights_are_inverse_frequency():
    w = class_weights_from_labels(torch.tensor([0, 0, 0, 1]), 3)
    assert w.tolist() == pytest.approx([4 / 9, 4 / 3, 0.0])


def test_mic_trials_report_identity_leakage_of_the_expression_code(cache_dir):
    reports = []
    config = {"model.name": "mic", "data.dataset": "synthetic-video", "data.image_size": 32,
              "train.batch_size": 16, "train.max_epochs": 1}
    run_trial(config, cache_dir=cache_dir, report=lambda m, d: reports.append(m))
    leakage = reports[0]["val/identity_leakage"]
    assert 0.0 <= leakage <= 1.0  # probe accuracy naming validation subjects from z_E


def test_stop_epoch_ends_early_on_the_full_schedule(cache_dir):
    """A refit stops at the sweep's best epoch but keeps the searched LR schedule: its epochs are
    the uninterrupted run's first epochs exactly."""
    full, stopped = [], []
    run_trial(TINY, cache_dir=cache_dir, report=lambda m, d: full.append(m))
    run_trial({**TINY, "train.stop_epoch": 2}, cache_dir=cache_dir, report=lambda m, d: stopped.append(m))
    assert [m["epoch"] for m in stopped] == [1, 2]
    assert [m["train/loss"] for m in stopped] == [m["train/loss"] for m in full[:2]]


def test_refit_trains_on_train_plus_val_and_keeps_test_apart(cache_dir):
    from bench.data import create_dataset

    spec = fer_models.create_model("fer_cnn", num_classes=7).input_spec
    sets = {split: create_dataset("synthetic", split, 0, spec, cache_dir=cache_dir, image_size=32)
            for split in ("train", "val", "test")}
    refit = create_dataset("synthetic", "train", 0, spec, cache_dir=cache_dir, image_size=32, refit=True)
    assert len(refit) == len(sets["train"]) + len(sets["val"])
    assert set(refit.subjects) == set(sets["train"].subjects) | set(sets["val"].subjects)
    assert not set(refit.subjects) & set(sets["test"].subjects)
    test_again = create_dataset("synthetic", "test", 0, spec, cache_dir=cache_dir, image_size=32, refit=True)
    assert len(test_again) == len(sets["test"])
