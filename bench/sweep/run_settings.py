"""What every Ray run of a sweep is given: ``SweepSettings`` (the sweep's name, storage, budget
and resources) and ``run_config`` (its one ``RunConfig``). A leaf of the sweep's Ray side, so the
Tuner (``tune_backend``) and the multi-worker trial (``ddp``) both import it."""
from __future__ import annotations

from dataclasses import dataclass


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
    # the fit stops after it as on Ctrl-C (trials keep their last checkpoint; --resume continues them)
    time_budget_s: float | None = None
    # an MLflow tracking URI (sweep.tracking.tracking_uri): every trial is also logged there
    mlflow_uri: str | None = None

    @property
    def objectives(self) -> tuple[tuple[str, str], ...]:
        return ((self.metric, self.mode), *self.extra_objectives)


def run_config(settings: SweepSettings, metric: str, mode: str, *, ray_train: bool = False, **more):
    """The RunConfig of every Ray run of a sweep (the Tuner's, a benchmark grid's, a multi-worker
    trial's Train run): its storage, ``settings.max_failures`` retries of a fault, and one kept
    checkpoint per trial, the best on ``metric``. ``ray_train`` builds Ray Train's class (a
    TorchTrainer's), else Tune's; ``more`` adds or overrides fields (name, verbose, reporter); with
    ``settings.mlflow_uri`` an MLflow logger joins ``more``'s callbacks (TensorBoard files stay)."""
    from ray import train, tune

    library = train if ray_train else tune  # Tune subclasses Train's classes and warns about the other's
    callbacks = list(more.pop("callbacks", []))
    if settings.mlflow_uri and not ray_train:  # a multi-worker trial's Train run is already one Tune trial
        from bench.sweep.tracking import mlflow_callback

        callbacks.append(mlflow_callback(settings.mlflow_uri, settings.name))
    if callbacks:
        more["callbacks"] = callbacks
    fields = dict(
        name=settings.name,
        storage_path=settings.storage,
        failure_config=library.FailureConfig(max_failures=settings.max_failures),
        checkpoint_config=library.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=metric,
                                                   checkpoint_score_order=mode),
    )
    return library.RunConfig(**{**fields, **more})
