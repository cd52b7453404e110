"""Every ``fer-bench perf`` benchmark runs at its tiny size and yields finite positive ratios.

Only that it keeps working: the goals (and any timing) are judged on the full run, recorded in
results/perf.md, never here.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from bench.cli import main
from bench.perf.runner import run

KEYS = {
    "trainer": ["trainer_vs_bare"],
    "asha": ["asha_vs_grid_epochs"],
    "cache": ["cache_speedup"],
    "loader": ["loader_vs_memory"],
    "video": ["residual_vs_rgb_clips"],
}
GPU_KEYS = ["amp_speedup", "channels_last_speedup", "compile_speedup", "shared_gpu_throughput",
            "timm_published_ratio", "trainer_vs_bare_gpu"]


def _check(result: dict, keys: list[str]) -> None:
    for key in keys:
        value = result[key]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, value)
    assert result["machine"]["cpu_count"] >= 1 and len(result["machine"]["load_avg_1_5_15"]) == 3


@pytest.mark.parametrize("name", sorted(KEYS))
def test_benchmark_runs_at_tiny_size(name, cache_dir):
    _check(run(name, "tiny", cache_dir), KEYS[name])


def test_gpu_benchmark_runs_or_says_why_not(cache_dir):
    result = run("gpu", "tiny", cache_dir)
    if torch.cuda.is_available():
        _check(result, GPU_KEYS)
    else:
        assert "no CUDA device" in result["detail"]["gpu"]["skipped"]
        assert not any(k in result for k in GPU_KEYS)


@pytest.mark.ray
def test_ray_overhead_runs_at_tiny_size(cache_dir):
    _check(run("ray", "tiny", cache_dir), ["ray_trial_overhead"])


def test_cli_prints_one_json_object_of_ratios(cache_dir, capsys):
    assert main(["perf", "trainer", "--size", "tiny", "--json", "--cache-dir", str(cache_dir)]) == 0
    result = json.loads(capsys.readouterr().out)
    _check(result, ["trainer_vs_bare"])
    assert result["size"] == "tiny"
