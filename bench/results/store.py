"""The results store: append-only JSON lines, one record per test evaluation, with provenance."""
from __future__ import annotations

import fcntl
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from bench.errors import UserError
from bench.results.record import OBJECTIVE_MODES, Record, as_record, metric_mode, record_id
from bench.results.selection import best_of

# OBJECTIVE_MODES, metric_mode and record_id live in bench.results.record; they are re-exported here for
# the callers that import them from the store
__all__ = ["OBJECTIVE_MODES", "RECORDS_FILE", "Record", "append_record", "best_record", "current_records",
           "find_record", "load_records", "metric_mode", "provenance", "record_id", "records_frame"]

RECORDS_FILE = "records.jsonl"
_PACKAGES = ("fer-bench", "torch", "torchvision", "timm", "ray", "optuna", "numpy")


def append_record(results_dir: Path, record: Record | dict) -> Path:
    """Append one line atomically: several sweeps or benchmarks (two users, one shared folder) may
    write one store at once. The whole line goes in one ``write`` under an exclusive ``flock``
    (NFS v4 maps it to a byte-range lock), so no line is torn or interleaved; one store file, not a
    file per record, keeps every reader's ``records.jsonl`` as it is. The record gets its ``id``
    here (in place, so the caller can print it); a dict is converted to a ``Record`` first (and
    gets the id too)."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / RECORDS_FILE
    typed = as_record(record)
    if typed.id is None:
        typed.id = record_id(typed.to_dict())
    if isinstance(record, dict):
        record.setdefault("id", typed.id)
    data = memoryview((json.dumps(typed.to_dict(), sort_keys=True, default=str) + "\n").encode())
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        while data:  # a regular file takes it in one write; the loop covers a short one
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)  # releases the lock; a killed process loses nothing the kernel already has
    return path


def load_records(results_dir: Path) -> list[Record]:
    """Every record of the store, oldest first; versioned and unversioned lines alike."""
    path = Path(results_dir) / RECORDS_FILE
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            # a half-written last line (crash mid-write) must not hide every other result
            print(f"warning: {path}:{number} is not valid JSON; skipped")
            continue
        if not isinstance(data, dict):
            continue
        try:
            records.append(Record.from_dict(data))
        except UserError as exc:
            raise UserError(f"{path}, line {number}: {exc}") from None
    return mark_superseded(records)


def mark_superseded(records: list[Record]) -> list[Record]:
    """Set ``superseded_by`` on each record a later one names in its ``supersedes`` (in place; the
    latest naming wins). Supersession lives in the replacing record, since the store only appends."""
    superseded = _superseded_ids(records)
    for r in records:
        if r.id in superseded:
            r.superseded_by = superseded[r.id][-1]
    return records


def _superseded_ids(records: list[Record]) -> dict[str, list[str]]:
    by: dict[str, list[str]] = {}
    for r in records:
        for old in r.supersedes or []:
            by.setdefault(old, []).append(r.id)
    return by


def current_records(records: list[Record]) -> list[Record]:
    """The records no later record supersedes (a sweep that was interrupted and resumed counts
    once, with its last record): what leaderboards, ``best:`` and ``benchmark`` use."""
    records = [as_record(r) for r in records]
    superseded = _superseded_ids(records)
    return [r for r in records if not r.superseded_by and r.id not in superseded]


def find_record(records: list[Record], record_id_: str) -> Record | None:
    """The record with this id (or the one whose id starts with it, when only one does)."""
    records = [as_record(r) for r in records]
    exact = [r for r in records if r.id == record_id_]
    if exact:
        return exact[-1]
    prefixed = [r for r in records if str(r.id or "").startswith(record_id_)]
    return prefixed[0] if len(prefixed) == 1 else None


def best_record(records: list[Record], dataset: str, family: str | tuple[str, ...], *,
                kinds: tuple[str, ...] | None = None, where=None, metric: str | None = None,
                mode: str | None = None) -> Record | None:
    """THE selection rule of fer-bench (``best:`` references, fusion encoders, the sweep a benchmark
    retrains): among records of ``dataset`` whose search family is ``family`` (or one of them), of
    one of ``kinds`` (default: any), that pass ``where`` (e.g. "has a checkpoint on disk") and were
    selected on validation, the one with the best validation score. Never a test score. Only
    current records compete (``current_records``: a resumed sweep's earlier records do not).

    The score is the candidates' own objective in its stored direction (``val/loss`` is
    minimised); when candidates were swept on different objectives they are compared on the latest
    candidate's. ``metric`` (and ``mode``, default the metric's direction) overrides that. Ties go
    to the latest record; a NaN score never wins (``results.selection``, the rule trials share)."""
    wanted = (family,) if isinstance(family, str) else tuple(family)
    candidates = []
    for r in current_records(records):
        if r.dataset != dataset or r.family not in wanted or r.selection != "val":
            continue
        if kinds is not None and r.kind not in kinds:
            continue
        if where is not None and not where(r):
            continue
        candidates.append(r)
    if not candidates:
        return None
    if metric is None:
        metric, mode = candidates[-1].objective, mode or candidates[-1].objective_mode
    # latest first: on a tie the latest record wins; a NaN score never does (results.selection)
    return best_of(reversed(candidates), lambda r: r.val_score(metric), mode or metric_mode(metric))


def records_frame(records: list[Record]):
    import pandas as pd

    return pd.json_normalize([as_record(r).to_dict() for r in records], sep=".") if records else pd.DataFrame()


def provenance() -> dict:
    """Commit, package versions and hardware, so a number can be traced to what produced it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5, cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    import torch

    hardware = {
        "machine": platform.machine(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": __import__("os").cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return {"commit": commit, "versions": versions, "hardware": hardware}
