"""What makes face trials fast, as behaviour (speeds are `fer-bench perf face-throughput`'s, in
docs/perf.md): packed uint8 splits, batched augmentation that equals the per-sample path bit for
bit, bf16 autocast, the spare cores of a sweep with fewer jobs than slots."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data import get_adapter
from bench.data.packed import pack_path
from bench.data.tensors import FaceRecipe, TensorFaceDataset, flip_and_shift
from bench.errors import UserError
from bench.sweep.resources import sweep_cpus, trial_cpus
from bench.training.engine import CPU_BF16_FASTER, cpu_has_bf16, resolve_precision, train_one_epoch
from bench.training.tasks import Classification


def test_a_packed_split_round_trips_the_decoded_images_exactly(tmp_path):
    adapter = get_adapter("raf")
    root = adapter.make_fake(tmp_path / "data")
    cache = tmp_path / "cache"
    samples = adapter.index(root, cache).samples
    top, _ = adapter.locate(root)
    decoded = adapter._decode(samples, top, cache)
    first = adapter.load_arrays(samples, root, cache)  # decodes and writes the pack
    path = pack_path(cache, adapter.name, samples)
    assert path.is_file()
    again = adapter.load_arrays(samples, root, cache)  # read back, memory-mapped
    assert isinstance(again, np.memmap) and not again.flags.writeable
    assert again.dtype == np.uint8 and np.array_equal(again, decoded) and np.array_equal(first, decoded)
    assert pack_path(cache, adapter.name, samples[1:]) != path  # another split, another pack


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("recipe", [None, ("rand-m9-n2-mstd0.5", 0.0), ("none", 0.5), ("rand-m9-n2-mstd0.5", 0.5)])
def test_batched_augmentation_is_bitwise_the_per_sample_one(channels, recipe):
    x = torch.rand(40, channels, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    sets = [TensorFaceDataset(x, [i % 7 for i in range(40)], ("c",) * 7, [None] * 40, augment=True)
            for _ in range(2)]
    if recipe:
        for ds in sets:
            ds.set_recipe(FaceRecipe(*recipe, mean=(0.5,) * channels, std=(0.5,) * channels))
    order = [int(i) for i in torch.randperm(40, generator=torch.Generator().manual_seed(1))]
    per_sample, batched = sets
    per_sample.reseed(5)
    batched.reseed(5)
    one = torch.stack([per_sample[i][0] for i in order])
    batch = batched.__getitems__(order)
    assert torch.equal(one, torch.stack([b[0] for b in batch]))
    assert [int(b[1]) for b in batch] == [i % 7 for i in order]
    assert not torch.equal(one, x[order])  # it did augment
    batched.reseed(5)
    assert torch.equal(one, torch.stack([b[0] for b in batched.__getitems__(order)]))  # replays under the seed
    batched.reseed(6)
    assert not torch.equal(one, torch.stack([b[0] for b in batched.__getitems__(order)]))


def test_flip_and_shift_matches_torch_roll_per_image():
    x = torch.arange(2 * 1 * 16 * 16, dtype=torch.float32).view(2, 1, 16, 16)
    r = torch.tensor([[0.2, 0.0, 0.99], [0.7, 0.5, 0.1]])
    out = flip_and_shift(x, r)
    assert torch.equal(out[0], torch.roll(x[0].flip(-1), shifts=(1, -1), dims=(-2, -1)))
    assert torch.equal(out[1], torch.roll(x[1], shifts=(-1, 0), dims=(-2, -1)))


def test_precision_rules():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", "timm/resnet18", cpu) is None
    assert resolve_precision("fp32", "timm/resnet18", cpu, amp=True) == torch.bfloat16  # the older switch
    assert resolve_precision("bf16", "fer_cnn", cpu) == torch.bfloat16
    assert resolve_precision("auto", "timm/mobilenetv3_small_100", cpu) is None  # measured slower in bf16
    expected = torch.bfloat16 if cpu_has_bf16() else None
    assert all(resolve_precision("auto", family, cpu) == expected for family in CPU_BF16_FASTER)
    with pytest.raises(UserError, match="train.precision"):
        resolve_precision("half", "fer_cnn", cpu)


def test_bf16_autocast_trains_with_a_finite_loss(one_torch_thread):
    import fer_models

    torch.manual_seed(0)
    model = fer_models.create_model("fer_cnn", num_classes=3, image_size=16)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, *model.input_spec.input_size, generator=g), torch.arange(8) % 3) for _ in range(3)]
    before = [p.detach().clone() for p in model.parameters()]
    out = train_one_epoch(model, batches, Classification(), torch.optim.AdamW(model.parameters(), lr=1e-2),
                          amp=True, amp_dtype=torch.bfloat16, channels_last=True)
    assert math.isfinite(out["loss"]) and out["samples"] == 24
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast: weights stay fp32
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_trial_runs_in_bf16(cache_dir, one_torch_thread):
    from bench.training.trainable import run_trial

    reports = []
    run_trial({"model.name": "fer_cnn", "data.dataset": "synthetic", "data.image_size": 16,
               "train.batch_size": 128, "train.max_epochs": 1, "train.precision": "bf16"},
              cache_dir=cache_dir, report=lambda metrics, _: reports.append(metrics))
    assert len(reports) == 1 and math.isfinite(reports[0]["train/loss"])


@pytest.mark.parametrize("cpus, cores, jobs, workers, other, expected", [
    (1, 2, 1, 1, None, 2),   # FER2013's one refit on 2 cores: both
    (1, 2, 5, 1, None, 1),   # more jobs than cores: as asked
    (1, 16, 3, 1, None, 5),  # 3 trials on 16 cores: 5 each
    (2, 2, 3, 1, None, 2),
    (1, 16, 1, 2, None, 8),  # one two-worker trial: 8 per worker
    (1, 16, 24, 1, 4, 4),    # 4 trials share the GPU at once: the cores split 4 ways
    (0.5, 2, 3, 1, None, 0.5),
    (4, 2, 1, 1, None, 4),   # never less than asked
])
def test_trial_cpus(cpus, cores, jobs, workers, other, expected):
    assert trial_cpus(cpus, cores, jobs, workers, other) == expected


def test_a_cluster_keeps_the_cpus_asked():
    assert sweep_cpus(1.0, 1, address="10.0.0.1:6379") == 1.0


@pytest.mark.ray
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_a_local_ray_registers_the_cores_this_process_may_use():
    # `taskset -c 0 fer-bench search ...` or a Slurm job's cpuset: Ray alone counts the host's CPUs,
    # and two trials then share one core while the sweep planned one each
    code = ("import ray; from bench.sweep import tune_backend; tune_backend.connect(None); "
            "print(int(ray.cluster_resources()['CPU'])); ray.shutdown()")
    core = min(os.sched_getaffinity(0))
    ray_tmp = tempfile.mkdtemp(prefix="fbcpu", dir="/tmp")  # short: Ray's socket paths have a length limit
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              preexec_fn=lambda: os.sched_setaffinity(0, {core}),
                              env={**os.environ, "RAY_TMPDIR": ray_tmp})
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "1"


def test_face_throughput_figure_has_its_keys(cache_dir):
    from bench.perf.runner import run

    result = run("face-throughput", "tiny", Path(cache_dir))
    assert result["face_pipeline_vs_bare"] > 0 and math.isfinite(result["face_pipeline_vs_bare"])
    detail = result["detail"]["face-throughput"]["fer_cnn"]
    for key in ("pipeline_img_per_s", "bare_img_per_s", "bare_fp32_img_per_s", "ratio", "precision_speedup",
                "precision", "threads"):
        assert key in detail
    assert detail["ratio"] == result["face_pipeline_vs_bare"]
