"""How many CPUs (and torch threads) each trial of a sweep or benchmark gets.

A trial asks Ray for ``cpus_per_trial`` CPUs and trains with that many torch threads. When fewer
jobs run than the machine has room for (a benchmark's one refit, a sweep of fewer samples than
slots), the rest of the cores would idle: such jobs get an equal share of the cores instead
(FER2013's one-fold refit ran with 1 thread on a 2-core machine for 24 minutes).
"""
from __future__ import annotations

import math
import os


def local_cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the host's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def trial_cpus(cpus_per_trial: float, cores: int, jobs: int, workers_per_trial: int = 1,
               other_slots: int | None = None) -> float:
    """CPUs for each of ``jobs`` trials on ``cores`` CPUs: ``cpus_per_trial``, or, when the jobs
    leave cores idle, ``max(cpus_per_trial, cores // concurrent_jobs)`` (per worker of a
    multi-worker trial). ``other_slots``: how many trials another resource lets run at once (GPUs).
    A sweep's estimate calls this with the same numbers as the sweep."""
    workers = max(int(workers_per_trial), 1)
    asked = max(float(cpus_per_trial), 0.0)
    if jobs < 1 or cores < 1 or asked <= 0:
        return cpus_per_trial
    slots = max(math.floor(cores / (asked * workers)), 1)
    if other_slots is not None:
        slots = max(min(slots, int(other_slots)), 1)
    concurrent = min(int(jobs), slots)
    share = cores // (concurrent * workers)
    return float(max(asked, share))


def sweep_cpus(cpus_per_trial: float, jobs: int, *, address: str | None, workers_per_trial: int = 1,
               gpus_per_trial: float = 0.0) -> float:
    """``trial_cpus`` on this machine for a local Ray (GPU trials: as many at once as the GPUs
    take); a cluster (``address``) keeps what was asked (its nodes' sizes are not known before
    joining it, and a trial runs on one node)."""
    if address:
        return cpus_per_trial
    gpu_slots = None
    if gpus_per_trial > 0:
        import torch

        gpu_slots = math.floor(torch.cuda.device_count() / (gpus_per_trial * max(int(workers_per_trial), 1)))
    return trial_cpus(cpus_per_trial, ray_or_local_cores(), jobs, workers_per_trial, gpu_slots)


def ray_or_local_cores() -> int:
    """The CPUs the local Ray this process already started has (``ray.init(num_cpus=...)`` may
    hold fewer than the machine), else this machine's: asking Ray for more would wait forever."""
    import ray

    if ray.is_initialized():
        return int(ray.cluster_resources().get("CPU", 1)) or 1
    try:  # what a local ray.init() will register (it reads cgroup quotas too); private, so guarded
        from ray._private.utils import get_num_cpus

        return max(1, min(local_cores(), int(get_num_cpus())))
    except Exception:
        return local_cores()
