"""Measured learning curves, replayed: what ``perf asha`` and ``perf search`` share.

- **Measured once**: every configuration of a small grid over the demo space's axes is trained
  with the real ``bench.training.trainable.run_trial``; each epoch's ``val/uar`` and ``epoch_s`` (seconds
  of one trial on one core: device-seconds) are cached in
  ``<cache>/perf/curves-<key>.json``. The key hashes the grid, the training code
  (``CODE_PATHS``), the data the configurations train on (sample ids, labels, subjects and
  pixels) and the torch version, so a change to any of them recomputes. The file also says where,
  when and how fast it was computed; a partial file keeps finished configurations when the run is
  interrupted, and the next run continues from it.
- **Replayed**: a sweep's sampler proposes a configuration from the demo space itself
  (``search_spaces/face/synthetic.yaml`` through ``SearchSpace.define_by_run``, as
  ``tune_backend.build_tuner`` does); it runs the measured curve of the nearest grid point (per
  axis; log distance on log axes; axes the grid fixes are ignored). A scheduler decides after each
  epoch whether the trial goes on; a finished or stopped trial is told to the study with its last
  value, as Ray's ``OptunaSearch.on_trial_complete`` does. Two trials run at a time, one epoch each
  in turn, as on two cores.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .common import machine, one_thread_worker_init, perf_cache

REPO = Path(__file__).resolve().parents[2]
# What a curve depends on besides its configuration: the training loop and everything it builds.
CODE_PATHS = ("bench/training", "bench/data", "fer_models")
# Seconds per epoch of the demo's model (fer_cnn, 48 px) in one of two processes on a 2-core VM
# (the 96 x 12 grid took about an hour there); only for the estimate printed beforehand.
EPOCH_SECONDS_ESTIMATE = {48: 6.0, 16: 1.0}

GRIDS = {
    # The demo space's axes that matter most at its budget, 2-3 values each (24 configurations x
    # the demo's 12 epochs: ~15 min on 2 idle cores). The other two axes stay at their ranges' middles.
    "full": {"fixed": {"model.name": "fer_cnn", "data.dataset": "synthetic", "data.image_size": 48,
                       "train.max_epochs": 12, "optim.weight_decay": 1e-4, "train.label_smoothing": 0.1},
             "params": {"model.hidden": [64, 256], "model.dropout": [0.0, 0.5],
                        "optim.lr": [5e-4, 1.5e-3, 5e-3], "train.batch_size": [32, 64]}},
    "tiny": {"fixed": {"model.name": "fer_cnn", "data.dataset": "synthetic", "data.image_size": 16,
                       "train.batch_size": 128, "train.max_epochs": 2},
             "params": {"model.hidden": [32], "optim.lr": [1e-3, 1e-2]}},
}


def mean_std(values) -> dict:
    """{"mean", "std"} (sample std) of the per-seed figures every replay benchmark reports."""
    arr = np.asarray(list(values), dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0}


def log(message: str) -> None:
    """Progress goes to stderr, so ``--json`` keeps stdout one JSON object."""
    print(message, file=sys.stderr, flush=True)


def grid_configs(grid: dict) -> list[dict]:
    keys = list(grid["params"])
    return [{**grid["fixed"], **dict(zip(keys, values))}
            for values in itertools.product(*(grid["params"][k] for k in keys))]


def config_key(config: dict, params: dict) -> str:
    return json.dumps({k: config[k] for k in params}, sort_keys=True)


def code_hash() -> str:
    digest = hashlib.sha256()
    for rel in CODE_PATHS:
        path = REPO / rel
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []
        for f in files:
            digest.update(str(f.relative_to(REPO)).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def data_hash(dataset: str, cache_dir: Path) -> str:
    """Of what the configurations train on: every sample's id, label, subject and pixels."""
    from ..data import get_adapter

    adapter = get_adapter(dataset)
    samples = adapter.index(None, Path(cache_dir)).samples
    digest = hashlib.sha256(json.dumps([(s.sample_id, s.label, s.subject) for s in samples]).encode())
    digest.update(np.ascontiguousarray(adapter.load_arrays(samples, None, Path(cache_dir))).tobytes())
    return digest.hexdigest()[:16]


def curves_path(grid: dict, cache_dir: Path) -> tuple[Path, dict]:
    import torch

    parts = {"grid": hashlib.sha256(json.dumps(grid, sort_keys=True).encode()).hexdigest()[:16],
             "code": code_hash(), "data": data_hash(grid["fixed"]["data.dataset"], cache_dir),
             "torch": torch.__version__}
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return perf_cache(cache_dir) / f"curves-{key}.json", parts


def estimate_seconds(grid: dict, workers: int = 2) -> float:
    epochs = len(grid_configs(grid)) * grid["fixed"]["train.max_epochs"]
    return epochs * EPOCH_SECONDS_ESTIMATE.get(grid["fixed"]["data.image_size"], 4.0) / workers


def _curve(config: dict, cache_dir: str) -> dict:
    from bench.training.trainable import run_trial

    out: dict = {"val_uar": [], "epoch_s": []}

    def report(metrics, _directory):
        out["val_uar"].append(float(metrics["val/uar"]))
        out["epoch_s"].append(float(metrics["epoch_s"]))

    run_trial(config, cache_dir=cache_dir, report=report)
    return out


@dataclass
class Curves:
    curves: dict[str, dict]
    cached: bool
    path: Path
    computed: dict  # where, when and how long

    def describe(self) -> str:
        c = self.computed
        how = "read from the cache" if self.cached else "computed now"
        return (f"learning curves {how}: {self.path} ({len(self.curves)} configurations, computed "
                f"{c.get('at')} on {c.get('machine', {}).get('cpu_count')} CPUs "
                f"(GPU {c.get('machine', {}).get('gpu') or 'none'}) in {c.get('seconds', 0) / 60:.1f} min, "
                f"{c.get('workers')} processes)")


_LOADED: dict[str, Curves] = {}  # per process: `perf all` runs asha and search on the same curves


def learning_curves(grid: dict, cache_dir: Path, workers: int = 2) -> Curves:
    """The grid's curves: read from the cache when code, data and grid are unchanged, else trained
    here (finished configurations are kept in a partial file as they complete)."""
    memo = json.dumps([grid, str(cache_dir)], sort_keys=True)
    if memo in _LOADED:
        return _LOADED[memo]
    path, parts = curves_path(grid, cache_dir)
    if path.is_file():
        data = json.loads(path.read_text())
        _LOADED[memo] = Curves(data["curves"], True, path, data["computed"])
        return _LOADED[memo]
    partial = path.with_suffix(".partial.json")
    curves: dict = json.loads(partial.read_text())["curves"] if partial.is_file() else {}
    todo = [c for c in grid_configs(grid) if config_key(c, grid["params"]) not in curves]
    minutes = estimate_seconds(grid, workers) * len(todo) / len(grid_configs(grid)) / 60
    log(f"training {len(todo)} of {len(grid_configs(grid))} grid configurations x "
        f"{grid['fixed']['train.max_epochs']} epochs for the learning curves (about {minutes:.0f} min on "
        f"2 idle cores); kept in {path}")
    start = time.perf_counter()

    def keep(config: dict, curve: dict) -> None:
        curves[config_key(config, grid["params"])] = curve
        partial.write_text(json.dumps({"grid": grid, "key": parts, "curves": curves}))
        log(f"  curve {len(curves)}/{len(grid_configs(grid))}: best val UAR {max(curve['val_uar']):.3f} "
            f"({time.perf_counter() - start:.0f} s)")

    if workers == 1 or len(todo) <= 1:  # in-process: a tiny grid costs less than starting a worker
        for config in todo:
            keep(config, _curve(config, str(cache_dir)))
    elif todo:
        # spawn: a forked child would inherit the parent's torch thread pool state
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                                 initializer=one_thread_worker_init) as pool:
            futures = {pool.submit(_curve, c, str(cache_dir)): c for c in todo}
            for future in as_completed(futures):
                keep(futures[future], future.result())
    computed = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
                "seconds": round(time.perf_counter() - start, 1), "workers": workers, "key": parts}
    path.write_text(json.dumps({"grid": grid, "computed": computed, "curves": curves}, indent=1))
    partial.unlink(missing_ok=True)
    _LOADED[memo] = Curves(curves, False, path, computed)
    return _LOADED[memo]


# ---- replay ------------------------------------------------------------------------------------

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


@dataclass
class Entry:
    trial_id: int
    curve: dict
    tell: Callable[[float], None]
    epoch: int = 0


@dataclass
class Trace:
    """One replayed sweep: after each epoch, (epochs so far, device-seconds so far, value)."""
    points: list[tuple[int, float, float]] = field(default_factory=list)
    trials: int = 0
    reached: bool = False

    @property
    def epochs(self) -> int:
        return self.points[-1][0] if self.points else 0

    @property
    def seconds(self) -> float:
        return self.points[-1][1] if self.points else 0.0

    @property
    def best(self) -> float:
        return max((v for _, _, v in self.points), default=float("nan"))

    def best_within(self, seconds: float) -> float:
        return max((v for _, s, v in self.points if s <= seconds), default=float("nan"))


def demo_space():
    from bench.sweep.spaces import builtin_space_path, load_space

    return load_space(builtin_space_path("face", "synthetic"))


def nearest_key(sampled: dict, grid: dict, space) -> str:
    """The grid point nearest to a sampled configuration, axis by axis."""
    specs = {p.key: p for p in space.params}
    chosen = {}
    for key, values in grid["params"].items():
        value, spec = sampled.get(key), specs.get(key)
        if value is None or value in values or spec is None or isinstance(value, str):
            chosen[key] = value if value in values else values[0]
            continue
        scale = math.log if spec.log else float
        chosen[key] = min(values, key=lambda v: abs(scale(v) - scale(value)))
    return json.dumps(chosen, sort_keys=True)


def optuna_proposer(curves: dict, grid: dict, space, sampler) -> Callable[[], Entry]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if space.mode == "max" else "minimize", sampler=sampler)
    define = space.define_by_run()

    def propose() -> Entry:
        trial = study.ask()
        define(trial)
        return Entry(trial.number, curves[nearest_key(trial.params, grid, space)],
                     lambda value: study.tell(trial, value))

    return propose


def grid_proposer(curves: dict, seed: int) -> Callable[[], Entry | None]:
    """The exhaustive grid, in a seeded random order (each configuration once)."""
    order = list(np.random.default_rng(seed).permutation(sorted(curves)))
    counter = itertools.count()

    def propose() -> Entry | None:
        return Entry(next(counter), curves[order.pop()], lambda value: None) if order else None

    return propose


def tpe_sampler(space, seed: int, samples: int):
    """As ``tune_backend.build_tuner`` builds it for ``samples`` trials."""
    from optuna.samplers import RandomSampler, TPESampler

    seed = space.searcher_seed(seed)
    if space.searcher.get("sampler") == "random":
        return RandomSampler(seed=seed)
    return TPESampler(seed=seed, n_startup_trials=space.searcher.get("n_startup_trials", max(2, min(10, samples // 3))))


def replay(propose: Callable[[], Entry | None], *, max_t: int, scheduler: AsyncSuccessiveHalving | None = None,
           concurrency: int = 2, max_samples: int | None = None, budget_epochs: int | None = None,
           budget_seconds: float | None = None, target: float | None = None) -> Trace:
    """Run a replayed sweep until its samples or budget are spent or a trial reports ``target``.
    ``scheduler`` None: every trial runs ``max_t`` epochs (no early stopping)."""
    trace = Trace()
    running: list[Entry] = []
    epochs, seconds = 0, 0.0

    def spent() -> bool:
        return ((budget_epochs is not None and epochs >= budget_epochs)
                or (budget_seconds is not None and seconds >= budget_seconds))

    exhausted = False
    while True:
        while len(running) < concurrency and not exhausted and not spent() and (
                max_samples is None or trace.trials < max_samples):
            entry = propose()
            if entry is None:
                exhausted = True
                break
            running.append(entry)
            trace.trials += 1
        if not running:
            return trace
        for entry in list(running):  # each running trial advances one epoch, in turn
            if spent():
                return trace
            value = entry.curve["val_uar"][entry.epoch]
            seconds += entry.curve["epoch_s"][entry.epoch]
            entry.epoch += 1
            epochs += 1
            trace.points.append((epochs, seconds, value))
            if target is not None and value >= target:
                trace.reached = True
                return trace
            go_on = entry.epoch < max_t and (scheduler is None or
                                             scheduler.on_result(entry.trial_id, entry.epoch, value))
            if not go_on:
                entry.tell(value)
                running.remove(entry)
