"""``ray_trial_overhead``: wall time of N fixed trials through Ray Tune
(``tune_backend.run_fixed_configs``: the sweep's trainable, resources, per-epoch reports and
checkpoints, FIFO, no searcher) over the same trials run directly with
``bench.training.trainable.run_trial`` in a pool of as many processes as Ray runs trials at once, one
thread each. Ray's one-off cluster start (``ray.init``) is outside the timed part and reported
separately as ``ray_init_s``; the direct side's process-pool start is inside its timed part."""
from __future__ import annotations

import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from .common import interleaved, median, one_thread_worker_init

SETTINGS = {
    # the demo sweep's trial (fer_cnn on 48x48 synthetic faces), half its 12-epoch budget
    "full": {"trials": 6, "concurrency": 2, "config": {"model.name": "fer_cnn", "data.dataset": "synthetic",
                                                        "data.image_size": 48, "train.max_epochs": 6},
             "repeats": 2},
    "tiny": {"trials": 2, "concurrency": 2, "config": {"model.name": "fer_cnn", "data.dataset": "synthetic",
                                                        "data.image_size": 16, "train.batch_size": 128,
                                                        "train.max_epochs": 1},
             "repeats": 1},
}


def fixed_configs(size: str) -> list[dict]:
    s = SETTINGS[size]
    # distinct learning rates: distinct trials, identical cost
    return [{**s["config"], "optim.lr": 1e-3 * (1 + i)} for i in range(s["trials"])]


def _direct_trial(config: dict, cache_dir: str) -> float:
    """Seconds spent in epochs (what Ray reports as time_this_iter_s), for the split below."""
    from bench.training.trainable import run_trial

    epoch_s = []
    run_trial(config, cache_dir=cache_dir, report=lambda metrics, _dir: epoch_s.append(metrics["epoch_s"]))
    return sum(epoch_s)


def run_direct(configs: list[dict], cache_dir: Path, concurrency: int) -> tuple[float, float]:
    """(wall seconds, seconds inside epochs summed over trials)."""
    start = time.perf_counter()
    with ProcessPoolExecutor(concurrency, mp_context=get_context("spawn"), initializer=one_thread_worker_init) as pool:
        epochs = sum(pool.map(_direct_trial, configs, [str(cache_dir)] * len(configs)))
    return time.perf_counter() - start, epochs


def run_ray(configs: list[dict], cache_dir: Path, concurrency: int) -> tuple[float, float, float]:
    """(ray.init seconds, fit seconds, seconds inside epochs summed over trials) on a fresh
    local Ray with ``concurrency`` CPUs."""
    import ray

    from bench.sweep import tune_backend

    start = time.perf_counter()
    tune_backend.connect(None, num_cpus=concurrency)
    init_s = time.perf_counter() - start
    try:
        with tempfile.TemporaryDirectory(prefix="fer-perf-ray-") as tmp:
            settings = tune_backend.SweepSettings(name="perf-ray", storage=str(Path(tmp) / "runs"),
                                                  samples=len(configs), max_epochs=configs[0]["train.max_epochs"],
                                                  cpus_per_trial=1.0, verbose=0, max_failures=0)
            start = time.perf_counter()
            runs = tune_backend.run_fixed_configs(configs, settings, metric="val/uar", mode="max",
                                                  cache_dir=cache_dir, data_root=None, keep_dir=Path(tmp) / "keep")
            fit_s = time.perf_counter() - start
        epochs = sum(r.seconds for r in runs)
        errors = [r.error for r in runs if r.error]
        if errors:
            raise RuntimeError(f"Ray trials failed: {errors[0]}")
    finally:
        ray.shutdown()
    return init_s, fit_s, epochs


def run(size: str, cache_dir: Path) -> dict:
    s = SETTINGS[size]
    configs = fixed_configs(size)
    _direct_trial({**configs[0], "train.max_epochs": 1}, str(cache_dir))  # data generated/cached before timing
    rounds: dict[str, list[tuple]] = {"direct": [], "ray": []}

    def direct() -> float:
        rounds["direct"].append(run_direct(configs, cache_dir, s["concurrency"]))
        return rounds["direct"][-1][0]

    def through_ray() -> float:
        rounds["ray"].append(run_ray(configs, cache_dir, s["concurrency"]))
        return rounds["ray"][-1][1]

    walls = interleaved({"direct": direct, "ray": through_ray}, s["repeats"])
    direct_s, ray_s = median(walls["direct"]), median(walls["ray"])
    return {"ray_trial_overhead": ray_s / direct_s,
            "detail": {**s, "direct_s": direct_s, "ray_fit_s": ray_s,
                       "direct_s_each": walls["direct"], "ray_fit_s_each": walls["ray"],
                       "ray_init_s": median([r[0] for r in rounds["ray"]]),
                       # inside epochs vs around them: is Ray slowing training, or adding fixed costs?
                       # (Ray's time_this_iter_s of a trial's first epoch also holds the trial's setup)
                       "direct_epochs_s": median([r[1] for r in rounds["direct"]]),
                       "ray_epochs_s": median([r[2] for r in rounds["ray"]]),
                       "timed": "Tuner.fit() only; ray.init (cluster start) excluded, reported as ray_init_s"}}
