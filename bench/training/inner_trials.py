"""A trial under a k-fold objective (space ``objective: {folds: K}``): one model per inner fold of
the fold's training data (``bench.data.inner_folds``), trained in step, epoch by epoch; each epoch
reports the mean of their validation metrics (what ASHA stops on and selection ranks) and the
spread (``val/<metric>_std``). The checkpoint kept is inner fold 0's model: it is the one a
sweep's winner is tested with; a benchmark refits on all the training data anyway.

A resumed k-fold trial starts again from its first epoch: a checkpoint holds one inner model."""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

from bench.training.config import TrialConfig

# per-fold values these keys hold are summed, not averaged (costs of the whole trial)
SUMMED = {"epoch_s", "train/samples"}
# fold 0's value stands for the trial (the same model shape and probe in every fold)
FIRST = {"epoch", "params", "latency_ms", "train_fraction"}


def mean_metrics(per_fold: list[dict]) -> dict:
    """One report from K inner folds' reports of the same epoch: numbers averaged (costs summed),
    and each validation metric's standard deviation across the folds as ``<metric>_std``."""
    out: dict = {}
    for key, value in per_fold[0].items():
        values = [m.get(key) for m in per_fold]
        if key in FIRST or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = value
            continue
        if key in SUMMED:
            out[key] = sum(values)
            continue
        mean = sum(values) / len(values)
        out[key] = mean
        if key.startswith("val/"):
            out[f"{key}_std"] = math.sqrt(sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1))
    out["inner_folds"] = len(per_fold)
    return out


def run_inner_folds(config: dict, *, cache_dir: str | Path, report, trial_epochs,
                    data_root: str | None = None) -> None:
    """``trial_epochs``: ``trainable.trial_epochs`` (passed in: the trainable calls this module)."""
    folds = TrialConfig.from_flat(config).data.inner_folds
    steps = [trial_epochs({**config, "data.inner_fold": j}, cache_dir=cache_dir, data_root=data_root)
             for j in range(folds)]
    while True:
        got = [next(step, None) for step in steps]
        if any(g is None for g in got):  # every fold runs the same epochs: all end together
            return
        metrics = mean_metrics([m for m, _ in got])
        with tempfile.TemporaryDirectory(prefix="fer-ckpt-") as tmp:
            got[0][1](Path(tmp))
            report(metrics, Path(tmp))
