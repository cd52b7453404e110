"""Time budgets: ``30m``-style durations, and the sweep's expected duration from a measured epoch.

The estimate times a few training steps of each model the space can sample (a representative
configuration each, through the trial's own ``build_parts`` and ``train_one_epoch``) on the
driver with the threads a trial gets, scales them to an epoch of the training split, and
multiplies by the epochs ASHA is expected to run. It is an estimate: batch size, augmentation
and concurrency change the real figure, which the record reports as ``wall_seconds``.
"""
from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import UserError

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([hms]?)")


def parse_duration(text, what: str = "--time-budget") -> float:
    """``90``, ``90s``, ``30m``, ``2h``, ``1h30m`` (or a number of seconds) -> seconds > 0."""
    if isinstance(text, bool):
        raise UserError(f"{what} must be a duration like 30m, 90s, 2h or seconds, got {text!r}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        s = str(text).strip().lower().replace("min", "m")
        pos, seconds, ok = 0, 0.0, bool(s)
        for match in _PART.finditer(s):
            if match.start() != pos or (not match.group(2) and match.end() != len(s)):
                ok = False
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if not ok or pos != len(s):
            raise UserError(f"{what} must be a duration like 30m, 90s, 2h or seconds, got {text!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"{what} must be more than 0 seconds, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
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
class Estimate:
    seconds: float  # the whole sweep, wall clock
    epoch_seconds: float  # an average trial's epoch
    epochs_per_trial: float
    trials: int
    concurrent: int
    per_model: dict = field(default_factory=dict)  # model -> seconds per epoch
    device: str = "cpu"

    def to_dict(self) -> dict:
        return {"seconds": round(self.seconds, 1), "epoch_seconds": round(self.epoch_seconds, 2),
                "epochs_per_trial": round(self.epochs_per_trial, 2), "trials": self.trials,
                "concurrent": self.concurrent, "device": self.device,
                "per_model_epoch_seconds": {k: round(v, 2) for k, v in self.per_model.items()}}


TRIAL_OVERHEAD_S = 3.0  # starting a trial: data loading, model build (fer-bench perf ray measures ~3 s)
STARTUP_S = 15.0  # starting Ray on the driver


def representative_configs(space, extra_fixed: dict) -> list[dict]:
    """One configuration per model the space samples: the middle of each choice list and range
    (geometric middle for log ranges), conditions applied in file order."""
    from bench.sweep.feasibility import _model_values

    models = _model_values(space) or [None]
    out = []
    for model in models:
        config = {**space.fixed, **extra_fixed}
        if model is not None:
            config["model.name"] = model
        for p in space.params:
            if p.key == "model.name" or not p.active(config):
                continue
            if p.kind == "choice":
                config[p.key] = p.values[len(p.values) // 2]
            else:
                low, high = p.values
                mid = math.sqrt(low * high) if p.log else (low + high) / 2
                config[p.key] = int(round(mid)) if p.kind == "int" else mid
        out.append(config)
    return out


class EpochTimer:
    """Times one epoch of each representative configuration here. The first one is built with the
    trial's own ``build_parts`` (its wall time is the measured per-trial setup: data loading and
    model build); the others reuse its training set when their input shape matches (loading a
    large split again would only time the disk), with their own model, optimizer, task and EMA."""

    def __init__(self, *, cache_dir: Path, data_root: str | None, threads: int, steps: int = 4,
                 batch: int = 32, enough_s: float = 1.5):
        self.cache_dir, self.data_root, self.threads = Path(cache_dir), data_root, max(1, threads)
        self.steps, self.batch, self.enough_s = steps, batch, enough_s
        self.shared = None  # (input size, training set, n_train, n_val, mixup)
        self.setup_s: float | None = None

    def __call__(self, config: dict) -> tuple[float, bool]:
        """(seconds per epoch, whether the trial is one fit instead of epochs)."""
        import torch

        from bench.training.config import TrialConfig

        cfg = TrialConfig.from_flat(config)
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            from bench.training.classic_trial import is_classic, trial_seconds

            if is_classic(cfg):  # a scikit-learn head is fitted once: its whole trial is the "epoch"
                return trial_seconds(config, cache_dir=self.cache_dir, data_root=self.data_root), True
            return self._epoch(cfg), False
        finally:
            torch.set_num_threads(previous)

    def _parts(self, cfg):
        from bench.training import trainable
        from bench.training.tasks import create_task

        if self.shared is not None:
            input_size, train_set, n_train, n_val, mixup = self.shared
            device = trainable.pick_device()
            model = trainable.build_model(cfg, train_set.num_classes).to(device)
            if tuple(model.input_spec.input_size) == input_size and not model.input_spec.extras:
                ema_class = getattr(trainable, "CountingEma", None)
                ema = ema_class(model, cfg.train.ema_decay) if getattr(cfg.train, "ema", False) and ema_class else None
                task = create_task(cfg.task.name, label_smoothing=cfg.train.label_smoothing)
                return (model, trainable.create_optimizer(cfg, model), task, device, train_set, n_train, n_val,
                        mixup if getattr(cfg.data, "mixup", 0) or getattr(cfg.data, "cutmix", 0) else None, ema)
        start = time.perf_counter()
        parts = trainable.build_parts(cfg, self.cache_dir, self.data_root)
        train_set = parts.train_loader.dataset
        n_train, n_val = len(train_set), len(parts.val_loader.dataset)
        if self.shared is None:
            self.setup_s = time.perf_counter() - start
            self.shared = (tuple(parts.model.input_spec.input_size), train_set, n_train, n_val,
                           getattr(parts, "mixup", None))
        return (parts.model, parts.optimizer, parts.task, parts.device, train_set, n_train, n_val,
                getattr(parts, "mixup", None), getattr(parts, "ema", None))

    def _epoch(self, cfg) -> float:
        from torch.utils.data import DataLoader, Subset

        from bench.training.engine import train_one_epoch

        model, optimizer, task, device, train_set, n_train, n_val, mixup, ema = self._parts(cfg)
        batch = min(self.batch, cfg.train.batch_size)
        size = min(n_train, batch * (self.steps + 1))
        batches = list(DataLoader(Subset(train_set, range(size)), batch_size=batch, shuffle=False))
        kwargs = dict(device=device, amp=cfg.train.amp, grad_clip=cfg.train.grad_clip,
                      channels_last=cfg.train.channels_last)
        if mixup is not None:
            kwargs["batch_transform"] = mixup
        if ema is not None:
            kwargs["ema"] = ema
        train_one_epoch(model, batches[:1], task, optimizer, **kwargs)  # warm-up
        seconds, seen = 0.0, 0
        for b in batches[1:] or batches:
            start = time.perf_counter()
            train_one_epoch(model, [b], task, optimizer, **kwargs)
            seconds += time.perf_counter() - start
            seen += len(b[1])
            if seconds > self.enough_s:
                break
        # an epoch: the training split, and a validation pass at ~1/3 of a training step per sample
        return seconds / max(seen, 1) * (n_train + n_val / 3)


def estimate_sweep(space, *, samples: int, max_epochs: int, extra_fixed: dict, cache_dir: Path,
                   data_root: str | None, cpus_per_trial: float, gpus_per_trial: float,
                   workers_per_trial: int = 1, address: str | None = None) -> Estimate:
    import torch

    device = "gpu" if gpus_per_trial else "cpu"
    if device == "gpu" and not torch.cuda.is_available():
        raise UserError("the driver has no GPU to time an epoch on")
    timer = EpochTimer(cache_dir=cache_dir, data_root=data_root, threads=int(cpus_per_trial))
    epochs = asha_epochs_per_trial(max_epochs, int(space.scheduler.get("grace_period", 1)),
                                   float(space.scheduler.get("reduction_factor", 3)), space.scheduler["name"])
    per_model, trial_s = {}, []
    for config in representative_configs(space, extra_fixed):
        seconds, one_shot = timer(config)
        per_model[str(config.get("model.name"))] = seconds
        trial_s.append(seconds if one_shot else seconds * epochs / max(workers_per_trial, 1))
    epoch = sum(per_model.values()) / len(per_model) / max(workers_per_trial, 1)
    overhead = max(TRIAL_OVERHEAD_S, timer.setup_s or 0.0)  # measured: the first config's data + model
    if device == "gpu":
        slots = torch.cuda.device_count() / max(gpus_per_trial * workers_per_trial, 1e-9)
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        slots = cores / max(cpus_per_trial * workers_per_trial, 1e-9)
    if address:  # a cluster: its size is not known before joining; assume this machine's share
        slots = max(slots, 1)
    concurrent = int(max(1, min(samples, math.floor(slots))))
    seconds = STARTUP_S + samples * (sum(trial_s) / len(trial_s) + overhead) / concurrent
    return Estimate(seconds, epoch, epochs, samples, concurrent, per_model, device)


def describe(est: Estimate, *, time_budget_s: float | None, samples: int, max_epochs: int) -> list[str]:
    """What the sweep prints before it starts."""
    lines = [f"Estimated sweep time: about {format_duration(est.seconds)} ({est.trials} trials x "
             f"~{est.epochs_per_trial:.1f} epochs under the scheduler x ~{format_duration(est.epoch_seconds)}"
             f"/epoch measured here on the {est.device.upper()}, {est.concurrent} at a time; an estimate)."]
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


def _flag_duration(seconds: float) -> str:
    """A ``--time-budget`` value a little above ``seconds``: whole minutes, or hours above 2 h."""
    minutes = math.ceil(seconds / 60)
    return f"{math.ceil(minutes / 60)}h" if minutes > 120 else f"{minutes}m"
