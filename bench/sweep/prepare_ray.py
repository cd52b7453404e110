"""``fer-bench data prepare`` spread over Ray: the dataset is indexed once on the driver, its
samples are cut into shards, and each shard is one Ray task that runs the adapter's own
``prepare`` (detection and alignment, decoding, feature extraction) on the node it lands on.

Why shards of the adapter's own ``prepare``: every adapter's cache is per sample (keyed by content
and settings, written atomically), so any subset can be prepared anywhere, a second run finds
everything cached, an interrupted run continues where it stopped, and a file that cannot be read
is skipped, counted and named exactly as in one process. The cache must be a folder every node
sees (shared storage); the driver checks that at the end and prepares anything it cannot see.
"""
from __future__ import annotations

import math
import socket
import time
from collections import Counter
from pathlib import Path

from bench.data import get_adapter
from bench.data.base import DatasetAdapter, PrepareReport
from bench.data.prepare import merge_reports

# Samples per task: enough that starting a detector (MTCNN loads in ~0.5 s) is a small share of a
# task, small enough that the progress bar moves and the work spreads over many workers.
MAX_SHARD = 256


def shard(items: list, workers: int, max_size: int = MAX_SHARD) -> list[list]:
    """Contiguous shards, about four per worker (so a slow shard does not hold the run), none
    over ``max_size``."""
    if not items:
        return []
    size = max(1, min(max_size, math.ceil(len(items) / (4 * max(1, workers)))))
    return [items[i:i + size] for i in range(0, len(items), size)]


def _prepare_shard(adapter: DatasetAdapter, samples, root, cache_dir: str, options: dict):
    import ray

    report = adapter.prepare(samples, Path(root) if root else None, Path(cache_dir), progress=False, **options)
    node = f"{socket.gethostname()} ({ray.get_runtime_context().get_node_id()[:8]})"
    return node, report


def prepare_on_ray(name: str, data_root: str | Path | None, cache_dir: Path, *, address: str | None = None,
                   workers: int | None = None, progress: bool = True,
                   **options) -> tuple[DatasetAdapter, PrepareReport]:
    """Index ``name`` on the driver and prepare its samples as Ray tasks, one CPU each, on the
    cluster at ``address`` or a local Ray of ``workers`` CPUs (default: every core). The report
    says how many samples each node prepared (``stats["prepared_per_node"]``)."""
    import ray
    from tqdm import tqdm

    from bench.sweep.tune_backend import connect

    start = time.time()
    adapter = get_adapter(name)
    root = Path(data_root) if data_root else None
    cache_dir = Path(cache_dir).resolve()
    indexed = adapter.index(root, cache_dir)
    started_here = not ray.is_initialized()
    connect(address, num_cpus=workers)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        task = ray.remote(num_cpus=1)(_prepare_shard)
        pending = {task.remote(adapter, part, str(root.resolve()) if root else None, str(cache_dir), options): len(part)
                   for part in shard(indexed.samples, cpus)}
        reports, per_node = [], Counter()
        submitted = time.time()
        with tqdm(total=len(indexed.samples), desc=f"prepare {name} on {cpus} CPUs", unit="sample",
                  disable=not progress) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    node, shard_report = ray.get(ref)
                    reports.append(shard_report)
                    per_node[node] += shard_report.computed
                    bar.update(pending.pop(ref))
        ray_seconds = time.time() - submitted
    finally:
        if started_here:  # the Ray this command started ends with it
            ray.shutdown()
    report = merge_reports(adapter, reports) if reports else PrepareReport()
    # what the driver cannot see was written to a node's own disk: prepare it here too
    check = adapter.prepare(indexed.samples, root, cache_dir, progress=False, **options)
    if check.computed:
        per_node[f"{socket.gethostname()} (driver, missing from the cache)"] += check.computed
        report.computed += check.computed
        report.notes.append(f"{check.computed} samples prepared on other nodes were not in this machine's cache "
                            f"and were prepared again here: give every node the same shared --cache-dir")
    report.skipped = list(indexed.skipped) + list(report.skipped)
    report.stats["prepared_per_node"] = dict(sorted(per_node.items()))
    report.stats["workers"] = cpus
    report.stats["ray_seconds"] = ray_seconds  # the tasks alone: no indexing, no Ray start-up
    report.seconds = time.time() - start
    return adapter, report
