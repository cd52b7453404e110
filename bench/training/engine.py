"""Ray-free training and evaluation loops: AMP, gradient clipping, channels_last.

These are what the trainable, the benchmark stage and the perf harness share, so the speed
measured by ``fer-bench perf trainer`` is the speed sweeps get.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from bench.training.metrics import classification_metrics


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the trial cannot continue meaningfully."""


FINITE_CHECK_EVERY = 32  # steps between host-side NaN checks (one sync each); the epoch's end checks too


def _to_device(x, device):
    if isinstance(x, dict):  # multi-stream and audio-visual inputs nest dicts
        return {k: _to_device(v, device) for k, v in x.items()}
    return x.to(device, non_blocking=True)


def _channels_last(x, enabled: bool):
    if enabled and isinstance(x, torch.Tensor) and x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def autocast_dtype(device) -> torch.dtype:
    """Mixed precision's dtype: float16 (with a GradScaler) on CUDA, bfloat16 on CPUs. On an H100
    (``fer-bench perf gpu``), float16 was 1.23-1.29x faster than bfloat16 for resnet18 at 224 px /
    batch 512, where the GPU sets the pace; at 112 px / batch 128 the host does (fp16's
    ``GradScaler.step`` reads ``found_inf`` back every step) and runs swung between bf16 1.39x
    faster and 0.96x. The compute-bound case is the one worth a GPU."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16


PRECISIONS = ("fp32", "bf16", "fp16", "auto")
# Model families measured faster in bfloat16 autocast on a CPU with native bf16 (avx512_bf16 /
# AMX): dense convolutions gain (48 px, batch 64: resnet18 1.5x, fer_cnn 1.6x; docs/perf.md);
# depthwise ones lose (mobilenetv3_small_100: 0.9x, 0.44x with channels_last), so
# `train.precision: auto` keeps every other family in fp32.
CPU_BF16_FASTER = ("timm/resnet", "fer_cnn")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN's avx512_bf16 / AMX kernels); without
    it bf16 is emulated and slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def resolve_precision(precision: str, model_name: str, device, amp: bool = False) -> torch.dtype | None:
    """The autocast dtype a trial trains in, or None for plain fp32. ``amp`` (the older switch)
    means the device's mixed-precision dtype. ``auto``: on CUDA bf16 where the GPU has it (no loss
    scaler) else fp16; on a CPU bf16 only for the families in ``CPU_BF16_FASTER`` and only where
    the CPU computes bf16 natively; fp32 otherwise."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        from bench.errors import UserError

        raise UserError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return autocast_dtype(device) if amp else None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16 if device.type == "cuda" else torch.bfloat16  # CPUs have no fp16 autocast gain
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_bf16() and str(model_name).startswith(CPU_BF16_FASTER):
        return torch.bfloat16
    return None


def grad_scaler(device, amp: bool, dtype: torch.dtype | None = None) -> torch.amp.GradScaler | None:
    """The loss scaler mixed precision needs on ``device``: float16 on CUDA needs one."""
    device = torch.device(device)
    if amp and device.type == "cuda" and (dtype or autocast_dtype(device)) == torch.float16:
        return torch.amp.GradScaler("cuda")
    return None


def train_one_epoch(model, loader, task, optimizer, *, device="cpu", scaler=None, amp: bool = False,
                    grad_clip: float = 0.0, channels_last: bool = False, scheduler=None,
                    amp_dtype: torch.dtype | None = None, batch_transform=None, ema=None) -> dict:
    """One pass over ``loader``. ``batch_transform(inputs, target)`` may mix a batch (mixup:
    soft targets for the task); ``ema`` (timm ``ModelEmaV3``) is updated after every step."""
    model.train()
    device = torch.device(device)
    amp_dtype = amp_dtype or autocast_dtype(device)
    # The loss is summed on the device and checked every FINITE_CHECK_EVERY steps: a per-step
    # .item() makes the host wait for the GPU each step (measured by `fer-bench perf gpu`).
    total_loss, seen, start = torch.zeros((), device=device), 0, time.perf_counter()
    for step, (inputs, target) in enumerate(loader, 1):
        inputs = _channels_last(_to_device(inputs, device), channels_last)
        target = target.to(device, non_blocking=True)
        if batch_transform is not None:
            inputs, target = batch_transform(inputs, target)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            out = task(model(inputs), target)
        loss = out["loss"]
        if step % FINITE_CHECK_EVERY == 0 and not torch.isfinite(total_loss + loss.detach()):
            raise NonFiniteLossError(f"loss became {loss.item()} after {seen} samples")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update(model)
        n = target.shape[0]
        total_loss += loss.detach().float() * n
        seen += n
    if not torch.isfinite(total_loss):
        raise NonFiniteLossError(f"loss became {total_loss.item()} within the epoch's {seen} samples")
    elapsed = time.perf_counter() - start
    return {"loss": total_loss.item() / max(seen, 1), "samples": seen,
            "samples_per_s": seen / elapsed if elapsed > 0 else math.inf}


def _first(x):
    if isinstance(x, dict):
        return {k: _first(v) for k, v in x.items()}
    return x[:1]


@torch.no_grad()
def latency_ms(model, batch, *, device="cpu", repeats: int = 10) -> float:
    """Batch-1 forward time in ms after a warm-up: what a deployed model costs per sample."""
    model.eval()
    x = _to_device(_first(batch), torch.device(device))
    for _ in range(3):
        model(x)
    start = time.perf_counter()
    for _ in range(repeats):
        model(x)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / repeats


def forward_tta(model, inputs, tta: bool = False) -> dict:
    """``model(inputs)``; with ``tta``, the logits and features are the mean of the image's and its
    horizontal mirror's (faces are near-symmetric, so the mirror is a second view of the same face)."""
    out = model(inputs)
    if not tta or not isinstance(inputs, torch.Tensor) or inputs.ndim != 4:
        return out
    mirrored = model(inputs.flip(-1))
    return {**out, "logits": (out["logits"] + mirrored["logits"]) / 2,
            "features": (out["features"] + mirrored["features"]) / 2}


@torch.no_grad()
def predict(model, loader, *, device="cpu", channels_last: bool = False, tta: bool = False):
    """Return (probabilities N x K, targets N, features N x D) over a loader."""
    model.eval()
    device = torch.device(device)
    probs, targets, feats = [], [], []
    for inputs, target in loader:
        inputs = _channels_last(_to_device(inputs, device), channels_last)
        out = forward_tta(model, inputs, tta)
        probs.append(out["logits"].float().softmax(-1).cpu())
        feats.append(out["features"].float().cpu())
        targets.append(target)
    return torch.cat(probs).numpy(), torch.cat(targets).numpy(), torch.cat(feats).numpy()


@torch.no_grad()
def evaluate(model, loader, task, *, device="cpu", channels_last: bool = False, tta: bool = False) -> dict:
    """Loss and classification metrics (accuracy, UAR, macro-F1, confusion) over a loader;
    ``tta``: of the mean logits of each image and its mirror."""
    model.eval()
    device = torch.device(device)
    total_loss, seen = 0.0, 0
    y_true, y_pred = [], []
    num_classes = None
    for inputs, target in loader:
        inputs = _channels_last(_to_device(inputs, device), channels_last)
        target = target.to(device)
        out = task(forward_tta(model, inputs, tta), target)
        logits = out["logits"]
        num_classes = logits.shape[-1]
        total_loss += out["loss"].item() * target.shape[0]
        seen += target.shape[0]
        y_true.append(target.cpu().numpy())
        y_pred.append(logits.argmax(-1).cpu().numpy())
    if not seen:
        raise ValueError("evaluate() got an empty loader")
    metrics = classification_metrics(np.concatenate(y_true), np.concatenate(y_pred), num_classes)
    metrics["loss"] = total_loss / seen
    return metrics
