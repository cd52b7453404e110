"""The only module that imports Ray Tune: Tuner construction, the Ray-side trainable, restore."""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .spaces import SearchSpace


@dataclass(frozen=True)
class SweepSettings:
    name: str
    storage: str
    samples: int
    max_epochs: int
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    seed: int = 0
    max_failures: int = 2
    verbose: int = 1
    # Fault injection for tests and drills: while this file exists, every trial fails at its next
    # epoch boundary (DESIGN: marker-file fault injection, then resume with resume_errored).
    fault_marker: str | None = None
    # More objectives after the space's own, e.g. (("latency_ms", "min"),): Optuna then searches
    # for the Pareto front; ASHA and checkpoint ranking keep using the first objective.
    extra_objectives: tuple[tuple[str, str], ...] = ()
    # >1: each trial is a Ray Train TorchTrainer run (DistributedDataParallel) over this many
    # workers, each with cpus_per_trial CPUs and gpus_per_trial GPUs.
    workers_per_trial: int = 1
    metric: str = "val/uar"
    mode: str = "max"
    # Ray Tune's time_budget_s: the sweep stops (cleanly, trials keep their last checkpoint) after it
    time_budget_s: float | None = None

    @property
    def objectives(self) -> tuple[tuple[str, str], ...]:
        return ((self.metric, self.mode), *self.extra_objectives)


def connect(address: str | None, num_cpus: int | None = None, dashboard: bool = False) -> None:
    """Start a local Ray instance, or join the cluster at ``address`` (HOST:PORT).

    ``dashboard`` starts Ray's dashboard (bound to 127.0.0.1): Ray Train needs its state API to
    release the workers of a multi-worker trial that ASHA stopped."""
    import ray

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
        _check_reachable(address)
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError or auth errors
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            hint = (" The cluster uses token authentication: set RAY_AUTH_MODE=token."
                    if "auth" in msg.lower() or "token" in msg.lower() else "")
            raise UserError(f"cannot join the Ray cluster at {address!r}: {msg}.{hint}") from None
    else:
        # "local": always a fresh instance; a bare ray.init() would attach to any Ray already
        # running on this machine (another user's sweep) and share its CPUs
        ray.init(address="local", num_cpus=num_cpus, **kwargs)


def _has_dashboard() -> bool:
    try:
        from ray._private.worker import get_dashboard_url  # no public accessor exists

        return bool(get_dashboard_url())
    except Exception:
        return False


def _check_reachable(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address must be HOST:PORT (e.g. 127.0.0.1:6379), got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError as exc:
        raise UserError(f"no Ray cluster answers at {address!r} ({exc.strerror or exc}); "
                        f"start one with `ray start --head --port {port}` or fix --address") from None


CONFIG_ERROR = "config_error"  # the result key of a trial ended by a configuration error
_BOUNDED_MAX = {"val/uar", "val/accuracy", "val/macro_f1"}


def is_config_error(exc: BaseException, reported: bool) -> bool:
    """A configuration error fails again on every retry: a ``UserError`` anywhere, or a
    TypeError/ValueError (a bad model kwarg or value) before the trial's first report. Faults
    (a killed worker, NaN loss, out of memory: RuntimeErrors) are not, and Ray retries them."""
    import fer_models
    from fer_models.face import PretrainedWeightsError

    if isinstance(exc, (UserError, fer_models.UnknownModelError, PretrainedWeightsError)):
        return True
    return not reported and isinstance(exc, (TypeError, ValueError))


def config_error_result(exc: BaseException, objectives) -> dict:
    """What a trial ended by a configuration error reports instead of raising (Ray Tune retries
    every exception up to max_failures and has no per-error rule): the worst value of each
    objective, so ASHA and Optuna rank it last, and the error under ``config_error``."""
    text = str(exc).strip().splitlines()
    metrics = {m: (0.0 if m in _BOUNDED_MAX else -1e9) if mode == "max" else 1e9 for m, mode in objectives}
    return {**metrics, "epoch": 0, CONFIG_ERROR: f"{type(exc).__name__}: {text[0] if text else ''}"}


def fer_trial(config: dict, *, cache_dir: str, data_root: str | None, threads: int,
              fault_marker: str | None = None, objectives=(("val/uar", "max"),)) -> None:
    """Runs inside a Ray worker: restore the last checkpoint if any, then run the trial. A
    configuration error ends the trial with one report instead of a retried exception."""
    import torch
    from ray import tune

    from .checkpoint import load_checkpoint
    from .trainable import run_trial

    config = config.get(FIXED_JOB_KEY, config)  # run_fixed_configs wraps each full config
    torch.set_num_threads(max(1, threads))
    # Ray logs every persisted checkpoint at INFO: one line per trial-epoch drowns the table.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = load_checkpoint(directory)

    import ray

    node_id = ray.get_runtime_context().get_node_id()
    reported = [state is not None]

    def report(metrics: dict, checkpoint_dir: Path) -> None:
        if fault_marker and Path(fault_marker).exists():
            raise RuntimeError(f"fault injected: marker file {fault_marker} exists")
        metrics = {**metrics, "node_id": node_id}  # which node ran it, for cluster checks
        reported[0] = True
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))

    try:
        run_trial(config, cache_dir=cache_dir, data_root=data_root, report=report, resume_state=state)
    except Exception as exc:
        if not is_config_error(exc, reported[0]):
            raise  # a fault: Ray retries it (FailureConfig.max_failures)
        tune.report({**config_error_result(exc, objectives), "node_id": node_id})


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


def fer_ddp_trial(config: dict, *, settings: SweepSettings, cache_dir: str, data_root: str | None, threads: int,
                  fault_marker: str | None = None, objectives=(("val/uar", "max"),)) -> None:
    """One trial as a Ray Train run: DistributedDataParallel over ``settings.workers_per_trial``
    workers; rank 0's per-epoch reports reach Tune through ``TuneReportCallback``. A restored trial
    re-creates the same-named Train run, which resumes from its latest checkpoint."""
    from ray import train, tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    context = tune.get_context()
    trainer = TorchTrainer(
        _ddp_worker_loop,
        train_loop_config={"config": config, "cache_dir": cache_dir, "data_root": data_root, "threads": threads,
                           "fault_marker": fault_marker, "objectives": objectives},
        scaling_config=train.ScalingConfig(
            num_workers=settings.workers_per_trial, use_gpu=settings.gpus_per_trial > 0,
            resources_per_worker={"CPU": settings.cpus_per_trial, "GPU": settings.gpus_per_trial}),
        run_config=train.RunConfig(
            name=f"{context.get_trial_name()}-ddp", storage_path=settings.storage,
            callbacks=[TuneReportCallback()],
            checkpoint_config=train.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=settings.metric,
                                                     checkpoint_score_order=settings.mode),
            failure_config=train.FailureConfig(max_failures=settings.max_failures),
        ),
    )
    trainer.fit()


def _ddp_worker_loop(loop_config: dict) -> None:
    import ray
    import torch
    from ray import train
    from ray.train.torch import prepare_data_loader, prepare_model

    from .checkpoint import load_checkpoint
    from .trainable import run_trial

    torch.set_num_threads(max(1, loop_config["threads"]))
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    context = train.get_context()
    state = None
    checkpoint = train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = load_checkpoint(directory)

    def prepare(parts):
        parts.model = prepare_model(parts.model)
        parts.train_loader = prepare_data_loader(parts.train_loader)
        return parts

    marker = loop_config["fault_marker"]
    node_id = ray.get_runtime_context().get_node_id()
    reported = [state is not None]

    def report(metrics: dict, checkpoint_dir: Path) -> None:
        if marker and Path(marker).exists():
            raise RuntimeError(f"fault injected: marker file {marker} exists")
        metrics = {**metrics, "node_id": node_id, "world_size": context.get_world_size()}
        rank0 = context.get_world_rank() == 0
        reported[0] = True
        train.report(metrics, checkpoint=train.Checkpoint.from_directory(str(checkpoint_dir)) if rank0 else None)

    try:
        run_trial(loop_config["config"], cache_dir=loop_config["cache_dir"], data_root=loop_config["data_root"],
                  report=report, resume_state=state, prepare=prepare)
    except Exception as exc:
        if not is_config_error(exc, reported[0]):
            raise
        # every rank has the same config and fails the same way: all report, as train.report needs
        train.report(config_error_result(exc, loop_config["objectives"]))


def _reporter(space: SearchSpace):
    """A compact table: the searched hyperparameters and the validation metrics, every 30 s."""
    from ray import tune

    return tune.CLIReporter(
        metric_columns={"epoch": "ep", "train/loss": "train loss", "val/accuracy": "val acc",
                        space.metric: space.metric.replace("val/", "val ")},
        # conditional params are absent from some configs, which the reporter cannot show
        parameter_columns={p.key: p.key.split(".", 1)[1] for p in space.params if not p.when},
        max_report_frequency=30, max_progress_rows=30, sort_by_metric=True,
        metric=space.metric, mode=space.mode,
    )


def _ddp_concurrency(settings: SweepSettings) -> int | None:
    """Multi-worker trials ask for their workers after they start: cap how many run at once so
    that every started trial can get its workers (else they all wait for each other)."""
    if settings.workers_per_trial <= 1:
        return None
    import ray

    total = ray.cluster_resources()
    fits = total.get("CPU", 1) // max(settings.workers_per_trial * settings.cpus_per_trial, 1e-9)
    if settings.gpus_per_trial:
        fits = min(fits, total.get("GPU", 0) // (settings.workers_per_trial * settings.gpus_per_trial))
    if fits < 1:
        raise UserError(f"--workers-per-trial {settings.workers_per_trial} needs "
                        f"{settings.workers_per_trial * settings.cpus_per_trial:g} CPUs per trial; the cluster has "
                        f"{total.get('CPU', 0):g}")
    return int(fits)


def build_tuner(space: SearchSpace, settings: SweepSettings, *, cache_dir: Path,
                data_root: str | None, extra_fixed: dict):
    import optuna
    from optuna.samplers import RandomSampler, TPESampler
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # Tune's table already reports each trial
    seed = space.searcher.get("seed", 0) + settings.seed
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
    tune_config = tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=settings.samples,
                                  max_concurrent_trials=_ddp_concurrency(settings),
                                  reuse_actors=_reuse_actors(settings), time_budget_s=settings.time_budget_s)
    run_config = tune.RunConfig(
        name=settings.name,
        storage_path=settings.storage,
        failure_config=tune.FailureConfig(max_failures=settings.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=space.metric,
                                                checkpoint_score_order=space.mode),
        verbose=settings.verbose,
        progress_reporter=_reporter(space),
    )
    return tune.Tuner(_wrapped_trainable(settings, cache_dir, data_root),
                      tune_config=tune_config, run_config=run_config)


def restore_tuner(path: str, settings: SweepSettings, *, cache_dir: Path, data_root: str | None):
    """Continue a sweep: finished trials stay, unfinished and errored ones resume from their last
    checkpoint, and the pickled Optuna searcher carries on the same study."""
    from ray import tune

    if not tune.Tuner.can_restore(path):
        raise UserError(f"no sweep to resume at {path!r}; check --name and --storage")
    return tune.Tuner.restore(path, _wrapped_trainable(settings, cache_dir, data_root),
                              resume_errored=True)


SWEEP_META = "fer-bench-sweep.json"


def _filesystem(path: str):
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(path) if "://" in path else (pyarrow.fs.LocalFileSystem(), path)


def write_sweep_meta(run_path: str, meta: dict) -> None:
    """What a resume must match (space hash) or reuse (budget), beside Ray's own state."""
    import json

    fs, path = _filesystem(run_path)
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(f"{path}/{SWEEP_META}") as f:
        f.write(json.dumps(meta, indent=2, default=str).encode())


def read_sweep_meta(run_path: str) -> dict | None:
    import json

    import pyarrow.fs

    fs, path = _filesystem(run_path)
    info = fs.get_file_info(f"{path}/{SWEEP_META}")
    if info.type == pyarrow.fs.FileType.NotFound:
        return None
    with fs.open_input_stream(f"{path}/{SWEEP_META}") as f:
        return json.loads(f.read().decode())


FIXED_JOB_KEY = "job"


@dataclass
class FixedRun:
    config: dict
    checkpoint: str | None  # local copy of the best-on-validation checkpoint
    val: dict
    epochs: int
    seconds: float
    error: str | None


def _reuse_actors(settings: SweepSettings) -> bool:
    """Run the next trial in a finished trial's process: a fresh actor imports torch and the zoo
    again (~3 s on 2 cores, measured by ``fer-bench perf ray``), longer than an epoch of a small
    model. ``run_trial`` reseeds everything and sets its threads, so nothing leaks between trials.
    DDP trials keep fresh coordinators: their workers are Ray Train's own actors."""
    return settings.workers_per_trial <= 1


def run_fixed_configs(configs: list[dict], settings: SweepSettings, *, metric: str, mode: str,
                      cache_dir: Path, data_root: str | None, keep_dir: Path) -> list[FixedRun]:
    """Train each full config once, in parallel across the cluster (a grid, no searcher, no early
    stopping); keep each run's best-on-validation checkpoint under ``keep_dir/<i>``."""
    from ray import tune

    tuner = tune.Tuner(
        _wrapped_trainable(settings, cache_dir, data_root),
        param_space={FIXED_JOB_KEY: tune.grid_search(configs)},
        tune_config=tune.TuneConfig(num_samples=1, reuse_actors=_reuse_actors(settings)),
        run_config=tune.RunConfig(
            name=settings.name, storage_path=settings.storage, verbose=settings.verbose,
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=metric,
                                                    checkpoint_score_order=mode),
        ),
    )
    runs = []
    for index, result in enumerate(tuner.fit()):
        config = result.config[FIXED_JOB_KEY]
        frame = result.metrics_dataframe
        if result.error is not None or frame is None or metric not in frame or _config_error(result):
            runs.append(FixedRun(config, None, {}, 0, 0.0, _error_line(result.error) or _config_error(result)))
            continue
        best = frame.loc[frame[metric].idxmax() if mode == "max" else frame[metric].idxmin()]
        checkpoint = result.get_best_checkpoint(metric, mode) or result.checkpoint
        runs.append(FixedRun(
            config, checkpoint.to_directory(str(Path(keep_dir) / str(index))),
            {k.split("/", 1)[1]: float(best[k]) for k in best.index if k.startswith("val/")},
            int(frame["training_iteration"].max()), float(frame["time_this_iter_s"].sum()), None,
        ))
    return runs


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
    """Pick the best trial by its best validation score, copy its best checkpoint to
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

    def best_of(r):
        column = r.metrics_dataframe[metric]
        return column.max() if mode == "max" else -column.min()

    best = max(scored, key=best_of)  # over every epoch of every trial that ran (scope "all")
    frame = best.metrics_dataframe
    row = frame.loc[frame[metric].idxmax() if mode == "max" else frame[metric].idxmin()]
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
            f = r.metrics_dataframe
            at = f.loc[f[metric].idxmax() if mode == "max" else f[metric].idxmin()]
            if all(m in at.index for m, _ in extra_objectives):
                points.append({"trial_id": r.metrics.get("trial_id"), "model": r.config.get("model.name"),
                               metric: float(at[metric]), **{m: float(at[m]) for m, _ in extra_objectives}})
        pareto = pareto_front(points, [(metric, mode), *extra_objectives])
    return SweepOutcome(
        best_config=dict(best.config),
        best_checkpoint=checkpoint.to_directory(str(keep_dir)),
        best_val={k.split("/", 1)[1]: float(row[k]) for k in row.index if k.startswith("val/")},
        trials=len(results),
        errored=len(result_grid.errors) + len(config_errors),
        epochs=epochs,
        trial_seconds=seconds,
        errors=errors,
        pareto=pareto,
    )
