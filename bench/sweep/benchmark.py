"""The benchmark stage's Ray-free parts: which configs to retrain, on which folds and seeds, and
cross-corpus evaluation over the classes two datasets share."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from torch.utils.data import ConcatDataset, DataLoader

from bench.data import create_dataset, get_adapter
from bench.errors import UserError
from bench.results.record import Record, config_id
from bench.results.store import best_record
from bench.sweep.trials import read_trials
from bench.training.engine import predict
from bench.training.evaluation import load_trained_model
from bench.training.metrics import classification_metrics
from bench.training.trainable import pick_device


def source_search_record(records: list[Record], dataset: str, family: str) -> Record:
    """The sweep a benchmark retrains: the recorded sweep of dataset/family with the best
    validation score, by the same rule as ``best:`` references (``results.best_record``)."""
    found = best_record(records, dataset, family, kinds=("search",))
    if found is None:
        raise UserError(f"no sweep recorded for {dataset}/{family}; run "
                        f"`fer-bench search {family} --dataset {dataset}` first")
    return found


def top_configs(run_path: str | Path, metric: str, mode: str, k: int) -> list[tuple[dict, int]]:
    """The ``k`` best distinct configs of a sweep by their best validation score (never test), each
    with the epoch that score was reached at."""
    scored = []
    for trial in read_trials(Path(run_path)):
        best = trial.best(metric, mode)
        if best is not None:
            scored.append((best, trial.config, trial.best_epoch(metric, mode)))
    if not scored:
        raise UserError(f"the sweep at {str(run_path)!r} has no trial with a {metric} score")
    scored.sort(key=lambda item: item[0], reverse=mode == "max")
    chosen, seen = [], set()
    for _, config, epoch in scored:
        cid = config_id(config)
        if cid not in seen:
            seen.add(cid)
            chosen.append((config, epoch))
        if len(chosen) == k:
            break
    return chosen


def refit_config(config: dict, best_epoch: int) -> dict:
    """A config retrained on train + val: the searched schedule, stopped at the epoch where the
    sweep's validation score peaked (the validation split is training data now, so it cannot pick
    the epoch itself) -- retraining on all the data for the selected number of steps, as in
    Goodfellow et al., Deep Learning, algorithm 7.2."""
    return {**config, "data.refit": True, "train.stop_epoch": int(best_epoch)}


def expand_jobs(configs: list[dict], folds: int, seeds: int) -> list[dict]:
    """Every config on every fold of the protocol x every seed."""
    return [{**config, "data.fold": fold, "train.seed": seed}
            for config in configs for fold in range(folds) for seed in range(seeds)]


def cross_corpus(checkpoint: str | Path, eval_dataset: str, *, cache_dir: Path,
                 data_root: str | None = None) -> dict:
    """Evaluate a model trained on one dataset on every sample of another, over shared classes.

    The model's logits are restricted to the shared classes before the argmax, so a class the
    evaluation set lacks cannot be predicted; metrics are over the shared classes only.
    """
    model, cfg, _ = load_trained_model(checkpoint)
    source = get_adapter(cfg.data.dataset)
    target = get_adapter(eval_dataset)
    if source.modality != target.modality:
        raise UserError(f"cannot evaluate a {source.modality} model on {eval_dataset!r} "
                        f"({target.modality} data)")
    shared = [c for c in source.class_names if c in target.class_names]
    if len(shared) < 2:
        raise UserError(f"{cfg.data.dataset!r} and {eval_dataset!r} share fewer than two classes")
    device = pick_device()
    model.to(device)
    parts = [create_dataset(eval_dataset, split, 0, model.input_spec, cache_dir=cache_dir, data_root=data_root,
                            image_size=cfg.data.image_size) for split in ("train", "val", "test")]
    probs, targets, _ = predict(model, DataLoader(ConcatDataset(parts), batch_size=128), device=device,
                                tta=cfg.data.tta)
    source_index = [source.class_names.index(c) for c in shared]
    target_to_shared = {target.class_names.index(c): i for i, c in enumerate(shared)}
    keep = np.array([t in target_to_shared for t in targets])
    y_true = np.array([target_to_shared[t] for t in targets[keep]])
    y_pred = probs[keep][:, source_index].argmax(1)
    metrics = classification_metrics(y_true, y_pred, len(shared))
    metrics["samples"] = int(keep.sum())
    return {"shared_classes": shared, "test": metrics, "train_dataset": cfg.data.dataset,
            "config": json.loads(json.dumps(cfg.to_flat(), default=str)), "model": cfg.model.name}
