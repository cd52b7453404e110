"""Multi-fidelity on data size: the rung schedule a sweep sets for a large training set, the
per-epoch stratified subset (deterministic from seed and epoch, so resume is exact), and the
fraction each epoch reports."""
import math

import numpy as np
import pytest
import torch

from bench.errors import UserError
from bench.sweep.fidelity import LARGE_TRAIN, asha_milestones, data_fractions
from bench.training.fidelity import FractionSampler, fraction_at, steps_before, stratified_subset

ASHA = {"name": "asha", "grace_period": 3, "reduction_factor": 3, "data_fraction": "auto"}


def test_milestones_are_rays():
    from ray.tune.schedulers import ASHAScheduler

    for max_t, grace, rf in [(30, 3, 3), (15, 3, 3), (40, 5, 3), (9, 1, 3), (20, 2, 2)]:
        ray_rungs = sorted(m for m, _ in ASHAScheduler(max_t=max_t, grace_period=grace,
                                                       reduction_factor=rf)._brackets[0]._rungs)
        assert asha_milestones(max_t, grace, rf) == [m for m in ray_rungs if m < max_t]


def test_auto_fraction_grows_by_the_reduction_factor_rung_by_rung():
    n = 28_709  # FER2013's training split
    schedule = data_fractions(ASHA, max_epochs=30, n_train=n)
    f0 = LARGE_TRAIN / n
    assert schedule == [[3, round(f0, 4)], [9, round(3 * f0, 4)]]  # 9 * f0 > 1: all data from epoch 10
    expected = [round(f0, 4)] * 2 + [round(3 * f0, 4)] * 2 + [1.0] * 2
    assert [fraction_at(schedule, e) for e in (0, 2, 3, 8, 9, 29)] == expected
    assert all(f * n >= LARGE_TRAIN - 1 for _, f in schedule)  # every rung's subset holds >= LARGE_TRAIN samples
    # a very large set: f0 never below 1 / rf**rungs, so the top rung is whole
    assert data_fractions(ASHA, max_epochs=30, n_train=1_000_000) == [[3, round(1 / 27, 4)], [9, round(1 / 9, 4)],
                                                                      [27, round(1 / 3, 4)]]


def test_small_sets_fifo_ddp_and_off_train_on_everything():
    assert data_fractions(ASHA, max_epochs=30, n_train=LARGE_TRAIN) == []
    assert data_fractions({**ASHA, "name": "fifo"}, max_epochs=30, n_train=50_000) == []
    assert data_fractions({**ASHA, "data_fraction": "off"}, max_epochs=30, n_train=50_000) == []
    assert data_fractions(ASHA, max_epochs=30, n_train=50_000, workers_per_trial=2) == []
    # an explicit f0 applies whatever the size
    assert data_fractions({**ASHA, "data_fraction": 0.2}, max_epochs=30, n_train=1000) == [[3, 0.2], [9, 0.6]]


def test_subset_is_stratified_and_deterministic_per_seed_and_epoch():
    labels = np.repeat(np.arange(7), [4000, 400, 4000, 7000, 5000, 3000, 5000])
    a = stratified_subset(labels, 0.2, seed=0, epoch=3)
    assert np.array_equal(a, stratified_subset(labels, 0.2, seed=0, epoch=3))  # a resumed trial sees the same
    assert not np.array_equal(a, stratified_subset(labels, 0.2, seed=0, epoch=4))
    assert not np.array_equal(a, stratified_subset(labels, 0.2, seed=1, epoch=3))
    counts, full = np.bincount(labels[a], minlength=7), np.bincount(labels)
    assert np.all(np.abs(counts - 0.2 * full) <= 1) and len(set(a.tolist())) == len(a)
    assert len(stratified_subset(np.array([0] * 50 + [1] * 2), 0.1, 0, 0)) == 5 + 1  # >= 1 of each class
    assert np.array_equal(stratified_subset(labels, 1.0, 0, 0), np.arange(len(labels)))


def test_sampler_follows_the_schedule_and_counts_the_lr_steps():
    labels = np.repeat(np.arange(4), 250)  # 1000 samples
    sampler = FractionSampler(labels, [[2, 0.25], [4, 0.5]], seed=7, batch_size=32)
    loader = torch.utils.data.DataLoader(list(range(1000)), batch_size=32, sampler=sampler)
    sizes, orders = [], []
    for epoch in range(6):
        sampler.set_epoch(epoch)
        seen = [int(i) for b in loader for i in b]
        sizes.append(len(seen))
        orders.append(seen)
        assert len(set(seen)) == len(seen) and sampler.batches(epoch) == len(loader)
    assert sizes == [248, 248, 500, 500, 1000, 1000]  # 250 -> 249 -> 248: no batch of one; 4 x 62 per class
    assert orders[4] != orders[5] and sorted(orders[4]) == list(range(1000))
    again = FractionSampler(labels, [[2, 0.25], [4, 0.5]], seed=7, batch_size=32)
    again.set_epoch(3)
    assert list(again) == orders[3]  # resume at epoch 3 replays it
    assert steps_before(loader, 6) == sum(math.ceil(s / 32) for s in sizes)
    plain = torch.utils.data.DataLoader(list(range(1000)), batch_size=32, shuffle=True)
    assert steps_before(plain, 6) == 6 * 32


@pytest.mark.parametrize("bad", [[[3, 0.0]], [[3, 1.5]], [[3, 0.2], [2, 0.5]], [[3]], ["x"]])
def test_bad_schedules_are_one_sentence(bad):
    from bench.training.config import TrialConfig
    from bench.training.trainable import _fraction_sampler

    cfg = TrialConfig.from_flat({"model.name": "fer_cnn", "train.data_fractions": bad})
    with pytest.raises(UserError, match="train.data_fractions") as err:
        _fraction_sampler(cfg, type("Set", (), {"labels": [0, 1] * 10})())
    assert "\n" not in str(err.value)


def test_each_epoch_reports_its_fraction(tmp_path, one_torch_thread):
    from bench.data import get_adapter
    from bench.training.trainable import run_trial

    root = get_adapter("synthetic-fer").make_fake(tmp_path / "data")  # 196 faces, 154 training
    config = {"model.name": "fer_cnn", "data.dataset": "synthetic-fer", "data.data_root": str(root),
              "data.image_size": 48, "model.in_chans": 1, "train.max_epochs": 3, "train.batch_size": 16,
              "train.data_fractions": [[1, 0.25], [2, 0.5]]}
    reports = []
    run_trial(config, cache_dir=tmp_path / "cache", report=lambda metrics, _: reports.append(metrics))
    assert [r["train_fraction"] for r in reports] == [0.25, 0.5, 1.0]
    assert [r["train/samples"] for r in reports] == [42, 77, 154]  # 154 = 22 a class; 6 / 11 / 22 of each class


def test_the_sweep_hands_its_rungs_schedule_to_the_trials(tmp_path, one_torch_thread):
    from bench.api import plan_search
    from bench.data import get_adapter

    root = get_adapter("synthetic-fer").make_fake(tmp_path / "data")
    space = tmp_path / "space.yaml"
    space.write_text("""
schema: 1
modality: face
budget: {samples: 2, max_epochs: 9}
scheduler: {name: asha, grace_period: 1, reduction_factor: 3, data_fraction: 0.1}
fixed: {data.image_size: 48, model.in_chans: 1}
params:
  model.name: {choice: [fer_cnn]}
  optim.lr:   {float: [1.0e-3, 1.0e-2], log: true}
""")
    plan = plan_search("face", "synthetic-fer", space_path=str(space), samples=None, max_epochs=None,
                       cpus_per_trial=1, gpus_per_trial=0, storage=str(tmp_path / "runs"), name="f",
                       address=None, seed=0, data_root=str(root), cache_dir=str(tmp_path / "cache"),
                       results_dir=str(tmp_path / "results"), verbose=0, resume=False, objective=None,
                       workers_per_trial=1, time_budget=None, estimate=False)
    assert plan.extra_fixed["train.data_fractions"] == [[1, 0.1], [3, 0.3]]  # rungs 1, 3; all data from 4 to 9
    fewer = plan_search("face", "synthetic-fer", space_path=str(space), samples=None, max_epochs=None,
                        cpus_per_trial=1, gpus_per_trial=0, storage=str(tmp_path / "runs"), name="g",
                        address=None, seed=0, data_root=str(root), cache_dir=str(tmp_path / "cache"),
                        results_dir=str(tmp_path / "results"), verbose=0, resume=False, objective=None,
                        workers_per_trial=2, time_budget=None, estimate=False)
    assert "train.data_fractions" not in fewer.extra_fixed  # DDP's sampler would replace the subset
