"""MODEL_REF -> a checkpoint folder: a path (a model's, or an ensemble's holding ensemble.json), or
``best:<dataset>/<family>`` (the record with the best validation score that kept a checkpoint, by
the store's one query ``results.best_record``).

Shared by ``fer-bench predict`` and ``fer-bench export``, so both accept the same references and
fail with the same sentences.
"""
from __future__ import annotations

from pathlib import Path

from bench.errors import UserError
from bench.results.record import Record
from bench.results.store import best_record, load_records
from bench.training.checkpoint import CHECKPOINT_FILE
from bench.training.ensemble import ENSEMBLE_FILE, is_ensemble

BEST_PREFIX = "best:"


def leader_record(records: list[Record], dataset: str, family: str) -> Record | None:
    """The record with the best validation score (its sweep's objective) for dataset/family that
    kept a checkpoint (records without one cannot be loaded, so cannot lead here), by fer-bench's one
    selection rule: a test score never chooses the model a ``best:`` reference loads."""
    return best_record(records, dataset, family, kinds=("search", "benchmark"), where=lambda r: bool(r.checkpoint))


def resolve_model_ref(ref: str, results_dir: Path) -> Path:
    """The checkpoint folder ``ref`` names; a UserError (one sentence) when it names none."""
    if ref.startswith(BEST_PREFIX):
        dataset, sep, family = ref[len(BEST_PREFIX):].partition("/")
        if not sep or not dataset or not family:
            raise UserError(f"model reference {ref!r} must look like best:<dataset>/<family>, e.g. best:raf/face")
        record = leader_record(load_records(results_dir), dataset, family)
        if record is None:
            raise UserError(f"no leader recorded for {dataset}/{family} in {results_dir}; run "
                            f"`fer-bench search {family} --dataset {dataset}` first")
        folder = Path(record.checkpoint)
        if not (folder / CHECKPOINT_FILE).is_file():
            raise UserError(f"the leader for {dataset}/{family} (run {record.run!r}) points at "
                            f"{str(folder)!r}, which holds no {CHECKPOINT_FILE}; was results/models/ moved?")
        return folder
    path = Path(ref).expanduser()
    if path.is_file() and path.name == CHECKPOINT_FILE:
        path = path.parent
    if not path.exists():
        raise UserError(f"model reference {ref!r} is neither a checkpoint folder nor best:<dataset>/<family>")
    if not (path / CHECKPOINT_FILE).is_file() and not is_ensemble(path):
        raise UserError(f"{str(path)!r} holds no {CHECKPOINT_FILE} (nor an {ENSEMBLE_FILE}); pass a folder under "
                        f"results/models/ or best:<dataset>/<family>")
    return path
