"""Ray Tune callbacks of fer-bench's runs. Imports Ray at module level (a Tune ``Callback`` is a
subclass), so only ``tune_backend`` imports it, inside its functions.

``EachFixedRun`` hands every run of a benchmark grid to the driver's writer as soon as the run
completes, so a killed driver loses no finished fold. Tune pickles its callbacks into the
experiment (``tuner.pkl``) and a restored Tuner brings back the pickled ones, not new ones: the
callback therefore holds only the grid's name and finds the writer of the current process in
``ACTIVE_WRITERS`` when a run completes."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ray import tune

from bench.sweep.fixed_runs import FixedRun, job_index
from bench.sweep.ray_trial import CONFIG_ERROR, FIXED_JOB_KEY

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
