"""Multi-fidelity on data size: which training samples an epoch sees when the early ASHA rungs
train on a fraction of the training split (``train.data_fractions``; the sweep sets it from its
scheduler, ``bench.sweep.fidelity``).

A schedule is ``[[last_epoch, fraction], ...]`` with rising epochs (1-based, inclusive); the epochs
after the last pair train on the whole split. Epoch e's subset is class-stratified and drawn from
(seed, e) alone, so a trial resumed from a checkpoint replays the samples the uninterrupted one saw.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def check_schedule(schedule) -> list[tuple[int, float]]:
    """``[[3, 0.2], [9, 0.6]]`` -> pairs, or one-sentence ``ValueError``."""
    pairs, last = [], 0
    for item in schedule or ():
        if not (isinstance(item, (list, tuple)) and len(item) == 2):
            raise ValueError(f"train.data_fractions holds [last_epoch, fraction] pairs, got {item!r}")
        epoch, fraction = item
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch <= last:
            raise ValueError(f"train.data_fractions: epochs must be rising whole numbers, got {epoch!r}")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise ValueError(f"train.data_fractions: a fraction must be in (0, 1], got {fraction!r}")
        pairs.append((epoch, float(fraction)))
        last = epoch
    return pairs


def fraction_at(schedule, epoch: int) -> float:
    """The fraction of the training split that 0-based ``epoch`` trains on."""
    for last, fraction in check_schedule(schedule):
        if epoch < last:
            return fraction
    return 1.0


def stratified_subset(labels: Sequence[int], fraction: float, seed: int, epoch: int) -> np.ndarray:
    """Sorted indices of about ``fraction`` of each class (at least one sample of each), drawn
    from (seed, epoch) only."""
    labels = np.asarray(labels)
    if fraction >= 1:
        return np.arange(len(labels))
    rng = np.random.default_rng([seed, epoch, 1])
    picks = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        picks.append(rng.choice(members, size=max(1, round(fraction * len(members))), replace=False))
    return np.sort(np.concatenate(picks))


class FractionSampler(Sampler[int]):
    """The training loader's sampler under a fraction schedule: epoch e yields its stratified
    subset in an order drawn from (seed, e). ``run_trial`` calls ``set_epoch`` before each epoch.
    A subset whose last batch would hold one sample loses that sample (BatchNorm cannot train on one)."""

    def __init__(self, labels: Sequence[int], schedule, seed: int, batch_size: int):
        self.labels, self.schedule = np.asarray(labels), check_schedule(schedule)
        self.seed, self.batch_size = int(seed), int(batch_size)
        self.set_epoch(0)

    def indices(self, epoch: int) -> np.ndarray:
        subset = stratified_subset(self.labels, fraction_at(self.schedule, epoch), self.seed, epoch)
        order = np.random.default_rng([self.seed, epoch, 2]).permutation(subset)
        return order[:-1] if len(order) % self.batch_size == 1 and len(order) > 1 else order

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.fraction = epoch, fraction_at(self.schedule, epoch)
        self._order = self.indices(epoch)

    def batches(self, epoch: int) -> int:
        """Optimizer steps of ``epoch`` (for the LR schedule's length)."""
        return -(-len(self.indices(epoch)) // self.batch_size)

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[int]:
        return iter(self._order.tolist())


def steps_before(loader, epoch: int) -> int:
    """Optimizer steps of the epochs before ``epoch``: the LR schedule's and EMA's step count."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, FractionSampler):
        return sum(sampler.batches(e) for e in range(epoch))
    return epoch * max(len(loader), 1)
