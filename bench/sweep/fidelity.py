"""The data-size schedule of a sweep's ASHA rungs (``scheduler.data_fraction`` of a space).

On a large training set ASHA's first rungs need only rank configurations, which a subset of the
data does for a fraction of the cost (Hyperband / successive halving on data size: Li et al. 2018,
Falkner et al. 2018). Rung r's epochs train on ``min(1, f0 * reduction_factor**r)`` of the training
split; the epochs above the last rung on all of it. The trial's "epoch" (ASHA's time unit) is then
a unit of work, and every reported result says its ``train_fraction``.

``data_fraction: auto`` (the default): each rung's subset holds at least ``LARGE_TRAIN`` samples,
so sets of that size or below train on all their data; ``off``: never; a number: f0 itself.
"""
from __future__ import annotations

import math

LARGE_TRAIN = 5000  # below this many training samples a subset ranks too noisily to pay off


def asha_milestones(max_t: int, grace: int, factor: float) -> list[int]:
    """Ray's ASHAScheduler rungs (``async_hyperband._Bracket``), rising: ``grace * factor**k`` below
    ``max_t``."""
    grace = max(1, min(grace, max_t))
    count = int(math.log(max_t / grace) / math.log(factor) + 1) if factor > 1 else 1
    rungs = sorted({int(grace * factor ** k) for k in range(count)})
    return [r for r in rungs if r < max_t] or [grace]


def data_fractions(scheduler: dict, *, max_epochs: int, n_train: int, workers_per_trial: int = 1) -> list:
    """``train.data_fractions`` for a sweep: ``[[last_epoch, fraction], ...]``, or ``[]`` (all data).
    Multi-worker trials take no subset: Ray Train's distributed sampler replaces the trial's."""
    setting = scheduler.get("data_fraction", "auto")
    if scheduler.get("name") != "asha" or setting in ("off", False, None) or workers_per_trial > 1:
        return []
    factor = float(scheduler.get("reduction_factor", 3))
    milestones = asha_milestones(max_epochs, int(scheduler.get("grace_period", 1)), factor)
    if setting == "auto":
        if n_train <= LARGE_TRAIN:
            return []
        f0 = max(LARGE_TRAIN / n_train, factor ** -len(milestones))
    else:
        f0 = float(setting)
    schedule = []
    for r, milestone in enumerate(milestones):
        fraction = min(1.0, f0 * factor ** r)
        if fraction >= 1 or milestone >= max_epochs:
            break
        schedule.append([milestone, round(fraction, 4)])
    return schedule


def check_setting(value, where: str) -> None:
    """``scheduler.data_fraction``: auto, off, or a number in (0, 1]; one sentence otherwise."""
    from bench.errors import UserError

    if value in ("auto", "off") or value is False:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise UserError(f"{where!r}: scheduler.data_fraction must be auto, off or a number in (0, 1] "
                        f"(the first rung's share of the training set), got {value!r}")
