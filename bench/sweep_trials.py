"""Read a finished (or interrupted) Ray Tune experiment folder without importing Ray: each trial's
config (params.json) and per-epoch history (progress.csv, or result.json when Ray had not yet
written the CSV), and how the trial ended (completed, stopped early by ASHA, errored)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

COMPLETED, STOPPED, ERRORED, NO_RESULT = "completed", "stopped early", "errored", "no result"


@dataclass
class TrialHistory:
    trial_id: str
    config: dict
    history: pd.DataFrame  # one row per reported epoch; columns as the trial reported them
    status: str
    error: str = ""

    def curve(self, metric: str) -> tuple[list[int], list[float]]:
        if self.history.empty or metric not in self.history:
            return [], []
        frame = self.history[["training_iteration", metric]].dropna()
        return frame["training_iteration"].astype(int).tolist(), frame[metric].astype(float).tolist()

    def best(self, metric: str, mode: str = "max") -> float | None:
        _, values = self.curve(metric)
        if not values:
            return None
        return max(values) if mode == "max" else min(values)

    @property
    def epochs(self) -> int:
        return 0 if self.history.empty else int(self.history["training_iteration"].max())


def _history(trial_dir: Path) -> pd.DataFrame:
    progress = trial_dir / "progress.csv"
    if progress.is_file() and progress.stat().st_size:
        try:
            return pd.read_csv(progress)
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            pass  # a half-written CSV: result.json holds the same rows, one JSON object per line
    result = trial_dir / "result.json"
    rows = []
    if result.is_file():
        for line in result.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    frame = pd.DataFrame(rows)
    return frame.drop(columns=["config"], errors="ignore")


def _trial_id(trial_dir: Path, history: pd.DataFrame) -> str:
    if "trial_id" in history and len(history):
        return str(history["trial_id"].iloc[-1])
    parts = trial_dir.name.split("_")
    return parts[2] if len(parts) > 2 else trial_dir.name


def read_trials(run_dir: Path) -> list[TrialHistory]:
    """All trials of the experiment at ``run_dir``, in trial order."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    trials = []
    for trial_dir in sorted(p for p in run_dir.iterdir() if p.is_dir() and (p / "params.json").is_file()):
        config = json.loads((trial_dir / "params.json").read_text())
        history = _history(trial_dir)
        if "training_iteration" not in history and len(history):
            history["training_iteration"] = range(1, len(history) + 1)
        error_file = trial_dir / "error.txt"
        max_epochs = config.get("train.max_epochs")
        epochs = 0 if history.empty else int(history["training_iteration"].max())
        if error_file.is_file():
            status, error = ERRORED, error_file.read_text().strip().splitlines()[-1:]
        elif epochs == 0:
            status, error = NO_RESULT, []  # interrupted before its first report
        elif max_epochs is not None and epochs < int(max_epochs):
            status, error = STOPPED, []
        else:
            status, error = COMPLETED, []
        trial = TrialHistory(_trial_id(trial_dir, history), config, history, status, error[0] if error else "")
        trials.append((_index(trial_dir), trial))
    # Ray names trial folders <trainable>_<id>_<index>_...: order by that index, not by the hex id
    return [trial for _, trial in sorted(trials, key=lambda pair: pair[0])]


def _index(trial_dir: Path) -> int:
    parts = trial_dir.name.split("_")
    return int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 0


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
