"""``face_pipeline_vs_bare``: training images/s of what a face trial runs against a bare loop.

The pipeline side is the trial's own: ``build_parts`` (the cached faces, the DataLoader with the
flip and shift plus timm's RandAugment and random erasing, the trainer in the precision
``train.precision`` resolves to) and ``train_one_epoch``. The bare side is ``model(x)`` ->
``F.cross_entropy`` -> ``backward`` -> ``step`` on in-memory batches of the same tensors, same
model, batch, precision and memory format. A third side, the bare loop in fp32, shows what the
precision bought. Sides are interleaved (a, b, c, c, b, a, ...) with the same torch threads;
the key is the lowest pipeline/bare ratio over the models.
"""
from __future__ import annotations

import copy
import itertools
import resource
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .common import interleaved, median

# the heaviest augmentation the shipped face spaces search, at FER2013's 48 px grey
RECIPE = {"data.auto_augment": "rand-m9-n2-mstd0.5", "data.re_prob": 0.25}
SETTINGS = {
    "full": {"models": ["fer_cnn", "timm/resnet18"], "image_size": 48, "batch_size": 64, "batches": 8,
             "repeats": 3},
    "tiny": {"models": ["fer_cnn"], "image_size": 16, "batch_size": 16, "batches": 2, "repeats": 1},
}


def trial_config(model: str, image_size: int, batch_size: int, precision: str = "auto",
                 channels_last: bool = True) -> dict:
    config = {"model.name": model, "data.dataset": "synthetic", "data.image_size": image_size,
              "train.batch_size": batch_size, "train.precision": precision,
              "train.channels_last": channels_last, **RECIPE}
    if model.startswith("timm/"):
        config["model.in_chans"] = 1  # FER2013's grey faces
    return config


def bare_epoch(model, batches, optimizer, dtype: torch.dtype | None, channels_last: bool) -> int:
    model.train()
    seen = 0
    for x, y in batches:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = F.cross_entropy(model(x)["logits"], y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(y)
    return seen


def compare(model_name: str, image_size: int, batch_size: int, batches: int, repeats: int, cache_dir: Path,
            precision: str = "auto", channels_last: bool = True) -> dict:
    from bench.training.config import TrialConfig
    from bench.training.engine import train_one_epoch
    from bench.training.trainable import build_parts, seed_everything

    cfg = TrialConfig.from_flat(trial_config(model_name, image_size, batch_size, precision, channels_last))
    seed_everything(0)
    parts = build_parts(cfg, Path(cache_dir))
    dataset = parts.train_loader.dataset
    batches = min(batches, len(parts.train_loader))
    memory = [(dataset.inputs[i * batch_size:(i + 1) * batch_size], dataset.labels[i * batch_size:(i + 1) * batch_size])
              for i in range(batches)]
    dtype = parts.amp_dtype
    bare_model, fp32_model = copy.deepcopy(parts.model), copy.deepcopy(parts.model)
    bare_opt = torch.optim.AdamW(bare_model.parameters(), lr=cfg.optim.lr)
    fp32_opt = torch.optim.AdamW(fp32_model.parameters(), lr=cfg.optim.lr)

    per_cpu_s: dict[str, list[float]] = {"pipeline": [], "bare": [], "bare_fp32": []}

    def timed(name: str, epoch) -> float:
        """Images per wall second; images per CPU second of this process (all its threads) go to
        ``per_cpu_s``: on a machine shared with other jobs that one moves less with their load."""
        start, cpu = time.perf_counter(), _cpu_seconds()
        seen = epoch()
        per_cpu_s[name].append(seen / max(_cpu_seconds() - cpu, 1e-9))
        return seen / (time.perf_counter() - start)

    def pipeline() -> float:
        return timed("pipeline", lambda: train_one_epoch(
            parts.model, itertools.islice(parts.train_loader, batches), parts.task, parts.optimizer,
            device=parts.device, scaler=parts.scaler, amp=dtype is not None, amp_dtype=dtype,
            channels_last=cfg.train.channels_last)["samples"])

    def bare() -> float:
        return timed("bare", lambda: bare_epoch(bare_model, memory, bare_opt, dtype, cfg.train.channels_last))

    def bare_fp32() -> float:
        return timed("bare_fp32", lambda: bare_epoch(fp32_model, memory, fp32_opt, None, cfg.train.channels_last))

    sides = {"pipeline": pipeline, "bare": bare, "bare_fp32": bare_fp32}
    for side in sides.values():  # warm-up: allocator, oneDNN kernels, optimizer state
        side()
    for values in per_cpu_s.values():
        values.clear()
    rates = interleaved(sides, repeats)
    pipe, plain, fp32 = (median(rates[k]) for k in sides)
    cpu_rates = {f"{k}_img_per_cpu_s": median(v) for k, v in per_cpu_s.items()}
    return {"pipeline_img_per_s": pipe, "bare_img_per_s": plain, "bare_fp32_img_per_s": fp32,
            "ratio": pipe / plain, "precision_speedup": plain / fp32, **cpu_rates,
            "ratio_per_cpu_s": cpu_rates["pipeline_img_per_cpu_s"] / cpu_rates["bare_img_per_cpu_s"],
            "precision": str(dtype).replace("torch.", "") if dtype is not None else "float32",
            "channels_last": cfg.train.channels_last, "threads": torch.get_num_threads(),
            "images_per_side": batches * batch_size}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(size: str, cache_dir: Path) -> dict:
    s = SETTINGS[size]
    detail = {"recipe": RECIPE, "batch_size": s["batch_size"], "image_size": s["image_size"]}
    ratios = []
    for model in s["models"]:
        result = compare(model, s["image_size"], s["batch_size"], s["batches"], s["repeats"], cache_dir)
        detail[model] = result
        ratios.append(result["ratio"])
    return {"face_pipeline_vs_bare": min(ratios), "detail": detail}
