"""The field's 30-second speech-emotion baseline, on fer-bench's own folds: openSMILE functionals
(ComParE_2016 by default) + scikit-learn ``StandardScaler`` + ``SVC``, kernel and C chosen on each
fold's validation speakers, scored on its test speakers. The figure the default voice search must
beat (issue 13); kept here so the comparison can be rerun on any corpus::

    python -m bench.perf.voice_baseline --dataset tess --data-root ../shared/data/tess
    python -m bench.perf.voice_baseline --dataset emodb --data-root /data/emodb --speaker-norm

Features come through the same cached pipeline as a sweep's (``create_dataset`` with
``feature_spec``), so the two see identical inputs; ``--speaker-norm`` adds the per-speaker
z-scoring the default space can search.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

GRID = [("linear", c) for c in (1e-4, 1e-3, 1e-2, 1e-1, 1.0)] + [("rbf", c) for c in (0.1, 1.0, 10.0, 100.0)]


def run_fold(dataset: str, fold: int, features: str, speaker_norm: bool, data_root, cache_dir: Path) -> dict:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from bench.data import create_dataset
    from bench.training.metrics import classification_metrics
    from fer_models.voice_features import feature_spec

    spec = feature_spec(features, speaker_norm=speaker_norm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # skipped files are counted below
        parts = {split: create_dataset(dataset, split, fold, spec, cache_dir=cache_dir, data_root=data_root)
                 for split in ("train", "val", "test")}
    xy = {k: (d.inputs.flatten(1).numpy(), d.labels.numpy()) for k, d in parts.items()}
    n = parts["train"].num_classes
    best = None
    for kernel, c in GRID:
        model = make_pipeline(StandardScaler(), SVC(kernel=kernel, C=c)).fit(*xy["train"])
        val = classification_metrics(xy["val"][1], model.predict(xy["val"][0]), n)["uar"]
        if best is None or val > best[0]:
            best = (val, kernel, c, model)
    val_uar, kernel, c, model = best
    test = classification_metrics(xy["test"][1], model.predict(xy["test"][0]), n)
    return {"fold": fold, "kernel": kernel, "C": c, "val_uar": val_uar, "test_uar": test["uar"],
            "test_accuracy": test["accuracy"], "skipped": sum(len(d.skipped) for d in parts.values())}


def run(dataset: str, data_root=None, features: str = "compare", speaker_norm: bool = False,
        cache_dir: Path = Path(".cache"), folds: list[int] | None = None) -> dict:
    from bench.data import get_adapter

    start = time.perf_counter()
    folds = folds if folds is not None else list(range(get_adapter(dataset).num_folds))
    rows = [run_fold(dataset, f, features, speaker_norm, data_root, Path(cache_dir)) for f in folds]

    def mean_std(key):
        values = [r[key] for r in rows]
        return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    return {"dataset": dataset, "features": features, "speaker_norm": speaker_norm, "folds": rows,
            "test_uar": mean_std("test_uar"), "test_accuracy": mean_std("test_accuracy"),
            "seconds": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf.voice_baseline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-root")
    parser.add_argument("--features", default="compare", help="a voice_features name (default: compare)")
    parser.add_argument("--speaker-norm", action="store_true", help="z-score each speaker with its own statistics")
    parser.add_argument("--cache-dir", default=".cache")
    parser.add_argument("--folds", type=int, nargs="*", help="default: every fold of the dataset")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.dataset, args.data_root, args.features, args.speaker_norm, Path(args.cache_dir), args.folds)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for r in result["folds"]:
        print(f"fold {r['fold']}: {r['kernel']} C={r['C']:g}  val UAR {100 * r['val_uar']:.1f}  "
              f"test UAR {100 * r['test_uar']:.1f}  acc {100 * r['test_accuracy']:.1f}  skipped {r['skipped']}")
    (u, su), (a, sa) = result["test_uar"], result["test_accuracy"]
    print(f"{result['dataset']} {result['features']}{' + speaker norm' if args.speaker_norm else ''} + SVM: "
          f"test UAR {100 * u:.1f} ± {100 * su:.1f} %, accuracy {100 * a:.1f} ± {100 * sa:.1f} %, "
          f"{len(result['folds'])} folds, {result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
