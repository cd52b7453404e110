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


# stats that are a setting of the pass, not a count: kept, not summed, when shards are merged
_SETTING_STATS = {"crop_size"}


def merge_reports(adapter: DatasetAdapter, reports: list[PrepareReport]) -> PrepareReport:
    """One report of a prepare done in shards: counts and skipped files added up, stats summed
    (numbers) or joined (lists), and the adapter's notes made again from the summed stats."""
    out = PrepareReport()
    stats: dict = {}
    other_notes: list[str] = []
    for r in reports:
        out.total += r.total
        out.computed += r.computed
        out.cached += r.cached
        out.skipped += r.skipped
        own = adapter.prepare_notes(r.stats)
        other_notes += [n for n in r.notes if n not in own and n not in other_notes]
        for key, value in r.stats.items():
            if isinstance(value, list):
                stats[key] = stats.get(key, []) + value
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and key not in _SETTING_STATS:
                stats[key] = stats.get(key, 0) + value
            else:
                stats.setdefault(key, value)
    out.stats = stats
    out.notes = other_notes + adapter.prepare_notes(stats)
    return out


def format_report(name: str, report: PrepareReport) -> str:
    lines = [f"{name}: {report.total} samples; {report.computed} prepared now, {report.cached} already "
             f"cached ({report.seconds:.1f} s)."]
    nodes = report.stats.get("prepared_per_node")
    if nodes:
        lines.append("  prepared per node: " + ", ".join(f"{node} {n}" for node, n in nodes.items()))
    lines += [f"  {note}" for note in report.notes]
    if report.skipped:
        lines.append(f"  skipped {len(report.skipped)}:")
        lines += [f"    {s.path}: {s.reason}" for s in report.skipped]
    return "\n".join(lines)
