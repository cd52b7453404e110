"""Runs one benchmark (or all), attaches the machine, and checks each ratio against its goal."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

from .common import check_size, machine

# ratio key -> (comparison, goal); the full-size run is judged against these, never the tests
GOALS: dict[str, tuple[str, float]] = {
    "trainer_vs_bare": (">=", 0.95),
    "ray_trial_overhead": ("<=", 1.10),
    "asha_vs_grid_epochs": ("<=", 0.25),
    "cache_speedup": (">=", 10.0),
    "loader_vs_memory": (">=", 0.8),
    "residual_vs_rgb_clips": (">=", 2.0),
}


def _trainer(size: str, cache_dir: Path) -> dict:
    from . import trainer

    return trainer.run(size)


def _ray(size: str, cache_dir: Path) -> dict:
    from . import ray_overhead

    return ray_overhead.run(size, cache_dir)


def _asha(size: str, cache_dir: Path) -> dict:
    from . import asha

    return asha.run(size, cache_dir)


def _cache(size: str, cache_dir: Path) -> dict:
    from . import cache

    return cache.run(size, cache_dir)


def _loader(size: str, cache_dir: Path) -> dict:
    from . import loader

    return loader.run(size, cache_dir)


def _video(size: str, cache_dir: Path) -> dict:
    from . import video

    return video.run(size, cache_dir)


def _gpu(size: str, cache_dir: Path) -> dict:
    from . import gpu

    return gpu.run(size)


BENCHMARKS: dict[str, Callable[[str, Path], dict]] = {
    "trainer": _trainer, "ray": _ray, "asha": _asha, "cache": _cache, "loader": _loader, "video": _video,
    "gpu": _gpu,
}
NAMES = (*BENCHMARKS, "all")


def run(name: str, size: str = "full", cache_dir: Path | None = None) -> dict:
    """``{ratio: value, ..., "machine": {...}, "detail": {benchmark: {...}}, "seconds": {...}}``."""
    from .. import paths

    check_size(size)
    if name not in NAMES:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(NAMES)}")
    cache_dir = Path(cache_dir) if cache_dir else paths.cache_dir()
    out: dict = {}
    detail: dict = {}
    seconds: dict = {}
    for bench in (BENCHMARKS if name == "all" else [name]):
        start = time.perf_counter()
        result = BENCHMARKS[bench](size, cache_dir)
        seconds[bench] = round(time.perf_counter() - start, 1)
        detail[bench] = result.pop("detail", {})
        if "skipped" in result:
            detail[bench]["skipped"] = result.pop("skipped")
        out.update(result)
    # the load at the end of the run: ratios taken on a busy machine are noisier
    return {**out, "machine": machine(), "size": size, "detail": detail, "seconds": seconds}


def verdict(key: str, value: float) -> str:
    if key not in GOALS:
        return ""
    op, goal = GOALS[key]
    met = value >= goal if op == ">=" else value <= goal
    return f"goal {op} {goal:g}: {'met' if met else 'NOT met'}"


def format_text(result: dict) -> str:
    lines = []
    for key, value in result.items():
        if isinstance(value, float) and math.isfinite(value):
            lines.append(f"{key:<24} {value:8.3f}   {verdict(key, value) if result['size'] == 'full' else ''}".rstrip())
    for bench, d in result["detail"].items():
        if "skipped" in d:
            lines.append(f"{bench}: skipped ({d['skipped']})")
    m = result["machine"]
    lines.append(f"machine: {m['cpu_count']} CPUs, load {m['load_avg_1_5_15']}, torch {m['torch']}, "
                 f"ray {m['ray']}, GPU {m['gpu'] or 'none'}; size {result['size']}")
    return "\n".join(lines)
