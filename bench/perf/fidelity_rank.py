"""How well ASHA's data-subset rungs rank configurations: Spearman's rank correlation between each
configuration's validation score after the first rung on a subset of the training split (the
schedule a sweep sets, ``bench.sweep.fidelity``) and its score after the same epochs on all of it.

    python -m bench.perf.fidelity_rank --dataset synthetic-fer --space search_spaces/face/fer2013.yaml \\
        --device cpu --configs 8 --full-epochs 2 --jobs 2 --fixed model.convs=1

Configurations are drawn at random (seeded) from the space resolved for ``--device``; ``--fixed``
pins keys (to keep a measurement affordable on a shared machine). Each runs twice, outside Ray, one
torch thread each: the subset rung (``grace_period`` epochs under the sweep's fraction schedule) and
``--full-epochs`` epochs on the whole training split, both with the sweep's LR schedule length.
Prints one JSON object: per configuration the two scores and seconds, and the correlations.
"""
from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def sample_configs(space, n: int, seed: int, fixed: dict) -> list[dict]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append({**space.define_by_run()(trial), **trial.params, **fixed})
    return out


def _run(config: dict, cache_dir: str) -> dict:
    import torch

    from bench.training.trainable import run_trial

    torch.set_num_threads(1)
    reports = []
    start = time.perf_counter()
    run_trial(config, cache_dir=cache_dir, report=lambda metrics, _: reports.append(metrics))
    return {"seconds": time.perf_counter() - start, "uar": [r["val/uar"] for r in reports],
            "accuracy": [r["val/accuracy"] for r in reports], "fraction": [r["train_fraction"] for r in reports]}


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main(argv=None) -> dict:
    from bench import paths
    from bench.data import load_splits
    from bench.sweep.fidelity import data_fractions
    from bench.sweep.spaces import load_space

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="synthetic-fer")
    ap.add_argument("--space", default="search_spaces/face/fer2013.yaml")
    ap.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument("--configs", type=int, default=8)
    ap.add_argument("--full-epochs", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-fraction", default=None, help="the space's scheduler.data_fraction instead of its own")
    ap.add_argument("--fixed", nargs="*", default=[], help="key=value (YAML values) pinned in every configuration")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--data-root", default=None, help="e.g. a folder with synthetic-fer.json for a smaller copy")
    ap.add_argument("--log", default=None, help="append each finished run as a JSON line here")
    args = ap.parse_args(argv)
    import yaml

    space = load_space(args.space, args.device)
    cache = paths.cache_dir(args.cache_dir)
    _, _, splits = load_splits(args.dataset, 0, args.data_root, cache)
    scheduler = dict(space.scheduler)
    if args.data_fraction is not None:
        scheduler["data_fraction"] = yaml.safe_load(args.data_fraction)
    schedule = data_fractions(scheduler, max_epochs=space.max_epochs, n_train=len(splits["train"]))
    if not schedule:
        raise SystemExit(f"no data-fraction schedule for {len(splits['train'])} training samples")
    rung = schedule[0][0]
    fixed = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.fixed)}
    base = {"data.dataset": args.dataset, "train.max_epochs": space.max_epochs, "train.seed": args.seed,
            **({"data.data_root": str(Path(args.data_root).resolve())} if args.data_root else {})}
    configs = [{**base, **c} for c in sample_configs(space, args.configs, args.seed, fixed)]
    # each configuration's two runs side by side, so that finished pairs accumulate in --log
    jobs = [job for c in configs for job in ({**c, "train.data_fractions": schedule, "train.stop_epoch": rung},
                                             {**c, "train.stop_epoch": args.full_epochs})]
    runs = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for job, run in zip(jobs, pool.map(_run, jobs, [str(cache)] * len(jobs))):
            runs.append(run)
            if args.log:
                with open(args.log, "a") as f:
                    f.write(json.dumps({"config": job, **run}, default=str) + "\n")
    subset, full = runs[0::2], runs[1::2]
    rows = [{"config": {k: v for k, v in c.items() if k not in base}, "subset_uar": s["uar"][-1],
             "full_uar": f["uar"][-1], "full_uar_by_epoch": f["uar"], "subset_uar_by_epoch": s["uar"],
             "subset_s": round(s["seconds"], 1), "full_s": round(f["seconds"], 1)}
            for c, s, f in zip(configs, subset, full)]
    out = {
        "dataset": args.dataset, "n_train": len(splits["train"]), "schedule": schedule, "rung_epochs": rung,
        "full_epochs": args.full_epochs, "configs": len(configs),
        "spearman_subset_rung_vs_full": spearman([r["subset_uar"] for r in rows], [r["full_uar"] for r in rows]),
        # the noise floor: how full-data epoch 1 already ranks like full-data's last epoch
        "spearman_full_epoch1_vs_full": spearman([r["full_uar_by_epoch"][0] for r in rows],
                                                  [r["full_uar"] for r in rows]) if args.full_epochs > 1 else None,
        "seconds_subset_rung": round(sum(r["subset_s"] for r in rows), 1),
        "seconds_full": round(sum(r["full_s"] for r in rows), 1),
        "rows": rows,
    }
    print(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main()
