"""Ray Tune callbacks of fer-bench's runs. Imports Ray at module level (a Tune ``Callback`` is a
subclass), so only ``tune_backend`` imports it, inside its functions.

``EachFixedRun`` hands every run of a benchmark grid to the driver's writer as soon as the run
completes, so a killed driver loses no finished fold. Tune pickles its callbacks into the
experiment (``tuner.pkl``) and a restored Tuner brings back the pickled ones, not new ones: the
callback therefore holds only the grid's name and finds the writer of the current process in
``ACTIVE_WRITERS`` when a run completes.

``CheckpointsFromDisk`` makes a restored run resume every trial from the newest checkpoint its
folder holds, whatever Tune's saved state says (see its docstring)."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from ray import tune

from bench.sweep.fixed_runs import FixedRun, job_index
from bench.sweep.ray_trial import CONFIG_ERROR, FIXED_JOB_KEY, REPORT_FILE
from bench.sweep.trials import reported_rows

_CHECKPOINT_PREFIX = "checkpoint_"  # Ray's checkpoint_<6-digit index> folders of a trial

# grid name -> the writer of this process (set by run_fixed_configs before fit)
ACTIVE_WRITERS: dict[str, Callable] = {}


class EachFixedRun(tune.Callback):
    def __init__(self, name: str, configs: list[dict], keep_dir: str):
        self.name, self.configs, self.keep_dir = name, configs, keep_dir

    def on_trial_complete(self, iteration, trials, trial, **info):
        writer = ACTIVE_WRITERS.get(self.name)
        if writer is None:  # a Tuner restored in another process: its own pass writes what is missing
            return
        config = trial.config[FIXED_JOB_KEY]
        last = trial.last_result or {}
        if last.get(CONFIG_ERROR):
            run = FixedRun(config, None, {}, 0, 0.0, str(last[CONFIG_ERROR]))
        else:
            # the one checkpoint kept (num_to_keep=1, ranked on the run's metric): the same one
            # ResultGrid.get_best_checkpoint returns after fit (Ray builds it from this manager)
            kept = trial.run_metadata.checkpoint_manager.best_checkpoint_results
            if not kept:
                return  # nothing to test; the pass after fit reports it
            best = kept[-1]
            directory = Path(self.keep_dir) / str(job_index(self.configs, config))
            run = FixedRun(config, best.checkpoint.to_directory(str(directory)),
                           {k.split("/", 1)[1]: float(v) for k, v in best.metrics.items()
                            if k.startswith("val/") and isinstance(v, (int, float))},
                           int(last.get("training_iteration", 0)), float(last.get("time_total_s", 0.0)), None)
        try:
            writer(run)
        except Exception as exc:  # never end the grid over one record: the pass after fit retries it
            print(f"warning: recording fold {config.get('data.fold')} seed {config.get('train.seed')} "
                  f"failed ({type(exc).__name__}: {exc}); it is retried when the grid ends")


class CheckpointsFromDisk(tune.Callback):
    """On a restored run's first step, before any trial restores, each trial's checkpoint
    bookkeeping is rebuilt from its folder when the two disagree (``rebuild_from_disk``).

    Why: Tune deletes a trial's superseded checkpoint (``CheckpointConfig.num_to_keep``) as soon as
    the next one registers, while the experiment state that says which checkpoint each trial
    resumes from, and the trial's result.json, reach the run folder together in a background copy
    seconds later. A driver killed in between left a state naming a deleted checkpoint: Ray 2.60
    has no fallback (its restore raised "does not exist on storage anymore" on every retry), the
    trial errored with its epochs lost, and the sweep's summary failed on the deleted best one.
    Measured: 2 of 4 SIGKILLed k-fold voice sweeps (sub-second epochs) hit it. A state one copy
    behind that named a surviving checkpoint made the trial redo the epochs after it."""

    def __init__(self):
        self._checked = False

    def setup(self, **info):
        self._checked = False  # a restored Tuner brings its callbacks back pickled

    def on_step_begin(self, iteration, trials, **info):
        if self._checked:
            return
        self._checked = True
        rebuilt = [trial.trial_id for trial in trials if rebuild_from_disk(trial)]
        if rebuilt:
            print(f"fer-bench: {len(rebuilt)} trial(s) resume from the newest checkpoint in their folder, "
                  f"not the one Tune's last saved state named ({', '.join(rebuilt)})", file=sys.stderr, flush=True)


def rebuild_from_disk(trial) -> bool:
    """Rebuild ``trial``'s checkpoint bookkeeping from its folder when the saved state names a
    checkpoint that is gone or not the newest whole one; says whether the trial now resumes from
    another checkpoint than the state named.

    A checkpoint folder counts when it is whole by its ``REPORT_FILE`` (every file it lists, at its
    size), when a row of result.json reported it (Ray writes that row only after the checkpoint was
    persisted), or when the state names it and it is there. The counted ones are registered in
    order with Ray's own checkpoint manager, which keeps what the run's CheckpointConfig says and
    deletes the rest, as it would have; the trial resumes from the newest. Rows the killed driver
    never copied to the folder are lost, except those of counted checkpoints, which are written
    back from their report files, so the kept best checkpoint's score is in the trial's history. A
    folder nothing counts (a copy cut short) is left for the rerun of its epoch to overwrite, as
    Ray does."""
    import pyarrow.fs
    from ray.train import Checkpoint
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.train._internal.session import _TrainingResult

    storage = trial.storage
    fs, folder = storage.storage_filesystem, storage.trial_fs_path
    listing = fs.get_file_info(pyarrow.fs.FileSelector(folder, allow_not_found=True))
    on_disk = {info.base_name for info in listing
               if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith(_CHECKPOINT_PREFIX)}
    manager = trial.run_metadata.checkpoint_manager
    latest = manager.latest_checkpoint_result
    named = [*manager.best_checkpoint_results, *([latest] if latest else [])]
    saved = {Path(r.checkpoint.path).name: r.metrics for r in named}
    rows = reported_rows(trial)
    row_of = {row["checkpoint_dir_name"]: {k: v for k, v in row.items() if k != "config"}
              for row in rows if row.get("checkpoint_dir_name")}
    counted, unlogged = {}, []
    for name in sorted(on_disk):
        if name in row_of or name in saved:
            counted[name] = row_of.get(name) or saved[name]
        elif (metrics := _whole_checkpoint_metrics(fs, Path(folder, name).as_posix())) is not None:
            counted[name] = {**metrics, "training_iteration": int(metrics["epoch"]), "checkpoint_dir_name": name,
                             "trial_id": trial.trial_id, "done": False}
            unlogged.append(name)
    resumed_from = Path(latest.checkpoint.path).name if latest else None
    newest = max(counted, default=None)  # zero-padded indices: the name order is the index order
    if set(saved) <= set(counted) and resumed_from == newest:
        return False  # the state names what is there (nothing, for a trial yet to report)
    rebuilt = _CheckpointManager(manager.checkpoint_config)
    for name in counted:
        checkpoint = Checkpoint(Path(folder, name).as_posix(), filesystem=fs)
        rebuilt.register_checkpoint(_TrainingResult(checkpoint=checkpoint, metrics=counted[name]))
    last_logged = max(row_of, default="")
    if unlogged := [name for name in unlogged if name > last_logged]:  # rows stay in report order
        _append_rows(fs, Path(folder, "result.json").as_posix(), [counted[name] for name in unlogged])
    trial.run_metadata.checkpoint_manager = rebuilt
    # the index of the last checkpoint written: the trial's next one gets the one after it
    storage.current_checkpoint_index = int(newest[len(_CHECKPOINT_PREFIX):]) if newest else -1
    trial.invalidate_json_state()
    trial.run_metadata.invalidate_cache()
    return newest != resumed_from


def _whole_checkpoint_metrics(fs, path: str) -> dict | None:
    """The metrics the checkpoint folder ``path`` was reported with, if its ``REPORT_FILE`` is there
    and every file it lists has its size; else None (a copy cut short, or an older checkpoint)."""
    import pyarrow.fs

    try:
        with fs.open_input_stream(f"{path}/{REPORT_FILE}") as f:
            report = json.loads(f.readall())
        sizes = report["files"]
        infos = fs.get_file_info([f"{path}/{relative}" for relative in sizes])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    whole = all(info.type == pyarrow.fs.FileType.File and info.size == size
                for info, size in zip(infos, sizes.values()))
    return report["metrics"] if whole and "epoch" in report.get("metrics", {}) else None


def _append_rows(fs, path: str, rows: list[dict]) -> None:
    """``rows`` appended to the result.json at ``path`` (rewritten whole: object stores cannot append)."""
    try:
        with fs.open_input_stream(path) as f:
            text = f.readall().decode("utf-8", errors="replace")
    except OSError:
        text = ""
    if text and not text.endswith("\n"):
        text += "\n"  # a line cut by the kill stays one broken line (trials.reported_rows skips it)
    text += "".join(json.dumps(row, default=str) + "\n" for row in rows)
    with fs.open_output_stream(path) as f:
        f.write(text.encode("utf-8"))
