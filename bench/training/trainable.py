"""One trial, start to finish, without Ray: config -> model -> data -> epochs -> reports.

``tune_backend`` wraps ``run_trial`` for Ray Tune; the benchmark stage and the perf harness call
it directly, so a trial behaves the same inside and outside a sweep.
"""
from __future__ import annotations

import math
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from bench.data import create_dataset
from bench.data.transforms import fitted_state
from bench.families import family_of_model
from bench.training.build import build_model, num_classes  # noqa: F401  (build_model: also trainable's)
from bench.training.checkpoint import save_checkpoint, save_estimator
from bench.training.config import TrialConfig
from bench.training.engine import (
    evaluate,
    grad_scaler,
    latency_ms,
    predict,
    resolve_precision,
    train_one_epoch,
)
from bench.training.fidelity import FractionSampler, fraction_at, steps_before
from bench.training.init import apply_init, set_frozen
from bench.training.tasks import class_weights_from_labels, create_task

Report = Callable[[dict, Path], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    # Ray hides GPUs a trial was not given (CUDA_VISIBLE_DEVICES=""), so this respects resources.
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class TrialParts:
    model: torch.nn.Module
    train_loader: DataLoader
    val_loader: DataLoader
    task: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler | None
    device: torch.device
    mixup: Callable | None = None  # batch transform: timm Mixup/CutMix with soft targets
    ema: CountingEma | None = None  # train.ema
    loaded: tuple[str, ...] = ()  # parameters model.init loaded (optim.init_lr_mult, train.freeze_epochs)
    amp_dtype: torch.dtype | None = None  # the autocast dtype of training; None: fp32


def precision_kwargs(cfg: TrialConfig, device) -> dict:
    """``train_one_epoch``'s precision arguments for ``cfg`` on ``device`` (train.precision /
    train.amp): what trials, the estimate and the perf harness train with."""
    dtype = resolve_precision(cfg.train.precision, cfg.model.name, device, cfg.train.amp)
    return {"amp": dtype is not None, "amp_dtype": dtype}


def build_parts(cfg: TrialConfig, cache_dir: Path, data_root: str | None = None) -> TrialParts:
    device = pick_device()
    model = build_model(cfg, num_classes(cfg.data.dataset))
    loaded = apply_init(model, cfg.model.init, cfg.model.name)  # before the optimizer and EMA see it
    model = model.to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    common = dict(cache_dir=cache_dir, data_root=data_root or cfg.data.data_root,
                  image_size=cfg.data.image_size)
    train_set = create_dataset(cfg.data.dataset, "train", cfg.data.fold, model.input_spec,
                               augment=cfg.data.augment, seed=cfg.train.seed, refit=cfg.data.refit,
                               inner=cfg.data.inner(), **common)
    val_set = create_dataset(cfg.data.dataset, "val", cfg.data.fold, model.input_spec, inner=cfg.data.inner(),
                             **common)
    apply_recipe(cfg, train_set, model.input_spec)
    pin = device.type == "cuda"
    generator = torch.Generator().manual_seed(cfg.train.seed)
    # a last batch of one sample breaks BatchNorm in training mode (fer_cnn's dense layer): drop it
    lone = len(train_set) % cfg.train.batch_size == 1
    # early ASHA rungs on a fraction of the data: a sampler that draws each epoch's subset
    sampler = _fraction_sampler(cfg, train_set)
    train_loader = DataLoader(train_set, batch_size=cfg.train.batch_size, shuffle=sampler is None, sampler=sampler,
                              drop_last=lone and sampler is None,
                              num_workers=cfg.train.num_workers, pin_memory=pin, generator=generator,
                              persistent_workers=cfg.train.num_workers > 0)
    # its own generator: every DataLoader iterator otherwise draws a seed from the global RNG, and
    # evaluation would shift the dropout stream of the epochs after it (breaking exact resume)
    val_loader = DataLoader(val_set, batch_size=max(cfg.train.batch_size, 128), shuffle=False,
                            num_workers=0, pin_memory=pin, generator=torch.Generator().manual_seed(0))
    weights = class_weights_from_labels(train_set.labels, train_set.num_classes).to(device) \
        if cfg.task.class_weights else None
    task = create_task(cfg.task.name, class_weights=weights, label_smoothing=cfg.train.label_smoothing)
    optimizer = create_optimizer(cfg, model, loaded)
    steps = steps_before(train_loader, cfg.train.max_epochs)
    first = steps_before(train_loader, 1)  # warm-up counts in the first epoch's steps
    scheduler = create_scheduler(cfg, optimizer, steps, max(first, 1))
    precision = precision_kwargs(cfg, device)
    scaler = grad_scaler(device, precision["amp"], precision["amp_dtype"])
    mixup = SeededMixup(cfg, train_set.num_classes) if cfg.data.mixup > 0 or cfg.data.cutmix > 0 else None
    ema = CountingEma(model, cfg.train.ema_decay) if cfg.train.ema else None
    return TrialParts(model, train_loader, val_loader, task, optimizer, scheduler, scaler, device, mixup, ema, loaded,
                      precision["amp_dtype"])


def _fraction_sampler(cfg: TrialConfig, train_set) -> FractionSampler | None:
    if not cfg.train.data_fractions:
        return None
    from bench.errors import UserError

    try:
        return FractionSampler(train_set.labels, cfg.train.data_fractions, cfg.train.seed, cfg.train.batch_size)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def apply_recipe(cfg: TrialConfig, train_set, input_spec) -> None:
    """Hand timm's RandAugment / random erasing to the training set (face images only)."""
    from bench.data.tensors import FaceRecipe
    from bench.errors import UserError

    wanted = cfg.data.auto_augment.lower() not in ("none", "") or cfg.data.re_prob > 0
    if not wanted or not cfg.data.augment:
        return
    if not hasattr(train_set, "set_recipe"):
        raise UserError(f"data.auto_augment / data.re_prob apply to face images; dataset "
                        f"{cfg.data.dataset!r} is not one: set them to 'none' / 0")
    train_set.set_recipe(FaceRecipe(cfg.data.auto_augment, cfg.data.re_prob,
                                    mean=input_spec.mean, std=input_spec.std))


class SeededMixup:
    """timm's ``Mixup`` (mixup and/or cutmix, label smoothing folded into the soft targets) with
    its own NumPy RNG, reseeded per epoch like the data's augmentation (exact resume). timm needs an
    even batch: an odd batch's last sample passes unmixed with its smoothed one-hot target."""

    def __init__(self, cfg: TrialConfig, num_classes: int):
        from timm.data import Mixup

        self.mix = Mixup(mixup_alpha=cfg.data.mixup, cutmix_alpha=cfg.data.cutmix,
                         label_smoothing=cfg.train.label_smoothing, num_classes=num_classes)
        self.num_classes = num_classes
        self.rng = np.random.RandomState(0)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.RandomState(seed % 2**32)

    def __call__(self, inputs: torch.Tensor, target: torch.Tensor):
        from timm.data.mixup import mixup_target

        saved = np.random.get_state()
        np.random.set_state(self.rng.get_state())
        try:
            even = len(inputs) - len(inputs) % 2
            mixed, soft = self.mix(inputs[:even].clone(), target[:even]) if even else (inputs[:0], None)
        finally:
            self.rng.set_state(np.random.get_state())
            np.random.set_state(saved)
        if even == len(inputs):
            return mixed, soft
        rest = mixup_target(target[even:], self.num_classes, 1.0, self.mix.label_smoothing)
        return torch.cat([mixed, inputs[even:]]), rest if soft is None else torch.cat([soft, rest])


class CountingEma:
    """timm's ``ModelEmaV3`` with its decay warmed up over the steps it has seen (short runs on
    small datasets take a few hundred steps; a fixed 0.999 would still remember the random
    initialisation), capped at ``train.ema_decay``. ``module`` is the averaged model."""

    def __init__(self, model: torch.nn.Module, decay: float):
        from timm.utils import ModelEmaV3

        self.ema = ModelEmaV3(model, decay=decay, use_warmup=True, warmup_power=3 / 4)
        self.module = self.ema.module
        self.steps = 0

    def update(self, model: torch.nn.Module) -> None:
        self.ema.update(getattr(model, "module", model), step=self.steps)  # never DDP's wrapper
        self.steps += 1


def create_optimizer(cfg: TrialConfig, model: torch.nn.Module, loaded: tuple[str, ...] = ()) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.init_lr_mult <= 0:
        from bench.errors import UserError

        raise UserError(f"optim.init_lr_mult must be positive, got {o.init_lr_mult}")
    # no weight decay on norms and biases (the usual recipe for timm/torchvision references)
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if loaded:  # the layers model.init loaded get their own groups at lr x init_lr_mult
        names = set(loaded)
        split = []
        for group in groups:
            mine = {id(p) for n, p in model.named_parameters() if n in names}
            split.append({**group, "params": [p for p in group["params"] if id(p) in mine],
                          "lr": o.lr * o.init_lr_mult})
            group["params"] = [p for p in group["params"] if id(p) not in mine]
        groups = [g for g in groups + split if g["params"]]
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr)
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.momentum > 0)
    raise ValueError(f"optim.name must be 'adamw' or 'sgd', got {o.name!r}")


def create_scheduler(cfg: TrialConfig, optimizer, total_steps: int, steps_per_epoch: int):
    if cfg.optim.scheduler == "none":
        return None
    if cfg.optim.scheduler != "cosine":
        raise ValueError(f"optim.scheduler must be 'cosine' or 'none', got {cfg.optim.scheduler!r}")
    warmup = cfg.optim.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def last_epoch(cfg: TrialConfig) -> int:
    """How many epochs the trial trains: ``train.max_epochs``, or fewer with ``train.stop_epoch``."""
    if cfg.train.stop_epoch is None:
        return cfg.train.max_epochs
    if cfg.train.stop_epoch < 1:
        from bench.errors import UserError

        raise UserError(f"train.stop_epoch must be at least 1, got {cfg.train.stop_epoch}")
    return min(cfg.train.stop_epoch, cfg.train.max_epochs)


def run_trial(config: dict, *, cache_dir: str | Path, report: Report, data_root: str | None = None,
              resume_state: dict | None = None, prepare: Callable[[TrialParts], TrialParts] | None = None) -> None:
    """Train for ``train.max_epochs`` epochs, calling ``report(metrics, checkpoint_dir)`` after each.

    ``resume_state`` (a loaded checkpoint) continues from the epoch after the saved one, with the
    optimizer, LR schedule and RNG as they were. ``prepare`` may wrap the parts after that, e.g. in
    DistributedDataParallel and a distributed sampler (``tune_backend``'s multi-worker trials).
    """
    cfg = TrialConfig.from_flat(config)
    if cfg.data.inner_folds > 1 and cfg.data.inner_fold is None and not cfg.data.refit:
        from bench.training.inner_trials import run_inner_folds  # a k-fold objective: K models in step

        return run_inner_folds(config, cache_dir=cache_dir, report=report, trial_epochs=trial_epochs,
                               data_root=data_root, resume_state=resume_state)
    for metrics, save in trial_epochs(config, cache_dir=cache_dir, data_root=data_root, resume_state=resume_state,
                                      prepare=prepare):
        with tempfile.TemporaryDirectory(prefix="fer-ckpt-") as tmp:
            save(Path(tmp))
            report(metrics, Path(tmp))


def trial_epochs(config: dict, *, cache_dir: str | Path, data_root: str | None = None,
                 resume_state: dict | None = None, prepare: Callable[[TrialParts], TrialParts] | None = None):
    """``run_trial``'s epochs as a generator of (metrics, save): ``save(folder)`` writes that epoch's
    checkpoint. A k-fold objective advances one generator per inner fold in step."""
    cfg = TrialConfig.from_flat(config)
    seed_everything(cfg.train.seed)
    from bench.training import classic_trial

    if classic_trial.is_classic(cfg) and cfg.model.init != "none":
        from bench.errors import UserError

        raise UserError(f"{cfg.model.name} fits a scikit-learn head on fixed features: model.init has nothing "
                        f"to start")
    if classic_trial.is_classic(cfg):  # a scikit-learn head: fitted once, one report
        yield from _classic_epochs(cfg, config, Path(cache_dir), data_root)
        return
    parts = build_parts(cfg, Path(cache_dir), data_root)
    clips = classic_trial.validation_clips(cfg, Path(cache_dir), data_root, parts.val_loader, parts.model.input_spec,
                                           parts.train_loader.dataset)
    start_epoch = 0
    if resume_state is not None:
        # with EMA, "model" holds the averaged weights and "train_model" the ones being trained
        parts.model.load_state_dict(resume_state.get("train_model", resume_state["model"]))
        if parts.ema is not None:
            parts.ema.module.load_state_dict(resume_state["model"])
            parts.ema.steps = steps_before(parts.train_loader, resume_state["epoch"] + 1)
        parts.optimizer.load_state_dict(resume_state["optimizer"])
        if parts.scheduler is not None and resume_state.get("scheduler"):
            parts.scheduler.load_state_dict(resume_state["scheduler"])
        if parts.scaler is not None and resume_state.get("scaler"):
            parts.scaler.load_state_dict(resume_state["scaler"])
        torch.set_rng_state(resume_state["rng"])
        start_epoch = resume_state["epoch"] + 1
    params = count_params(parts.model)
    if prepare is not None:
        parts = prepare(parts)
    bare_model = getattr(parts.model, "module", parts.model)  # what checkpoints hold: never DDP's wrapper
    family = family_of_model(cfg.model.name)  # its extra validation metrics (MIC: identity leakage)
    epoch_metrics = family.epoch_metrics if family is not None else None
    latency = None  # measured once: it does not change with training
    # the training split's fitted transform (voice statistics, motion scales): predict reads it
    preprocessing = fitted_state(parts.train_loader.dataset)
    for epoch in range(start_epoch, last_epoch(cfg)):
        t0 = time.perf_counter()
        # Shuffling and augmentation are seeded per epoch, so a resumed trial replays exactly
        # the batches the uninterrupted one would have seen.
        if parts.train_loader.generator is not None:
            parts.train_loader.generator.manual_seed(cfg.train.seed * 100_003 + epoch)
        sampler = getattr(parts.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):  # a DistributedSampler shuffles by epoch
            sampler.set_epoch(epoch)
        reseed = getattr(parts.train_loader.dataset, "reseed", None)
        if reseed is not None:
            reseed(cfg.train.seed * 100_003 + epoch)
        if parts.mixup is not None:
            parts.mixup.reseed(cfg.train.seed * 100_003 + epoch)
        if parts.loaded and cfg.train.freeze_epochs:  # by the epoch, so a resumed trial freezes the same
            set_frozen(bare_model, parts.loaded, epoch < cfg.train.freeze_epochs)
        train = train_one_epoch(parts.model, parts.train_loader, parts.task, parts.optimizer,
                                device=parts.device, scaler=parts.scaler, amp=parts.amp_dtype is not None,
                                amp_dtype=parts.amp_dtype,
                                grad_clip=cfg.train.grad_clip, channels_last=cfg.train.channels_last,
                                scheduler=parts.scheduler, batch_transform=parts.mixup, ema=parts.ema)
        # what validation scores and checkpoints hold: the EMA weights when train.ema is on
        scored = parts.ema.module if parts.ema is not None else parts.model
        val = evaluate(scored, parts.val_loader, parts.task, device=parts.device,
                       channels_last=cfg.train.channels_last, tta=cfg.data.tta)
        scored_bare = getattr(scored, "module", scored)
        svm = None
        if getattr(scored_bare, "head_type", "linear") == "svm":  # the fusion SVM head: its metrics count
            svm, scored_head, val = classic_trial.fit_fusion_svm(
                scored_bare, parts.train_loader.dataset, parts.val_loader, parts.task, device=parts.device,
                seed=cfg.train.seed)
        clip = clips.tune(scored_head if svm is not None else scored_bare, parts.device) if clips else {}
        extra = {}
        if epoch_metrics is not None:  # the family's own metrics read the validation features
            extra = epoch_metrics(predict(scored_bare, parts.val_loader, device=parts.device)[2], parts.val_loader)
        if latency is None:
            latency = latency_ms(bare_model, next(iter(parts.val_loader))[0], device=parts.device)
        metrics = {
            "epoch": epoch + 1,
            "train/loss": train["loss"],
            "train/samples_per_s": train["samples_per_s"],
            "train/samples": train["samples"],
            # the share of the training split this epoch saw (early ASHA rungs of a large set: < 1)
            "train_fraction": fraction_at(cfg.train.data_fractions, epoch),
            "val/loss": val["loss"],
            "val/accuracy": val["accuracy"],
            "val/uar": val["uar"],
            "val/macro_f1": val["macro_f1"],
            **{f"val/{name}": value for name, value in extra.items()},
            **({"val/clip_uar": clip["val_clip_uar"]} if clip else {}),
            "params": params,
            "latency_ms": latency,
            "epoch_s": time.perf_counter() - t0,
        }

        def save(folder: Path, epoch=epoch, scored_bare=scored_bare, val=val, clip=clip, svm=svm) -> None:
            save_checkpoint(folder, model=scored_bare, optimizer=parts.optimizer, scheduler=parts.scheduler,
                            scaler=parts.scaler, epoch=epoch, config=config,
                            train_model=bare_model if parts.ema is not None else None,
                            extra={"val": {k: val[k] for k in ("accuracy", "uar", "macro_f1")}, **clip,
                                   "preprocessing": preprocessing})
            if svm is not None:
                save_estimator(folder, svm)

        yield metrics, save


def _classic_epochs(cfg: TrialConfig, config: dict, cache_dir: Path, data_root: str | None):
    """A scikit-learn head's one report as one (metrics, save) step: its checkpoint is copied
    out of the fit's temporary folder so ``save`` can write it later."""
    import shutil

    from bench.training import classic_trial

    got = []
    with tempfile.TemporaryDirectory(prefix="fer-classic-") as keep:
        def capture(metrics, directory):
            shutil.copytree(directory, keep, dirs_exist_ok=True)
            got.append(metrics)

        classic_trial.run_classic_trial(cfg, config, cache_dir=cache_dir, report=capture, data_root=data_root)
        for metrics in got:
            yield metrics, lambda folder: shutil.copytree(keep, folder, dirs_exist_ok=True)
