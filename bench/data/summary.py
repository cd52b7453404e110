"""``fer-bench data summary``: what an adapter finds under a data root, generic over DatasetAdapter.

Indexes the dataset, counts classes and subjects, builds every fold's splits (so the leakage
checks run and stop on an overlap) and lists every skipped file with its reason.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from . import get_adapter


def summarize(name: str, data_root: str | Path | None, cache_dir: Path, seed: int = 0) -> dict:
    adapter = get_adapter(name)
    root = Path(data_root) if data_root else None
    indexed = adapter.index(root, Path(cache_dir))
    samples = indexed.samples
    counts = Counter(s.label for s in samples)
    subjects = {s.subject for s in samples if s.subject is not None}
    folds = []
    if samples:
        for fold in range(adapter.num_folds):
            parts = adapter.splits(samples, fold, seed)
            folds.append({"fold": fold, **{split: len(members) for split, members in parts.items()}})
    return {
        "dataset": adapter.name,
        "modality": adapter.modality,
        "data_root": str(root) if root else None,
        "protocol": adapter.protocol,
        "files": len(samples),
        "classes": list(adapter.class_names),
        "class_counts": {c: counts.get(i, 0) for i, c in enumerate(adapter.class_names)},
        "subjects": len(subjects) if subjects else None,
        "splits": folds,
        "skipped": [{"path": s.path, "reason": s.reason} for s in indexed.skipped],
    }


def format_summary(summary: dict) -> str:
    lines = [f"{summary['dataset']} ({summary['modality']}) under {summary['data_root']}",
             f"  protocol: {summary['protocol']}",
             f"  files indexed: {summary['files']}   subjects: "
             f"{summary['subjects'] if summary['subjects'] is not None else 'none given by the dataset'}",
             "  classes:"]
    width = max((len(c) for c in summary["class_counts"]), default=0)
    lines += [f"    {name:<{width}}  {count}" for name, count in summary["class_counts"].items()]
    if summary["splits"]:
        lines.append("  splits:")
        for fold in summary["splits"]:
            sizes = "  ".join(f"{k} {v}" for k, v in fold.items() if k != "fold")
            lines.append(f"    fold {fold['fold']}: {sizes}")
    lines.append(f"  skipped: {len(summary['skipped'])}")
    lines += [f"    {s['path']}: {s['reason']}" for s in summary["skipped"]]
    return "\n".join(lines)
