"""THE best-of rule of fer-bench, for trials (a sweep's summary, a benchmark's top-k configs) and
records (``best:`` references, fusion encoders, the sweep a benchmark retrains): the best score in
the objective's direction wins; a missing or NaN score never does; ties go to the earliest
candidate in the order given (so a caller that wants the latest passes its candidates latest-first)."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def ranked(candidates: Iterable[T], score: Callable[[T], float | None], mode: str,
           tiebreak: Callable[[T], tuple] | None = None) -> list[T]:
    """The candidates that have a score, best first (``mode``: ``max`` or ``min``); equal scores
    go to the smaller ``tiebreak`` tuple (a trial's validation loss, then its cost), then keep the
    given order."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    scored = []
    for candidate in candidates:
        value = score(candidate)
        if value is None or math.isnan(float(value)):
            continue
        primary = -float(value) if mode == "max" else float(value)
        scored.append(((primary, *(tiebreak(candidate) if tiebreak else ())), candidate))
    scored.sort(key=lambda pair: pair[0])  # stable: ties keep the given order
    return [candidate for _, candidate in scored]


def best_of(candidates: Iterable[T], score: Callable[[T], float | None], mode: str,
            tiebreak: Callable[[T], tuple] | None = None) -> T | None:
    """The first of ``ranked``: None when no candidate has a score."""
    order = ranked(candidates, score, mode, tiebreak)
    return order[0] if order else None
