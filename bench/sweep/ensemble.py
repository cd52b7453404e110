"""``benchmark --ensemble K``: before the benchmark, ``select_members`` chooses up to K members and
their weights among the sweep's best distinct configurations, by ensemble selection on the
validation probabilities of the checkpoints the sweep kept (``training.ensemble.ensemble_selection``);
the benchmark retrains the members on every fold x seed, and ``record_ensembles`` tests their
weighted-average probabilities of each fold x seed as one ``kind: ensemble`` record (the members'
record ids and weights, their inference costs summed), so the leaderboard ranks the ensemble as
one row and pairs it with the single leader fold by fold.

Ray-free: it reads the sweep's trials, the benchmark's records and the members' checkpoints."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from bench.data import create_dataset
from bench.errors import UserError
from bench.results.record import Record, config_id
from bench.sweep.trials import read_trials, top_trials
from bench.training.engine import predict
from bench.training.ensemble import ensemble_metrics, ensemble_selection, summed, write_ensemble
from bench.training.evaluation import load_trained_model
from bench.training.trainable import pick_device

ENSEMBLE_MODEL = "ensemble"
# the sweep's best distinct configurations ensemble selection chooses among (only the chosen ones
# are retrained; scoring a candidate is one pass over the validation split)
CANDIDATES = 10


@dataclass
class Selection:
    """What ensemble selection chose: the members (config, the epoch of its best validation score)
    in the sweep's rank order, their weights, and the validation scores behind the choice."""

    members: list[tuple[dict, int]]
    weights: list[float]
    candidates: int
    val_ensemble: float
    val_leader: float

    @property
    def member_ids(self) -> list[str]:
        return [config_id(config) for config, _ in self.members]


def select_members(run_path: str | Path, metric: str, mode: str, k: int, *, cache_dir: Path,
                   data_root: str | None = None) -> Selection:
    """Up to ``k`` members and their weights by ensemble selection over the sweep's ``CANDIDATES``
    best distinct configurations that kept a checkpoint, scored on the validation split the sweep
    chose them on (each candidate's kept checkpoint: its best epoch there). A leader no mix beats on
    validation comes back alone, weight 1."""
    trials = read_trials(Path(run_path), checkpoints=(metric, mode))
    candidates = top_trials(trials, metric, mode, CANDIDATES, where=lambda trial: trial.checkpoint is not None)
    if not candidates:
        raise UserError(f"the sweep at {str(run_path)!r} kept no checkpoint with a {metric} score to build "
                        f"an ensemble from")
    probs, targets = [], None
    for trial in candidates:
        with trial.checkpoint.as_directory() as folder:  # a remote sweep's: downloaded for this pass only
            p, t = member_probabilities(folder, split="val", cache_dir=cache_dir, data_root=data_root)
        if targets is not None and not np.array_equal(t, targets):
            raise UserError(f"the sweep's checkpoints were validated on different samples ({trial.checkpoint.path}); "
                            f"ensemble selection needs one validation split")
        probs.append(p)
        targets = t
    weights = ensemble_selection(probs, targets, metric, mode, max_members=k)
    chosen = [i for i, w in enumerate(weights) if w > 0]
    key = metric.split("/", 1)[-1]
    score = ensemble_metrics([probs[i] for i in chosen], targets, [weights[i] for i in chosen])[key]
    leader = ensemble_metrics([probs[0]], targets)[key]
    return Selection(members=[(candidates[i].config, candidates[i].best_epoch(metric, mode)) for i in chosen],
                     weights=[weights[i] for i in chosen], candidates=len(candidates),
                     val_ensemble=score, val_leader=leader)


def ranked_config_ids(jobs: list[dict]) -> list[str]:
    """The configurations of a benchmark's jobs in rank order (``expand_jobs`` keeps it)."""
    return list(dict.fromkeys(config_id(job) for job in jobs))


def member_groups(records: list[Record], benchmark_run: str, members: list[str]) -> dict[tuple, list[Record]]:
    """(fold, seed) -> the benchmark's records of each member configuration, in rank order; only
    the folds x seeds where every member has a tested checkpoint (the latest record of each)."""
    found: dict[tuple, dict[str, Record]] = {}
    for r in records:
        if r.kind == "benchmark" and r.benchmark_run == benchmark_run and r.checkpoint:
            cid = config_id(r.config)
            if cid in members:
                found.setdefault((r.fold, r.seed), {})[cid] = r
    return {key: [by[c] for c in members] for key, by in sorted(found.items()) if len(by) == len(members)}


def say_selection(selection: Selection, metric: str, k: int) -> None:
    """One line on what ensemble selection chose, and why (the validation scores)."""
    key = metric.split("/", 1)[-1]
    if len(selection.members) < 2:
        print(f"Ensemble selection: on validation no weighted mix of the sweep's {selection.candidates} best "
              f"configurations beats its leader alone ({key} {selection.val_leader:.4f}); no ensemble is "
              f"recorded, the leader is retrained", flush=True)
        return
    names = ", ".join(f"{config.get('model.name')} x{weight:.2f}"
                      for (config, _), weight in zip(selection.members, selection.weights))
    print(f"Ensemble selection (up to {k} of the sweep's {selection.candidates} best configurations, on "
          f"validation): {names}; validation {key} {selection.val_ensemble:.4f} against the leader's "
          f"{selection.val_leader:.4f}", flush=True)


def member_probabilities(checkpoint: str | Path, *, split: str, cache_dir: Path,
                         data_root: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One member's class probabilities on ``split`` of its own dataset and fold (its own input
    transform and test-time augmentation, as its single-model test used; a k-fold objective's
    checkpoint: its inner fold's validation), and the targets."""
    model, cfg, _ = load_trained_model(checkpoint)
    device = pick_device()
    model.to(device)
    dataset = create_dataset(cfg.data.dataset, split, cfg.data.fold, model.input_spec, cache_dir=cache_dir,
                             data_root=data_root or cfg.data.data_root, image_size=cfg.data.image_size,
                             inner=cfg.data.inner())
    probs, targets, _ = predict(model, DataLoader(dataset, batch_size=128, shuffle=False), device=device,
                                tta=cfg.data.tta)
    return probs, targets


def evaluate_members(members: list[Record], *, cache_dir: Path, data_root: str | None = None,
                     weights: list[float] | None = None) -> dict:
    """The ensemble's test metrics on the members' common fold: their probabilities averaged with
    ``weights`` (default: equal)."""
    probs, targets = [], None
    for member in members:
        p, t = member_probabilities(member.checkpoint, split="test", cache_dir=cache_dir, data_root=data_root)
        if targets is not None and not np.array_equal(t, targets):
            raise ValueError(f"ensemble members saw different test samples on fold {member.fold}")
        probs.append(p)
        targets = t
    return ensemble_metrics(probs, targets, weights)


def ensemble_config(members: list[Record], fold: int, seed: int, weights: list[float] | None = None) -> dict:
    """The ensemble's flat config: its members' configuration ids and weights (what makes it one
    leaderboard row across folds), and the fold and seed it was tested on."""
    weights = list(weights) if weights is not None else [1 / len(members)] * len(members)
    return {"model.name": ENSEMBLE_MODEL, "ensemble.members": [config_id(m.config) for m in members],
            "ensemble.weights": [round(w, 6) for w in weights],
            "data.refit": bool(members[0].config.get("data.refit")), "data.fold": fold, "train.seed": seed}


def ensemble_record(members: list[Record], test: dict, *, folder: Path, benchmark_run: str,
                    wall_seconds: float, weights: list[float] | None = None) -> Record:
    first = members[0]
    # the weights in the name: two ensembles of the same models differ by them on the leaderboard
    labels = [m.model for m in members] if weights is None else \
        [f"{m.model} x{w:.2f}" for m, w in zip(members, weights)]
    names = "+".join(labels)
    return Record(
        kind="ensemble", time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        dataset=first.dataset, family=first.family, run=first.run, benchmark_run=benchmark_run,
        model=f"{ENSEMBLE_MODEL}({names})", config=ensemble_config(members, first.fold, first.seed, weights),
        fold=first.fold, seed=first.seed, protocol=first.protocol, class_names=first.class_names,
        objective=first.objective, objective_mode=first.objective_mode, selection="val",
        test={k: test[k] for k in ("accuracy", "uar", "macro_f1", "confusion", "loss", "samples")},
        split_sizes=first.split_sizes, members=[m.id for m in members],
        # one prediction runs every member: costs add up
        params=summed([m.params for m in members]),
        inference_ms_per_sample=summed([m.inference_ms_per_sample for m in members]),
        budget={**first.budget, "retrain_device_seconds": summed(
            [m.budget.get("retrain_device_seconds") for m in members])},
        checkpoint=str(folder), space_hash=first.space_hash, space_path=first.space_path,
        searched=list(first.searched), run_path=first.run_path, threads=first.threads,
        benchmark_wall_seconds=wall_seconds, provenance=first.provenance,
    )


def record_ensembles(records: list[Record], *, benchmark_run: str, members: list[str], keep_dir: Path,
                     cache_dir: Path, data_root: str | None, start: float, append,
                     verbose: int = 1, weights: list[float] | None = None) -> list[Record]:
    """Test and append one ensemble record per fold x seed whose members are all recorded and that
    has no ensemble record yet (so a resumed benchmark adds only the missing ones)."""
    if len(members) < 2:
        return []
    done = {(r.fold, r.seed) for r in records
            if r.kind == "ensemble" and r.benchmark_run == benchmark_run
            and r.config.get("ensemble.members") == members}
    written = []
    for (fold, seed), group in member_groups(records, benchmark_run, members).items():
        if (fold, seed) in done:
            continue
        test = evaluate_members(group, cache_dir=cache_dir, data_root=data_root, weights=weights)
        folder = write_ensemble(keep_dir / f"ensemble-fold{fold}-seed{seed}", [m.checkpoint for m in group],
                                [m.id for m in group], weights)
        record = ensemble_record(group, test, folder=folder, benchmark_run=benchmark_run,
                                 wall_seconds=time.time() - start, weights=weights)
        append(record)
        written.append(record)
        if verbose:
            print(f"Recorded ensemble of {len(group)} fold {fold} seed {seed}: test UAR "
                  f"{100 * test['uar']:.1f}%", flush=True)
    return written
