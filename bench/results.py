"""The results store: append-only JSON lines, one record per test evaluation, with provenance."""
from __future__ import annotations

import fcntl
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

RECORDS_FILE = "records.jsonl"
_PACKAGES = ("fer-bench", "torch", "torchvision", "timm", "ray", "optuna", "numpy")


def append_record(results_dir: Path, record: dict) -> Path:
    """Append under an exclusive lock: several benchmark processes may write at once."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / RECORDS_FILE
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
            records.append(json.loads(line))
        except json.JSONDecodeError:
            # a half-written last line (crash mid-write) must not hide every other result
            print(f"warning: {path}:{number} is not valid JSON; skipped")
    return records


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
