"""``asha_vs_grid_epochs_out_of_sample``: epochs an ASHA + TPE sweep of the demo space needs to come
within one point of the grid's best validation UAR, over the epochs the exhaustive grid (in a
random order, no early stopping) needs under the same stopping rule; median over report seeds,
with the scheduler setting chosen on other seeds.

Curves and replay: ``bench.perf.replay`` (measured once on a 24-point grid over the demo space's
axes, cached by code + data hashes; the sweep samples the demo space itself and runs the nearest
grid point's curve).

1. **Choose** the ASHA setting (grace period, reduction factor) on the selection seeds: the one
   whose replay of the demo's own budget (``budget.samples`` trials, ``max_epochs`` each, its
   TPE start-up rule) finds the best validation UAR on average (ties: fewer epochs).
2. **Report** on other seeds, both sides charged the same way: each sweep stops at the first epoch
   any trial reports >= target (grid best - 1 point), capped at the full grid's epochs (charged
   the cap if never reached); ASHA + TPE keeps sampling past the demo's trial count to get there.
   The ratio is ASHA's epochs / the grid's. Also reported: at the demo's own budget, the best
   validation UAR each finds within the epochs ASHA + TPE spends; and the in-sample figure of the
   chosen setting and the out-of-sample figure of the shipped one, for contrast.
"""
from __future__ import annotations

from pathlib import Path

from .common import median
from .replay import (
    GRIDS,
    AsyncSuccessiveHalving,
    demo_space,
    grid_proposer,
    learning_curves,
    log,
    mean_std,
    optuna_proposer,
    replay,
    tpe_sampler,
)

SETTINGS = ((1, 2), (1, 3), (2, 2), (2, 3), (3, 2), (3, 3), (4, 2), (4, 3))  # (grace_period, reduction_factor)
SEEDS = {"full": {"select": tuple(range(0, 5)), "report": tuple(range(5, 15))},
         "tiny": {"select": (0, 1), "report": (2, 3)}}
TOLERANCE = 0.01  # "within one point of the grid's best" on a 0..1 UAR scale


def run(size: str, cache_dir: Path) -> dict:
    grid = GRIDS[size]
    curves = learning_curves(grid, cache_dir, workers=1 if size == "tiny" else 2)
    log(curves.describe())
    space = demo_space()
    samples, max_t = space.samples, grid["fixed"]["train.max_epochs"]
    values = {k: c["val_uar"] for k, c in curves.curves.items()}
    grid_best = max(max(v) for v in values.values())
    target = grid_best - TOLERANCE
    grid_epochs = sum(len(v) for v in values.values())
    seeds = SEEDS[size]
    settings = [s for s in SETTINGS if s[0] < max_t]

    def sweep(setting, seed, **limits):
        scheduler = AsyncSuccessiveHalving(max_t, *setting)
        return replay(optuna_proposer(curves.curves, grid, space, tpe_sampler(space, seed, samples)),
                      max_t=max_t, scheduler=scheduler, **limits)

    def race(setting, seed) -> dict:
        asha = sweep(setting, seed, max_samples=10 * len(values), budget_epochs=grid_epochs, target=target)
        full = replay(grid_proposer(curves.curves, seed), max_t=max_t, budget_epochs=grid_epochs, target=target)
        return {"seed": seed, "asha_epochs": asha.epochs, "asha_reached": asha.reached, "asha_trials": asha.trials,
                "grid_epochs": full.epochs, "grid_reached": full.reached, "ratio": asha.epochs / full.epochs}

    # 1. choose the setting on the selection seeds, at the demo's own budget
    selection = {}
    for setting in settings:
        runs = [sweep(setting, seed, max_samples=samples) for seed in seeds["select"]]
        selection[setting] = {"best_val_uar": mean_std(r.best for r in runs)["mean"],
                              "epochs": mean_std(r.epochs for r in runs)["mean"]}
    chosen = max(settings, key=lambda s: (selection[s]["best_val_uar"], -selection[s]["epochs"]))
    shipped = (space.scheduler.get("grace_period"), space.scheduler.get("reduction_factor"))

    # 2. report on the other seeds
    races = [race(chosen, seed) for seed in seeds["report"]]
    demo = []
    for seed in seeds["report"]:
        asha = sweep(chosen, seed, max_samples=samples)
        full = replay(grid_proposer(curves.curves, seed), max_t=max_t, budget_epochs=asha.epochs)
        demo.append({"seed": seed, "epochs": asha.epochs, "asha_best": asha.best, "grid_best": full.best})
    in_sample = [race(chosen, seed)["ratio"] for seed in seeds["select"]]
    shipped_out = [race(shipped, seed)["ratio"] for seed in seeds["report"]] if shipped[0] < max_t else []
    return {
        "asha_vs_grid_epochs_out_of_sample": median(r["ratio"] for r in races),
        "curves_cached": curves.cached,
        "detail": {
            "curves": {"cached": curves.cached, "path": str(curves.path), "computed": curves.computed,
                       "configs": len(values), "grid": grid,
                       "replayed_space": space.path, "nearest_grid_point": True},
            "grid_epochs": grid_epochs, "grid_best_val_uar": grid_best, "target_val_uar": target,
            "demo_budget": {"samples": samples, "max_epochs": space.max_epochs,
                            "tpe_startup": space.searcher.get("n_startup_trials", max(2, min(10, samples // 3)))},
            "selection_seeds": list(seeds["select"]), "report_seeds": list(seeds["report"]),
            "chosen_setting": {"grace_period": chosen[0], "reduction_factor": chosen[1]},
            "shipped_setting": {"grace_period": shipped[0], "reduction_factor": shipped[1]},
            "selection": {f"grace{g}-rf{f}": v for (g, f), v in selection.items()},
            "races": races,
            "reached": f"ASHA {sum(r['asha_reached'] for r in races)}/{len(races)}, "
                       f"grid {sum(r['grid_reached'] for r in races)}/{len(races)}",
            "in_sample_ratio": median(in_sample),
            "shipped_setting_out_of_sample_ratio": median(shipped_out) if shipped_out else None,
            "at_demo_budget": {"asha_epochs": mean_std(d["epochs"] for d in demo),
                               "asha_best_val_uar": mean_std(d["asha_best"] for d in demo),
                               "grid_best_val_uar_same_epochs": mean_std(d["grid_best"] for d in demo),
                               "per_seed": demo},
        },
    }
