"""The CLI's Python twin: one function per command, each explicit about its inputs. The steps
live below (``bench.sweep.search``, ``bench.sweep.benchmark``, ``bench.sweep.reproduce``,
``bench.reports.outputs``); this module only joins them as the command does."""
from __future__ import annotations

from pathlib import Path

from bench import paths
from bench.data import get_adapter
from bench.errors import UserError
from bench.results.record import Record
from bench.results.store import load_records
from bench.sweep.benchmark import (  # noqa: F401  (where they were: bench.api's names)
    BENCHMARK_META,
    BenchmarkWriter,
)
from bench.sweep.record_fields import tested_fields as _test_fields  # noqa: F401
from bench.sweep.search import (  # noqa: F401  (the three steps of a search, also bench.api's names)
    FittedSweep,
    SearchResult,
    SweepPlan,
    fit_sweep,
    parse_objectives,
    plan_search,
    record_search,
    run_search,
)


def search(family: str, dataset: str, *, space_path: str | None = None, samples: int | None = None,
           max_epochs: int | None = None, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
           storage: str | None = None, name: str | None = None, address: str | None = None,
           seed: int = 0, data_root: str | None = None, cache_dir: str | None = None,
           results_dir: str | None = None, verbose: int = 1, resume: bool = False,
           objective: str | None = None, workers_per_trial: int = 1, time_budget: str | float | None = None,
           estimate: bool = True, init: list[str] | None = None, mlflow: str | None = None,
           fold: int = 0, nested: str | None = None) -> SearchResult:
    """Run a sweep of the search family ``family`` (or, with ``resume``, continue the one named
    ``name``), pick the best trial on validation, test it once and record the result.
    ``time_budget`` (``30m``, ``2h``, seconds) stops the sweep cleanly after that long (default:
    the space's ``budget.time_budget``); ``estimate`` prints the expected duration from a measured
    epoch first. ``init``: ``model.init`` references added to the space's (``--init``)."""
    plan = plan_search(family, dataset, space_path=space_path, samples=samples, max_epochs=max_epochs,
                       cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, storage=storage,
                       name=name, address=address, seed=seed, data_root=data_root, cache_dir=cache_dir,
                       results_dir=results_dir, verbose=verbose, resume=resume, objective=objective,
                       workers_per_trial=workers_per_trial, time_budget=time_budget, estimate=estimate,
                       init=init, mlflow=mlflow, fold=fold, nested=nested)
    return run_search(plan)


def benchmark(dataset: str, family: str, *, top_k: int = 1, seeds: int = 1, eval_dataset: str | None = None,
              cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, address: str | None = None,
              storage: str | None = None, data_root: str | None = None, eval_data_root: str | None = None,
              cache_dir: str | None = None, results_dir: str | None = None, verbose: int = 1,
              refit: bool = True, resume: bool = False, name: str | None = None,
              mlflow: str | None = None, ensemble: int = 0, nested: bool = False,
              space_path: str | None = None, source_run: str | None = None, folds: list[int] | None = None,
              nested_name: str | None = None) -> list[Record]:
    """Retrain the sweep's top-k configs (chosen on validation) on every fold x seed of the
    protocol, test each once, and record them; or, with ``eval_dataset``, evaluate the recorded
    leader on another corpus over the shared classes. ``refit`` (the default) retrains on train + val
    for the epochs at which the sweep's validation score peaked and tests the last epoch; without it
    each fold trains on train only and tests its best epoch on validation.

    Each fold x seed is tested and appended to the store as soon as it finishes, so a killed driver
    loses no finished fold; ``resume`` continues the benchmark ``name`` (default: the latest one of
    this sweep under the storage) through ``Tuner.restore``: recorded folds stay, only the rest run.
    ``ensemble``: ``sweep.ensemble``; ``nested``: ``sweep.nested``. Returns the benchmark's records."""
    from bench.sweep import benchmark as bm
    from bench.sweep.search import mlflow_uri

    bm.check_request(top_k=top_k, seeds=seeds, ensemble=ensemble, eval_dataset=eval_dataset,
                     space_path=space_path, nested=nested, refit=refit)
    if eval_dataset and resume:
        raise UserError("--resume continues a retraining benchmark; a cross-corpus evaluation (--eval-dataset) is "
                        "one step and has nothing to resume")
    if nested:
        return _nested_benchmark(dataset, family, **{k: v for k, v in locals().items() if k in NESTED_ARGS})
    results, cache = paths.results_dir(results_dir), paths.cache_dir(cache_dir)
    source = bm.source_search_record(load_records(results), dataset, family, run=source_run)
    if eval_dataset:
        return [bm.cross_corpus_record(source, dataset, family, eval_dataset, results=results, cache=cache,
                                       data_root=paths.data_root(eval_data_root))]
    get_adapter(dataset)
    plan = bm.plan_benchmark(source, dataset, family, top_k=top_k, seeds=seeds, refit=refit, resume=resume,
                             name=name, storage=storage, results=results, cache=cache,
                             data_root=paths.data_root(data_root), cpus_per_trial=cpus_per_trial,
                             gpus_per_trial=gpus_per_trial, address=address, verbose=verbose,
                             mlflow_uri=mlflow_uri(mlflow), ensemble=ensemble, folds=folds, nested=nested_name)
    return bm.run_benchmark(plan, address)


# what a nested benchmark passes on to each fold's search and refit
NESTED_ARGS = ("seeds", "space_path", "cpus_per_trial", "gpus_per_trial", "address", "storage", "data_root",
               "cache_dir", "results_dir", "verbose", "name", "mlflow")


def _nested_benchmark(dataset: str, family: str, *, seeds: int, space_path: str | None, cpus_per_trial: float,
                      gpus_per_trial: float, address: str | None, storage: str | None, data_root: str | None,
                      cache_dir: str | None, results_dir: str | None, verbose: int, name: str | None,
                      mlflow: str | None) -> list[Record]:
    """``benchmark --nested``: the whole procedure inside each outer fold (``bench.sweep.nested``):
    a search on that fold's training subjects (the space's budget), then a refit of its winner on
    the fold's train + val, tested on its test subjects. Folds already recorded are skipped, so
    running it again with the same --name continues it."""
    from datetime import datetime, timezone

    from bench.sweep import nested as nest

    get_adapter(dataset)
    results = paths.results_dir(results_dir)
    name = name or f"{dataset}-{family}-nested-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    common = dict(cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, address=address, storage=storage,
                  data_root=data_root, cache_dir=cache_dir, results_dir=results_dir, verbose=verbose, mlflow=mlflow)
    for fold in nest.folds_to_run(load_records(results), name, get_adapter(dataset).num_folds, seeds):
        run = nest.fold_run(name, fold)
        if not nest.searched(load_records(results), name, run):
            result = search(family, dataset, space_path=space_path, name=run, fold=fold, nested=name, **common)
            if result.record.interrupted:
                raise UserError(f"the search of outer fold {fold} was interrupted ({result.record.interrupted}); "
                                f"run the same command with --name {name} to continue the nested benchmark")
        benchmark(dataset, family, seeds=seeds, source_run=run, folds=[fold], nested_name=name,
                  name=f"{run}-refit", **common)
    return nest.nested_records(load_records(results), name)


def reproduce(record_id: str, *, results_dir: str | None = None, cache_dir: str | None = None,
              data_root: str | None = None):
    """Re-run one record's configuration, fold and seed and test it once; returns a
    ``bench.sweep.reproduce.Reproduction`` (old and new test metrics, their difference, warnings)."""
    from bench.sweep.reproduce import reproduce as run_reproduction

    return run_reproduction(load_records(paths.results_dir(results_dir)), record_id,
                            cache_dir=paths.cache_dir(cache_dir), data_root=paths.data_root(data_root))


def leaderboard(results_dir: str | None = None, dataset: str | None = None) -> tuple[str, list[Path]]:
    """Write leaderboard.md, .csv and .html (and plots/) from the records and published.yaml
    (``dataset``: leaderboard-<dataset>.* of that dataset only); return the Markdown and the files
    written. A results folder without records is an error, not an empty page."""
    from bench.reports.outputs import write_leaderboard

    results = paths.results_dir(results_dir)
    if not load_records(results):
        raise UserError(f"no records in {results / 'records.jsonl'}: run `fer-bench search face --dataset "
                        f"synthetic --results-dir {results}` first, or point --results-dir at a results folder")
    return write_leaderboard(results, dataset=dataset)


def report(run: str, results_dir: str | None = None) -> list[Path]:
    """Write results/reports/<run>/report.{md,html} for one recorded sweep; return the files."""
    from bench.reports.outputs import write_report

    return write_report(run, paths.results_dir(results_dir))
