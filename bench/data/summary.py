"""``fer-bench data summary``: what an adapter finds under a data root, generic over DatasetAdapter.

Indexes the dataset, counts classes and subjects, builds every fold's splits (so the leakage
checks run and stop on an overlap), counts each split's classes (one warning per fold and split
that lacks a class the dataset has) and lists every skipped file with its reason, counting apart the
training/validation copies of official test items that were dropped (``base.keep_official_splits_whole``).
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
    folds, warnings = [], []
    if samples:
        for fold in range(adapter.num_folds):
            parts = adapter.splits(samples, fold, seed)
            per_split = {}
            for split, members in parts.items():
                split_counts = Counter(s.label for s in members)
                per_split[split] = {c: split_counts.get(i, 0) for i, c in enumerate(adapter.class_names)}
                # a class the dataset has but this split lacks: the metric is blind to it there
                missing = [c for i, c in enumerate(adapter.class_names) if counts.get(i) and not split_counts.get(i)]
                if missing:
                    warnings.append(f"fold {fold} {split} has no {', '.join(missing)} sample"
                                    f"{'s' if len(missing) > 1 else ''}")
            folds.append({"fold": fold, **{split: len(members) for split, members in parts.items()},
                          "class_counts": per_split})
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
        "warnings": warnings,
        "skipped": [{"path": s.path, "reason": s.reason} for s in indexed.skipped],
        "dropped_copies": [{"path": s.path, "reason": s.reason} for s in indexed.copies],
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
        lines.append("  splits (files per class):")
        cols = [max(len(c), 4) for c in summary["classes"]]
        lines.append("    " + " " * 12 + "  ".join(f"{c:>{w}}" for c, w in zip(summary["classes"], cols))
                     + "  total")
        for fold in summary["splits"]:
            for split, per_class in fold["class_counts"].items():
                name = f"fold {fold['fold']} {split}"
                cells = "  ".join(f"{per_class[c]:>{w}}" for c, w in zip(summary["classes"], cols))
                lines.append(f"    {name:<12}{cells}  {fold[split]:>5}")
    lines += [f"  warning: {w}" for w in summary.get("warnings", [])]
    if summary.get("dropped_copies"):
        lines.append(f"  dropped copies of official test (or validation) items: {len(summary['dropped_copies'])} "
                     f"(identical to an item of a later official split; that split is kept whole; listed below)")
    lines.append(f"  skipped: {len(summary['skipped'])}")
    lines += [f"    {s['path']}: {s['reason']}" for s in summary["skipped"]]
    return "\n".join(lines)
