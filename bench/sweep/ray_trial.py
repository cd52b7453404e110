"""One trial inside Ray: the report adapter shared by single-process (Tune) and multi-worker (Train)
trials. It restores the last checkpoint, turns ``run_trial``'s per-epoch report into a Ray report
with a checkpoint, injects the marker-file fault, and ends a configuration error with one report
instead of an exception Ray would retry."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import UserError
from bench.sweep.endings import quiet_stop_in_worker

# A trial stopped by Tune says nothing (no "Exception ignored ... SystemExit" traceback). In a Ray
# worker this module is imported when a trial's actor is created, before the trial restores or
# runs: the earliest point fer-bench code runs there (a stop during a restore printed one).
quiet_stop_in_worker()

CONFIG_ERROR = "config_error"  # the result key of a trial ended by a configuration error
# Written into each reported checkpoint beside the model: the metrics it was reported with and its
# files' sizes. Tune's saved state and result.json reach the run folder together, seconds behind
# the checkpoints, so after a killed driver this is how a resume knows that a checkpoint nothing
# names is whole and what it scored (run_callbacks.CheckpointsFromDisk).
REPORT_FILE = "reported.json"
FIXED_JOB_KEY = "job"  # run_fixed_configs wraps each full config under this key of a grid
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


@dataclass
class RaySession:
    """What differs between a Tune function trial and a Ray Train worker: how to report, where the
    checkpoint to resume from comes from, and what every report adds (node, world size)."""
    report: Callable  # report(metrics, checkpoint=None)
    get_checkpoint: Callable  # () -> Checkpoint | None
    # checkpoint_dir -> the Checkpoint to attach, or None (Train: only rank 0 uploads one)
    attach: Callable[[str], object]
    extra: dict = field(default_factory=dict)


def run_reported_trial(config: dict, session: RaySession, *, cache_dir: str, data_root: str | None,
                       threads: int, fault_marker: str | None, objectives, prepare=None) -> None:
    """Restore the last checkpoint if any, run the trial reporting each epoch through ``session``,
    and end a configuration error with one report (``config_error_result``); faults raise."""
    import torch

    from bench.training.checkpoint import load_checkpoint
    from bench.training.trainable import run_trial

    config = config.get(FIXED_JOB_KEY, config)  # run_fixed_configs wraps each full config
    torch.set_num_threads(max(1, threads))
    # Ray logs every persisted checkpoint at INFO: one line per trial-epoch drowns the table.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    state = None
    checkpoint = session.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = load_checkpoint(directory, inner=True)  # a k-fold trial resumes every fold
    reported = state is not None  # a resumed trial has reported before its checkpoint

    def report(metrics: dict, checkpoint_dir: Path) -> None:
        nonlocal reported
        if fault_marker and Path(fault_marker).exists():
            raise RuntimeError(f"fault injected: marker file {fault_marker} exists")
        reported = True
        metrics = {**metrics, **session.extra}
        write_report_file(checkpoint_dir, metrics)
        session.report(metrics, checkpoint=session.attach(str(checkpoint_dir)))

    try:
        run_trial(config, cache_dir=cache_dir, data_root=data_root, report=report, resume_state=state,
                  prepare=prepare)
    except Exception as exc:
        if not is_config_error(exc, reported):
            raise  # a fault: Ray retries it (FailureConfig.max_failures)
        # in a Train run every rank has the same config and fails the same way: all report
        session.report({**config_error_result(exc, objectives), **session.extra})


def write_report_file(directory: Path, metrics: dict) -> None:
    """``REPORT_FILE`` in the checkpoint folder ``directory``: ``metrics`` and every file's size."""
    files = {path.relative_to(directory).as_posix(): path.stat().st_size
             for path in sorted(directory.rglob("*")) if path.is_file()}
    (directory / REPORT_FILE).write_text(json.dumps({"metrics": metrics, "files": files}, default=str))


def fer_trial(config: dict, *, cache_dir: str, data_root: str | None, threads: int,
              fault_marker: str | None = None, objectives=(("val/uar", "max"),)) -> None:
    """The Tune trainable of a single-process trial (runs inside a Ray worker)."""
    import ray
    from ray import tune

    session = RaySession(report=tune.report, get_checkpoint=tune.get_checkpoint,
                         attach=tune.Checkpoint.from_directory,
                         # which node ran it, for cluster checks
                         extra={"node_id": ray.get_runtime_context().get_node_id()})
    run_reported_trial(config, session, cache_dir=cache_dir, data_root=data_root, threads=threads,
                       fault_marker=fault_marker, objectives=objectives)
