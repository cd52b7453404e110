"""The full description of one trial as frozen dataclasses, and its flat dotted form.

Ray Tune and Optuna see flat keys (``optim.lr``); the training code sees ``TrialConfig``.
``model.*`` keys other than ``model.name`` pass through as keyword arguments of the model, so a
new model's hyperparameters need no change here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from bench.errors import UserError


@dataclass(frozen=True)
class ModelConfig:
    name: str = "fer_cnn"
    kwargs: dict = field(default_factory=dict)
    # where the weights start (bench.training.init): "none" (random), a checkpoint folder or a local
    # weights file; a sweep pins best:<dataset>/<family> to its checkpoint folder before trials see it
    init: str = "none"


# ``model.*`` keys the bench reads itself: never keyword arguments of the model
BENCH_MODEL_KEYS = {"name": ModelConfig.name, "init": ModelConfig.init}


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "synthetic"
    fold: int = 0
    image_size: int | None = None  # None: the model's own input size
    augment: bool = True
    data_root: str | None = None
    cache_dir: str | None = None
    # timm's recipe (face images; defaults keep the plain flip + shift): a RandAugment string
    # ("rand-m9-mstd0.5", "none"), random-erasing probability, mixup/cutmix Beta alphas (0 = off)
    auto_augment: str = "none"
    re_prob: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    tta: bool = False  # average the logits of the image and its mirror at evaluation (val and test)
    # train on train + val (`benchmark --refit`): the validation split is then seen data, so its
    # scores select nothing; the epoch count comes from the sweep (train.stop_epoch)
    refit: bool = False
    # a k-fold objective (space ``objective.folds``): the trial trains one model per inner fold of
    # the fold's training data and reports their mean (``training.inner_trials``); inner_fold is
    # the one inner fold a single model trains on (set by that runner, never by a space)
    inner_folds: int = 1
    inner_fold: int | None = None

    def inner(self) -> tuple[int, int] | None:
        """(folds, j) when this model trains on inner fold j; None for the fold's own split."""
        return None if self.inner_fold is None or self.refit else (self.inner_folds, self.inner_fold)


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    scheduler: str = "cosine"
    warmup_epochs: int = 0
    init_lr_mult: float = 1.0  # learning rate of the layers loaded by model.init, as a multiple of lr


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 64
    max_epochs: int = 10
    seed: int = 0
    amp: bool = False  # mixed precision in the device's dtype (fp16 + loss scaler on CUDA, bf16 on CPUs)
    # fp32 | bf16 | fp16 | auto (engine.resolve_precision: bf16 on GPUs that have it, and on CPUs with
    # native bf16 for the model families measured faster in it; fp32 elsewhere)
    precision: str = "fp32"
    grad_clip: float = 0.0
    label_smoothing: float = 0.0
    channels_last: bool = False
    num_workers: int = 0
    ema: bool = False  # timm ModelEmaV3 of the weights; validation and checkpoints use it
    ema_decay: float = 0.995
    # end after this many epochs while the LR schedule still spans max_epochs: a refit trains the
    # searched schedule up to the epoch its sweep's validation peaked at
    stop_epoch: int | None = None
    freeze_epochs: int = 0  # the first epochs train only what model.init did not load (the new head)
    # multi-fidelity on data size: [[last_epoch, fraction], ...] (bench.training.fidelity); the
    # sweep sets it for large training sets from its ASHA rungs; empty: every epoch sees all data
    data_fractions: tuple | list = ()


@dataclass(frozen=True)
class TaskConfig:
    name: str = "classification"
    class_weights: bool = False


_SECTIONS = {
    "data": DataConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "task": TaskConfig,
}


@dataclass(frozen=True)
class TrialConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    task: TaskConfig = field(default_factory=TaskConfig)

    @classmethod
    def from_flat(cls, flat: dict) -> TrialConfig:
        """Build from ``{"model.name": ..., "optim.lr": ...}``; unknown keys are errors."""
        model_kwargs: dict = {}
        model_name, model_init = ModelConfig.name, ModelConfig.init
        parts: dict[str, dict] = {s: {} for s in _SECTIONS}
        for key, value in flat.items():
            section, _, attr = key.partition(".")
            if section == "model" and attr:
                if attr == "name":
                    model_name = value
                elif attr == "init":
                    model_init = "none" if value is None else str(value)
                else:
                    model_kwargs[attr] = value
                continue
            if section not in _SECTIONS or not attr:
                raise UserError(f"unknown config key {key!r}: keys start with model., "
                                f"{', '.join(s + '.' for s in _SECTIONS)}")
            known = {f.name for f in fields(_SECTIONS[section])}
            if attr not in known:
                raise UserError(f"unknown config key {key!r}; {section}. takes {', '.join(sorted(known))}")
            parts[section][attr] = value
        return cls(
            model=ModelConfig(model_name, model_kwargs, model_init),
            **{s: _SECTIONS[s](**v) for s, v in parts.items()},
        )

    def to_flat(self) -> dict:
        flat = {"model.name": self.model.name}
        if self.model.init != ModelConfig.init:  # configs without an init read as before
            flat["model.init"] = self.model.init
        flat.update({f"model.{k}": v for k, v in sorted(self.model.kwargs.items())})
        for section in _SECTIONS:
            for k, v in asdict(getattr(self, section)).items():
                flat[f"{section}.{k}"] = v
        return flat


def known_keys() -> set[str]:
    """Every non-model flat key a space may name."""
    return {f"{s}.{f.name}" for s, cls in _SECTIONS.items() for f in fields(cls)}


def with_image_size(kwargs: dict, image_size: int | None) -> dict:
    """``kwargs`` plus ``image_size`` from ``data.image_size``, unless the space sets it for the
    model itself: the one rule for trials, checkpoints and the feasibility probe."""
    kwargs = dict(kwargs)
    if image_size and "image_size" not in kwargs:
        kwargs["image_size"] = image_size
    return kwargs
