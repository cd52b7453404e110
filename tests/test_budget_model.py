"""The sweep estimate's model with measured costs injected (no timing here): a trial's seconds from
its per-sample costs and the fraction schedule, and the sweep replayed on its concurrent slots
under ASHA's own rule."""
import pytest

from bench.sweep.budget import (
    ESTIMATE_DRAWS,
    STARTUP_S,
    TrialCost,
    asha_epochs_per_trial,
    estimate_sweep,
    representative_configs,
    simulate_sweep,
)
from bench.sweep.spaces import load_space

FIFO = {"name": "fifo"}
ASHA = {"name": "asha", "grace_period": 1, "reduction_factor": 3}


def test_a_trial_costs_setup_then_its_share_of_each_epoch_and_a_full_validation():
    cost = TrialCost(setup_s=5.0, train_s=0.01, val_s=2.0, n_train=1000, epoch_overhead_s=0.5)
    assert cost.epoch_seconds() == pytest.approx(10 + 2 + 0.5)
    assert cost.seconds(3) == pytest.approx(5 + 3 * 12.5)
    # two epochs on a quarter, one on all: validation and overhead are not cut by the fraction
    assert cost.seconds(3, [[2, 0.25]]) == pytest.approx(5 + 2 * (2.5 + 2.5) + 12.5)
    assert TrialCost(0, 0, 0, 1, one_shot_s=7.0).seconds(30) == 7.0


def test_fifo_sweeps_pack_trials_on_the_slots():
    cost = TrialCost(setup_s=0.0, train_s=0.001, val_s=0.0, n_train=1000)  # 1 s an epoch
    wall, epochs, *_ = simulate_sweep([cost], samples=4, max_epochs=5, concurrent=2, scheduler=FIFO)
    assert (wall, epochs) == (pytest.approx(10.0), 5.0)
    wall, *_ = simulate_sweep([cost], samples=3, max_epochs=5, concurrent=2, scheduler=FIFO)
    assert wall == pytest.approx(10.0)  # the third trial runs after the first two, alone
    slow = TrialCost(setup_s=0.0, train_s=0.004, val_s=0.0, n_train=1000)
    wall, *_ = simulate_sweep([cost, slow], samples=2, max_epochs=5, concurrent=2, scheduler=FIFO)
    assert wall == pytest.approx(20.0)  # the slowest trial sets the end


def test_asha_runs_more_epochs_than_its_promotion_ratio_when_trials_are_few():
    cost = TrialCost(setup_s=0.0, train_s=0.001, val_s=0.0, n_train=1000)
    one = simulate_sweep([cost], samples=1, max_epochs=9, concurrent=1, scheduler=ASHA).epochs
    assert one == 9  # the first trial at a rung always goes on
    few = simulate_sweep([cost], samples=6, max_epochs=9, concurrent=2, scheduler=ASHA).epochs
    assert asha_epochs_per_trial(9, 1, 3) < few < 9
    many = simulate_sweep([cost], samples=200, max_epochs=9, concurrent=2, scheduler=ASHA, reps=8).epochs
    assert many < few  # with many trials the rule approaches 1/rf promoted per rung
    assert many == pytest.approx(asha_epochs_per_trial(9, 1, 3), rel=0.35)


def test_data_fractions_cut_the_early_rungs():
    cost = TrialCost(setup_s=2.0, train_s=0.001, val_s=0.1, n_train=30_000)
    full, e_full, *_ = simulate_sweep([cost], samples=12, max_epochs=15, concurrent=2,
                                  scheduler={**ASHA, "grace_period": 3})
    cut, e_cut, *_ = simulate_sweep([cost], samples=12, max_epochs=15, concurrent=2,
                                scheduler={**ASHA, "grace_period": 3}, fractions=[[3, 0.17], [9, 0.5]])
    assert e_cut == e_full and cut < 0.6 * full  # the same decisions, far less data


SPACE = """
schema: 1
modality: face
budget: {samples: 6, max_epochs: 9}
scheduler: {name: asha, grace_period: 1, reduction_factor: 3}
fixed: {data.image_size: 32}
params:
  model.name:       {choice: [fer_cnn, timm/resnet10t]}
  optim.lr:         {float: [1.0e-3, 1.0e-2], log: true}
"""


def test_estimate_sweep_with_injected_costs(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    costs = {"fer_cnn": TrialCost(3.0, 0.002, 1.0, 1000, 0.4), "timm/resnet10t": TrialCost(3.0, 0.006, 2.0, 1000, 0.4)}
    seen = []

    def timer(config):
        seen.append(config)
        return costs[config["model.name"]]

    est = estimate_sweep(load_space(path), samples=6, max_epochs=9, extra_fixed={"data.dataset": "synthetic"},
                         cache_dir=tmp_path, data_root=None, cpus_per_trial=1, gpus_per_trial=0, timer=timer,
                         worker_start_s=6.0)
    # the sweep's first draws, in its order (each timed once), and the replay gives them to its trials in turn
    draws = representative_configs(load_space(path), {"data.dataset": "synthetic"})
    assert seen == draws and len(draws) == ESTIMATE_DRAWS
    assert all(1.0e-3 <= c["optim.lr"] <= 1.0e-2 for c in seen) and len({c["optim.lr"] for c in seen}) > 1
    assert {c["model.name"] for c in draws} == {"fer_cnn", "timm/resnet10t"}
    assert est.per_model == {"fer_cnn": pytest.approx(3.4), "timm/resnet10t": pytest.approx(8.4)}
    wall, epochs, low, high = simulate_sweep([costs[c["model.name"]] for c in draws], samples=6, max_epochs=9,
                                  concurrent=est.concurrent, scheduler=load_space(path).scheduler)
    assert est.seconds == pytest.approx(STARTUP_S + 6.0 + wall) and est.epochs_per_trial == pytest.approx(epochs)
    assert est.low_seconds == pytest.approx(STARTUP_S + 6.0 + low)
    assert est.high_seconds == pytest.approx(STARTUP_S + 6.0 + high)
    assert est.to_dict()["setup_seconds"] == 3.0


CHOICES = """
schema: 1
modality: face
budget: {samples: 10, max_epochs: 9}
scheduler: {name: asha, grace_period: 3, reduction_factor: 3}
fixed: {data.image_size: 48, model.name: fer_cnn}
params:
  model.width:      {choice: [24, 32]}
  model.convs:      {choice: [1, 2]}
  model.blocks:     {int: [3, 4]}
  model.hidden:     {choice: [256, 512], when: {model.convs: [2]}}
  train.batch_size: {choice: [64, 128]}
"""


def test_the_estimate_averages_configurations_drawn_across_the_choices(tmp_path):
    # FER2013's CPU default: its cheapest fer_cnn trains ~7x faster than its dearest; the old
    # estimate timed the "middle" of each list, which for two choices is the second (the dearer)
    # of every one, and printed 71 min for a sweep whose trials ran far faster
    path = tmp_path / "space.yaml"
    path.write_text(CHOICES)
    space = load_space(path)
    seen = []

    def timer(config):
        seen.append(config)
        scale = (config["model.width"] / 24) ** 2 * config["model.convs"] * (config["model.blocks"] - 2)
        return TrialCost(1.0, 0.001 * scale, 1.0, 1000, 0.0)

    est = estimate_sweep(space, samples=10, max_epochs=9, extra_fixed={"data.dataset": "synthetic"},
                         cache_dir=tmp_path, data_root=None, cpus_per_trial=1, gpus_per_trial=0, timer=timer,
                         worker_start_s=0.0)
    timed = list(seen)
    dearest = timer({"model.width": 32, "model.convs": 2, "model.blocks": 4}).epoch_seconds()
    cheapest = timer({"model.width": 24, "model.convs": 1, "model.blocks": 3}).epoch_seconds()
    draws = representative_configs(space, {"data.dataset": "synthetic"})
    assert len(draws) == ESTIMATE_DRAWS
    for config in draws:  # each a configuration the sweep could sample: conditions and ranges held
        assert config["model.width"] in (24, 32) and config["model.blocks"] in (3, 4)
        assert ("model.hidden" in config) == (config["model.convs"] == 2)
    assert len({(c["model.width"], c["model.convs"], c["model.blocks"]) for c in draws}) > 2
    assert len(timed) == len({repr(sorted(c.items())) for c in draws})  # equal draws are timed once
    assert cheapest < est.per_model["fer_cnn"] < dearest
    # the mean of the draws' epochs, not one corner's
    assert est.per_model["fer_cnn"] == pytest.approx(sum(timer(c).epoch_seconds() for c in draws) / len(draws))
    # drawn from a seed: the same space prints the same estimate
    again = estimate_sweep(space, samples=10, max_epochs=9, extra_fixed={"data.dataset": "synthetic"},
                           cache_dir=tmp_path, data_root=None, cpus_per_trial=1, gpus_per_trial=0, timer=timer,
                           worker_start_s=0.0)
    assert again.seconds == est.seconds


def test_a_k_fold_objective_costs_its_folds_in_the_estimate(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    kfold = tmp_path / "kfold.yaml"
    kfold.write_text(SPACE.replace("schema: 1\n", "schema: 1\nobjective: {metric: val/uar, mode: max, folds: 3}\n"))
    cost = TrialCost(3.0, 0.002, 1.0, 1000, 0.4)
    common = dict(samples=6, max_epochs=9, extra_fixed={"data.dataset": "synthetic"}, cache_dir=tmp_path,
                  data_root=None, cpus_per_trial=1, gpus_per_trial=0, timer=lambda config: cost, worker_start_s=6.0)
    one, three = estimate_sweep(load_space(path), **common), estimate_sweep(load_space(kfold), **common)
    # three models per epoch (the checkpoint and report stay one)
    assert three.per_model["fer_cnn"] == pytest.approx(3 * (0.002 * 1000 + 1.0) + 0.4)
    assert three.seconds - STARTUP_S - 6.0 > 2.5 * (one.seconds - STARTUP_S - 6.0)  # the sweep, not its start


def test_the_estimate_gives_the_spread_of_asha_stops_and_none_for_fifo():
    from bench.sweep.budget import Estimate, describe

    cost = TrialCost(setup_s=2.0, train_s=0.001, val_s=0.5, n_train=10_000)
    fifo = simulate_sweep([cost], samples=10, max_epochs=15, concurrent=2, scheduler=FIFO)
    assert fifo.wall_low == fifo.wall_high == pytest.approx(fifo.wall)  # every trial runs all its epochs
    asha = simulate_sweep([cost], samples=10, max_epochs=15, concurrent=2, scheduler={**ASHA, "grace_period": 3})
    # which trials ASHA stops depends on their scores: ten trials' sweeps differ by more than 10 %
    assert asha.wall_low < asha.wall < asha.wall_high and asha.wall_high - asha.wall_low > 0.1 * asha.wall
    spread = Estimate(asha.wall, 10.5, asha.epochs, 10, 2, low_seconds=asha.wall_low, high_seconds=asha.wall_high)
    line = describe(spread, time_budget_s=None, samples=10, max_epochs=15)[0]
    assert "as the scheduler's early stops fall" in line
    assert spread.to_dict()["low_seconds"] < spread.to_dict()["seconds"] < spread.to_dict()["high_seconds"]
    narrow = Estimate(fifo.wall, 10.5, 15, 10, 2, low_seconds=fifo.wall_low, high_seconds=fifo.wall_high)
    assert "early stops" not in describe(narrow, time_budget_s=None, samples=10, max_epochs=15)[0]


def test_identical_replays_never_put_the_estimate_outside_its_own_range():
    # 64 identical FIFO replays: numpy's mean of the 64 equal walls came out one ulp below their
    # percentiles, and a record said low > estimate (CI, stop 30)
    costs = [TrialCost(0.49381672329573856, 0.0008300500929243788, 1.7009476525185097, 10919),
             TrialCost(2.360713577263567, 0.0010969419598768216, 0.8683436709075674, 20117),
             TrialCost(3.2021170077104513, 0.002124329720209561, 1.1050473522694375, 14606)]
    replay = simulate_sweep(costs, samples=34, max_epochs=9, concurrent=1, scheduler=FIFO)
    assert replay.wall_low <= replay.wall <= replay.wall_high
    assert replay.wall_high - replay.wall_low < 1e-6 * replay.wall


def test_a_worker_start_measurement_is_reused_for_minutes_then_taken_again(monkeypatch):
    from bench.sweep import budget

    monkeypatch.setattr(budget, "_worker_start", None)  # this process's earlier sweeps measured nothing
    first = budget.worker_start_seconds()  # a real fresh interpreter importing what a worker imports
    assert first > 0
    # a second measurement would never give the same float: the second sweep of this process reuses it
    assert budget.worker_start_seconds() == first
    when, _ = budget._worker_start
    monkeypatch.setattr(budget, "_worker_start", (when - budget.WORKER_START_REUSE_S - 1, first))
    # older than the reuse window: measured again (a probe that cannot finish in 10 ms counts nothing)
    assert budget.worker_start_seconds(timeout=0.01) == 0.0
