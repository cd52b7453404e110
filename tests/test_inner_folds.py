"""The k-fold objective: inner folds drawn from an outer fold's training subjects only, and a
trial that reports their mean."""
from __future__ import annotations

import pytest

from bench.data import get_adapter, load_splits
from bench.data.inner_folds import inner_fold_splits
from bench.errors import UserError
from bench.sweep.spaces import load_space
from bench.training.inner_trials import mean_metrics


def _inner(splits, adapter, folds):
    return [inner_fold_splits(splits, folds, j, group_of=adapter.validation_group) for j in range(folds)]


@pytest.mark.parametrize("outer", [0, 3])
def test_inner_folds_hold_only_training_subjects_and_are_subject_disjoint(cache_dir, outer):
    adapter, _, splits = load_splits("synthetic", outer, None, cache_dir)
    test_subjects = {s.subject for s in splits["test"]}
    training = {s.sample_id for s in splits["train"] + splits["val"]}
    inner = _inner(splits, adapter, 3)
    for part in inner:
        train_subjects, val_subjects = {s.subject for s in part["train"]}, {s.subject for s in part["val"]}
        assert not (train_subjects | val_subjects) & test_subjects  # never a test subject
        assert not train_subjects & val_subjects  # whole subjects
        assert {s.sample_id for s in part["train"] + part["val"]} == training  # all of the training data
        assert part["test"] == splits["test"]  # the outer test is not touched
        # class-stratified: every class the training data has reaches each inner validation part
        assert {s.label for s in part["val"]} == {s.label for s in splits["train"] + splits["val"]}
    # each training sample validates in exactly one inner fold
    vals = [s.sample_id for part in inner for s in part["val"]]
    assert sorted(vals) == sorted(training)


def test_tess_inner_folds_keep_words_whole_within_its_one_training_speaker(tmp_path):
    adapter = get_adapter("tess")
    root = adapter.make_fake(tmp_path / "tess")
    _, _, splits = load_splits("tess", 0, root, tmp_path / "cache")
    for part in _inner(splits, adapter, 2):
        assert not {s.meta["word"] for s in part["train"]} & {s.meta["word"] for s in part["val"]}
        assert not {s.subject for s in part["val"]} & {s.subject for s in splits["test"]}


def test_more_inner_folds_than_training_subjects_is_one_sentence(cache_dir):
    adapter, _, splits = load_splits("synthetic", 0, None, cache_dir)
    groups = len({s.subject for s in splits["train"] + splits["val"]})
    with pytest.raises(UserError, match="lower objective.folds"):
        inner_fold_splits(splits, groups + 1, 0, group_of=adapter.validation_group)


def test_a_report_is_the_mean_of_the_inner_folds_with_its_spread():
    folds = [{"epoch": 3, "val/uar": 0.5, "val/loss": 1.0, "epoch_s": 2.0, "params": 10, "name": "x"},
             {"epoch": 3, "val/uar": 0.7, "val/loss": 0.8, "epoch_s": 3.0, "params": 10, "name": "x"}]
    out = mean_metrics(folds)
    assert out["val/uar"] == pytest.approx(0.6) and out["val/uar_std"] == pytest.approx(0.1414, abs=1e-4)
    assert out["val/loss"] == pytest.approx(0.9) and out["epoch_s"] == 5.0  # a cost adds up
    assert (out["epoch"], out["params"], out["name"], out["inner_folds"]) == (3, 10, "x", 2)


def test_objective_folds_makes_every_trial_a_k_fold_one(tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text("schema: 1\nmodality: face\nobjective: {metric: val/uar, mode: max, folds: 3}\n"
                     "params:\n  optim.lr: {float: [1.0e-3, 1.0e-2]}\n")
    assert load_space(space).fixed["data.inner_folds"] == 3
    space.write_text(space.read_text().replace("folds: 3", "folds: 0"))
    with pytest.raises(UserError, match="objective.folds"):
        load_space(space)


class Interrupted(Exception):
    pass


@pytest.mark.slow
def test_a_k_fold_trial_reports_the_mean_of_its_inner_models_and_resumes_every_one(cache_dir, tmp_path):
    """Epoch 1 is the mean of the two inner models trained alone; a trial stopped after epoch 1 and
    resumed from that checkpoint reports epoch 2 as the uninterrupted inner models do (before the
    inner folds' states were kept, it restarted at epoch 1 under iteration 2)."""
    import shutil

    from bench.training.checkpoint import INNER_FOLDER, load_checkpoint
    from bench.training.trainable import run_trial

    tiny = {"model.name": "fer_cnn", "data.dataset": "synthetic", "data.image_size": 32, "train.batch_size": 64,
            "optim.lr": 3e-3, "train.max_epochs": 2, "data.inner_folds": 2}
    reports, saved = [], tmp_path / "ckpt"

    def stop_after_first(metrics, folder):
        reports.append(metrics)
        shutil.copytree(folder, saved)
        raise Interrupted

    with pytest.raises(Interrupted):
        run_trial(tiny, cache_dir=cache_dir, report=stop_after_first)
    assert (saved / INNER_FOLDER / "1" / "checkpoint.pt").is_file()  # fold 1's state beside fold 0's
    state = load_checkpoint(saved, inner=True)
    assert state["epoch"] == 0 and sorted(state["inner"]) == [1]  # the 0-based index of epoch 1
    run_trial(tiny, cache_dir=cache_dir, report=lambda m, d: reports.append(m), resume_state=state)
    singles = {0: [], 1: []}
    for j, got in singles.items():
        run_trial({**tiny, "data.inner_fold": j}, cache_dir=cache_dir, report=lambda m, d, got=got: got.append(m))
    assert [r["epoch"] for r in reports] == [1, 2] and reports[0]["inner_folds"] == 2
    for e in range(2):
        for key in ("val/uar", "val/loss"):
            assert reports[e][key] == pytest.approx((singles[0][e][key] + singles[1][e][key]) / 2, abs=1e-9)
