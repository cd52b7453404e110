"""The sweep's Ray Tune side: settings, connecting to Ray, the Tuner (searcher, scheduler, one
``run_config``), restore, benchmark grids, and turning a ResultGrid into an outcome (``best_row``
picks every best epoch). Trials run in ``ray_trial`` (single-process) and ``ddp`` (multi-worker)."""
from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import UserError
from bench.families import PLUGINS_ENV, env_plugin_modules, load_plugins
from bench.results.selection import best_of
from bench.sweep.ddp import ddp_concurrency, fer_ddp_trial
from bench.sweep.fixed_runs import FixedRun, job_index
from bench.sweep.ray_trial import CONFIG_ERROR, FIXED_JOB_KEY, fer_trial
from bench.sweep.run_settings import SweepSettings, run_config
from bench.sweep.spaces import SearchSpace
from bench.sweep.trials import best_row, quiet_analysis, tiebreak


def connect(address: str | None, num_cpus: int | None = None, dashboard: bool = False) -> None:
    """Start a local Ray instance, or join the cluster at ``address`` (HOST:PORT).

    ``dashboard`` starts Ray's dashboard (bound to 127.0.0.1): Ray Train needs its state API to
    release the workers of a multi-worker trial that ASHA stopped."""
    import ray

    if address:  # even when this process already runs Ray: an --address nobody answers is an error
        check_reachable(address)
    if ray.is_initialized():
        if not dashboard or _has_dashboard():
            return
        # an earlier sweep in this process started Ray without the dashboard DDP trials need
        ray.shutdown()
    # Quiet Ray's own chatter; the sweep's progress table is printed by Tune's reporter.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # The classic reporter: a table with our columns (the newer one ignores progress_reporter).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # One checkpoint per epoch is the design (resume loses at most an epoch); Tune warns about it.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    kwargs = dict(include_dashboard=dashboard, dashboard_host="127.0.0.1", configure_logging=True,
                  logging_level="WARNING")
    if address:
        runtime_env = plugin_runtime_env()  # outside the try: a plugin's error is not the cluster's
        try:
            ray.init(address=address, runtime_env=runtime_env, **kwargs)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError or auth errors
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            hint = (" The cluster uses token authentication: set RAY_AUTH_MODE=token."
                    if "auth" in msg.lower() or "token" in msg.lower() else "")
            raise UserError(f"cannot join the Ray cluster at {address!r}: {msg}.{hint}") from None
    else:
        # "local": always a fresh instance; a bare ray.init() would attach to any Ray already
        # running on this machine (another user's sweep) and share its CPUs
        if dashboard:
            _pin_dashboard(kwargs)
        # Ray enables token authentication for a new local cluster when RAY_AUTH_MODE is unset, and
        # says so in a WARNING on every sweep; the protection stays, the line goes
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        if num_cpus is None:  # Ray counts the host's CPUs; a taskset / Slurm cpuset share is fewer
            from bench.sweep.resources import ray_or_local_cores

            num_cpus = ray_or_local_cores()
        ray.init(address="local", num_cpus=num_cpus, **kwargs)


def plugin_runtime_env() -> dict:
    """What a cluster's workers need of ``$FER_BENCH_PLUGINS``: the variable itself (a worker on
    another node does not inherit the driver's environment) and, for a plugin module that is not an
    installed package, its source (Ray's ``py_modules`` uploads it; installed ones, like fer-bench
    itself, must be installed on every node)."""
    import importlib
    import site
    import sysconfig

    names = env_plugin_modules()
    if not names:
        return {}
    load_plugins()  # a module that does not import is one sentence here, not a worker's traceback
    paths = sysconfig.get_paths()
    installed = {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages(), paths["purelib"],
                                               paths["platlib"], paths["stdlib"], paths["platstdlib"]]}
    shipped = []
    for name in dict.fromkeys(n.split(".")[0] for n in names):
        module = importlib.import_module(name)
        source = Path(getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", [])), ""))
        if source.name and not any(parent in installed for parent in source.resolve().parents):
            shipped.append(module)
    env: dict = {"env_vars": {PLUGINS_ENV: ",".join(names)}}
    if shipped:
        env["py_modules"] = shipped
    return env


def _pin_dashboard(kwargs: dict) -> None:
    """Give a local Ray's dashboard a free port and name it to every process Ray starts.

    Ray Train's placement-group cleaner finds the state API through RAY_API_SERVER_ADDRESS, else
    RAY_ADDRESS, else /tmp/ray/ray_current_cluster -- a file `ray start` leaves naming whatever
    cluster ran last, possibly one long gone: a multi-worker sweep then waited for it forever.
    The variable is set before ray.init, so the raylet and its workers inherit it."""
    port = _free_port()
    kwargs["dashboard_port"] = port
    os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _has_dashboard() -> bool:
    try:
        from ray._private.worker import get_dashboard_url  # no public accessor exists

        return bool(get_dashboard_url())
    except Exception:
        return False


def check_reachable(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address must be HOST:PORT (e.g. 127.0.0.1:6379), got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError as exc:
        raise UserError(f"no Ray cluster answers at {address!r} ({exc.strerror or exc}); "
                        f"start one with `ray start --head --port {port}` or fix --address") from None


def _wrapped_trainable(settings: SweepSettings, cache_dir: Path, data_root: str | None):
    from ray import tune

    common = dict(cache_dir=str(cache_dir), data_root=data_root, threads=max(1, int(settings.cpus_per_trial)),
                  fault_marker=settings.fault_marker, objectives=settings.objectives)
    if settings.workers_per_trial > 1:
        # the trial itself only coordinates; its TorchTrainer asks for the workers' resources
        trainable = tune.with_parameters(fer_ddp_trial, settings=settings, **common)
        return tune.with_resources(trainable, {"cpu": 0, "memory": 1})  # a bundle may not be empty
    trainable = tune.with_parameters(fer_trial, **common)
    return tune.with_resources(trainable, {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial})


def _reporter(space: SearchSpace):
    """A compact table: the searched hyperparameters and the validation metrics, every 30 s,
    finished trials best first (``progress.SweepReporter``: a trial without a score cannot break it)."""
    from bench.sweep.progress import SweepReporter

    return SweepReporter(
        metric_columns={"epoch": "ep", "train/loss": "train loss", "val/accuracy": "val acc",
                        space.metric: space.metric.replace("val/", "val ")},
        # conditional params are absent from some configs, which the reporter cannot show
        parameter_columns={p.key: p.key.split(".", 1)[1] for p in space.params if not p.when},
        max_report_frequency=30, max_progress_rows=30, metric=space.metric, mode=space.mode,
    )


def build_tuner(space: SearchSpace, settings: SweepSettings, *, cache_dir: Path,
                data_root: str | None, extra_fixed: dict):
    import optuna
    from optuna.samplers import RandomSampler, TPESampler
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # Tune's table already reports each trial
    seed = space.searcher_seed(settings.seed)
    if space.searcher["sampler"] == "random":
        sampler = RandomSampler(seed=seed)
    else:
        startup = space.searcher.get("n_startup_trials", max(2, min(10, settings.samples // 3)))
        sampler = TPESampler(seed=seed, n_startup_trials=startup)
    # define-by-run spaces need metric/mode on the searcher itself (Tune cannot set them later),
    # so the scheduler gets them too and TuneConfig none.
    metrics = [space.metric] + [m for m, _ in settings.extra_objectives]
    modes = [space.mode] + [m for _, m in settings.extra_objectives]
    searcher = OptunaSearch(space=space.define_by_run(extra_fixed), sampler=sampler,
                            metric=metrics if len(metrics) > 1 else metrics[0],
                            mode=modes if len(modes) > 1 else modes[0])
    if space.scheduler["name"] == "asha":
        scheduler = ASHAScheduler(
            time_attr="training_iteration", metric=space.metric, mode=space.mode, max_t=settings.max_epochs,
            grace_period=min(space.scheduler["grace_period"], settings.max_epochs),
            reduction_factor=space.scheduler["reduction_factor"],
        )
    else:
        scheduler = FIFOScheduler()
    # the time budget is endings.Deadline's (fit_sweep), not Tune's time_budget_s: Tune's stopper
    # TERMINATEs the running trials for good and its spent remainder is restored on every resume
    tune_config = tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=settings.samples,
                                  max_concurrent_trials=ddp_concurrency(settings),
                                  reuse_actors=_reuse_actors(settings))
    return tune.Tuner(_wrapped_trainable(settings, cache_dir, data_root), tune_config=tune_config,
                      run_config=run_config(settings, space.metric, space.mode, verbose=settings.verbose,
                                            progress_reporter=_reporter(space)))


def restore_tuner(path: str, settings: SweepSettings, *, cache_dir: Path, data_root: str | None,
                  space: SearchSpace | None = None):
    """Continue a sweep: finished trials stay, unfinished and errored ones resume from their last
    checkpoint, and the pickled Optuna searcher carries on the same study.

    Tune restores the first run's RunConfig from ``tuner.pkl``: its reporter (one pickled by an
    older fer-bench sorted with Ray's ``sort_by_metric``, which raised on a trial without results)
    and its verbosity (``--quiet`` on a resume was ignored). With ``space`` given they are this
    command's instead (Ray has no public setter for them). The time budget is the command's
    (``endings.Deadline`` in ``fit_sweep``)."""
    from ray import tune

    if not tune.Tuner.can_restore(path):
        raise UserError(f"no sweep to resume at {path!r}; check --name and --storage")
    _repair_saved_state(path)
    with quiet_analysis(logging.ERROR):  # not "Failed to fetch metrics" for each trial yet to start
        tuner = tune.Tuner.restore(path, _wrapped_trainable(settings, cache_dir, data_root), resume_errored=True)
    internal = getattr(tuner, "_local_tuner", None)  # None under Ray Client, which keeps the pickled ones
    if space is not None and internal is not None:
        run = internal.get_run_config()
        run.progress_reporter, run.verbose = _reporter(space), settings.verbose
    return _resuming_from_disk(tuner)


def _repair_saved_state(path: str) -> None:
    """Tune's state files in a local run folder made whole before a restore (``saved_state``)."""
    from bench.sweep.saved_state import repair_saved_state

    for line in repair_saved_state(path):
        print(f"fer-bench: {line}", file=sys.stderr, flush=True)


def _resuming_from_disk(tuner):
    """A restored Tuner whose trials resume from the newest checkpoint on disk, not a deleted one
    the saved state may name (``run_callbacks.CheckpointsFromDisk``)."""
    from bench.sweep.run_callbacks import CheckpointsFromDisk

    internal = getattr(tuner, "_local_tuner", None)
    if internal is not None:
        run = internal.get_run_config()
        callbacks = list(run.callbacks or [])
        if not any(isinstance(c, CheckpointsFromDisk) for c in callbacks):
            run.callbacks = [*callbacks, CheckpointsFromDisk()]
    return tuner


def can_restore(path: str) -> bool:
    """Whether Ray saved enough of the experiment at ``path`` to restore it."""
    from ray import tune

    return tune.Tuner.can_restore(path)


def trial_states(path: str) -> dict[str, int]:
    """How many trials of the experiment at ``path`` are in each state, as Tune saved them last
    (after an interrupted fit, Tune's in-memory trials read TERMINATED; the saved ones are the
    PENDING/RUNNING that a resume continues)."""
    from ray.tune import ExperimentAnalysis

    counts: dict[str, int] = {}
    with quiet_analysis(logging.ERROR):
        trials = ExperimentAnalysis(path).trials
    for trial in trials:
        counts[trial.status] = counts.get(trial.status, 0) + 1
    return counts


SWEEP_META = "fer-bench-sweep.json"


def _filesystem(path: str):
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(path) if "://" in path else (pyarrow.fs.LocalFileSystem(), path)


def write_sweep_meta(run_path: str, meta: dict, filename: str = SWEEP_META) -> None:
    """What a resume must match (space hash) or reuse (budget), beside Ray's own state; a
    benchmark grid writes its own (``filename``)."""
    import json

    fs, path = _filesystem(run_path)
    fs.create_dir(path, recursive=True)
    # written aside and moved into place: a driver killed mid-write must not lose the sweep's meta
    with fs.open_output_stream(f"{path}/{filename}.partial") as f:
        f.write(json.dumps(meta, indent=2, default=str).encode())
    fs.move(f"{path}/{filename}.partial", f"{path}/{filename}")


def note_sweep_run(run_path: str, **entry) -> None:
    """Add to the sweep meta's ``runs`` (one entry per command that fitted the sweep): a new entry
    when it has ``started``, else the last entry updated (``ended``, ``ended_by``). A run killed
    with SIGKILL keeps an entry without ``ended``."""
    meta = read_sweep_meta(run_path) or {}
    runs = list(meta.get("runs", []))
    if "started" in entry or not runs:
        runs.append(entry)
    else:
        runs[-1] = {**runs[-1], **entry}
    write_sweep_meta(run_path, {**meta, "runs": runs})


def read_sweep_meta(run_path: str, filename: str = SWEEP_META) -> dict | None:
    import json

    import pyarrow.fs

    fs, path = _filesystem(run_path)
    info = fs.get_file_info(f"{path}/{filename}")
    if info.type == pyarrow.fs.FileType.NotFound:
        return None
    with fs.open_input_stream(f"{path}/{filename}") as f:
        return json.loads(f.read().decode())


def _reuse_actors(settings: SweepSettings) -> bool:
    """Run the next trial in a finished trial's process: a fresh actor imports torch and the zoo
    again (~3 s on 2 cores, measured by ``fer-bench perf ray``), longer than an epoch of a small
    model. ``run_trial`` reseeds everything and sets its threads, so nothing leaks between trials.
    DDP trials keep fresh coordinators: their workers are Ray Train's own actors."""
    return settings.workers_per_trial <= 1


def run_fixed_configs(configs: list[dict], settings: SweepSettings, *, metric: str, mode: str,
                      cache_dir: Path, data_root: str | None, keep_dir: Path, on_run=None,
                      resume: bool = False) -> list[FixedRun]:
    """Train each full config once, in parallel across the cluster (a grid, no searcher, no early
    stopping); keep each run's best-on-validation checkpoint under ``keep_dir/<i>`` (``i`` its
    index in ``configs``). ``on_run(FixedRun)`` is called on the driver as each run completes (a
    benchmark records each fold then); ``resume`` restores the grid ``settings.name`` under
    ``settings.storage`` (finished runs stay, the rest resume from their last checkpoint)."""
    from ray import tune

    from bench.sweep.run_callbacks import ACTIVE_WRITERS, EachFixedRun

    path = f"{settings.storage.rstrip('/')}/{settings.name}"
    trainable = _wrapped_trainable(settings, cache_dir, data_root)
    if on_run is not None:
        ACTIVE_WRITERS[settings.name] = on_run
    try:
        if resume and tune.Tuner.can_restore(path):
            _repair_saved_state(path)
            with quiet_analysis(logging.ERROR):  # as in restore_tuner
                tuner = _resuming_from_disk(tune.Tuner.restore(path, trainable, resume_errored=True))
        else:  # a new grid, or one whose driver died before Tune saved any state
            tuner = tune.Tuner(
                trainable,
                param_space={FIXED_JOB_KEY: tune.grid_search(configs)},
                tune_config=tune.TuneConfig(num_samples=1, reuse_actors=_reuse_actors(settings)),
                run_config=run_config(settings, metric, mode, verbose=settings.verbose,
                                      callbacks=[EachFixedRun(settings.name, configs, str(keep_dir))]),
            )
        results = list(tuner.fit())
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as exc:  # Ray itself failed (its memory monitor, a lost head): no traceback for people
        raise UserError(f"Ray stopped the runs of {settings.name} ({_error_line(exc)}); every run that "
                        f"finished is recorded, and --resume continues the rest") from None
    finally:
        ACTIVE_WRITERS.pop(settings.name, None)
    return [_fixed_run(result, configs, metric, mode, keep_dir) for result in results]


def _fixed_run(result, configs: list[dict], metric: str, mode: str, keep_dir: Path) -> FixedRun:
    config = result.config[FIXED_JOB_KEY]
    frame = result.metrics_dataframe
    if result.error is not None or frame is None or metric not in frame or _config_error(result):
        return FixedRun(config, None, {}, 0, 0.0, _error_line(result.error) or _config_error(result))
    best = best_row(frame, metric, mode)
    checkpoint = result.get_best_checkpoint(metric, mode) or result.checkpoint
    return FixedRun(
        config, checkpoint.to_directory(str(Path(keep_dir) / str(job_index(configs, config)))),
        {k.split("/", 1)[1]: float(best[k]) for k in best.index if k.startswith("val/")},
        int(frame["training_iteration"].max()), float(frame["time_this_iter_s"].sum()), None,
    )


def _config_error(result) -> str | None:
    """The configuration error a trial reported (``config_error_result``), if any."""
    frame = result.metrics_dataframe
    if frame is None or CONFIG_ERROR not in frame:
        return None
    errors = frame[CONFIG_ERROR].dropna()
    return str(errors.iloc[-1]) if len(errors) else None


def _error_line(error) -> str | None:
    if error is None:
        return None
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[-1] if text else ''}"


@dataclass
class SweepOutcome:
    best_config: dict
    best_checkpoint: str
    best_val: dict
    trials: int
    errored: int
    epochs: int
    trial_seconds: float
    errors: list[str]
    pareto: list[dict] = field(default_factory=list)


def pareto_front(points: list[dict], objectives: list[tuple[str, str]]) -> list[dict]:
    """The points no other point beats on every objective (and strictly on one)."""
    def better_or_equal(a, b, metric, mode):
        return a[metric] >= b[metric] if mode == "max" else a[metric] <= b[metric]

    def dominates(a, b):
        return (all(better_or_equal(a, b, m, d) for m, d in objectives)
                and any(a[m] != b[m] for m, _ in objectives))

    return [p for p in points if not any(dominates(q, p) for q in points if q is not p)]


def summarize(result_grid, metric: str, mode: str, keep_dir: Path,
              extra_objectives: tuple[tuple[str, str], ...] = ()) -> SweepOutcome:
    """Pick the best trial by its best validation score (``results.selection.best_of``: ties go to
    the first trial of the grid, as a benchmark's top-k), copy its best checkpoint to
    ``keep_dir`` (storage may be remote), and count the budget spent."""
    results = list(result_grid)
    config_errors = [f"config error, not retried: {e}" for e in map(_config_error, results) if e]
    scored = [r for r in results if r.metrics_dataframe is not None and metric in r.metrics_dataframe
              and not _config_error(r) and r.metrics_dataframe[metric].notna().any()]
    if not scored:
        reasons = [f"{type(e).__name__}: {str(e).splitlines()[-1] if str(e) else ''}" for e in result_grid.errors]
        reasons += config_errors
        raise UserError("every trial failed before reporting a validation score"
                        + (f"; first error: {reasons[0]}" if reasons else ""))

    # over every epoch of every trial that ran (scope "all"), by the one best-of rule (results.selection)
    best = best_of(scored, lambda r: float(best_row(r.metrics_dataframe, metric, mode)[metric]), mode,
                   tiebreak=lambda r: tiebreak(best_row(r.metrics_dataframe, metric, mode), metric))
    row = best_row(best.metrics_dataframe, metric, mode)
    try:
        checkpoint = best.get_best_checkpoint(metric, mode) or best.checkpoint
    except RuntimeError:  # multi-worker trials keep no Tune checkpoint (Ray raises instead of None)
        checkpoint = None
    if checkpoint is None and "checkpoint_path" in row.index:  # multi-worker trials: Train's checkpoint
        from ray import tune

        checkpoint = tune.Checkpoint(str(row["checkpoint_path"]))
    epochs = sum(int(r.metrics_dataframe["training_iteration"].max()) for r in scored)
    seconds = sum(float(r.metrics_dataframe["time_this_iter_s"].sum()) for r in scored)
    errors = [_error_line(e) for e in result_grid.errors] + config_errors
    pareto = []
    if extra_objectives:
        points = []
        for r in scored:
            at = best_row(r.metrics_dataframe, metric, mode)
            if all(m in at.index for m, _ in extra_objectives):
                points.append({"trial_id": r.metrics.get("trial_id"), "model": r.config.get("model.name"),
                               metric: float(at[metric]), **{m: float(at[m]) for m, _ in extra_objectives}})
        pareto = pareto_front(points, [(metric, mode), *extra_objectives])
    from bench.training.checkpoint import INNER_FOLDER

    try:
        kept = checkpoint.to_directory(str(keep_dir))
    except FileNotFoundError:  # deleted behind Tune's back (a resume rebuilds what it names: CheckpointsFromDisk)
        raise UserError(f"the best trial's checkpoint {checkpoint.path} is no longer there") from None
    # a k-fold trial's other inner models are there to resume it; the winner's model is fold 0's
    shutil.rmtree(Path(kept) / INNER_FOLDER, ignore_errors=True)
    return SweepOutcome(
        best_config=dict(best.config),
        best_checkpoint=kept,
        best_val={k.split("/", 1)[1]: float(row[k]) for k in row.index if k.startswith("val/")},
        trials=len(results),
        errored=len(result_grid.errors) + len(config_errors),
        epochs=epochs,
        trial_seconds=seconds,
        errors=errors,
        pareto=pareto,
    )


def runs_with_meta(storage: str, filename: str) -> list[str]:
    """The names of the runs under ``storage`` that hold the meta file ``filename``."""
    import pyarrow.fs

    fs, path = _filesystem(storage)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.Directory:
        return []
    return sorted(info.base_name for info in fs.get_file_info(pyarrow.fs.FileSelector(path))
                  if info.type == pyarrow.fs.FileType.Directory
                  and fs.get_file_info(f"{info.path}/{filename}").type == pyarrow.fs.FileType.File)
