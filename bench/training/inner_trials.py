"""A trial under a k-fold objective (space ``objective: {folds: K}``): one model per inner fold of
the fold's training data (``bench.data.inner_folds``), trained in step, epoch by epoch; each epoch
reports the mean of their validation metrics (what ASHA stops on and selection ranks) and the
spread (``val/<metric>_std``). The checkpoint's model is inner fold 0's: it is the one a sweep's
winner is tested with (a benchmark refits on all the training data anyway); the other folds'
states are saved beside it (``checkpoint.INNER_FOLDER``), so a resumed trial continues every fold
from the saved epoch, exactly as an uninterrupted one. A checkpoint without them (written before
they were kept) restarts all folds at epoch 1."""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

from bench.training.checkpoint import INNER_FOLDER
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


def resume_states(resume_state: dict | None, folds: int) -> list[dict | None]:
    """Each inner fold's state to resume from: fold 0's is the checkpoint itself, fold j's its
    ``inner[j]``; all None (a fresh start for every fold) unless every fold's state is there."""
    if resume_state is None:
        return [None] * folds
    inner = resume_state.get("inner") or {}
    if any(j not in inner for j in range(1, folds)):
        return [None] * folds
    return [resume_state] + [inner[j] for j in range(1, folds)]


def run_inner_folds(config: dict, *, cache_dir: str | Path, report, trial_epochs,
                    data_root: str | None = None, resume_state: dict | None = None) -> None:
    """``trial_epochs``: ``trainable.trial_epochs`` (passed in: the trainable calls this module)."""
    folds = TrialConfig.from_flat(config).data.inner_folds
    states = resume_states(resume_state, folds)
    steps = [trial_epochs({**config, "data.inner_fold": j}, cache_dir=cache_dir, data_root=data_root,
                          resume_state=states[j])
             for j in range(folds)]
    while True:
        got = [next(step, None) for step in steps]
        if any(g is None for g in got):  # every fold runs the same epochs: all end together
            return
        metrics = mean_metrics([m for m, _ in got])
        with tempfile.TemporaryDirectory(prefix="fer-ckpt-") as tmp:
            got[0][1](Path(tmp))
            for j in range(1, folds):
                got[j][1](Path(tmp) / INNER_FOLDER / str(j))
            report(metrics, Path(tmp))
