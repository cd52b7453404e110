"""One sweep as three named steps: ``plan_search`` (check the request, load and resolve the space,
settle the Tune settings), ``fit_sweep`` (run or restore the Tuner, keep the best trial) and
``record_search`` (test the winner once, append its record). ``bench.api.search`` calls them."""
from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from bench import paths
from bench.data import get_adapter, load_splits
from bench.data.base import DatasetAdapter, describe_copies
from bench.errors import Interrupted, UserError
from bench.families import Preparation, SearchFamily, get_family
from bench.results.record import Record
from bench.results.store import OBJECTIVE_MODES, append_record, current_records, load_records
from bench.sweep import feasibility, init_refs, tune_backend
from bench.sweep.budget import Estimate
from bench.sweep.durations import parse_duration
from bench.sweep.endings import GracefulStop
from bench.sweep.fidelity import data_fractions
from bench.sweep.record_fields import tested_fields
from bench.sweep.resources import sweep_cpus
from bench.sweep.run_settings import SweepSettings
from bench.sweep.spaces import SearchSpace, builtin_space_path, load_space
from bench.sweep.tune_backend import SweepOutcome
from bench.training.evaluation import evaluate_checkpoint


@dataclass
class SearchResult:
    record: Record
    run_path: str
    errors: list[str]
    finished: int = 0  # trials that ran to their end
    resume_command: str = ""  # continues the sweep when record.interrupted says it stopped early
    signum: int | None = None  # the signal that interrupted it, if one did


@dataclass
class SweepPlan:
    """Everything decided before Ray starts: the family, the resolved space, the Tune settings,
    the keys fixed for every trial, and (for a resume) what the sweep's first run wrote."""

    family: SearchFamily
    dataset: str
    adapter: DatasetAdapter
    space: SearchSpace
    settings: SweepSettings
    run_path: str
    extra_fixed: dict
    resolution: feasibility.Resolution
    cache: Path
    results: Path
    root: str | None
    resume: bool
    seed: int
    address: str | None
    time_budget_s: float | None
    estimate: Estimate | None  # when one was made
    called: float  # when the command began: the time budget is the whole command's
    init_added: list = field(default_factory=list)  # --init references (the sweep meta keeps them)
    resume_command: str = ""  # the command that continues this sweep (printed when it is interrupted)
    meta: dict | None = None  # a resumed sweep's fer-bench-sweep.json
    nested: str | None = None  # the nested benchmark this sweep is one outer fold's search of


@dataclass
class FittedSweep:
    """What Tune's fit left: the best trial on validation (its checkpoint copied beside the
    results), the budget spent, whether the time budget ended it, and whether something stopped
    it before its end (``interrupted``: SIGINT, SIGTERM or ``error: <Type>: <message>``)."""

    outcome: SweepOutcome
    keep: Path
    wall: float
    ended_by_budget: bool
    interrupted: str | None = None
    signum: int | None = None  # the signal that interrupted it, if one did
    finished: int = 0  # trials that ran to their end (TERMINATED)


def run_search(plan: SweepPlan) -> SearchResult:
    """Fit the planned sweep and record it. Ctrl-C or SIGTERM while its winner is tested keeps
    every trial and says which command records it."""
    fitted = fit_sweep(plan)
    try:
        record = record_search(plan, fitted)
    except KeyboardInterrupt as exc:
        import signal

        signum = getattr(exc, "signum", signal.SIGINT)
        raise Interrupted(f"{signal.Signals(signum).name}: sweep {plan.settings.name!r} stopped before it was "
                          f"recorded; its trials are kept; `{plan.resume_command}` records it", int(signum)) from None
    return SearchResult(record, plan.run_path, fitted.outcome.errors, fitted.finished, plan.resume_command,
                        fitted.signum)


def plan_search(family_name: str, dataset: str, *, space_path: str | None, samples: int | None,
                max_epochs: int | None, cpus_per_trial: float, gpus_per_trial: float, storage: str | None,
                name: str | None, address: str | None, seed: int, data_root: str | None,
                cache_dir: str | None, results_dir: str | None, verbose: int, resume: bool,
                objective: str | None, workers_per_trial: int, time_budget: str | float | None,
                estimate: bool, init: list[str] | None = None, mlflow: str | None = None,
                fold: int = 0, nested: str | None = None) -> SweepPlan:
    """Check the request, load and resolve the space against the data and the models, and settle
    the Tune settings; a resumed sweep takes its budget and resolution from its first run. Every
    mistake found here stops the command before Ray starts."""
    called = time.time()
    check_request(samples=samples, max_epochs=max_epochs, resume=resume, name=name)
    if address:  # before the data work: a cluster that does not answer is said at once
        tune_backend.check_reachable(address)
    family, adapter = family_and_data(family_name, dataset)
    device = "gpu" if gpus_per_trial else "cpu"
    space = family_space(family, dataset, space_path, device)
    extra_objectives = parse_objectives(objective, space)
    tracking = mlflow_uri(mlflow)
    time_budget_s = parse_duration(time_budget) if time_budget is not None else space.time_budget_for(device)
    cache = paths.cache_dir(cache_dir)
    results = paths.results_dir(results_dir)
    preparation = Preparation()
    if family.prepare is not None:  # before any data work: what it misses is a one-line error
        preparation = family.prepare(adapter, results)
        space = space.without(list(preparation.drop))
    root = paths.data_root(data_root)
    # fold: the outer fold a nested benchmark searches inside (its training subjects only)
    ready, samples_indexed, n_train = prepare_data(dataset, root, cache, verbose, fold=fold)
    run_name = name or f"{dataset}-{family.name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    settings = SweepSettings(
        name=run_name, storage=paths.storage_path(storage, results),
        samples=samples or space.samples, max_epochs=max_epochs or space.max_epochs,
        cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, seed=seed, verbose=verbose,
        fault_marker=os.environ.get("FER_BENCH_FAULT_MARKER"), extra_objectives=extra_objectives,
        workers_per_trial=workers_per_trial, metric=space.metric, mode=space.mode, time_budget_s=time_budget_s,
        mlflow_uri=tracking,
    )
    run_path = f"{settings.storage.rstrip('/')}/{run_name}"
    meta = tune_backend.read_sweep_meta(run_path)
    settings = settings_for_resume(settings, meta, space, resume=resume)
    # fewer trials than this machine has room for: each gets the idle cores too (threads)
    settings = replace(settings, cpus_per_trial=sweep_cpus(
        cpus_per_trial, settings.samples, address=address, workers_per_trial=workers_per_trial,
        gpus_per_trial=gpus_per_trial))
    extra_fixed = fixed_keys(family, preparation, space, settings, dataset=dataset, n_train=n_train, root=root)
    if fold:
        extra_fixed["data.fold"] = fold
    # --init REF: more model.init choices (a resume takes its first run's, kept in the sweep meta)
    init = list(meta.get("init_added") or []) if resume else list(init or [])
    if not resume:
        init_refs.check_typed(init, results)
    space = init_refs.add_refs(space, init)
    context = feasibility.Context(family.model_modality, ready, samples_indexed,
                                  data_root=Path(root) if root else None, cache_dir=cache, results_dir=results)
    resolution = resolve_space(space, context, extra_fixed, dataset=dataset, meta=meta if resume else None)
    # best:<dataset>/<family> -> the leader's checkpoint folder now, so trials, benchmark and
    # reproduce all start from these weights
    space = init_refs.pin(resolution.space, results)
    resolution = replace(resolution, space=space)
    sweep_estimate = None
    if estimate and not resume:
        sweep_estimate = _print_estimate(space, settings, extra_fixed, cache, root, address)
    options = {"--space": space_path, "--storage": storage, "--data-root": data_root,
               "--cache-dir": cache_dir, "--results-dir": results_dir, "--address": address}
    return SweepPlan(family=family, dataset=dataset, adapter=adapter, space=space, settings=settings,
                     run_path=run_path, extra_fixed=extra_fixed, resolution=resolution, cache=cache,
                     results=results, root=root, resume=resume, seed=seed, address=address,
                     time_budget_s=time_budget_s, estimate=sweep_estimate, called=called,
                     resume_command=resume_command(family.name, dataset, run_name, options),
                     meta=meta if resume else None, init_added=init, nested=nested)


def check_request(*, samples: int | None, max_epochs: int | None, resume: bool, name: str | None) -> None:
    if samples is not None and samples < 1:
        raise UserError(f"--samples must be at least 1, got {samples}")
    if max_epochs is not None and max_epochs < 1:
        raise UserError(f"--max-epochs must be at least 1, got {max_epochs}")
    if resume and not name:
        raise UserError("--resume needs the --name of the sweep to continue (and the same --storage)")


def family_and_data(family_name: str, dataset: str) -> tuple[SearchFamily, DatasetAdapter]:
    """The family and the dataset's adapter, refused when the dataset holds other data."""
    family = get_family(family_name)
    adapter = get_adapter(dataset)
    if adapter.modality != family.data_modality:
        raise UserError(f"dataset {dataset!r} holds {adapter.modality} data; `search {family.name}` needs "
                        f"{family.data_modality} data")
    return family, adapter


def family_space(family: SearchFamily, dataset: str, space_path: str | None, device: str) -> SearchSpace:
    """``--space`` or the family's own space for the dataset, on the sweep's device."""
    space = load_space(space_path or builtin_space_path(family.name, dataset), device)
    if space.family != family.name:
        raise UserError(f"{space.path!r} is a {space.family} space, not a {family.name} one")
    return space


def prepare_data(dataset: str, root: str | None, cache: Path, verbose: int, fold: int = 0):
    """Index, split and prepare the dataset once on the driver: generation and caching happen
    here, not in N racing trials, and a leaky or malformed dataset stops the sweep before any
    trial starts. Returns the adapter that indexed it, its samples and the training split's size."""
    ready, indexed, splits = load_splits(dataset, fold, root, cache)
    if indexed.copies:  # the official test split stays whole; its copies leave training (data.base)
        print(describe_copies(indexed.copies, dataset), flush=True)
    ready.prepare(indexed.samples, Path(root) if root else None, cache, progress=verbose > 0)
    return ready, indexed.samples, len(splits["train"])


def settings_for_resume(settings: SweepSettings, meta: dict | None, space: SearchSpace, *,
                        resume: bool) -> SweepSettings:
    """A resumed sweep's settings take its first run's budget and seed (not this command's
    flags); resuming a sweep that does not exist, or whose space changed, and starting one under
    a name already taken, are refused."""
    storage, run_name = settings.storage, settings.name
    if not resume:
        if meta is not None:
            raise UserError(f"a sweep named {run_name!r} already exists under {storage!r}; "
                            f"add --resume to continue it, or choose another --name")
        return settings
    if meta is None:
        raise UserError(f"no sweep named {run_name!r} to resume under {storage!r}; check --name and --storage")
    if meta["space_hash"] != space.space_hash:
        raise UserError(f"the search space {space.path!r} changed since sweep {run_name!r} began "
                        f"(hash {meta['space_hash']} -> {space.space_hash}); restore the file or "
                        f"start a new sweep under another --name")
    return replace(settings, samples=meta["samples"], max_epochs=meta["max_epochs"], seed=meta["seed"])


def fixed_keys(family: SearchFamily, preparation: Preparation, space: SearchSpace, settings: SweepSettings, *,
               dataset: str, n_train: int, root: str | None) -> dict:
    """The keys every trial of the sweep gets besides the space's own."""
    extra_fixed = {"data.dataset": dataset, "train.max_epochs": settings.max_epochs, "train.seed": settings.seed}
    extra_fixed.update(family.fixed)
    extra_fixed.update(preparation.fixed)
    if "train.data_fractions" not in space.fixed:  # early ASHA rungs of a large set on a subset
        fractions = data_fractions(space.scheduler, max_epochs=settings.max_epochs, n_train=n_train,
                                   workers_per_trial=settings.workers_per_trial)
        if fractions:
            extra_fixed["train.data_fractions"] = fractions
    if root:
        extra_fixed["data.data_root"] = str(Path(root).resolve())
    return extra_fixed


def resolve_space(space: SearchSpace, context: feasibility.Context, extra_fixed: dict, *, dataset: str,
                  meta: dict | None) -> feasibility.Resolution:
    """No infeasible trial: values this dataset/model cannot run leave the space before Ray starts
    (one line says which); a resumed sweep (``meta``: its first run's) re-applies what its first
    run removed, so the space and its hash stay the same."""
    if meta is not None:
        removals = [feasibility.Removal.from_dict(r) for r in meta.get("resolution", [])]
        resolution = feasibility.Resolution(feasibility.apply(space, removals), tuple(removals))
    else:
        resolution = feasibility.resolve(space, context, extra_fixed=extra_fixed)
    if resolution.line(dataset):
        print(resolution.line(dataset), flush=True)
    return resolution


def resume_command(family: str, dataset: str, run_name: str, options: dict) -> str:
    """The command that continues this sweep (printed when it is interrupted)."""
    return " ".join(["fer-bench search", family, "--dataset", shlex.quote(dataset), "--name",
                     shlex.quote(run_name), "--resume",
                     *(f"{k} {shlex.quote(str(v))}" for k, v in options.items() if v)])


def fit_sweep(plan: SweepPlan) -> FittedSweep:
    """Start (or restore) the Tune experiment, run it, and keep the best trial's checkpoint.

    However the fit ends, what the trials reported is kept: SIGINT and SIGTERM stop it gracefully
    (``sweep.endings.GracefulStop``) and the sweep is returned as ``interrupted``; an exception
    after the trials ran reads their results back from the experiment on disk. A second signal,
    or one before Tune's loop started, raises ``Interrupted`` with the command that continues."""
    from bench.sweep.endings import Deadline

    settings, space = plan.settings, plan.space
    start = time.time()
    with GracefulStop() as stop:
        try:
            tune_backend.connect(plan.address, dashboard=settings.workers_per_trial > 1)
            if plan.time_budget_s:
                # the budget is the whole command's: what indexing, resolving, timing and starting Ray took
                # comes off Tune's share, and so does a reserve for stopping the trials and the test
                # evaluation after it (a 3 min budget measured 3 min 31 s end to end without the reserve)
                reserve = min(60.0, 0.05 * plan.time_budget_s)
                settings = replace(settings, time_budget_s=max(1.0, plan.time_budget_s - reserve
                                                               - (time.time() - plan.called)))
            restorable = plan.resume and tune_backend.can_restore(plan.run_path)
            if plan.resume and not restorable:
                # killed after its meta was written but before Ray saved anything: nothing ran yet
                print(f"Ray had saved nothing of sweep {settings.name!r} yet; starting it from its beginning.",
                      flush=True)
            if restorable:
                tuner = tune_backend.restore_tuner(plan.run_path, settings, cache_dir=plan.cache,
                                                   data_root=plan.root, space=space)
            else:
                tuner = tune_backend.build_tuner(space, settings, cache_dir=plan.cache, data_root=plan.root,
                                                 extra_fixed=plan.extra_fixed)
            if not plan.resume:
                tune_backend.write_sweep_meta(plan.run_path, {
                    "dataset": plan.dataset, "modality": plan.family.name, "space_path": space.path,
                    "space_hash": space.space_hash, "samples": settings.samples, "max_epochs": settings.max_epochs,
                    "seed": settings.seed, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "resolution": plan.resolution.to_meta(), "time_budget_s": plan.time_budget_s,
                    "estimate": plan.estimate.to_dict() if plan.estimate else None,
                    **({"init_added": plan.init_added} if plan.init_added else {}),
                })
            fit_start = time.time()
            tune_backend.note_sweep_run(plan.run_path, started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                        fit_started_unix=fit_start, resume=plan.resume,
                                        time_budget_s=settings.time_budget_s)
            stop.arm()  # after ray.init, whose core replaced the SIGTERM handler
            error = None
            try:
                with Deadline(settings.time_budget_s) as deadline:  # stops the fit as Ctrl-C would
                    result_grid = tuner.fit()
            except Exception as exc:  # e.g. a reporter of an older fer-bench pickled in the experiment
                error = exc
        except KeyboardInterrupt:
            raise _interrupted(plan, stop, "stopped at once") from None
        stop.disarm()  # from here a signal ends the command as usual (the record is being written)
        fit_end = time.time()
        if error is not None:
            result_grid = _results_left_by(plan, settings, error)
        finished = tune_backend.trial_states(plan.run_path).get("TERMINATED", 0)
        # a signal that came as the last trial ended interrupted nothing
        interrupted = stop.signal if stop.signal and finished < settings.samples else None
        if error is not None:
            interrupted = f"error: {_short(tune_backend._error_line(error))}"
        # a budget that fired as the last trial ended stopped nothing
        ended_by_budget = deadline.fired and not interrupted and finished < settings.samples
        ended_by = interrupted or ("time budget" if ended_by_budget else "finished")
        tune_backend.note_sweep_run(plan.run_path, ended=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                    fit_seconds=round(fit_end - fit_start, 2), ended_by=ended_by, finished=finished)
        keep = plan.results / "models" / settings.name
        if keep.exists():
            shutil.rmtree(keep)
        try:
            outcome = tune_backend.summarize(result_grid, space.metric, space.mode, keep, settings.extra_objectives)
        except UserError:
            if stop.signal and interrupted:
                raise _interrupted(plan, stop, "before any trial reported a validation score") from None
            if error is not None:
                raise error from None
            # trials TERMINATED without a report and without an error: only Tune's own time budget (a
            # sweep begun by an earlier fer-bench) ends them so
            unreported = (0 < finished == len(result_grid) == result_grid.num_terminated
                          and not any(tune_backend._config_error(r) for r in result_grid)
                          and all(r.metrics_dataframe is None or r.metrics_dataframe.empty for r in result_grid))
            if not result_grid.errors and (ended_by_budget or unreported):
                raise UserError(_budget_too_short(plan, settings, fit_start, fit_end, ended_by_budget)) from None
            raise
        if error is not None:  # said once there is something to record (else the error itself stands)
            print(f"fer-bench: warning: the sweep stopped on an error after its trials ran "
                  f"({_short(tune_backend._error_line(error))}); recording the trials that reported; "
                  f"`{plan.resume_command}` continues it", file=sys.stderr, flush=True)
        return FittedSweep(outcome, keep, time.time() - start, ended_by_budget, interrupted=interrupted,
                           signum=stop.signum if interrupted and stop.signal else None, finished=finished)


def _interrupted(plan: SweepPlan, stop: GracefulStop, what: str) -> Interrupted:
    import signal

    signum = stop.last or signal.SIGINT
    return Interrupted(f"{signal.Signals(signum).name}: sweep {plan.settings.name!r} {what}; its trials keep "
                       f"their last checkpoint; continue with `{plan.resume_command}`", int(signum))


def _short(text: str, limit: int = 200) -> str:
    """An error's line for a record and a message (Ray's out-of-memory text runs to 1,500 characters)."""
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."


def _results_left_by(plan: SweepPlan, settings: SweepSettings, error: Exception):
    """The trials' results after ``Tuner.fit()`` raised: Tune checkpoints the experiment as it
    goes, so what ran before the exception is read back (without running anything). When there
    is nothing to read, the exception stands."""
    try:
        grid = tune_backend.restore_tuner(plan.run_path, settings, cache_dir=plan.cache,
                                          data_root=plan.root).get_results()
    except Exception:
        raise error from None
    return grid


def _budget_too_short(plan: SweepPlan, settings: SweepSettings, fit_start: float, fit_end: float,
                      this_fit: bool) -> str:
    """The sentence for a time budget that ended every trial before its first report, with a
    ``--time-budget`` that would let one epoch finish: from the sweep's epoch estimate, and at
    least what this fit showed (its trials ran that long without finishing an epoch, and a trial
    without a checkpoint starts its first epoch again on a resume)."""
    from bench.sweep.budget import TRIAL_OVERHEAD_S
    from bench.sweep.endings import one_epoch_budget

    estimate = plan.estimate.to_dict() if plan.estimate else (plan.meta or {}).get("estimate") or {}
    estimated = max([*(estimate.get("per_model_epoch_seconds") or {}).values(), estimate.get("epoch_seconds") or 0])
    ran = fit_end - fit_start
    epoch = max(estimated, ran) if this_fit else estimated
    # a resume starts Ray but skips indexing and the estimate: its own time before the fit counts
    suggestion = one_epoch_budget(epoch, fit_start - plan.called, TRIAL_OVERHEAD_S)
    why = (f"an epoch was estimated at ~{estimated:.0f} s here" if estimated else "") + (
        f"{'; ' if estimated else ''}this run's trials had {ran:.0f} s" if this_fit else "")
    why = f" ({why})" if why else ""
    if not this_fit:  # Tune's own budget TERMINATEd the trials: they cannot be continued
        return (f"a time budget of an earlier run ended every trial of sweep {settings.name!r} before its first "
                f"epoch (no trial failed), and such trials cannot be continued; start it again under another "
                f"--name with --time-budget {suggestion or 'longer'}{why}")
    advice = (f"`{plan.resume_command} --time-budget {suggestion}` continues it with enough for one{why}"
              if suggestion else f"`{plan.resume_command}` with a larger --time-budget continues it{why}")
    return (f"the time budget of {plan.time_budget_s:g} s ended sweep {settings.name!r} before any trial finished "
            f"an epoch (no trial failed); {advice}")


def record_search(plan: SweepPlan, fitted: FittedSweep) -> Record:
    """Test the sweep's winner once and append its record to the results store."""
    settings, space, outcome = plan.settings, plan.space, fitted.outcome
    test = evaluate_checkpoint(outcome.best_checkpoint, split="test", cache_dir=plan.cache, data_root=plan.root)
    cpus_per_trial, gpus_per_trial = settings.cpus_per_trial, settings.gpus_per_trial
    multi = bool(settings.extra_objectives)
    record = Record(
        kind="search", **tested_fields(plan.adapter, outcome.best_config, test, plan.results),
        run=settings.name, dataset=plan.dataset, family=plan.family.name, seed=plan.seed,
        searched=[p.key for p in space.params], space_hash=space.space_hash,
        space_path=space.path, objective=space.metric, objective_mode=space.mode, selection="val",
        threads=max(1, int(cpus_per_trial)),  # torch threads per trial: CPU sums depend on them (reproduce)
        val=outcome.best_val,
        budget={
            "trials": outcome.trials, "errored": outcome.errored, "epochs": outcome.epochs,
            "finished_trials": fitted.finished,
            "device_seconds": outcome.trial_seconds * settings.workers_per_trial
            * max(cpus_per_trial if not gpus_per_trial else gpus_per_trial, 0),
            "device": "gpu" if gpus_per_trial else "cpu", "wall_seconds": fitted.wall,
            "samples_requested": settings.samples, "max_epochs": settings.max_epochs,
            "time_budget_s": plan.time_budget_s, "ended_by_time_budget": fitted.ended_by_budget,
            "estimated_seconds": plan.estimate.seconds if plan.estimate else None,
            # the replays' 10th-90th percentile: where ASHA's stops alone put the wall time
            "estimated_range": [plan.estimate.low_seconds, plan.estimate.high_seconds] if plan.estimate else None,
            "data_fractions": plan.extra_fixed.get("train.data_fractions", []),
            "removed": plan.resolution.to_meta(),
        },
        checkpoint=str(fitted.keep), resumed=plan.resume, run_path=plan.run_path,
        objectives=[space.metric, *(m for m, _ in settings.extra_objectives)] if multi else [],
        pareto=outcome.pareto if multi else [],
        interrupted=fitted.interrupted, nested=plan.nested,
    )
    if plan.resume:  # one sweep, one current record: this one replaces what earlier runs recorded
        record.supersedes = [r.id for r in current_records(load_records(plan.results))
                             if r.kind == "search" and r.run == settings.name and r.run_path == plan.run_path]
    append_record(plan.results, record)
    if settings.mlflow_uri:
        from bench.sweep.tracking import log_record

        log_record(settings.mlflow_uri, settings.name, record.to_dict())
    return record


def mlflow_uri(text: str | None) -> str | None:
    from bench.sweep.tracking import tracking_uri

    return tracking_uri(text) if text is not None else None


def _print_estimate(space: SearchSpace, settings: SweepSettings, extra_fixed: dict, cache: Path, root: str | None,
                    address: str | None) -> Estimate | None:
    """Print the sweep's expected duration (measured; see ``bench.sweep.budget``) and whether it fits
    its time budget; an estimate that cannot be made is said so and never stops the sweep."""
    from bench.sweep.budget import describe, estimate_sweep

    try:
        est = estimate_sweep(space, samples=settings.samples, max_epochs=settings.max_epochs,
                             extra_fixed=extra_fixed, cache_dir=cache, data_root=root,
                             cpus_per_trial=settings.cpus_per_trial, gpus_per_trial=settings.gpus_per_trial,
                             workers_per_trial=settings.workers_per_trial, address=address, seed=settings.seed)
    except Exception as exc:  # the estimate is advice: a model that cannot be timed here is no error
        print(f"No time estimate: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}")
        return None
    for line in describe(est, time_budget_s=settings.time_budget_s, samples=settings.samples,
                         max_epochs=settings.max_epochs):
        print(line, flush=True)
    return est


def parse_objectives(text: str | None, space: SearchSpace) -> tuple[tuple[str, str], ...]:
    """``--objective val/uar,latency_ms``: the first must be the space's validation metric (it
    drives ASHA and selection); the rest become extra objectives of a multi-objective search."""
    if not text:
        return ()
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in OBJECTIVE_MODES]
    if unknown:
        raise UserError(f"--objective: unknown metric {unknown[0]!r}; choose from {', '.join(OBJECTIVE_MODES)}")
    if names[0] != space.metric:
        raise UserError(f"--objective must start with the space's metric {space.metric!r} "
                        f"(selection stays on validation), got {names[0]!r}")
    return tuple((n, OBJECTIVE_MODES[n]) for n in names[1:])
