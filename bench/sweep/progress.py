"""The sweep's progress table: Ray Tune's ``CLIReporter`` with an order that cannot fail.

Ray's ``sort_by_metric=True`` sorts TERMINATED trials by their last ``metric`` and raises
``TypeError`` on one that never reported (a pending trial ended by a time budget); a restored
sweep then raised it on every resume. Here finished trials are ordered before Ray sees them, best
first and trials without a score last, and Ray's own sort stays off. The table is display only: if
rendering still fails, one status line replaces it rather than ending the sweep.

Imports Ray at module level; ``tune_backend`` imports it only where a Tuner is built. The class
is module-level so Tune can pickle it into the experiment (``tuner.pkl``).
"""
from __future__ import annotations

import math

from ray.tune import CLIReporter


def ordered_for_display(trials: list, metric: str, mode: str) -> list:
    """Trials in display order: unfinished ones as they came, then TERMINATED ones best first on
    ``metric`` (``mode`` max or min), those without a finite score last, ties by trial order."""
    def score(trial) -> float | None:
        value = (getattr(trial, "last_result", None) or {}).get(metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        return float(value)

    def key(item):
        index, trial = item
        value = score(trial)
        if value is None:
            return (1, 0.0, index)
        return (0, -value if mode == "max" else value, index)

    terminated = [(i, t) for i, t in enumerate(trials) if getattr(t, "status", None) == "TERMINATED"]
    others = [t for t in trials if getattr(t, "status", None) != "TERMINATED"]
    return others + [t for _, t in sorted(terminated, key=key)]


class SweepReporter(CLIReporter):
    """``CLIReporter`` whose finished trials are sorted by fer-bench (missing scores last)."""

    def __init__(self, *, metric: str, mode: str, **kwargs):
        kwargs.pop("sort_by_metric", None)
        # metric/mode stay set for Ray's "Current best trial" line, which skips missing values
        super().__init__(metric=metric, mode=mode, sort_by_metric=False, **kwargs)
        self._display_metric, self._display_mode = metric, mode

    def _progress_str(self, trials, done, *sys_info, fmt="psql", delim="\n"):
        ordered = ordered_for_display(list(trials), self._display_metric, self._display_mode)
        try:
            return super()._progress_str(ordered, done, *sys_info, fmt=fmt, delim=delim)
        except Exception as exc:  # the table is display only; it must never end a sweep
            states: dict[str, int] = {}
            for t in trials:
                states[str(getattr(t, "status", "?"))] = states.get(str(getattr(t, "status", "?")), 0) + 1
            counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
            return (f"== Status ==  {len(trials)} trials ({counts}); progress table unavailable "
                    f"({type(exc).__name__}: {exc})" + delim)

