"""What every benchmark shares: the machine it ran on, medians, and child processes that train
with one thread each (the concurrency a 2-core sweep gives its trials)."""
from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

SIZES = ("tiny", "full")


def check_size(size: str) -> str:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    return size


def machine() -> dict:
    """What a ratio depends on: cores, load, library versions, accelerator."""
    import torch

    try:
        import ray

        ray_version = ray.__version__
    except ImportError:  # the perf harness runs without Ray except for `perf ray`
        ray_version = None
    info = {
        "cpu_count": os.cpu_count(),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "ray": ray_version,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def median(values) -> float:
    return float(statistics.median(values))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(candidates: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each candidate ``repeats`` times in alternating order (a, b, b, a, ...), so a load
    spike from another process hits both sides alike; each call returns its own measurement."""
    names = list(candidates)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            out[name].append(candidates[name]())
    return out


def perf_cache(cache_dir: Path) -> Path:
    path = Path(cache_dir) / "perf"
    path.mkdir(parents=True, exist_ok=True)
    return path


def one_thread_worker_init() -> None:
    """Child processes train with one intra-op thread each, like a trial given cpus_per_trial=1."""
    import torch

    torch.set_num_threads(1)
