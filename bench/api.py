"""The CLI's Python twin: ``search``, ``leaderboard``. Each call is explicit about its inputs."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from . import paths
from .data import get_adapter, load_splits
from .errors import UserError
from .evaluation import evaluate_checkpoint
from .results import OBJECTIVE_MODES, append_record, best_record, load_records, provenance
from .spaces import builtin_space_path, load_space

MODALITY_OF_SEARCH = {"face": "face", "video": "video", "mic": "video", "voice": "voice", "fusion": "av"}


@dataclass
class SearchResult:
    record: dict
    run_path: str
    errors: list[str]


def search(modality: str, dataset: str, *, space_path: str | None = None, samples: int | None = None,
           max_epochs: int | None = None, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
           storage: str | None = None, name: str | None = None, address: str | None = None,
           seed: int = 0, data_root: str | None = None, cache_dir: str | None = None,
           results_dir: str | None = None, verbose: int = 1, resume: bool = False,
           objective: str | None = None, workers_per_trial: int = 1, time_budget: str | float | None = None,
           estimate: bool = True) -> SearchResult:
    """Run a sweep (or, with ``resume``, continue the one named ``name``), pick the best trial on
    validation, test it once and record the result. ``time_budget`` (``30m``, ``2h``, seconds)
    stops the sweep cleanly after that long (default: the space's ``budget.time_budget``);
    ``estimate`` prints the expected duration from a measured epoch first."""
    from . import feasibility, tune_backend
    from .budget import parse_duration

    called = time.time()

    if samples is not None and samples < 1:
        raise UserError(f"--samples must be at least 1, got {samples}")
    if max_epochs is not None and max_epochs < 1:
        raise UserError(f"--max-epochs must be at least 1, got {max_epochs}")
    adapter = get_adapter(dataset)
    if adapter.modality != MODALITY_OF_SEARCH.get(modality, modality):
        raise UserError(f"dataset {dataset!r} holds {adapter.modality} data; `search {modality}` needs "
                        f"{MODALITY_OF_SEARCH.get(modality, modality)} data")
    space = load_space(space_path or builtin_space_path(modality, dataset))
    if space.modality != modality:
        raise UserError(f"{space.path!r} is a {space.modality} space, not a {modality} one")
    extra_objectives = parse_objectives(objective, space)
    device = "gpu" if gpus_per_trial else "cpu"
    time_budget_s = parse_duration(time_budget) if time_budget is not None else space.time_budget_for(device)
    cache = paths.cache_dir(cache_dir)
    results = paths.results_dir(results_dir)
    fusion_fixed = {}
    if modality == "fusion":  # before any data work: a missing encoder is a one-line error
        fusion_fixed = fusion_checkpoints(adapter, load_records(results))
        # the encoders come from the checkpoints: sampling their names would only add noise
        space = space.without(["model.visual", "model.voice"])
    root = paths.data_root(data_root)
    # Index and split once on the driver: generation/caching happens here, not in N racing trials,
    # and a leaky or malformed dataset stops the sweep before any trial starts.
    ready, indexed, _ = load_splits(dataset, 0, root, cache)
    ready.prepare(indexed.samples, Path(root) if root else None, cache, progress=verbose > 0)  # once, on the driver
    if resume and not name:
        raise UserError("--resume needs the --name of the sweep to continue (and the same --storage)")
    run_name = name or f"{dataset}-{modality}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    settings = tune_backend.SweepSettings(
        name=run_name, storage=paths.storage_path(storage, results),
        samples=samples or space.samples, max_epochs=max_epochs or space.max_epochs,
        cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, seed=seed, verbose=verbose,
        fault_marker=os.environ.get("FER_BENCH_FAULT_MARKER"), extra_objectives=extra_objectives,
        workers_per_trial=workers_per_trial, metric=space.metric, mode=space.mode, time_budget_s=time_budget_s,
    )
    run_path = f"{settings.storage.rstrip('/')}/{run_name}"
    meta = tune_backend.read_sweep_meta(run_path)
    if resume:
        if meta is None:
            raise UserError(f"no sweep named {run_name!r} to resume under {settings.storage!r}; "
                            f"check --name and --storage")
        if meta["space_hash"] != space.space_hash:
            raise UserError(f"the search space {space.path!r} changed since sweep {run_name!r} began "
                            f"(hash {meta['space_hash']} -> {space.space_hash}); restore the file or "
                            f"start a new sweep under another --name")
        # the budget is the sweep's, not this invocation's flags
        settings = replace(settings, samples=meta["samples"], max_epochs=meta["max_epochs"], seed=meta["seed"])
    elif meta is not None:
        raise UserError(f"a sweep named {run_name!r} already exists under {settings.storage!r}; "
                        f"add --resume to continue it, or choose another --name")
    extra_fixed = {"data.dataset": dataset, "train.max_epochs": settings.max_epochs, "train.seed": settings.seed}
    extra_fixed.update(fusion_fixed)
    if root:
        extra_fixed["data.data_root"] = str(Path(root).resolve())
    # No infeasible trial: values this dataset/model cannot run leave the space before Ray starts;
    # a resumed sweep re-applies what its first run removed (same space, same hash).
    if resume:
        removals = [feasibility.Removal.from_dict(r) for r in meta.get("resolution", [])]
        resolution = feasibility.Resolution(feasibility.apply(space, removals), tuple(removals))
    else:
        context = feasibility.Context(modality, ready, indexed.samples, data_root=Path(root) if root else None,
                                      cache_dir=cache)
        resolution = feasibility.resolve(space, context, extra_fixed=extra_fixed)
    space = resolution.space
    if resolution.line(dataset):
        print(resolution.line(dataset), flush=True)
    sweep_estimate = None
    if estimate and not resume:
        sweep_estimate = _print_estimate(space, settings, extra_fixed, cache, root, address)
    start = time.time()
    tune_backend.connect(address, dashboard=workers_per_trial > 1)
    if time_budget_s:
        # the budget is the whole command's: what indexing, resolving, timing and starting Ray took
        # comes off Tune's share, and so does a reserve for stopping the trials and the test
        # evaluation after it (a 3 min budget measured 3 min 31 s end to end without the reserve)
        reserve = min(60.0, 0.05 * time_budget_s)
        settings = replace(settings, time_budget_s=max(1.0, time_budget_s - reserve - (time.time() - called)))
    if resume:
        tuner = tune_backend.restore_tuner(run_path, settings, cache_dir=cache, data_root=root)
    else:
        tuner = tune_backend.build_tuner(space, settings, cache_dir=cache, data_root=root, extra_fixed=extra_fixed)
        tune_backend.write_sweep_meta(run_path, {
            "dataset": dataset, "modality": modality, "space_path": space.path, "space_hash": space.space_hash,
            "samples": settings.samples, "max_epochs": settings.max_epochs, "seed": settings.seed,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "resolution": resolution.to_meta(), "time_budget_s": time_budget_s,
            "estimate": sweep_estimate.to_dict() if sweep_estimate else None,
        })
    fit_start = time.time()
    result_grid = tuner.fit()
    # Tune ends a budgeted sweep at time_budget_s; one that ran that long was ended by it
    ended_by_budget = bool(time_budget_s) and time.time() - fit_start >= settings.time_budget_s
    keep = results / "models" / run_name
    if keep.exists():
        shutil.rmtree(keep)
    try:
        outcome = tune_backend.summarize(result_grid, space.metric, space.mode, keep, extra_objectives)
    except UserError:
        if ended_by_budget and not result_grid.errors:
            raise UserError(f"the time budget of {time_budget_s:g} s ended sweep {run_name!r} before any trial "
                            f"finished an epoch; give it more with --time-budget") from None
        raise
    wall = time.time() - start
    test = evaluate_checkpoint(outcome.best_checkpoint, split="test", cache_dir=cache, data_root=root)
    record = {
        "kind": "search", **_test_fields(adapter, outcome.best_config, test),
        "run": run_name, "dataset": dataset, "modality": modality, "seed": seed,
        "searched": [p.key for p in space.params], "space_hash": space.space_hash,
        "space_path": space.path, "objective": space.metric, "objective_mode": space.mode, "selection": "val",
        "threads": max(1, int(cpus_per_trial)),  # torch threads per trial: CPU sums depend on them (reproduce)
        "val": outcome.best_val,
        "budget": {
            "trials": outcome.trials, "errored": outcome.errored, "epochs": outcome.epochs,
            "device_seconds": outcome.trial_seconds * workers_per_trial
            * max(cpus_per_trial if not gpus_per_trial else gpus_per_trial, 0),
            "device": "gpu" if gpus_per_trial else "cpu", "wall_seconds": wall,
            "samples_requested": settings.samples, "max_epochs": settings.max_epochs,
            "time_budget_s": time_budget_s, "ended_by_time_budget": ended_by_budget,
            "estimated_seconds": sweep_estimate.seconds if sweep_estimate else None,
            "removed": resolution.to_meta(),
        },
        "checkpoint": str(keep),
        "resumed": resume,
        "run_path": run_path,
    }
    if extra_objectives:
        record["objectives"] = [space.metric, *(m for m, _ in extra_objectives)]
        record["pareto"] = outcome.pareto
    append_record(results, record)
    return SearchResult(record, run_path, outcome.errors)


def _print_estimate(space, settings, extra_fixed: dict, cache: Path, root, address):
    """Print the sweep's expected duration (measured; see ``bench.budget``) and whether it fits
    its time budget; an estimate that cannot be made is said so and never stops the sweep."""
    from .budget import describe, estimate_sweep

    try:
        est = estimate_sweep(space, samples=settings.samples, max_epochs=settings.max_epochs,
                             extra_fixed=extra_fixed, cache_dir=cache, data_root=root,
                             cpus_per_trial=settings.cpus_per_trial, gpus_per_trial=settings.gpus_per_trial,
                             workers_per_trial=settings.workers_per_trial, address=address)
    except Exception as exc:  # the estimate is advice: a model that cannot be timed here is no error
        print(f"No time estimate: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}")
        return None
    for line in describe(est, time_budget_s=settings.time_budget_s, samples=settings.samples,
                         max_epochs=settings.max_epochs):
        print(line, flush=True)
    return est


def fusion_checkpoints(adapter, records: list[dict]) -> dict:
    """The best visual and voice checkpoints recorded for an audio-visual dataset's sources,
    each chosen by its validation score (never test)."""
    found = {}
    for role, key in (("visual", "model.visual_checkpoint"), ("voice", "model.voice_checkpoint")):
        source = adapter.fusion_sources.get(role)
        modalities = ("face", "video") if role == "visual" else ("voice",)
        best = best_record(records, source, modalities, metric="val/uar", kinds=("search",),
                           where=lambda r: Path(r.get("checkpoint", "")).is_dir()) if source else None
        if best is None:
            what = source or f"a {role} dataset paired with {adapter.name!r} (none is registered)"
            hint = (f"; produce it with `fer-bench search {'video' if role == 'visual' else 'voice'} "
                    f"--dataset {source}`" if source else "")
            raise UserError(f"`search fusion --dataset {adapter.name}` needs the best {role} model of {what}, "
                            f"and none is recorded{hint}")
        found[key] = best["checkpoint"]
    return found


def parse_objectives(text: str | None, space) -> tuple[tuple[str, str], ...]:
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


def _test_fields(adapter, config: dict, test: dict) -> dict:
    """The fields every test-evaluation record shares (search winners and benchmark retrains)."""
    return {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "protocol": adapter.protocol, "fold": config.get("data.fold", 0),
        "model": config["model.name"], "config": config, "class_names": list(adapter.class_names),
        "test": {k: test[k] for k in ("accuracy", "uar", "macro_f1", "confusion", "loss", "samples")},
        # train/val/test sample counts: the paired test's n_test/n_train and a reproduction's sanity check
        "split_sizes": test.get("split_sizes"),
        "checkpoint_epoch": test.get("epoch"),  # the epoch whose weights were tested (reproduce stops there)
        "params": test["params"], "inference_ms_per_sample": test["inference_ms_per_sample"],
        "provenance": provenance(),
    }


def benchmark(dataset: str, modality: str, *, top_k: int = 1, seeds: int = 1, eval_dataset: str | None = None,
              cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, address: str | None = None,
              storage: str | None = None, data_root: str | None = None, eval_data_root: str | None = None,
              cache_dir: str | None = None, results_dir: str | None = None, verbose: int = 1) -> list[dict]:
    """Retrain the sweep's top-k configs (chosen on validation) on every fold x seed of the
    protocol, test each once, and record them; or, with ``eval_dataset``, evaluate the recorded
    leader on another corpus over the shared classes."""
    from . import benchmark as bm
    from . import tune_backend

    if top_k < 1 or seeds < 1:
        raise UserError("--top-k and --seeds must be at least 1")
    results = paths.results_dir(results_dir)
    cache = paths.cache_dir(cache_dir)
    source = bm.source_search_record(load_records(results), dataset, modality)
    if eval_dataset:
        get_adapter(eval_dataset)
        outcome = bm.cross_corpus(source["checkpoint"], eval_dataset, cache_dir=cache,
                                  data_root=paths.data_root(eval_data_root))
        record = {"kind": "cross_corpus", "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "dataset": dataset, "eval_dataset": eval_dataset, "modality": modality,
                  "selection": "val", "source_run": source["run"], "space_hash": source.get("space_hash"),
                  "provenance": provenance(), **outcome}
        append_record(results, record)
        return [record]
    adapter = get_adapter(dataset)
    root = paths.data_root(data_root) or source["config"].get("data.data_root")
    metric = source.get("objective", "val/uar")
    # the sweep's own direction (records before it was stored: the metric's); val/loss is minimised
    mode = source.get("objective_mode") or OBJECTIVE_MODES.get(metric, "max")
    configs = bm.top_configs(source["run_path"], metric, mode, top_k)
    jobs = bm.expand_jobs(configs, adapter.num_folds, seeds)
    run_name = f"{source['run']}-benchmark-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    settings = tune_backend.SweepSettings(
        name=run_name, storage=paths.storage_path(storage, results), samples=len(jobs),
        max_epochs=int(source["budget"]["max_epochs"]), cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial, verbose=verbose,
    )
    keep = results / "models" / run_name
    tune_backend.connect(address)
    start = time.time()
    runs = tune_backend.run_fixed_configs(jobs, settings, metric=metric, mode=mode, cache_dir=cache,
                                          data_root=root, keep_dir=keep)
    wall = time.time() - start
    written = []
    for run in runs:
        if run.checkpoint is None:
            print(f"warning: retrain fold {run.config['data.fold']} seed {run.config['train.seed']} "
                  f"failed ({run.error}); it is left out of the leaderboard")
            continue
        test = evaluate_checkpoint(run.checkpoint, split="test", cache_dir=cache, data_root=root)
        record = {
            "kind": "benchmark", **_test_fields(adapter, run.config, test),
            "run": source["run"], "benchmark_run": run_name, "dataset": dataset, "modality": modality,
            "seed": run.config["train.seed"], "searched": source.get("searched", []),
            "space_hash": source.get("space_hash"), "space_path": source.get("space_path"),
            "objective": metric, "objective_mode": mode, "selection": "val", "val": run.val,
            "threads": max(1, int(cpus_per_trial)),
            "run_path": source.get("run_path"),
            # the search budget that chose this config, plus what this retrain cost
            "budget": {**source["budget"], "retrain_epochs": run.epochs,
                       "retrain_device_seconds": run.seconds * max(cpus_per_trial, gpus_per_trial)},
            "benchmark_wall_seconds": wall, "checkpoint": run.checkpoint,
        }
        append_record(results, record)
        written.append(record)
    return written


def reproduce(record_id: str, *, results_dir: str | None = None, cache_dir: str | None = None,
              data_root: str | None = None):
    """Re-run one record's configuration, fold and seed and test it once; returns a
    ``bench.reproduce.Reproduction`` (old and new test metrics, their difference, warnings)."""
    from .reproduce import reproduce as run_reproduction

    return run_reproduction(load_records(paths.results_dir(results_dir)), record_id,
                            cache_dir=paths.cache_dir(cache_dir), data_root=paths.data_root(data_root))


def leaderboard(results_dir: str | None = None) -> tuple[str, list[Path]]:
    """Write leaderboard.md, .csv and .html (and plots/) from the records and published.yaml;
    return the Markdown and the files written."""
    from .outputs import write_leaderboard

    return write_leaderboard(paths.results_dir(results_dir))


def report(run: str, results_dir: str | None = None) -> list[Path]:
    """Write results/reports/<run>/report.{md,html} for one recorded sweep; return the files."""
    from .outputs import write_report

    return write_report(run, paths.results_dir(results_dir))
