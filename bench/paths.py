"""Where data, cache and results live: an explicit flag wins, then an environment variable,
then a default that is stated in the README (never a hidden global)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(flag: str | None = None) -> Path:
    value = flag or os.environ.get("FER_BENCH_CACHE") or Path.home() / ".cache" / "fer-bench"
    return Path(value).expanduser().resolve()


def results_dir(flag: str | None = None) -> Path:
    value = flag or os.environ.get("FER_BENCH_RESULTS") or "results"
    return Path(value).expanduser().resolve()


def storage_path(flag: str | None = None, results: Path | None = None) -> str:
    """Ray storage: a local folder (made absolute, as Ray requires) or a URI such as s3://..."""
    value = flag or os.environ.get("FER_BENCH_STORAGE")
    if value and "://" in value:
        return value
    if value:
        return str(Path(value).expanduser().resolve())
    return str((results or results_dir()) / "runs")


def data_root(flag: str | None = None) -> str | None:
    """Absolute, because trials run in Ray workers whose working directory is their trial folder."""
    value = flag or os.environ.get("FER_BENCH_DATA")
    return str(Path(value).expanduser().resolve()) if value else None
