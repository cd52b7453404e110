"""``gpu``: where a CUDA device is present, training throughput through ``bench.training.engine`` with
AMP, channels_last and ``torch.compile`` switched on in turn; several trials sharing one GPU
(as ``--gpus-per-trial`` fractions do) against one alone; the engine against a bare loop on the
GPU (where per-step host syncs cost most); and timm's published training figure for the same
model, batch and AMP. Elsewhere it returns ``{"skipped": reason}``."""
from __future__ import annotations

import time
from multiprocessing import get_context

import torch

from .common import median
from .trainer import compare as trainer_compare

# timm's published training throughput, resnet18, batch 512, 224x224, AMP, NCHW, SGD, on an
# RTX 3090 with PyTorch 1.12 / CUDA 11.3 (timm publishes no newer training CSV, nor any for an
# H100): 2764.22 samples/s. Source: https://github.com/huggingface/pytorch-image-models/blob/
# main/results/benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv (row "resnet18").
TIMM_PUBLISHED = {"model": "resnet18", "batch_size": 512, "image_size": 224, "amp": True,
                  "samples_per_s": 2764.22, "gpu": "RTX 3090", "torch": "1.12", "cuda": "11.3",
                  "source": "https://github.com/huggingface/pytorch-image-models/blob/main/results/"
                            "benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv"}

SETTINGS = {
    "full": {"model": "resnet18", "image_size": 112, "batch_size": 128, "steps": 40, "repeats": 3,
             "trials": 4, "trial_steps": 60, "timm_steps": 30},
    "tiny": {"model": "resnet18", "image_size": 32, "batch_size": 8, "steps": 2, "repeats": 1,
             "trials": 2, "trial_steps": 2, "timm_steps": 2},
}


def _model(name: str, channels_last: bool):
    import timm

    model = timm.create_model(name, num_classes=1000).cuda()
    return model.to(memory_format=torch.channels_last) if channels_last else model


class _Logits(torch.nn.Module):
    """timm returns logits; the engine's task reads the fer_models output dict."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return {"logits": self.net(x)}


def engine_rate(name: str, image_size: int, batch_size: int, steps: int, repeats: int, *, amp: bool,
                channels_last: bool, compile: bool = False, optimizer: str = "adamw", bf16: bool = False) -> float:
    """Median images/s of ``train_one_epoch`` over ``steps`` batches kept on the GPU (``bf16``:
    bfloat16 autocast without a loss scaler instead of the engine's float16 + GradScaler)."""
    from bench.training.engine import grad_scaler, train_one_epoch
    from bench.training.tasks import Classification

    torch.manual_seed(0)
    net = _model(name, channels_last)
    model = _Logits(torch.compile(net) if compile else net)
    opt = (torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9) if optimizer == "sgd"
           else torch.optim.AdamW(net.parameters(), lr=1e-4))
    dtype = torch.bfloat16 if bf16 else None
    scaler = grad_scaler("cuda", amp, dtype)
    x = torch.randn(batch_size, 3, image_size, image_size, device="cuda")
    y = torch.randint(0, 1000, (batch_size,), device="cuda")
    batches = [(x, y)] * steps
    task = Classification().cuda()

    def once() -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        train_one_epoch(model, batches, task, opt, device="cuda", scaler=scaler, amp=amp, channels_last=channels_last,
                        amp_dtype=dtype)
        torch.cuda.synchronize()
        return batch_size * steps / (time.perf_counter() - start)

    once()  # warm-up (and compilation)
    return median([once() for _ in range(repeats)])


def _trial_worker(settings: dict, barrier, results) -> None:
    """One of several trials sharing the GPU: warm up, start together, time fixed steps."""
    s = settings
    rate_steps = s["trial_steps"]
    from bench.training.engine import grad_scaler, train_one_epoch
    from bench.training.tasks import Classification

    torch.set_num_threads(1)
    net = _model(s["model"], True)
    model, opt = _Logits(net), torch.optim.AdamW(net.parameters(), lr=1e-4)
    scaler = grad_scaler("cuda", True)
    x = torch.randn(s["batch_size"], 3, s["image_size"], s["image_size"], device="cuda")
    y = torch.randint(0, 1000, (s["batch_size"],), device="cuda")
    task = Classification().cuda()
    train_one_epoch(model, [(x, y)] * 3, task, opt, device="cuda", scaler=scaler, amp=True, channels_last=True)
    torch.cuda.synchronize()
    barrier.wait()
    start = time.perf_counter()
    train_one_epoch(model, [(x, y)] * rate_steps, task, opt, device="cuda", scaler=scaler, amp=True,
                    channels_last=True)
    torch.cuda.synchronize()
    results.put((start, time.perf_counter(), s["batch_size"] * rate_steps))


def shared_gpu_rate(settings: dict, trials: int) -> float:
    """Aggregate images/s of ``trials`` processes training at once on the one GPU."""
    ctx = get_context("spawn")
    barrier, results = ctx.Barrier(trials), ctx.Queue()
    procs = [ctx.Process(target=_trial_worker, args=(settings, barrier, results)) for _ in range(trials)]
    for p in procs:
        p.start()
    rows = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return sum(r[2] for r in rows) / (max(r[1] for r in rows) - min(r[0] for r in rows))


def run(size: str) -> dict:
    from bench.training.engine import autocast_dtype

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device: AMP, channels_last, torch.compile and shared-GPU trials need one"}
    s = SETTINGS[size]
    args = (s["model"], s["image_size"], s["batch_size"], s["steps"], s["repeats"])
    rates = {
        "fp32": engine_rate(*args, amp=False, channels_last=False),
        "amp": engine_rate(*args, amp=True, channels_last=False),
        "amp_bf16": engine_rate(*args, amp=True, channels_last=False, bf16=True),
        "amp_channels_last": engine_rate(*args, amp=True, channels_last=True),
        "amp_channels_last_compile": engine_rate(*args, amp=True, channels_last=True, compile=True),
    }
    one, several = shared_gpu_rate(s, 1), shared_gpu_rate(s, s["trials"])
    t = TIMM_PUBLISHED
    timm_bs = t["batch_size"] if size == "full" else s["batch_size"]
    timm_size = t["image_size"] if size == "full" else s["image_size"]
    ours = engine_rate(t["model"], timm_size, timm_bs, s["timm_steps"], s["repeats"], amp=True,
                       channels_last=False, optimizer="sgd")
    ours_bf16 = engine_rate(t["model"], timm_size, timm_bs, s["timm_steps"], s["repeats"], amp=True,
                            channels_last=False, optimizer="sgd", bf16=True)
    bare = trainer_compare("fer_cnn", 48, 64, s["steps"] * 2, s["repeats"] * 2, device="cuda")
    return {
        "amp_speedup": rates["amp"] / rates["fp32"],
        "amp_bf16_vs_fp16": rates["amp_bf16"] / rates["amp"],
        "channels_last_speedup": rates["amp_channels_last"] / rates["amp"],
        "compile_speedup": rates["amp_channels_last_compile"] / rates["amp_channels_last"],
        "shared_gpu_throughput": several / one,
        "timm_published_ratio": ours / t["samples_per_s"],
        "trainer_vs_bare_gpu": bare["ratio"],
        "detail": {**s, "gpu": torch.cuda.get_device_name(0), "images_per_s": rates,
                   "amp_dtype": str(autocast_dtype("cuda")).replace("torch.", ""),
                   "shared_gpu": {"trials": s["trials"], "one_trial_images_per_s": one,
                                  "all_trials_images_per_s": several},
                   "timm": {"ours_samples_per_s": ours, "ours_bf16_samples_per_s": ours_bf16,
                            "batch_size": timm_bs, "image_size": timm_size,
                            "published": t},
                   "trainer_vs_bare_gpu": {"model": "fer_cnn", "image_size": 48, "batch_size": 64, **bare}},
    }
