"""Multi-worker trials: each trial of a sweep is a Ray Train ``TorchTrainer`` run
(DistributedDataParallel over ``SweepSettings.workers_per_trial`` workers) whose rank 0 reports
to Tune. The per-epoch reporting is ``ray_trial``'s, shared with single-process trials."""
from __future__ import annotations

from typing import TYPE_CHECKING

from bench.errors import UserError
from bench.sweep.ray_trial import RaySession, run_reported_trial

if TYPE_CHECKING:
    from bench.sweep.run_settings import SweepSettings


def fer_ddp_trial(config: dict, *, settings: SweepSettings, cache_dir: str, data_root: str | None, threads: int,
                  fault_marker: str | None = None, objectives=(("val/uar", "max"),)) -> None:
    """One trial as a Ray Train run: DistributedDataParallel over ``settings.workers_per_trial``
    workers; rank 0's per-epoch reports reach Tune through ``TuneReportCallback``. A restored trial
    re-creates the same-named Train run, which resumes from its latest checkpoint."""
    from ray import train, tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from bench.sweep.run_settings import run_config

    context = tune.get_context()
    trainer = TorchTrainer(
        _ddp_worker_loop,
        train_loop_config={"config": config, "cache_dir": cache_dir, "data_root": data_root, "threads": threads,
                           "fault_marker": fault_marker, "objectives": objectives},
        scaling_config=train.ScalingConfig(
            num_workers=settings.workers_per_trial, use_gpu=settings.gpus_per_trial > 0,
            resources_per_worker={"CPU": settings.cpus_per_trial, "GPU": settings.gpus_per_trial}),
        run_config=run_config(settings, settings.metric, settings.mode, ray_train=True,
                              name=f"{context.get_trial_name()}-ddp", callbacks=[TuneReportCallback()]),
    )
    trainer.fit()


def _ddp_worker_loop(loop_config: dict) -> None:
    """One DDP worker: the shared trial runner with Train's report and a DDP-wrapped model/loader."""
    import ray
    from ray import train
    from ray.train.torch import prepare_data_loader, prepare_model

    context = train.get_context()

    def prepare(parts):
        parts.model = prepare_model(parts.model)
        parts.train_loader = prepare_data_loader(parts.train_loader)
        return parts

    rank0 = context.get_world_rank() == 0
    session = RaySession(
        report=train.report, get_checkpoint=train.get_checkpoint,
        attach=lambda directory: train.Checkpoint.from_directory(directory) if rank0 else None,
        extra={"node_id": ray.get_runtime_context().get_node_id(), "world_size": context.get_world_size()})
    run_reported_trial(loop_config["config"], session, cache_dir=loop_config["cache_dir"],
                       data_root=loop_config["data_root"], threads=loop_config["threads"],
                       fault_marker=loop_config["fault_marker"], objectives=loop_config["objectives"],
                       prepare=prepare)


def ddp_concurrency(settings: SweepSettings) -> int | None:
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
