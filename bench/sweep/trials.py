"""Read a finished (or interrupted) Ray Tune experiment through Ray's public result API: each
trial's config, per-epoch history and how it ended (completed, stopped early by ASHA, errored)."""
from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # Ray is imported only where trials are read
    from ray.tune import Checkpoint

COMPLETED, STOPPED, ERRORED, NO_RESULT = "completed", "stopped early", "errored", "no result"


def best_row(frame: pd.DataFrame, metric: str, mode: str) -> pd.Series:
    """The reported epoch (row) with the best ``metric`` (the first one on a tie; NaN skipped):
    the one rule for the best epoch of a trial, in sweeps, benchmark grids and reports."""
    return frame.loc[frame[metric].idxmax() if mode == "max" else frame[metric].idxmin()]


def tiebreak(row: pd.Series, metric: str) -> tuple:
    """A trial's best epoch's tie-breakers, smaller first (``results.selection.ranked``): small
    validation sets tie often (4 of 24 CK+ trials at 100 % UAR), so the lower validation loss wins,
    then the cheaper model (parameters, then latency); a missing one ranks last."""
    def value(key):
        got = row.get(key)
        return float(got) if got is not None and pd.notna(got) else math.inf

    return (value("val/loss") if metric != "val/loss" else 0.0, value("params"), value("latency_ms"))


@dataclass
class TrialHistory:
    trial_id: str
    config: dict
    history: pd.DataFrame  # one row per reported epoch; columns as the trial reported them
    status: str
    error: str = ""
    checkpoint: Checkpoint | None = None  # its kept one (read_trials with ``checkpoints``)

    def curve(self, metric: str) -> tuple[list[int], list[float]]:
        if self.history.empty or metric not in self.history:
            return [], []
        frame = self.history[["training_iteration", metric]].dropna()
        return frame["training_iteration"].astype(int).tolist(), frame[metric].astype(float).tolist()

    def best(self, metric: str, mode: str = "max") -> float | None:
        if self.history.empty or metric not in self.history or self.history[metric].isna().all():
            return None
        return float(best_row(self.history, metric, mode)[metric])

    def best_epoch(self, metric: str, mode: str = "max") -> int | None:
        """The epoch (1-based) of the trial's best ``metric``: how long a refit trains."""
        if self.best(metric, mode) is None:
            return None
        return int(best_row(self.history, metric, mode)["training_iteration"])

    @property
    def epochs(self) -> int:
        return 0 if self.history.empty else int(self.history["training_iteration"].max())


def read_trials(run_dir: Path, checkpoints: tuple[str, str] | None = None) -> list[TrialHistory]:
    """All trials of the experiment at ``run_dir``, in trial order, read through Ray Tune's public
    result API (``ExperimentAnalysis``: the experiment state, each trial's config, status and
    per-epoch results). Imports Ray, but starts nothing; an absent or never-started experiment
    (no experiment state yet) has no trials. ``checkpoints=(metric, mode)`` also finds each
    trial's kept checkpoint (a sweep keeps one a trial, its best on the objective), as Ray's
    ``Checkpoint``: nothing is downloaded until ``as_directory`` asks for it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    from ray.tune import ExperimentAnalysis
    from ray.tune.experiment import Trial

    # Ray warns about every trial it created but never started (no results yet): "no result" here
    try:
        with quiet_analysis(logging.ERROR):
            analysis = ExperimentAnalysis(str(run_dir))
    except ValueError:  # Ray raises it when the folder holds no experiment state
        return []
    configs = analysis.get_all_configs()
    trials = []
    for trial in sorted(analysis.trials, key=_creation_index):
        frame = analysis.trial_dataframes.get(trial.trial_id)
        if (frame is None or frame.empty) and trial.last_result is not None:
            frame = _whole_lines(trial)  # Ray dropped it: its result.json has a broken line
        history = _history(frame)
        max_epochs = configs[trial.trial_id].get("train.max_epochs")
        epochs = 0 if history.empty else int(history["training_iteration"].max())
        error = ""
        if trial.status == Trial.ERROR:
            status, lines = ERRORED, (trial.get_error() or "").strip().splitlines()
            error = lines[-1] if lines else ""
        elif epochs == 0:
            status = NO_RESULT  # interrupted before its first report
        elif max_epochs is not None and epochs < int(max_epochs):
            status = STOPPED
        else:
            status = COMPLETED
        kept = _kept_checkpoint(analysis, trial, *checkpoints) if checkpoints else None
        trials.append(TrialHistory(trial.trial_id, configs[trial.trial_id], history, status, error, kept))
    return trials


def _kept_checkpoint(analysis, trial, metric: str, mode: str):
    # Ray logs an ERROR for every trial that kept none (stopped before its first checkpoint): None here
    with quiet_analysis(logging.CRITICAL):
        return analysis.get_best_checkpoint(trial, metric, mode)


@contextlib.contextmanager
def quiet_analysis(level: int):
    """Ray's ExperimentAnalysis logger raised to ``level`` for the block (``Tuner.restore`` reads
    the run through it too, and warns of every trial that had not started when the run stopped)."""
    ray_log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    previous = ray_log.level
    ray_log.setLevel(level)
    try:
        yield
    finally:
        ray_log.setLevel(previous)


def _whole_lines(trial) -> pd.DataFrame:
    """A trial's reported rows read line by line. Ray reads result.json whole and drops the trial
    on one broken line (a driver killed mid-write, then resumed, appends after it); the whole
    lines are still that trial's history, and no reported epoch should be lost."""
    rows = reported_rows(trial)
    return pd.json_normalize(rows, sep="/") if rows else pd.DataFrame()


def reported_rows(trial) -> list[dict]:
    """The whole lines of a Tune trial's result.json, in order (a broken line skipped; none when
    the file is missing), read through the trial's storage filesystem (storage may be remote)."""
    storage = trial.storage
    path = Path(storage.trial_fs_path, "result.json").as_posix()
    try:
        with storage.storage_filesystem.open_input_stream(path) as f:
            text = f.readall().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [json.loads(line) for line in whole_lines(text)]


def whole_lines(text: str) -> list[str]:
    """The lines of a result.json's ``text`` that parse as JSON, as written (a line a kill cut is left out)."""
    lines = []
    for line in text.splitlines():
        try:
            json.loads(line)
        except json.JSONDecodeError:
            continue
        lines.append(line)
    return lines


def _creation_index(trial) -> int:
    """The trial's number in the order the searcher created it: Tune starts its experiment tag
    with it (the state file lists trials in another order). Ties in a trial's best score keep
    this order wherever trials are ranked (benchmark's top configs)."""
    number = str(trial.experiment_tag).split("_", 1)[0]
    return int(number) if number.isdigit() else 0


def _history(frame: pd.DataFrame | None) -> pd.DataFrame:
    """The trial's reported rows without Ray's copy of the config (``config/<key>`` columns)."""
    if frame is None or frame.empty:
        return pd.DataFrame()
    frame = frame.drop(columns=[c for c in frame.columns if str(c).startswith("config/")])
    if "training_iteration" not in frame:
        frame["training_iteration"] = range(1, len(frame) + 1)
    return frame


def top_trials(trials: list[TrialHistory], metric: str, mode: str, k: int,
               where=lambda trial: True) -> list[TrialHistory]:
    """The ``k`` best trials of distinct configurations by their best validation score (never
    test; ties: ``tiebreak``, then the searcher's order) among those ``where`` keeps: the one
    best-of rule (``results.selection``)."""
    from bench.results.record import config_id
    from bench.results.selection import ranked

    order = ranked([t for t in trials if where(t)], lambda trial: trial.best(metric, mode), mode,
                   tiebreak=lambda trial: tiebreak(best_row(trial.history, metric, mode), metric))
    chosen, seen = [], set()
    for trial in order:
        cid = config_id(trial.config)
        if cid not in seen:
            seen.add(cid)
            chosen.append(trial)
        if len(chosen) == k:
            break
    return chosen


def asha_rungs(scheduler: dict, max_epochs: int) -> list[int]:
    """The epochs at which ASHA compares trials: grace_period * reduction_factor**k below max_t."""
    if scheduler.get("name") != "asha":
        return []
    grace = min(int(scheduler.get("grace_period", 1)), max_epochs)
    factor = max(2, int(scheduler.get("reduction_factor", 3)))
    rungs, rung = [], grace
    while rung < max_epochs:
        rungs.append(rung)
        rung *= factor
    return rungs
