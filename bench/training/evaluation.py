"""Turn a saved checkpoint back into a model and measure it once on a held-out split."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from bench.data import create_dataset, load_splits
from bench.training.checkpoint import load_checkpoint, load_checkpoint_model
from bench.training.config import TrialConfig
from bench.training.engine import evaluate, latency_ms
from bench.training.tasks import create_task
from bench.training.trainable import count_params, pick_device


def load_trained_model(checkpoint_dir: str | Path) -> tuple[torch.nn.Module, TrialConfig, dict]:
    """The checkpoint's model (with its scikit-learn head, if any), its trial config, and the loaded
    file; ``state["meta"]`` is the model's description (``fer_models.checkpoint.ModelMeta``: class
    names, input spec), so callers need no dataset registry."""
    state = load_checkpoint(checkpoint_dir)
    cfg = TrialConfig.from_flat(state["config"])
    model, state["meta"] = load_checkpoint_model(checkpoint_dir, state)
    return model.eval(), cfg, state


def head_size(model) -> int:
    """Numbers a fitted scikit-learn head holds (support vectors, coefficients), else 0."""
    from bench.training.classic_trial import estimator_size

    estimator = model.estimator if getattr(model, "is_classic", False) else getattr(model, "svc", None)
    return estimator_size(estimator) if estimator is not None else 0


def evaluate_checkpoint(checkpoint_dir: str | Path, *, split: str, cache_dir: Path,
                        data_root: str | None = None) -> dict:
    """Metrics of the checkpoint's model on ``split`` of its own dataset and fold."""
    model, cfg, state = load_trained_model(checkpoint_dir)
    device = pick_device()
    model.to(device)
    dataset = create_dataset(cfg.data.dataset, split, cfg.data.fold, model.input_spec, cache_dir=cache_dir,
                             data_root=data_root or cfg.data.data_root, image_size=cfg.data.image_size)
    loader = DataLoader(dataset, batch_size=128, shuffle=False)
    metrics = evaluate(model, loader, create_task(cfg.task.name), device=device, tta=cfg.data.tta)
    metrics["tta"] = cfg.data.tta
    metrics["samples"] = len(dataset)
    # every split's size: the leaderboard's paired test needs n_test / n_train (index is cached)
    _, indexed, splits = load_splits(cfg.data.dataset, cfg.data.fold, data_root or cfg.data.data_root, cache_dir)
    metrics["split_sizes"] = {name: len(samples) for name, samples in splits.items()}
    if indexed.copies:  # train/val copies of items of a later official split, dropped (data.base)
        metrics["split_sizes"]["dropped_copies"] = len(indexed.copies)
    if cfg.data.refit:  # it trained on train + val
        metrics["split_sizes"] = {**metrics["split_sizes"], "train": len(splits["train"]) + len(splits["val"]),
                                  "val": 0}
    metrics["epoch"] = int(state.get("epoch", -1)) + 1  # 1-based, as trials report it: what reproduce re-runs to
    metrics["params"] = count_params(model) + head_size(model)
    # the same batch-1 probe trials report as latency_ms; it slices one sample before moving it
    metrics["inference_ms_per_sample"] = latency_ms(model, dataset.inputs, device=device, repeats=20)
    return metrics
