"""``asha_vs_grid_epochs``: epochs ASHA + TPE spends to come within one point of the grid's best
validation UAR, over the epochs the full grid spends.

What is measured and what is replayed:

- Measured, once: every grid configuration is trained for ``max_epochs`` with the real
  ``bench.trainable.run_trial`` (fer_cnn on the synthetic faces, two processes, one thread each);
  the per-epoch ``val/uar`` curves are cached in ``<cache>/perf/asha-curves-<hash>.json``.
- Replayed, per seed: a real ``optuna.samplers.TPESampler`` (same ``n_startup_trials`` rule as
  ``tune_backend.build_tuner``) proposes grid configurations through ``suggest_categorical``;
  an asynchronous successive-halving scheduler with Ray's ``ASHAScheduler`` rung rule (below)
  decides after each epoch whether a trial goes on, reading the epoch's value from the cached
  curve; each finished or stopped trial is told to the study with its last value, as
  ``OptunaSearch.on_trial_complete`` does. Two trials run at a time, advancing one epoch each in
  turn, as on two cores. Replaying means a configuration proposed twice yields the same curve
  (a real rerun with the same seed would too: trials are seeded). When no trial reaches the
  target within 3 x the grid's trial count, the ratio is the epochs spent (``reached`` false).

The full grid's curves may be computed on any machine (they are per-configuration results, not
timings); ``learning_curves(..., workers=N)`` fills the cache file, which is then reused.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .common import median, one_thread_worker_init, perf_cache

GRIDS = {
    # The shipped demo space (search_spaces/face/synthetic.yaml) as a grid: its axes, two or three
    # values each, its 12 epochs; its scheduler is read from the file (see shipped_scheduler).
    "full": {"fixed": {"model.name": "fer_cnn", "data.dataset": "synthetic", "data.image_size": 48,
                       "train.max_epochs": 12},
             "params": {"model.hidden": [64, 256], "model.dropout": [0.0, 0.5],
                        "optim.lr": [5e-4, 1.5e-3, 5e-3], "optim.weight_decay": [1e-6, 1e-2],
                        "train.batch_size": [32, 64], "train.label_smoothing": [0.0, 0.2]},
             "grace_period": 3, "reduction_factor": 2},
    "tiny": {"fixed": {"model.name": "fer_cnn", "data.dataset": "synthetic", "data.image_size": 16,
                       "train.batch_size": 128, "train.max_epochs": 2},
             "params": {"model.hidden": [32], "optim.lr": [1e-3, 3e-3]},
             "grace_period": 1, "reduction_factor": 2},
}
SEEDS = (0, 1, 2)
SENSITIVITY = ((2, 3), (2, 2), (4, 2), (6, 2))  # (grace_period, reduction_factor) replayed besides
TOLERANCE = 0.01  # "within one point of the grid's best" on a 0..1 UAR scale


def grid_configs(grid: dict) -> list[dict]:
    keys = list(grid["params"])
    return [{**grid["fixed"], **dict(zip(keys, values))}
            for values in itertools.product(*(grid["params"][k] for k in keys))]


def config_key(config: dict, params: dict) -> str:
    return json.dumps({k: config[k] for k in params}, sort_keys=True)


def _curve(config: dict, cache_dir: str) -> list[float]:
    from ..trainable import run_trial

    values: list[float] = []
    run_trial(config, cache_dir=cache_dir, report=lambda metrics, _dir: values.append(float(metrics["val/uar"])))
    return values


def learning_curves(grid: dict, cache_dir: Path, workers: int = 2) -> dict[str, list[float]]:
    """Per-configuration val UAR curves, trained once and cached by the grid's hash."""
    # the curves depend on the configs only, not on the scheduler that later replays them
    blob = json.dumps({k: grid[k] for k in ("fixed", "params")}, sort_keys=True)
    path = perf_cache(cache_dir) / f"asha-curves-{hashlib.sha256(blob.encode()).hexdigest()[:12]}.json"
    if path.is_file():
        return json.loads(path.read_text())["curves"]
    configs = grid_configs(grid)
    if workers == 1:  # in-process: the tiny grid costs less than starting a worker
        results = [_curve(c, str(cache_dir)) for c in configs]
    else:
        # spawn: a forked child would inherit the parent's torch thread pool state
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                                 initializer=one_thread_worker_init) as pool:
            results = list(pool.map(_curve, configs, [str(cache_dir)] * len(configs)))
    curves = {config_key(c, grid["params"]): r for c, r in zip(configs, results)}
    path.write_text(json.dumps({"grid": grid, "curves": curves}, indent=1))
    return curves


class AsyncSuccessiveHalving:
    """Ray Tune's ``ASHAScheduler`` rule for one bracket (``async_hyperband._Bracket.on_result``):
    rungs at ``grace * rf**k`` epochs below ``max_t``; the first time a trial reaches a rung its
    value is recorded there, and it stops if that value is below the (1 - 1/rf) quantile of the
    values already recorded at the rung (``np.nanpercentile``, no cutoff while the rung is empty).
    Every trial stops at ``max_t``."""

    def __init__(self, max_t: int, grace_period: int, reduction_factor: int):
        self.max_t, self.rf = max_t, reduction_factor
        count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
        self.rungs = [(grace_period * reduction_factor ** k, {}) for k in reversed(range(count))]

    def on_result(self, trial_id: int, epoch: int, value: float) -> bool:
        """True: continue; False: stop."""
        go_on = epoch < self.max_t
        for milestone, recorded in self.rungs:
            if epoch < milestone or trial_id in recorded:
                continue
            if recorded:
                cutoff = np.nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100)
                if value < cutoff:
                    go_on = False
            recorded[trial_id] = value
            break
        return go_on


def replay(grid: dict, curves: dict[str, list[float]], target: float, seed: int, concurrency: int = 2,
           max_samples: int | None = None) -> dict:
    """Epochs an ASHA + TPE sweep spends until some trial reports ``val/uar >= target``."""
    import optuna
    from optuna.samplers import TPESampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    params = grid["params"]
    samples = len(grid_configs(grid))
    max_samples = max_samples or 3 * samples
    sampler = TPESampler(seed=seed, n_startup_trials=max(2, min(10, samples // 3)))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    max_t = grid["fixed"]["train.max_epochs"]
    scheduler = AsyncSuccessiveHalving(max_t, grid["grace_period"], grid["reduction_factor"])
    running: list[dict] = []
    started = epochs = 0

    def start() -> None:
        nonlocal started
        trial = study.ask()
        config = {k: trial.suggest_categorical(k, v) for k, v in params.items()}
        running.append({"trial": trial, "curve": curves[config_key(config, params)], "epoch": 0})
        started += 1

    while True:
        while len(running) < concurrency and started < max_samples:
            start()
        if not running:
            return {"epochs": epochs, "trials": started, "reached": False}
        for entry in list(running):  # each running trial advances one epoch, in turn
            value = entry["curve"][entry["epoch"]]
            entry["epoch"] += 1
            epochs += 1
            if value >= target:
                return {"epochs": epochs, "trials": started, "reached": True}
            if not scheduler.on_result(entry["trial"].number, entry["epoch"], value):
                study.tell(entry["trial"], value)
                running.remove(entry)


def shipped_scheduler() -> dict:
    """The demo space's ASHA settings, so the benchmark measures what `make demo` runs."""
    from ..spaces import builtin_space_path, load_space

    scheduler = load_space(builtin_space_path("face", "synthetic")).scheduler
    return {"grace_period": scheduler["grace_period"], "reduction_factor": scheduler["reduction_factor"]}


def run(size: str, cache_dir: Path) -> dict:
    grid = {**GRIDS[size], **shipped_scheduler()} if size == "full" else GRIDS[size]
    curves = learning_curves(grid, cache_dir, workers=1 if size == "tiny" else 2)
    best = max(max(c) for c in curves.values())
    target = best - TOLERANCE
    grid_epochs = sum(len(c) for c in curves.values())
    runs = [replay(grid, curves, target, seed) for seed in SEEDS]
    ratios = [r["epochs"] / grid_epochs for r in runs]
    # The same curves under other rung settings: how much the verdict owes to the scheduler.
    sensitivity = {}
    for grace, factor in SENSITIVITY if size == "full" else ():
        variant = {**grid, "grace_period": grace, "reduction_factor": factor}
        alt = [replay(variant, curves, target, seed) for seed in SEEDS]
        sensitivity[f"grace{grace}-rf{factor}"] = {"ratio": median([r["epochs"] / grid_epochs for r in alt]),
                                                   "reached": sum(r["reached"] for r in alt)}
    return {
        "asha_vs_grid_epochs": median(ratios),
        "detail": {"grid_configs": len(curves), "grid_epochs": grid_epochs, "grid_best_val_uar": best,
                   "target_val_uar": target, "per_seed": [{"seed": s, **r} for s, r in zip(SEEDS, runs)],
                   "scheduler_sensitivity": sensitivity, "grid": grid},
    }
