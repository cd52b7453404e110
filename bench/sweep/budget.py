"""Time budgets: ``30m``-style durations, and the sweep's expected duration from measured costs.

The estimate measures what the sweep's trials cost here (the first configurations its searcher
will draw, each through the trial's own ``build_parts``, loader, ``train_one_epoch``, ``evaluate``
and checkpoint, slowed by the cores' share the sweep's concurrent trials leave each), then replays
the sweep: trials started in order on the concurrent slots, ASHA's rule deciding at each rung with
the results it has by then, each epoch on its share of the training set
(``train.data_fractions``) plus a full validation pass. The record keeps the estimate
(``budget.estimated_seconds``) beside the sweep's measured ``wall_seconds``.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from bench.errors import UserError
from bench.sweep.durations import parse_duration  # noqa: F401  (also budget's, as it always was)


def format_duration(seconds: float) -> str:
    if 0 < seconds < 0.5:
        return "<1 s"  # a scikit-learn head's whole fit, say: not "0 s"
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def asha_epochs_per_trial(max_epochs: int, grace: int, factor: float, scheduler: str = "asha") -> float:
    """Epochs an average trial runs: every trial reaches the grace period, and about 1/factor of
    the trials at each rung go on to the next (ASHA's promotion rule), up to ``max_epochs``."""
    if scheduler != "asha":
        return float(max_epochs)
    rungs, r = [], max(1, min(grace, max_epochs))
    while r < max_epochs:
        rungs.append(r)
        r *= factor
    rungs.append(max_epochs)
    total, previous = 0.0, 0
    for k, rung in enumerate(rungs):
        total += (rung - previous) / factor ** k
        previous = rung
    return total


@dataclass
class TrialCost:
    """What one configuration's trial costs, measured here (``EpochTimer``) or given (tests).

    A trial's seconds: ``setup_s`` once, then per epoch its share of the training split at
    ``train_s`` a sample, one validation pass of the whole validation split (``val_s``, TTA
    included) and ``epoch_overhead_s`` (the checkpoint written and reported each epoch). The
    per-sample times are those of a trial running beside the sweep's other concurrent trials."""
    setup_s: float
    train_s: float  # seconds per training sample: loading, augmentation and the step
    val_s: float  # seconds per validation epoch
    n_train: int
    epoch_overhead_s: float = 0.0
    one_shot_s: float | None = None  # a scikit-learn head: its whole trial, fitted once

    def epoch_seconds(self, fraction: float = 1.0) -> float:
        return fraction * self.n_train * self.train_s + self.val_s + self.epoch_overhead_s

    def seconds(self, epochs: int, fractions=()) -> float:
        """A trial that stops after ``epochs`` epochs under the fraction schedule ``fractions``."""
        if self.one_shot_s is not None:
            return self.one_shot_s
        from bench.training.fidelity import fraction_at

        return self.setup_s + sum(self.epoch_seconds(fraction_at(fractions, e)) for e in range(epochs))


class _Rule:
    """Ray Tune's ASHAScheduler rule for its one bracket (``async_hyperband._Bracket.on_result``):
    the first time a trial reaches a rung its value is recorded there, and it stops if the value is
    below the (1 - 1/rf) percentile of the values already recorded (none: it goes on)."""

    def __init__(self, milestones: list[int], factor: float):
        self.factor, self.recorded = factor, {m: [] for m in milestones}

    def go_on(self, milestone: int, value: float) -> bool:
        import numpy as np

        seen = self.recorded[milestone]
        cutoff = np.percentile(seen, (1 - 1 / self.factor) * 100) if seen else None
        seen.append(value)
        return cutoff is None or value >= cutoff


class Replay(NamedTuple):
    """``simulate_sweep``'s answer: the mean over its replays, and the spread of their wall times."""
    wall: float  # mean wall seconds of the trials
    epochs: float  # mean epochs a trial runs
    wall_low: float  # 10th percentile of the replays' wall seconds
    wall_high: float  # 90th percentile


def simulate_sweep(costs: list[TrialCost], *, samples: int, max_epochs: int, concurrent: int,
                   scheduler: dict, fractions=(), reps: int = 64, seed: int = 0) -> Replay:
    """The sweep replayed ``reps`` times with random configuration scores (the same rank at every
    rung), trial i costing ``costs[i % len(costs)]``, trials started in order on ``concurrent``
    slots and ASHA deciding at each rung with what it has seen by then -- the first trials to reach
    a rung go on, so with few trials ASHA runs more epochs than 1/reduction_factor per rung
    suggests. Which trials ASHA stops depends on their scores, so with ten-odd trials one sweep's
    epochs (and wall) vary by about +-20 % around the mean: the replays' 10th-90th percentiles say
    how much."""
    import heapq

    import numpy as np

    from bench.sweep.fidelity import asha_milestones

    asha = scheduler.get("name", "asha") == "asha"
    factor = float(scheduler.get("reduction_factor", 3))
    milestones = asha_milestones(max_epochs, int(scheduler.get("grace_period", 1)), factor) if asha else []
    stops = [m for m in milestones if m < max_epochs] + [max_epochs]
    rng = np.random.default_rng(seed)
    walls, epochs = [], []
    for _ in range(reps):
        rule = _Rule(milestones, factor)
        scores = rng.random(samples)
        slots = [0.0] * max(1, concurrent)  # when each slot is free
        heapq.heapify(slots)
        events: list[tuple[float, int, int, float]] = []  # (time, trial, epoch reached, trial start)
        started, end, ran = 0, 0.0, 0
        while started < samples or events:
            while started < samples and slots and (not events or slots[0] <= events[0][0]):
                t0 = heapq.heappop(slots)
                cost = costs[started % len(costs)]
                first = max_epochs if cost.one_shot_s is not None else stops[0]
                heapq.heappush(events, (t0 + cost.seconds(first, fractions), started, first, t0))
                started += 1
            t, trial, epoch, t0 = heapq.heappop(events)
            cost = costs[trial % len(costs)]
            if epoch < max_epochs and rule.go_on(epoch, scores[trial]):
                nxt = stops[stops.index(epoch) + 1]
                heapq.heappush(events, (t0 + cost.seconds(nxt, fractions), trial, nxt, t0))
                continue
            ran += epoch
            end = max(end, t)
            heapq.heappush(slots, t)
        walls.append(end)
        epochs.append(ran / samples)
    mean = float(np.mean(walls))
    low, high = np.percentile(walls, [10, 90])
    # identical replays (FIFO, or ASHA that never stops) put mean and percentiles a rounding error apart
    return Replay(mean, float(np.mean(epochs)), min(float(low), mean), max(float(high), mean))


@dataclass
class Estimate:
    seconds: float  # the whole sweep, wall clock
    epoch_seconds: float  # an average trial's epoch on the whole training split, validation included
    epochs_per_trial: float
    trials: int
    concurrent: int
    per_model: dict = field(default_factory=dict)  # model -> seconds per full epoch
    device: str = "cpu"
    fractions: list = field(default_factory=list)  # train.data_fractions of the sweep
    setup_seconds: float = 0.0  # a trial's start: data, model, first step
    worker_start_seconds: float = 0.0  # a fresh Ray worker's imports (the first trials')
    low_seconds: float | None = None  # the 10th-90th percentile of the replays: ASHA's stops alone
    high_seconds: float | None = None

    def to_dict(self) -> dict:
        return {"seconds": round(self.seconds, 1), "epoch_seconds": round(self.epoch_seconds, 2),
                "epochs_per_trial": round(self.epochs_per_trial, 2), "trials": self.trials,
                "concurrent": self.concurrent, "device": self.device, "data_fractions": self.fractions,
                "setup_seconds": round(self.setup_seconds, 2),
                "worker_start_seconds": round(self.worker_start_seconds, 2),
                "low_seconds": _rounded(self.low_seconds), "high_seconds": _rounded(self.high_seconds),
                "per_model_epoch_seconds": {k: round(v, 2) for k, v in self.per_model.items()}}


# Measured on this 2-core machine (docs/large-sets.md, "The sweep's estimate"): starting Ray and
# the summary (a sweep's wall time minus its Tune time: 3.4-6 s on four quiet sweeps, TESS to
# FER2013-size; 15 s was a loaded machine's), and what Tune adds to each trial (scheduling it, its
# result and checkpoint through the driver) beyond the trial's own work. A fresh worker's imports
# are measured each time (``worker_start_seconds``): under load they took minutes.
STARTUP_S = 5.0
TRIAL_OVERHEAD_S = 3.0
REPORT_S = 0.4  # per epoch: Tune's report and persisting the checkpoint directory
WORKER_IMPORTS = "import ray, torch, timm, fer_models, bench.sweep.ray_trial, bench.training.trainable"


# A measurement of the worker's imports is reused for this long by later sweeps of the same
# process (the Python API, a notebook, the test suite): it moves with the machine's load, which a
# few minutes do not change much, and each measurement costs a fresh interpreter's imports.
WORKER_START_REUSE_S = 600.0
_worker_start: tuple[float, float] | None = None  # (when measured, seconds)


def worker_start_seconds(timeout: float = 600.0) -> float:
    """Seconds a fresh Python process takes to import what a trial's Ray worker imports: the
    sweep's first trials each start one (later trials reuse them). 0 if it cannot be measured."""
    import subprocess
    import sys

    global _worker_start
    if _worker_start is not None and time.monotonic() - _worker_start[0] < WORKER_START_REUSE_S:
        return _worker_start[1]
    start = time.perf_counter()
    try:
        subprocess.run([sys.executable, "-c", WORKER_IMPORTS], check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (subprocess.SubprocessError, OSError):
        return 0.0
    seconds = time.perf_counter() - start
    _worker_start = (time.monotonic(), seconds)
    return seconds


# How many configurations the estimate times: a space's choices span a wide range of costs (the
# FER2013 CPU default's cheapest trial epoch is ~4x faster than its dearest), so one "typical"
# configuration says little; the sweep's own first draws say what its trials will cost.
ESTIMATE_DRAWS = 6  # TPE's start-up draws of a 10-20-trial sweep and a few more; each costs a few seconds


def representative_configs(space, extra_fixed: dict, draws: int = ESTIMATE_DRAWS, seed: int = 0) -> list[dict]:
    """The first ``draws`` configurations the sweep's searcher will try, in its order: its Optuna
    sampler (``build_tuner``'s, with the same ``seed``) draws at random until trials complete
    (TPE's start-up trials come from its ``RandomSampler(seed)``), so an ask-only study with that
    sampler draws exactly the sweep's first trials and, after them, more of the same kind."""
    import optuna
    from optuna.samplers import RandomSampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=RandomSampler(seed=seed))
    sample = space.define_by_run(extra_fixed)
    out = []
    for _ in range(max(1, draws)):
        trial = study.ask()
        constants = sample(trial)
        out.append({**constants, **trial.params})
    return out


class EpochTimer:
    """Measures a ``TrialCost`` for each configuration here, through the trial's own pipeline:
    the training loader (decoding and augmentation included), ``train_one_epoch`` with the
    configuration's batch size, a validation pass with its TTA, and one checkpoint written; the
    steps and validation are slowed by ``concurrent`` trials' share of the cores. The first
    configuration is built with the trial's ``build_parts`` (its wall time is the per-trial setup);
    the others reuse its datasets when their input shape matches (loading a large split again
    would only time the disk)."""

    def __init__(self, *, cache_dir: Path, data_root: str | None, threads: int, steps: int = 4,
                 batch: int = 128, enough_s: float = 1.5, concurrent: int = 1):
        self.cache_dir, self.data_root, self.threads = Path(cache_dir), data_root, max(1, threads)
        self.steps, self.batch, self.enough_s, self.concurrent = steps, batch, enough_s, max(1, concurrent)
        self.shared = None  # (input size, training set, validation set)
        self.setup_s: float | None = None

    def __call__(self, config: dict) -> TrialCost:
        import torch

        from bench.training.config import TrialConfig

        cfg = TrialConfig.from_flat(config)
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            from bench.training.classic_trial import is_classic, trial_seconds

            if is_classic(cfg):  # a scikit-learn head is fitted once: its whole trial is the "epoch"
                seconds = trial_seconds(config, cache_dir=self.cache_dir, data_root=self.data_root)
                return TrialCost(0.0, 0.0, 0.0, 1, one_shot_s=seconds * self._slowdown_guess())
            return self._cost(cfg, config)
        finally:
            torch.set_num_threads(previous)

    def _slowdown_guess(self) -> float:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1.0, self.concurrent * self.threads / cores)

    def _parts(self, cfg):
        """(model, optimizer, task, device, train_set, val_set, mixup, ema, setup seconds or None)."""
        from bench.training import trainable
        from bench.training.tasks import create_task

        if self.shared is not None:
            input_size, train_set, val_set = self.shared
            device = trainable.pick_device()
            model = trainable.build_model(cfg, train_set.num_classes).to(device)
            if tuple(model.input_spec.input_size) == input_size and not model.input_spec.extras:
                trainable.apply_recipe(cfg, train_set, model.input_spec)
                ema = trainable.CountingEma(model, cfg.train.ema_decay) if cfg.train.ema else None
                mixup = trainable.SeededMixup(cfg, train_set.num_classes) \
                    if cfg.data.mixup > 0 or cfg.data.cutmix > 0 else None
                task = create_task(cfg.task.name, label_smoothing=cfg.train.label_smoothing)
                return (model, trainable.create_optimizer(cfg, model), task, device, train_set, val_set, mixup,
                        ema, None)
        start = time.perf_counter()
        parts = trainable.build_parts(cfg, self.cache_dir, self.data_root)
        setup = time.perf_counter() - start
        train_set, val_set = parts.train_loader.dataset, parts.val_loader.dataset
        if self.shared is None:
            self.shared = (tuple(parts.model.input_spec.input_size), train_set, val_set)
        return (parts.model, parts.optimizer, parts.task, parts.device, train_set, val_set, parts.mixup, parts.ema,
                setup)

    def _cost(self, cfg, config: dict) -> TrialCost:
        import tempfile

        from torch.utils.data import DataLoader, Subset

        from bench.training.checkpoint import save_checkpoint
        from bench.training.engine import evaluate, train_one_epoch

        model, optimizer, task, device, train_set, val_set, mixup, ema, setup = self._parts(cfg)
        n_train, n_val = len(train_set), len(val_set)
        batch = min(self.batch, cfg.train.batch_size, n_train)
        size = min(n_train, batch * (self.steps + 1))
        if hasattr(train_set, "reseed"):
            train_set.reseed(0)
        loader = iter(DataLoader(Subset(train_set, range(size)), batch_size=batch, shuffle=False))
        batches = [next(loader)]
        start = time.perf_counter()  # the loader's share: decoding and augmentation, per sample
        batches += list(loader)
        load_s = (time.perf_counter() - start) / max(size - batch, 1) if len(batches) > 1 else 0.0
        from bench.training.trainable import precision_kwargs

        kwargs = dict(device=device, grad_clip=cfg.train.grad_clip, channels_last=cfg.train.channels_last,
                      **precision_kwargs(cfg, device))  # the precision the trial trains in
        if mixup is not None:
            kwargs["batch_transform"] = mixup
        start = time.perf_counter()
        train_one_epoch(model, batches[:1], task, optimizer, **kwargs, **({"ema": ema} if ema else {}))
        first_step = time.perf_counter() - start

        seconds, seen = 0.0, 0
        for b in batches[1:] or batches:
            t0 = time.perf_counter()
            train_one_epoch(model, [b], task, optimizer, **kwargs, **({"ema": ema} if ema else {}))
            seconds += time.perf_counter() - t0
            seen += len(b[1])
            if seconds > self.enough_s:
                break
        alone = seconds / max(seen, 1)
        # the sweep's concurrent trials are separate processes, each on its own share of the cores:
        # timed side by side as threads of one process they contended for the GIL (small models'
        # steps are mostly Python) and measured 1.4-2x slower than two such trials ran on two idle
        # cores; the cores' share is what slows them, and a busy machine already slows ``alone``
        slowdown = self._slowdown_guess()
        step_s = alone * slowdown
        scored = ema.module if ema is not None else model
        val_batches = list(DataLoader(Subset(val_set, range(min(n_val, 256))),
                                      batch_size=max(cfg.train.batch_size, 128)))
        # an untimed first call: its code (and, on a cold page cache, the libraries' pages it runs)
        # loads once per process, not once per sample
        evaluate(scored, val_batches[:1], task, device=device, channels_last=cfg.train.channels_last, tta=cfg.data.tta)
        start = time.perf_counter()
        evaluate(scored, val_batches, task, device=device, channels_last=cfg.train.channels_last, tta=cfg.data.tta)
        val_s = (time.perf_counter() - start) / sum(len(b[1]) for b in val_batches) * n_val
        val_s *= slowdown  # validation shares the cores as training does
        with tempfile.TemporaryDirectory(prefix="fer-estimate-") as tmp:
            start = time.perf_counter()
            save_checkpoint(tmp, model=scored, optimizer=optimizer, epoch=0, config=config)
            checkpoint_s = time.perf_counter() - start
        warm_up = max(0.0, first_step - step_s * len(batches[0][1]))
        if setup is not None:
            self.setup_s = setup
        return TrialCost(setup_s=(self.setup_s or 0.0) + warm_up + TRIAL_OVERHEAD_S,
                         train_s=step_s + load_s * slowdown,
                         val_s=val_s, n_train=n_train, epoch_overhead_s=checkpoint_s + REPORT_S)


def estimate_sweep(space, *, samples: int, max_epochs: int, extra_fixed: dict, cache_dir: Path,
                   data_root: str | None, cpus_per_trial: float, gpus_per_trial: float,
                   workers_per_trial: int = 1, address: str | None = None, timer=None,
                   worker_start_s: float | None = None, seed: int = 0) -> Estimate:
    """The sweep's expected wall time; ``seed`` is the sweep's (``--seed``: its searcher draws
    from the space's ``searcher.seed`` plus it). ``timer`` (config -> ``TrialCost``) and
    ``worker_start_s`` replace the measurements here (``EpochTimer``, ``worker_start_seconds``),
    e.g. with costs measured elsewhere."""
    import torch

    device = "gpu" if gpus_per_trial else "cpu"
    if device == "gpu" and not torch.cuda.is_available():
        raise UserError("the driver has no GPU to time an epoch on")
    if device == "gpu":
        slots = torch.cuda.device_count() / max(gpus_per_trial * workers_per_trial, 1e-9)
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        slots = cores / max(cpus_per_trial * workers_per_trial, 1e-9)
    if address:  # a cluster: its size is not known before joining; assume this machine's share
        slots = max(slots, 1)
    concurrent = int(max(1, min(samples, math.floor(slots))))
    # on one machine the concurrent trials share its cores (a GPU's trials share the GPU; timing
    # them side by side there is left out: one stream's time is the estimate's)
    timer = timer or EpochTimer(cache_dir=cache_dir, data_root=data_root, threads=int(cpus_per_trial),
                                concurrent=concurrent if device == "cpu" and not address else 1)
    fractions = list(extra_fixed.get("train.data_fractions") or space.fixed.get("train.data_fractions") or [])
    per_model, costs, timed = {}, [], {}
    for config in representative_configs(space, extra_fixed, seed=space.searcher_seed(seed)):
        key = repr(sorted(config.items(), key=lambda kv: kv[0]))
        cost = timed[key] = timed[key] if key in timed else timer(config)  # equal draws timed once
        if workers_per_trial > 1:  # data-parallel workers split each epoch's samples
            cost = TrialCost(cost.setup_s, cost.train_s / workers_per_trial, cost.val_s, cost.n_train,
                             cost.epoch_overhead_s, cost.one_shot_s)
        folds = int(config.get("data.inner_folds") or 1)
        if folds > 1:  # a k-fold objective: every epoch (or fit) is one per inner fold
            cost = TrialCost(cost.setup_s * folds, cost.train_s * folds, cost.val_s * folds, cost.n_train,
                             cost.epoch_overhead_s, cost.one_shot_s * folds if cost.one_shot_s else None)
        costs.append(cost)
        per_model.setdefault(str(config.get("model.name")), []).append(cost.one_shot_s or cost.epoch_seconds())
    per_model = {model: sum(seconds) / len(seconds) for model, seconds in per_model.items()}
    replay = simulate_sweep(costs, samples=samples, max_epochs=max_epochs, concurrent=concurrent,
                            scheduler=space.scheduler, fractions=fractions)
    epoch = sum(per_model.values()) / len(per_model)
    setup = sum(c.setup_s for c in costs) / len(costs)
    worker = worker_start_seconds() if worker_start_s is None else worker_start_s
    fixed = STARTUP_S + worker
    return Estimate(fixed + replay.wall, epoch, replay.epochs, samples, concurrent, per_model, device, fractions, setup,
                    worker, fixed + replay.wall_low, fixed + replay.wall_high)


def describe(est: Estimate, *, time_budget_s: float | None, samples: int, max_epochs: int) -> list[str]:
    """What the sweep prints before it starts."""
    subset = (f", the first rungs on {' / '.join(f'{f:.0%}' for _, f in est.fractions)} of the training set"
              if est.fractions else "")
    spread = ""
    if est.low_seconds is not None and est.high_seconds is not None and \
            est.high_seconds - est.low_seconds >= 0.1 * est.seconds:  # FIFO, or trials ASHA lets all run: none
        spread = (f", {format_duration(est.low_seconds)} to {format_duration(est.high_seconds)} as the scheduler's "
                  f"early stops fall")
    lines = [f"Estimated sweep time: about {format_duration(est.seconds)}{spread} ({est.trials} trials, "
             f"~{est.epochs_per_trial:.1f} epochs each under the scheduler{subset}, "
             f"~{format_duration(est.epoch_seconds)}/epoch measured here on the {est.device.upper()}, "
             f"{est.concurrent} at a time; an estimate)."]
    if time_budget_s is None:
        return lines
    if est.seconds <= time_budget_s:
        lines.append(f"Time budget {format_duration(time_budget_s)}: the sweep should end within it.")
        return lines
    share = max(time_budget_s - STARTUP_S, 1.0) / max(est.seconds - STARTUP_S, 1e-9)  # the part that fits
    fit_samples, fit_epochs = int(samples * share), int(max_epochs * share)
    shorter = [f"--samples {fit_samples}"] if fit_samples >= 2 else []
    shorter += [f"--max-epochs {fit_epochs}"] if fit_epochs >= 2 else []
    gpu = "a GPU (--gpus-per-trial 1)" if est.device == "cpu" else "more GPUs (a cluster, --address)"
    fit = (f"to fit it in the budget, {' or '.join(shorter)}, or {gpu}" if shorter else
           f"one epoch alone takes ~{format_duration(est.epoch_seconds)} here, so only a few trials will "
           f"run within the budget; to run more, use {gpu}")
    lines.append(
        f"The full sweep would take about {format_duration(est.seconds)} on this {est.device.upper()}, more than "
        f"its time budget of {format_duration(time_budget_s)}: it will stop at the budget and keep the best trial "
        f"so far. To run it all, pass --time-budget {_flag_duration(est.seconds)}; {fit}.")
    return lines


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def _flag_duration(seconds: float) -> str:
    """A ``--time-budget`` value a little above ``seconds``: whole minutes, or hours above 2 h."""
    minutes = math.ceil(seconds / 60)
    return f"{math.ceil(minutes / 60)}h" if minutes > 120 else f"{minutes}m"
