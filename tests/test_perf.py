"""Every ``fer-bench perf`` benchmark runs at its tiny size and yields finite positive ratios.

Only that it keeps working: the goals (and any timing) are judged on the full run, recorded in
results/perf.md, never here.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.perf import replay as replay_module
from bench.perf.replay import GRIDS, AsyncSuccessiveHalving, Entry, curves_path, grid_proposer, replay
from bench.perf.runner import run


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])

KEYS = {
    "trainer": ["trainer_vs_bare"],
    "asha": ["asha_vs_grid_epochs_out_of_sample"],
    "search": ["search_tpe_asha_vs_tpe"],
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


def test_asha_curves_are_cached_by_hash_and_flagged(cache_dir):
    first = run("asha", "tiny", cache_dir)
    replay_module._LOADED.clear()  # as a new process would: read the file back
    again = run("asha", "tiny", cache_dir)
    assert again["curves_cached"] is True and again["detail"]["asha"]["curves"]["cached"]
    assert first["asha_vs_grid_epochs_out_of_sample"] == again["asha_vs_grid_epochs_out_of_sample"]
    detail = again["detail"]["asha"]
    assert detail["curves"]["path"].startswith(str(cache_dir)) and detail["curves"]["computed"]["machine"]
    assert set(detail["selection_seeds"]).isdisjoint(detail["report_seeds"])
    assert detail["curves"]["replayed_space"].endswith("search_spaces/face/synthetic.yaml")
    # another grid (or other code, data or torch) is another cache file
    other = {**GRIDS["tiny"], "params": {"model.hidden": [32], "optim.lr": [1e-3]}}
    assert curves_path(other, cache_dir)[0] != curves_path(GRIDS["tiny"], cache_dir)[0]


def test_search_compares_three_sweeps_at_equal_device_seconds_and_plots(cache_dir):
    result = run("search", "tiny", cache_dir)
    detail = result["detail"]["search"]
    assert set(detail["methods"]) == {"tpe_asha", "random_asha", "tpe_fifo"}
    assert all(len(v) == len(detail["seeds"]) for v in detail["per_seed_best"].values())
    assert png_size(Path(detail["plot"]).read_bytes())[0] > 200


def test_replay_charges_epochs_and_seconds_and_asha_stops_a_bad_trial():
    curves = {"good": {"val_uar": [0.2, 0.5, 0.8, 0.9], "epoch_s": [1.0] * 4},
              "bad": {"val_uar": [0.1, 0.1, 0.1, 0.1], "epoch_s": [2.0] * 4}}
    order = iter(enumerate(["good", "bad", "bad"]))
    told = []

    def propose():
        number, key = next(order, (None, None))
        return None if key is None else Entry(number, curves[key], told.append)

    trace = replay(propose, max_t=4, scheduler=AsyncSuccessiveHalving(4, 1, 2))
    # rung 1 holds the good trial's 0.2 when each bad one reports 0.1 there: both stop after one
    # epoch (the median cutoff of reduction factor 2); the good one runs all four
    assert trace.trials == 3 and trace.best == 0.9 and trace.epochs == 4 + 1 + 1
    assert trace.seconds == 4 * 1.0 + 2 * 2.0 and told == [0.1, 0.1, 0.9]
    fifo = replay(grid_proposer(curves, 0), max_t=4, target=0.85)
    assert fifo.reached and fifo.best >= 0.85


def test_perf_all_keeps_what_it_measured_when_interrupted(tmp_path, monkeypatch):
    from bench.perf import runner

    def interrupted(size, cache):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "BENCHMARKS", {"trainer": lambda size, cache: {"trainer_vs_bare": 1.0},
                                               "ray": interrupted})
    result = runner.run("all", "tiny", tmp_path, progress=True)  # its own cache: no other run writes there
    assert result["interrupted"] == "ray" and result["trainer_vs_bare"] == 1.0
    kept = json.loads((tmp_path / "perf" / "last-run.json").read_text())
    assert kept["interrupted"] == "ray" and kept["trainer_vs_bare"] == 1.0
