"""``fer-bench data prepare``: index a dataset and let its adapter fill the cache trials read.

Generic over DatasetAdapter: faces are detected and aligned, audio and video are decoded by their
own adapters' ``prepare``; a second run finds everything cached and does no work.
"""
from __future__ import annotations

import time
from pathlib import Path

from . import get_adapter
from .base import DatasetAdapter, PrepareReport


def prepare_dataset(name: str, data_root: str | Path | None, cache_dir: Path, *, progress: bool = True,
                    **options) -> tuple[DatasetAdapter, PrepareReport]:
    """``options`` go to the adapter's ``prepare`` (e.g. ``settings=FaceAlignSettings(...)``)."""
    start = time.time()
    adapter = get_adapter(name)
    root = Path(data_root) if data_root else None
    indexed = adapter.index(root, Path(cache_dir))
    report = adapter.prepare(indexed.samples, root, Path(cache_dir), progress=progress, **options)
    report.skipped = list(indexed.skipped) + list(report.skipped)
    report.seconds = time.time() - start
    return adapter, report


def format_report(name: str, report: PrepareReport) -> str:
    lines = [f"{name}: {report.total} samples; {report.computed} prepared now, {report.cached} already "
             f"cached ({report.seconds:.1f} s)."]
    lines += [f"  {note}" for note in report.notes]
    if report.skipped:
        lines.append(f"  skipped {len(report.skipped)}:")
        lines += [f"    {s.path}: {s.reason}" for s in report.skipped]
    return "\n".join(lines)
