"""``benchmark --ensemble K``: the benchmark retrains the sweep's top-K configurations on every
fold x seed; this step averages the K members' test probabilities of each fold x seed and records
them as one ``kind: ensemble`` record (the members' record ids, their inference costs summed), so
the leaderboard ranks the ensemble as one row and pairs it with the single leader fold by fold.

Ray-free: it reads the benchmark's records and the members' checkpoints."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from bench.data import create_dataset
from bench.results.record import Record, config_id
from bench.training.engine import predict
from bench.training.ensemble import ensemble_metrics, summed, write_ensemble
from bench.training.evaluation import load_trained_model
from bench.training.trainable import pick_device

ENSEMBLE_MODEL = "ensemble"


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


def member_probabilities(checkpoint: str | Path, *, split: str, cache_dir: Path,
                         data_root: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One member's class probabilities on ``split`` of its own dataset and fold (its own input
    transform and test-time augmentation, as its single-model test used), and the targets."""
    model, cfg, _ = load_trained_model(checkpoint)
    device = pick_device()
    model.to(device)
    dataset = create_dataset(cfg.data.dataset, split, cfg.data.fold, model.input_spec, cache_dir=cache_dir,
                             data_root=data_root or cfg.data.data_root, image_size=cfg.data.image_size)
    probs, targets, _ = predict(model, DataLoader(dataset, batch_size=128, shuffle=False), device=device,
                                tta=cfg.data.tta)
    return probs, targets


def evaluate_members(members: list[Record], *, cache_dir: Path, data_root: str | None = None) -> dict:
    """The ensemble's test metrics on the members' common fold: their probabilities averaged."""
    probs, targets = [], None
    for member in members:
        p, t = member_probabilities(member.checkpoint, split="test", cache_dir=cache_dir, data_root=data_root)
        if targets is not None and not np.array_equal(t, targets):
            raise ValueError(f"ensemble members saw different test samples on fold {member.fold}")
        probs.append(p)
        targets = t
    return ensemble_metrics(probs, targets)


def ensemble_config(members: list[Record], fold: int, seed: int) -> dict:
    """The ensemble's flat config: its members' configuration ids (what makes it one leaderboard
    row across folds), and the fold and seed it was tested on."""
    return {"model.name": ENSEMBLE_MODEL, "ensemble.members": [config_id(m.config) for m in members],
            "data.refit": bool(members[0].config.get("data.refit")), "data.fold": fold, "train.seed": seed}


def ensemble_record(members: list[Record], test: dict, *, folder: Path, benchmark_run: str,
                    wall_seconds: float) -> Record:
    first = members[0]
    names = "+".join(m.model for m in members)
    return Record(
        kind="ensemble", time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        dataset=first.dataset, family=first.family, run=first.run, benchmark_run=benchmark_run,
        model=f"{ENSEMBLE_MODEL}({names})", config=ensemble_config(members, first.fold, first.seed),
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
                     verbose: int = 1) -> list[Record]:
    """Test and append one ensemble record per fold x seed whose members are all recorded and that
    has no ensemble record yet (so a resumed benchmark adds only the missing ones)."""
    if len(members) < 2:
        print(f"warning: the sweep has {len(members)} distinct configuration(s) with a score; no ensemble to test")
        return []
    done = {(r.fold, r.seed) for r in records
            if r.kind == "ensemble" and r.benchmark_run == benchmark_run
            and r.config.get("ensemble.members") == members}
    written = []
    for (fold, seed), group in member_groups(records, benchmark_run, members).items():
        if (fold, seed) in done:
            continue
        test = evaluate_members(group, cache_dir=cache_dir, data_root=data_root)
        folder = write_ensemble(keep_dir / f"ensemble-fold{fold}-seed{seed}", [m.checkpoint for m in group],
                                [m.id for m in group])
        record = ensemble_record(group, test, folder=folder, benchmark_run=benchmark_run,
                                 wall_seconds=time.time() - start)
        append(record)
        written.append(record)
        if verbose:
            print(f"Recorded ensemble of {len(group)} fold {fold} seed {seed}: test UAR "
                  f"{100 * test['uar']:.1f}%", flush=True)
    return written
