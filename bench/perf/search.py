"""``perf search``: is the search worth it? On the replayed learning curves of ``perf asha`` (same
grid, same cache), three sweeps of the demo space at equal device-seconds:

- ``tpe_asha``: TPE + ASHA (the demo's sampler and shipped scheduler setting),
- ``random_asha``: random sampling + the same ASHA,
- ``tpe_fifo``: TPE without early stopping (every trial runs ``max_epochs``).

The budget is what the demo's ``budget.samples`` trials cost without early stopping (the grid's
mean seconds per full trial x samples); each sweep samples until it is spent, two trials at a time.
Reported: mean ± std over the seeds of the best validation UAR found, the ratio of TPE + ASHA's
mean to TPE without early stopping's (``search_tpe_asha_vs_tpe``), and a plot of the best value so
far against device-seconds (mean over seeds), written next to the curves.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .replay import (
    GRIDS,
    AsyncSuccessiveHalving,
    demo_space,
    learning_curves,
    log,
    mean_std,
    optuna_proposer,
    replay,
    tpe_sampler,
)

SEEDS = {"full": tuple(range(10)), "tiny": (0, 1)}
METHODS = ("tpe_asha", "random_asha", "tpe_fifo")


def _sampler(method: str, space, seed: int, samples: int):
    if method.startswith("random"):
        from optuna.samplers import RandomSampler

        return RandomSampler(seed=space.searcher_seed(seed))
    return tpe_sampler(space, seed, samples)


def best_so_far(points: list[tuple[int, float, float]], grid_s: np.ndarray) -> np.ndarray:
    """The best value reported by each device-second mark (nan before the first report)."""
    out = np.full(len(grid_s), np.nan)
    best, i = -np.inf, 0
    for j, t in enumerate(grid_s):
        while i < len(points) and points[i][1] <= t:
            best = max(best, points[i][2])
            i += 1
        if best > -np.inf:
            out[j] = best
    return out


def plot_png(path: Path, grid_s: np.ndarray, curves: dict[str, np.ndarray], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for method, runs in curves.items():
        mean, std = np.nanmean(runs, axis=0), np.nanstd(runs, axis=0)
        ax.plot(grid_s / 60, 100 * mean, label=method.replace("_", " + ").replace("fifo", "no early stopping"))
        ax.fill_between(grid_s / 60, 100 * (mean - std), 100 * (mean + std), alpha=0.15)
    ax.set_xlabel("device-minutes (one core per trial)")
    ax.set_ylabel("best validation UAR so far, %")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def run(size: str, cache_dir: Path) -> dict:
    import warnings

    grid = GRIDS[size]
    curves = learning_curves(grid, cache_dir, workers=1 if size == "tiny" else 2)
    log(curves.describe())
    space = demo_space()
    samples, max_t = space.samples, grid["fixed"]["train.max_epochs"]
    full_trial_s = float(np.mean([sum(c["epoch_s"]) for c in curves.curves.values()]))
    budget = samples * full_trial_s
    scheduler = (space.scheduler.get("grace_period"), space.scheduler.get("reduction_factor"))
    marks = np.linspace(0, budget, 121)
    results: dict[str, list[float]] = {m: [] for m in METHODS}
    traces: dict[str, np.ndarray] = {}
    trials: dict[str, list[int]] = {m: [] for m in METHODS}
    for method in METHODS:
        rows = []
        for seed in SEEDS[size]:
            asha = (AsyncSuccessiveHalving(max_t, min(scheduler[0], max_t - 1) or 1, scheduler[1])
                    if method.endswith("asha") else None)
            trace = replay(optuna_proposer(curves.curves, grid, space, _sampler(method, space, seed, samples)),
                           max_t=max_t, scheduler=asha, max_samples=50 * samples, budget_seconds=budget)
            results[method].append(trace.best_within(budget))
            trials[method].append(trace.trials)
            rows.append(best_so_far(trace.points, marks))
        traces[method] = np.vstack(rows)

    summary = {m: {"best_val_uar": mean_std(results[m]), "trials": mean_std(trials[m])} for m in METHODS}
    with warnings.catch_warnings():  # nan means before the first report: expected at the start
        warnings.simplefilter("ignore", RuntimeWarning)
        plot = plot_png(curves.path.parent / f"search-best-so-far-{size}.png", marks, traces,
                        f"demo space, {len(SEEDS[size])} seeds, budget = {samples} full trials "
                        f"({budget / 60:.1f} device-min); shaded: ± 1 std")
    log(f"plot of best-so-far vs device-seconds: {plot}")
    return {
        "search_tpe_asha_vs_tpe": summary["tpe_asha"]["best_val_uar"]["mean"]
        / summary["tpe_fifo"]["best_val_uar"]["mean"],
        "detail": {"budget_device_seconds": budget, "seeds": list(SEEDS[size]), "methods": summary,
                   "asha_setting": {"grace_period": scheduler[0], "reduction_factor": scheduler[1]},
                   "per_seed_best": results, "plot": str(plot), "curves_cached": curves.cached,
                   "curves_path": str(curves.path), "replayed_space": space.path},
    }
