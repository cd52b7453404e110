"""``ray_trial_overhead``: wall time of N fixed trials through Ray Tune
(``tune_backend.run_fixed_configs``: the sweep's trainable, resources, per-epoch reports and
checkpoints, FIFO, no searcher) over the same trials run directly with
``bench.trainable.run_trial`` in a pool of as many processes as Ray runs trials at once, one
thread each. Ray's one-off cluster start (``ray.init``) is outside the timed part and reported
separately as ``ray_init_s``; the direct side's process-pool start is inside its timed part."""
from __future__ import annotations

import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from .common import one_thread_worker_init

SETTINGS = {
    "full": {"trials": 4, "concurrency": 2, "config": {"model.name": "fer_cnn", "data.dataset": "synthetic",
                                                        "data.image_size": 32, "train.max_epochs": 4}},
    "tiny": {"trials": 2, "concurrency": 2, "config": {"model.name": "fer_cnn", "data.dataset": "synthetic",
                                                        "data.image_size": 16, "train.batch_size": 128,
                                                        "train.max_epochs": 1}},
}


def fixed_configs(size: str) -> list[dict]:
    s = SETTINGS[size]
    # distinct learning rates: distinct trials, identical cost
    return [{**s["config"], "optim.lr": 1e-3 * (1 + i)} for i in range(s["trials"])]


def _direct_trial(config: dict, cache_dir: str) -> float:
    """Seconds spent in epochs (what Ray reports as time_this_iter_s), for the split below."""
    from ..trainable import run_trial

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

    from .. import tune_backend

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
    direct_s, direct_epochs_s = run_direct(configs, cache_dir, s["concurrency"])
    init_s, ray_s, ray_epochs_s = run_ray(configs, cache_dir, s["concurrency"])
    return {"ray_trial_overhead": ray_s / direct_s,
            "detail": {**s, "direct_s": direct_s, "ray_fit_s": ray_s, "ray_init_s": init_s,
                       # inside epochs vs around them: is Ray slowing training, or adding fixed costs?
                       "direct_epochs_s": direct_epochs_s, "ray_epochs_s": ray_epochs_s,
                       "timed": "Tuner.fit() only; ray.init (cluster start) excluded, reported as ray_init_s"}}
