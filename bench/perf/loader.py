"""``loader_vs_memory``: training throughput fed by the real loader (``build_parts``' DataLoader
over the synthetic faces, augmentation on) over the same model fed batches of the same tensors
already in memory (no per-sample work); interleaved epochs, ratio of the median throughputs."""
from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from .common import interleaved, median

SETTINGS = {
    "full": {"config": {"model.name": "fer_cnn", "data.dataset": "synthetic", "data.image_size": 48,
                        "train.batch_size": 64}, "repeats": 5},
    "tiny": {"config": {"model.name": "fer_cnn", "data.dataset": "synthetic", "data.image_size": 16,
                        "train.batch_size": 128}, "repeats": 1},
}


def run(size: str, cache_dir: Path) -> dict:
    from bench.training.config import TrialConfig
    from bench.training.engine import train_one_epoch
    from bench.training.trainable import build_parts, seed_everything

    s = SETTINGS[size]
    cfg = TrialConfig.from_flat(s["config"])
    seed_everything(0)
    parts = build_parts(cfg, Path(cache_dir))
    dataset = parts.train_loader.dataset
    batch = cfg.train.batch_size
    memory = [(dataset.inputs[i:i + batch].to(parts.device), dataset.labels[i:i + batch].to(parts.device))
              for i in range(0, len(dataset), batch)]
    memory_model = copy.deepcopy(parts.model)
    memory_opt = torch.optim.AdamW(memory_model.parameters(), lr=cfg.optim.lr)

    def epoch(model, loader, optimizer) -> float:
        start = time.perf_counter()
        out = train_one_epoch(model, loader, parts.task, optimizer, device=parts.device)
        return out["samples"] / (time.perf_counter() - start)

    def from_loader() -> float:
        return epoch(parts.model, parts.train_loader, parts.optimizer)

    def from_memory() -> float:
        return epoch(memory_model, memory, memory_opt)

    from_loader(), from_memory()  # warm-up (and worker start when num_workers > 0)
    rates = interleaved({"loader": from_loader, "memory": from_memory}, s["repeats"])
    loader_rate, memory_rate = median(rates["loader"]), median(rates["memory"])
    return {"loader_vs_memory": loader_rate / memory_rate,
            "detail": {**s["config"], "num_workers": parts.train_loader.num_workers, "samples": len(dataset),
                       "loader_samples_per_s": loader_rate, "memory_samples_per_s": memory_rate}}
