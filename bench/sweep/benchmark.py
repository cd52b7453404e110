"""The benchmark stage: which configs to retrain, on which folds and seeds (``plan_benchmark``),
training them as a Ray grid and recording each fold as it finishes (``run_benchmark``,
``BenchmarkWriter``), and cross-corpus evaluation over the classes two datasets share
(``cross_corpus_record``). ``bench.api.benchmark`` calls these steps."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from torch.utils.data import ConcatDataset, DataLoader

from bench import paths
from bench.data import create_dataset, get_adapter
from bench.errors import UserError
from bench.results.record import Record, config_id
from bench.results.store import append_record, best_record, load_records, provenance
from bench.sweep import tune_backend
from bench.sweep.ensemble import ranked_config_ids, say_selection, select_members
from bench.sweep.fixed_runs import FixedRun
from bench.sweep.record_fields import tested_fields
from bench.sweep.resources import sweep_cpus
from bench.sweep.run_settings import SweepSettings
from bench.sweep.trials import read_trials, top_trials
from bench.training.engine import predict
from bench.training.evaluation import evaluate_checkpoint, load_trained_model
from bench.training.metrics import classification_metrics
from bench.training.trainable import pick_device


def check_request(*, top_k: int, seeds: int, ensemble: int, eval_dataset: str | None, space_path: str | None,
                  nested: bool, refit: bool) -> None:
    """Refuse what a benchmark cannot do, in one sentence."""
    if top_k < 1 or seeds < 1:
        raise UserError("--top-k and --seeds must be at least 1")
    if ensemble == 1 or ensemble < 0:
        raise UserError("--ensemble needs at least 2 members (one member is the single leader: --top-k 1)")
    if ensemble and eval_dataset:
        raise UserError("--ensemble retrains members on the protocol's folds; it does not combine with --eval-dataset")
    if space_path and not nested:
        raise UserError("--space names the space a --nested benchmark searches; a plain benchmark retrains "
                        "the recorded sweep's configurations")
    if nested:
        from bench.sweep.nested import check_nested_request

        check_nested_request(top_k=top_k, ensemble=ensemble, eval_dataset=eval_dataset, refit=refit)


def source_search_record(records: list[Record], dataset: str, family: str, run: str | None = None) -> Record:
    """The sweep a benchmark retrains: the recorded sweep of dataset/family with the best
    validation score, by the same rule as ``best:`` references (``results.best_record``); the
    searches of a nested benchmark (one per outer fold) are never it. ``run``: that sweep."""
    if run is not None:
        named = [r for r in records if r.kind == "search" and r.run == run and r.dataset == dataset]
        if not named:
            raise UserError(f"no sweep named {run!r} recorded for {dataset}")
        return named[-1]
    found = best_record(records, dataset, family, kinds=("search",), where=lambda r: not r.nested)
    if found is None:
        raise UserError(f"no sweep recorded for {dataset}/{family}; run "
                        f"`fer-bench search {family} --dataset {dataset}` first")
    return found


def top_configs(run_path: str | Path, metric: str, mode: str, k: int) -> list[tuple[dict, int]]:
    """The ``k`` best distinct configs of a sweep by their best validation score (never test; ties:
    ``trials.tiebreak``), each with the epoch that score was reached at."""
    chosen = top_trials(read_trials(Path(run_path)), metric, mode, k)
    if not chosen:
        raise UserError(f"the sweep at {str(run_path)!r} has no trial with a {metric} score")
    return [(trial.config, trial.best_epoch(metric, mode)) for trial in chosen]


def refit_config(config: dict, best_epoch: int) -> dict:
    """A config retrained on train + val: the searched schedule, stopped at the epoch where the
    sweep's validation score peaked (the validation split is training data now, so it cannot pick
    the epoch itself) -- retraining on all the data for the selected number of steps, as in
    Goodfellow et al., Deep Learning, algorithm 7.2."""
    return {**config, "data.refit": True, "train.stop_epoch": int(best_epoch)}


def expand_jobs(configs: list[dict], folds: int, seeds: int) -> list[dict]:
    """Every config on every fold of the protocol x every seed."""
    return [{**config, "data.fold": fold, "train.seed": seed}
            for config in configs for fold in range(folds) for seed in range(seeds)]


def cross_corpus(checkpoint: str | Path, eval_dataset: str, *, cache_dir: Path,
                 data_root: str | None = None) -> dict:
    """Evaluate a model trained on one dataset on every sample of another, over shared classes.

    The model's logits are restricted to the shared classes before the argmax, so a class the
    evaluation set lacks cannot be predicted; metrics are over the shared classes only.
    """
    model, cfg, _ = load_trained_model(checkpoint)
    source = get_adapter(cfg.data.dataset)
    target = get_adapter(eval_dataset)
    if source.modality != target.modality:
        raise UserError(f"cannot evaluate a {source.modality} model on {eval_dataset!r} "
                        f"({target.modality} data)")
    shared = [c for c in source.class_names if c in target.class_names]
    if len(shared) < 2:
        raise UserError(f"{cfg.data.dataset!r} and {eval_dataset!r} share fewer than two classes")
    device = pick_device()
    model.to(device)
    parts = [create_dataset(eval_dataset, split, 0, model.input_spec, cache_dir=cache_dir, data_root=data_root,
                            image_size=cfg.data.image_size) for split in ("train", "val", "test")]
    probs, targets, _ = predict(model, DataLoader(ConcatDataset(parts), batch_size=128), device=device,
                                tta=cfg.data.tta)
    source_index = [source.class_names.index(c) for c in shared]
    target_to_shared = {target.class_names.index(c): i for i, c in enumerate(shared)}
    keep = np.array([t in target_to_shared for t in targets])
    y_true = np.array([target_to_shared[t] for t in targets[keep]])
    y_pred = probs[keep][:, source_index].argmax(1)
    metrics = classification_metrics(y_true, y_pred, len(shared))
    metrics["samples"] = int(keep.sum())
    return {"shared_classes": shared, "test": metrics, "train_dataset": cfg.data.dataset,
            "config": json.loads(json.dumps(cfg.to_flat(), default=str)), "model": cfg.model.name}


BENCHMARK_META = "fer-bench-benchmark.json"


@dataclass
class BenchmarkPlan:
    """A retraining benchmark decided before Ray starts: the sweep it retrains, the grid of jobs
    (config x fold x seed), its Ray settings and the writer that records each finished job."""

    source: Record
    run_name: str
    run_path: str
    jobs: list[dict]
    refit: bool
    settings: SweepSettings
    writer: BenchmarkWriter
    cache: Path
    root: str | None
    resume: bool
    meta: dict  # fer-bench-benchmark.json: written by a fresh benchmark, read back by --resume


def cross_corpus_record(source: Record, dataset: str, family: str, eval_dataset: str, *, results: Path,
                        cache: Path, data_root: str | None) -> Record:
    """Evaluate the recorded leader ``source`` of dataset/family on ``eval_dataset`` over the
    shared classes and append a ``cross_corpus`` record (selected on validation, by the source
    sweep's objective)."""
    get_adapter(eval_dataset)
    outcome = cross_corpus(source.checkpoint, eval_dataset, cache_dir=cache, data_root=data_root)
    record = Record(kind="cross_corpus", time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    dataset=dataset, eval_dataset=eval_dataset, family=family, selection="val",
                    objective=source.objective, objective_mode=source.objective_mode,
                    source_run=source.run, space_hash=source.space_hash, provenance=provenance(), **outcome)
    append_record(results, record)
    return record


def plan_benchmark(source: Record, dataset: str, family: str, *, top_k: int, seeds: int, refit: bool,
                   resume: bool, name: str | None, storage: str | None, results: Path, cache: Path,
                   data_root: str | None, cpus_per_trial: float, gpus_per_trial: float, address: str | None,
                   verbose: int, mlflow_uri: str | None, ensemble: int = 0, folds: list[int] | None = None,
                   nested: str | None = None) -> BenchmarkPlan:
    """The jobs (the sweep's top-k configs on validation, refit or not, x every fold x seeds; a
    resume takes its first run's), the benchmark's name and its Ray settings."""
    root = data_root or source.config.get("data.data_root")
    storage_path = paths.storage_path(storage, results)
    if resume:
        run_name, meta = benchmark_to_resume(storage_path, source, name)
        jobs, refit, ensemble = meta["jobs"], meta["refit"], meta.get("ensemble", 0)
        members = meta.get("ensemble_members", ranked_config_ids(jobs)[:ensemble] if ensemble else [])
        weights = meta.get("ensemble_weights")
    else:
        # the sweep's own objective and direction, as stored in its record (val/loss is minimised)
        ranked = top_configs(source.run_path, source.objective, source.objective_mode, top_k)
        members, weights = [], None
        if ensemble:
            selection = select_members(source.run_path, source.objective, source.objective_mode, ensemble,
                                       cache_dir=cache, data_root=root)
            say_selection(selection, source.objective, ensemble)
            if len(selection.members) > 1:
                members, weights = selection.member_ids, selection.weights
                known = {config_id(c) for c, _ in ranked}
                ranked += [(c, epoch) for c, epoch in selection.members if config_id(c) not in known]
        configs = [refit_config(c, epoch) if refit else c for c, epoch in ranked]
        jobs = expand_jobs(configs, get_adapter(dataset).num_folds, seeds)
        if folds is not None:  # a nested benchmark refits each outer fold's own winner on that fold only
            jobs = [job for job in jobs if job["data.fold"] in folds]
        if ensemble:  # fold by fold (stable: each fold's configs keep their rank), so ensembles complete early
            jobs.sort(key=lambda job: (job["data.fold"], job["train.seed"]))
        run_name = name or f"{source.run}-benchmark-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
        if tune_backend.read_sweep_meta(f"{storage_path.rstrip('/')}/{run_name}", BENCHMARK_META) is not None:
            raise UserError(f"a benchmark named {run_name!r} already exists under {storage_path!r}; add "
                            f"--resume to continue it, or choose another --name")
        meta = {"dataset": dataset, "modality": family, "source_run": source.run, "jobs": jobs, "refit": refit,
                "top_k": top_k, "seeds": seeds, "ensemble": ensemble, "ensemble_members": members,
                "ensemble_weights": weights,
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    # fewer jobs than this machine has room for (one official split, top-k 1): each gets the idle cores
    cpus_per_trial = sweep_cpus(cpus_per_trial, len(jobs), address=address, gpus_per_trial=gpus_per_trial)
    settings = SweepSettings(
        name=run_name, storage=storage_path, samples=len(jobs),
        max_epochs=int(source.budget["max_epochs"]), cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial, verbose=verbose,
        fault_marker=os.environ.get("FER_BENCH_FAULT_MARKER"), mlflow_uri=mlflow_uri,
    )
    writer = BenchmarkWriter(dataset=dataset, family=family, source=source, run_name=run_name, refit=refit,
                             cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, results=results,
                             cache=cache, root=root, resumed=resume, start=time.time(), verbose=verbose,
                             mlflow_uri=mlflow_uri, nested=nested,
                             ensemble_members=members, ensemble_weights=weights)
    return BenchmarkPlan(source=source, run_name=run_name, run_path=f"{storage_path.rstrip('/')}/{run_name}",
                         jobs=jobs, refit=refit, settings=settings, writer=writer, cache=cache, root=root,
                         resume=resume, meta=meta)


def run_benchmark(plan: BenchmarkPlan, address: str | None) -> list[Record]:
    """Train the grid on Ray, recording each job as it finishes, then record what the per-run
    callback did not (a job finished just before a kill; a failure is said and left out)."""
    tune_backend.connect(address)
    if not plan.resume:
        tune_backend.write_sweep_meta(plan.run_path, plan.meta, BENCHMARK_META)
    # a refit keeps its last epoch (validation is seen data); a plain retrain its best on validation
    metric, mode = ("training_iteration", "max") if plan.refit else (plan.source.objective,
                                                                      plan.source.objective_mode)
    runs = tune_backend.run_fixed_configs(plan.jobs, plan.settings, metric=metric, mode=mode, cache_dir=plan.cache,
                                          data_root=plan.root, keep_dir=plan.writer.results / "models" / plan.run_name,
                                          on_run=plan.writer, resume=plan.resume)
    for run in runs:
        if run.checkpoint is None:
            print(f"warning: retrain fold {run.config['data.fold']} seed {run.config['train.seed']} "
                  f"failed ({run.error}); it is left out of the leaderboard")
            continue
        plan.writer(run)
    plan.writer.record_ensembles()  # those the per-run calls could not write yet
    return plan.writer.recorded()


def benchmark_to_resume(storage: str, source: Record, name: str | None) -> tuple[str, dict]:
    """The benchmark ``name`` under ``storage`` (default: the latest begun of ``source``'s sweep) and
    what its first run decided (the jobs, refit or not)."""
    if name is None:
        begun = [(meta.get("started", ""), run) for run in tune_backend.runs_with_meta(storage, BENCHMARK_META)
                 if (meta := tune_backend.read_sweep_meta(f"{storage.rstrip('/')}/{run}", BENCHMARK_META))
                 and meta.get("source_run") == source.run]
        if not begun:
            raise UserError(f"no benchmark of sweep {source.run!r} to resume under {storage!r}; "
                            f"run it without --resume, or give the same --storage / --results-dir")
        name = max(begun)[1]
    meta = tune_backend.read_sweep_meta(f"{storage.rstrip('/')}/{name}", BENCHMARK_META)
    if meta is None:
        raise UserError(f"no benchmark named {name!r} to resume under {storage!r}; check --name and --storage")
    return name, meta


@dataclass
class BenchmarkWriter:
    """Tests one finished fold x seed run and appends its record, once: a run already recorded
    under this benchmark (same config, fold and seed) is not recorded again, so the per-run
    callback, the pass after fit and a resume can all call it."""

    dataset: str
    family: str
    source: Record
    run_name: str
    refit: bool
    cpus_per_trial: float
    gpus_per_trial: float
    results: Path
    cache: Path
    root: str | None
    resumed: bool
    start: float
    verbose: int = 1
    mlflow_uri: str | None = None
    ensemble_members: list = field(default_factory=list)  # --ensemble: the members' config ids, by rank
    ensemble_weights: list | None = None  # and their weights (ensemble selection's)
    nested: str | None = None  # --nested: the nested benchmark this refit belongs to

    def record_ensembles(self) -> list[Record]:
        """Each fold x seed whose members are all recorded gets its ensemble record (once)."""
        if not self.ensemble_members:
            return []
        from bench.sweep.ensemble import record_ensembles

        return record_ensembles(load_records(self.results), benchmark_run=self.run_name,
                                members=self.ensemble_members, keep_dir=self.results / "models" / self.run_name,
                                cache_dir=self.cache, data_root=self.root, start=self.start,
                                append=lambda r: append_record(self.results, r), verbose=self.verbose,
                                weights=self.ensemble_weights)

    def recorded(self) -> list[Record]:
        return [r for r in load_records(self.results)
                if r.kind in ("benchmark", "ensemble") and r.benchmark_run == self.run_name]

    def __call__(self, run: FixedRun) -> Record | None:
        key = _run_key(run.config)
        if any(_run_key(r.config) == key for r in self.recorded()):
            return None
        test = evaluate_checkpoint(run.checkpoint, split="test", cache_dir=self.cache, data_root=self.root)
        source, cpus, gpus = self.source, self.cpus_per_trial, self.gpus_per_trial
        record = Record(
            kind="benchmark", **tested_fields(get_adapter(self.dataset), run.config, test, self.results),
            run=source.run, benchmark_run=self.run_name, dataset=self.dataset, family=self.family,
            seed=run.config["train.seed"], searched=list(source.searched),
            space_hash=source.space_hash, space_path=source.space_path,
            objective=source.objective, objective_mode=source.objective_mode, selection="val",
            val={} if self.refit else run.val, threads=max(1, int(cpus)), run_path=source.run_path,
            # the search budget that chose this config, plus what this retrain cost
            budget={**source.budget, "retrain_epochs": run.epochs,
                    "retrain_device_seconds": run.seconds * max(cpus, gpus)},
            # the benchmark's wall time when this fold was recorded (of this invocation, on a resume)
            benchmark_wall_seconds=time.time() - self.start, checkpoint=run.checkpoint,
            resumed=self.resumed or None, nested=self.nested,
        )
        append_record(self.results, record)
        if self.mlflow_uri:
            from bench.sweep.tracking import log_record

            log_record(self.mlflow_uri, self.run_name, record.to_dict())
        if self.verbose:
            print(f"Recorded {record.model} [{config_id(run.config)}] fold {record.fold} seed {record.seed}: "
                  f"test UAR {100 * record.test['uar']:.1f}%", flush=True)
        self.record_ensembles()
        return record


def _run_key(config: dict) -> tuple:
    return config_id(config), config.get("data.fold"), config.get("train.seed")
