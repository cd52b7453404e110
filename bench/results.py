"""The results store: append-only JSON lines, one record per test evaluation, with provenance."""
from __future__ import annotations

import fcntl
import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

RECORDS_FILE = "records.jsonl"
_PACKAGES = ("fer-bench", "torch", "torchvision", "timm", "ray", "optuna", "numpy")


# How each metric a sweep may optimise is read: larger is better, except losses and costs.
OBJECTIVE_MODES = {"val/uar": "max", "val/accuracy": "max", "val/macro_f1": "max", "val/loss": "min",
                   "latency_ms": "min", "params": "min"}


def metric_mode(metric: str) -> str:
    return OBJECTIVE_MODES.get(metric, "min" if metric.endswith("loss") else "max")


def record_id(record: dict) -> str:
    """A stable id from the record's content (everything but the id itself): the same record always
    gets the same id, so records written before ids existed get one when loaded."""
    content = {k: v for k, v in record.items() if k != "id"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:10]


def append_record(results_dir: Path, record: dict) -> Path:
    """Append under an exclusive lock: several benchmark processes may write at once. The record
    gets its ``id`` here (in place, so the caller can print it)."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / RECORDS_FILE
    record.setdefault("id", record_id(record))
    line = json.dumps(record, sort_keys=True, default=str)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(line + "\n")
        f.flush()
        fcntl.flock(f, fcntl.LOCK_UN)
    return path


def load_records(results_dir: Path) -> list[dict]:
    path = Path(results_dir) / RECORDS_FILE
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            # a half-written last line (crash mid-write) must not hide every other result
            print(f"warning: {path}:{number} is not valid JSON; skipped")
            continue
        if isinstance(record, dict):
            record.setdefault("id", record_id(record))
            records.append(record)
    return records


def find_record(records: list[dict], record_id_: str) -> dict | None:
    """The record with this id (or the one whose id starts with it, when only one does)."""
    exact = [r for r in records if r.get("id") == record_id_]
    if exact:
        return exact[-1]
    prefixed = [r for r in records if str(r.get("id", "")).startswith(record_id_)]
    return prefixed[0] if len(prefixed) == 1 else None


def best_record(records: list[dict], dataset: str, modalities: str | tuple[str, ...], *,
                metric: str = "val/uar", mode: str | None = None, kinds: tuple[str, ...] | None = None,
                where=None) -> dict | None:
    """THE selection rule of fer-bench (``best:`` references, fusion encoders, the sweep a benchmark
    retrains): among records of ``dataset`` whose modality is one of ``modalities`` and that were
    selected on validation, the one with the best validation ``metric`` (``mode`` defaults to the
    metric's own direction). Never a test score. Ties go to the latest record; ``where`` filters
    further (e.g. "has a checkpoint on disk")."""
    wanted = (modalities,) if isinstance(modalities, str) else tuple(modalities)
    key = metric.split("/", 1)[1] if metric.startswith("val/") else metric
    sign = 1.0 if (mode or metric_mode(metric)) == "max" else -1.0
    best, best_score = None, None
    for r in records:
        if r.get("dataset") != dataset or r.get("modality") not in wanted or r.get("selection") != "val":
            continue
        if kinds is not None and r.get("kind", "search") not in kinds:
            continue
        score = (r.get("val") or {}).get(key)
        if score is None or (where is not None and not where(r)):
            continue
        if best_score is None or sign * float(score) >= best_score:
            best, best_score = r, sign * float(score)
    return best


def records_frame(records: list[dict]):
    import pandas as pd

    return pd.json_normalize(records, sep=".") if records else pd.DataFrame()


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
