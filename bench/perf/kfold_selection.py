"""Does a k-fold objective select better than one validation split? On every outer fold, each
candidate configuration (a finished sweep's distinct configs) is scored both ways -- trained on the
fold's train split and scored on its validation split (the best epoch, as a sweep does), and the
mean of K inner folds of train + val (``objective.folds``; the best epoch of the mean) -- and each
rule's pick is refit on train + val up to its chosen epoch and tested once. The paired differences
of the two picks' test UARs over the outer folds get the leaderboard's corrected t-test.

    python -m bench.perf.kfold_selection --run RUNS/SWEEP --dataset tess --data-root ../shared/data/tess
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from bench.data import get_adapter
from bench.paths import cache_dir as default_cache
from bench.results.record import config_id


def _scores(config: dict, cache_dir: Path, data_root: str | None) -> list[dict]:
    from bench.training.trainable import run_trial

    reports: list[dict] = []
    run_trial(config, cache_dir=cache_dir, data_root=data_root, report=lambda m, d: reports.append(m))
    return reports


def _best(reports: list[dict]) -> tuple[float, float, int]:
    """(val UAR, -val loss, epoch) of the best epoch by the selection rule (UAR, then loss)."""
    return max((r["val/uar"], -r["val/loss"], int(r.get("epoch", i + 1))) for i, r in enumerate(reports))


def _test(config: dict, epoch: int, cache_dir: Path, data_root: str | None) -> float:
    from bench.training.evaluation import evaluate_checkpoint
    from bench.training.trainable import run_trial

    refit = {**config, "data.refit": True, "train.stop_epoch": epoch}
    with tempfile.TemporaryDirectory() as keep:
        def copy(metrics, directory):
            shutil.copytree(directory, keep, dirs_exist_ok=True)

        run_trial(refit, cache_dir=cache_dir, data_root=data_root, report=copy)
        return float(evaluate_checkpoint(keep, split="test", cache_dir=cache_dir, data_root=data_root)["uar"])


def compare(configs: list[dict], dataset: str, *, folds: int, data_root: str | None, cache_dir: Path,
            outer: list[int]) -> dict:
    rows = []
    for fold in outer:
        start = time.time()
        scored = []
        for config in configs:
            base = {**config, "data.fold": fold, "data.dataset": dataset}
            base.pop("data.inner_folds", None)
            if data_root:
                base["data.data_root"] = data_root
            single = _best(_scores(base, cache_dir, data_root))
            kfold = _best(_scores({**base, "data.inner_folds": folds}, cache_dir, data_root))
            scored.append((base, single, kfold))
        pick_single = max(scored, key=lambda s: s[1][:2])
        pick_kfold = max(scored, key=lambda s: s[2][:2])
        test_single = _test(pick_single[0], pick_single[1][2], cache_dir, data_root)
        same = config_id(pick_kfold[0]) == config_id(pick_single[0]) and pick_kfold[2][2] == pick_single[1][2]
        test_kfold = test_single if same else _test(pick_kfold[0], pick_kfold[2][2], cache_dir, data_root)
        rows.append({"fold": fold, "single_pick": config_id(pick_single[0]), "kfold_pick": config_id(pick_kfold[0]),
                     "single_val": pick_single[1][0], "kfold_val": pick_kfold[2][0],
                     "single_test_uar": test_single, "kfold_test_uar": test_kfold, "seconds": time.time() - start})
        print(json.dumps(rows[-1]), flush=True)
    from bench.reports.leaderboard import corrected_t_test

    diffs = [r["kfold_test_uar"] - r["single_test_uar"] for r in rows]
    p = corrected_t_test(diffs, 1.0 / max(get_adapter(dataset).num_folds - 1, 1)) if len(diffs) > 1 else None
    return {"dataset": dataset, "inner_folds": folds, "candidates": len(configs), "folds": rows,
            "mean_difference": sum(diffs) / len(diffs), "p": p}


def main(argv: list[str] | None = None) -> int:
    from bench.sweep.trials import read_trials

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished sweep's experiment folder (its configs compete)")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-root")
    parser.add_argument("--cache-dir")
    parser.add_argument("--folds", type=int, default=3, help="inner folds of the k-fold objective")
    parser.add_argument("--outer", type=int, nargs="*", help="outer folds (default: all)")
    parser.add_argument("--candidates", type=int, default=8, help="the sweep's first N distinct configs")
    parser.add_argument("--survivors", action="store_true",
                        help="only configs whose trial ASHA let run its whole schedule (those a sweep chooses "
                             "among), cheapest in the sweep first")
    args = parser.parse_args(argv)
    trials = read_trials(Path(args.run))
    if args.survivors:
        trials = sorted((t for t in trials if len(t.history) >= int(t.config.get("train.max_epochs", 0) or 1)),
                        key=lambda t: float(t.history["time_since_restore"].iloc[-1]))
    configs = list({config_id(t.config): t.config for t in trials}.values())[:args.candidates]
    outer = args.outer if args.outer else list(range(get_adapter(args.dataset).num_folds))
    result = compare(configs, args.dataset, folds=args.folds, data_root=args.data_root,
                     cache_dir=default_cache(args.cache_dir), outer=outer)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
