"""Runs one benchmark (or all), attaches the machine, and checks each ratio against its goal.

``perf all`` says up front what it will run and about how long, prints each benchmark's figures as
soon as they are measured, and keeps what it measured (``<cache>/perf/last-run.json``, rewritten
after each benchmark) when it is interrupted."""
from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .common import check_size, machine, perf_cache

# ratio key -> (comparison, goal); the full-size run is judged against these, never the tests
GOALS: dict[str, tuple[str, float]] = {
    "trainer_vs_bare": (">=", 0.95),
    "ray_trial_overhead": ("<=", 1.10),
    # both sides stop at the same target, the setting is chosen on other seeds: ASHA must not lose
    "asha_vs_grid_epochs_out_of_sample": ("<=", 1.0),
    "search_tpe_asha_vs_tpe": (">=", 1.0),
    "cache_speedup": (">=", 10.0),
    "loader_vs_memory": (">=", 0.8),
    "face_pipeline_vs_bare": (">=", 0.8),
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


def _search(size: str, cache_dir: Path) -> dict:
    from . import search

    return search.run(size, cache_dir)


def _cache(size: str, cache_dir: Path) -> dict:
    from . import cache

    return cache.run(size, cache_dir)


def _loader(size: str, cache_dir: Path) -> dict:
    from . import loader

    return loader.run(size, cache_dir)


def _face_throughput(size: str, cache_dir: Path) -> dict:
    from . import face_throughput

    return face_throughput.run(size, cache_dir)


def _video(size: str, cache_dir: Path) -> dict:
    from . import video

    return video.run(size, cache_dir)


def _gpu(size: str, cache_dir: Path) -> dict:
    from . import gpu

    return gpu.run(size)


BENCHMARKS: dict[str, Callable[[str, Path], dict]] = {
    "trainer": _trainer, "ray": _ray, "asha": _asha, "search": _search, "cache": _cache, "loader": _loader,
    "face-throughput": _face_throughput, "video": _video, "gpu": _gpu,
}
NAMES = (*BENCHMARKS, "all")
# Seconds at full size on a fresh 2-core machine (measured one by one; asha/search: with their
# learning curves cached, else the curves' own estimate is added once).
ESTIMATE_S = {"trainer": 60, "ray": 180, "asha": 30, "search": 20, "cache": 40, "loader": 30,
              "face-throughput": 90, "video": 60, "gpu": 0}


def plan(names: list[str], size: str, cache_dir: Path) -> tuple[str, float]:
    """What will run and about how long, before anything runs."""
    from . import replay

    total, parts = 0.0, []
    curves_needed = False
    for name in names:
        seconds = ESTIMATE_S.get(name, 60) if size == "full" else 5
        if name in ("asha", "search") and not curves_needed:
            path, _ = replay.curves_path(replay.GRIDS[size], cache_dir)
            if not path.is_file():
                curves_needed = True
                seconds += replay.estimate_seconds(replay.GRIDS[size]) if size == "full" else 20
        total += seconds
        parts.append(f"{name} ~{seconds / 60:.1f} min" if seconds >= 60 else f"{name} ~{seconds:.0f} s")
    note = ("; the learning curves are not cached yet, so asha trains them first"
            if curves_needed else "")
    return f"perf {size}: {', '.join(parts)}; about {total / 60:.0f} min in all on 2 idle cores{note}", total


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(name: str, size: str = "full", cache_dir: Path | None = None, progress: bool = False) -> dict:
    """``{ratio: value, ..., "machine": {...}, "detail": {benchmark: {...}}, "seconds": {...}}``;
    with ``progress``, the plan and each benchmark's figures go to stderr as they are measured.
    Interrupted (Ctrl-C): returns what was measured, with ``interrupted`` naming the benchmark."""
    from .. import paths

    check_size(size)
    if name not in NAMES:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(NAMES)}")
    cache_dir = Path(cache_dir) if cache_dir else paths.cache_dir()
    names = list(BENCHMARKS if name == "all" else [name])
    if progress:
        _log(plan(names, size, cache_dir)[0])
    out: dict = {}
    detail: dict = {}
    seconds: dict = {}
    keep = perf_cache(cache_dir) / "last-run.json"
    for bench in names:
        start = time.perf_counter()
        try:
            result = BENCHMARKS[bench](size, cache_dir)
        except KeyboardInterrupt:
            partial = {**out, "machine": machine(), "size": size, "detail": detail, "seconds": seconds,
                       "interrupted": bench}
            keep.write_text(json.dumps(partial, indent=1, default=str))
            if progress:
                _log(f"interrupted during {bench}; what was measured is in {keep}")
            return partial
        seconds[bench] = round(time.perf_counter() - start, 1)
        detail[bench] = result.pop("detail", {})
        if "skipped" in result:
            detail[bench]["skipped"] = result.pop("skipped")
        out.update(result)
        if progress:
            lines = _figure_lines(result, size) or [f"{bench}: skipped ({detail[bench].get('skipped')})"]
            _log("\n".join(lines) + f"   [{bench}: {seconds[bench]:.0f} s]")
        keep.write_text(json.dumps({**out, "size": size, "detail": detail, "seconds": seconds}, indent=1,
                                   default=str))
    # the load at the end of the run: ratios taken on a busy machine are noisier
    return {**out, "machine": machine(), "size": size, "detail": detail, "seconds": seconds}


def verdict(key: str, value: float) -> str:
    if key not in GOALS:
        return ""
    op, goal = GOALS[key]
    met = value >= goal if op == ">=" else value <= goal
    return f"goal {op} {goal:g}: {'met' if met else 'NOT met'}"


def _figure_lines(result: dict, size: str) -> list[str]:
    lines = []
    for key, value in result.items():
        if isinstance(value, float) and math.isfinite(value):
            lines.append(f"{key:<34} {value:8.3f}   {verdict(key, value) if size == 'full' else ''}".rstrip())
        elif isinstance(value, bool):
            lines.append(f"{key:<34} {'yes' if value else 'no'}")
    return lines


def format_text(result: dict) -> str:
    lines = _figure_lines(result, result["size"])
    if result.get("interrupted"):
        lines.append(f"interrupted during {result['interrupted']}: the figures above are all that was measured")
    for bench in ("asha", "search"):
        curves = result["detail"].get(bench, {})
        if "curves" in curves or "curves_path" in curves:
            info = curves.get("curves", {})
            path = info.get("path") or curves.get("curves_path")
            cached = info.get("cached", curves.get("curves_cached"))
            lines.append(f"{bench}: learning curves {'read from the cache' if cached else 'computed now'}: {path}")
    for bench, d in result["detail"].items():
        if "skipped" in d:
            lines.append(f"{bench}: skipped ({d['skipped']})")
    m = result["machine"]
    lines.append(f"machine: {m['cpu_count']} CPUs, load {m['load_avg_1_5_15']}, torch {m['torch']}, "
                 f"ray {m['ray']}, GPU {m['gpu'] or 'none'}; size {result['size']}")
    return "\n".join(lines)
