"""``trainer_vs_bare``: ``bench.training.engine.train_one_epoch`` (Classification task) against a bare
PyTorch loop (``model(x)`` -> ``F.cross_entropy`` -> ``backward`` -> ``step``) on the same model,
batch and in-memory batches; interleaved repeats, ratio of the median throughputs."""
from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from .common import interleaved, median

SETTINGS = {
    # fer_cnn at the demo's 48x48, the batch size the demo space searches
    "full": {"model": "fer_cnn", "image_size": 48, "batch_size": 64, "batches": 24, "repeats": 7},
    "tiny": {"model": "fer_cnn", "image_size": 16, "batch_size": 16, "batches": 3, "repeats": 2},
}


def make_batches(spec, batch_size: int, count: int, num_classes: int, device) -> list:
    generator = torch.Generator().manual_seed(0)
    shape = (batch_size, *spec.input_size)
    return [(torch.randn(shape, generator=generator).to(device),
             torch.randint(0, num_classes, (batch_size,), generator=generator).to(device)) for _ in range(count)]


def bare_epoch(model, batches, optimizer) -> None:
    model.train()
    for x, y in batches:
        loss = F.cross_entropy(model(x)["logits"], y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def compare(model_name: str, image_size: int, batch_size: int, batches: int, repeats: int,
            device: str = "cpu", **engine_kwargs) -> dict:
    """Samples/s of the engine and of the bare loop, each on its own copy of one model."""
    import fer_models
    from bench.training.engine import train_one_epoch
    from bench.training.tasks import Classification

    torch.manual_seed(0)
    base = fer_models.create_model(model_name, num_classes=7, image_size=image_size).to(device)
    data = make_batches(base.input_spec, batch_size, batches, 7, device)
    engine_model, bare_model = base, copy.deepcopy(base)
    engine_opt = torch.optim.AdamW(engine_model.parameters(), lr=1e-3)
    bare_opt = torch.optim.AdamW(bare_model.parameters(), lr=1e-3)
    task = Classification().to(device)
    samples = batch_size * batches

    def engine() -> float:
        _sync(device)
        start = time.perf_counter()
        train_one_epoch(engine_model, data, task, engine_opt, device=device, **engine_kwargs)
        _sync(device)
        return samples / (time.perf_counter() - start)

    def bare() -> float:
        _sync(device)
        start = time.perf_counter()
        bare_epoch(bare_model, data, bare_opt)
        _sync(device)
        return samples / (time.perf_counter() - start)

    engine(), bare()  # warm-up: allocator, kernels, optimizer state
    rates = interleaved({"engine": engine, "bare": bare}, repeats)
    return {"engine_samples_per_s": median(rates["engine"]), "bare_samples_per_s": median(rates["bare"]),
            "ratio": median(rates["engine"]) / median(rates["bare"])}


def run(size: str, device: str = "cpu") -> dict:
    s = SETTINGS[size]
    result = compare(s["model"], s["image_size"], s["batch_size"], s["batches"], s["repeats"], device)
    return {"trainer_vs_bare": result["ratio"], "detail": {**s, "device": device, **result}}
