"""Shared fixtures: a session-wide synthetic cache and the optional real data beside the repo."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# The cores pytest started with, before pytest_configure gives each xdist process its share.
ALL_CORES = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()


def pytest_configure(config):
    """Each pytest-xdist process runs on its own share of the cores (gw0 the even ones, gw1 the odd
    ones on two processes), and everything it starts inherits that share: its Ray registers those
    cores (``tune_backend.connect``) and its trials' torch threads fit them. Two processes whose
    two-thread trials shared both cores made each OpenMP step wait for a descheduled thread: the
    pinned demo test took 4x its time alone. Tests that need two cores for one trial say so
    (``all_cores``)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    if worker and count > 1 and len(ALL_CORES) >= count:
        os.sched_setaffinity(0, set(sorted(ALL_CORES)[int(worker.removeprefix("gw")) % count::count]))


@pytest.fixture
def all_cores():
    """All of the machine's cores for this test (two DDP workers a trial): the processes it starts
    from here on inherit them; an earlier test's Ray in this process, started on this process's
    share, is stopped first."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    if not ALL_CORES:  # no affinity on this platform: nothing was restricted
        yield
        return
    share = os.sched_getaffinity(0)
    os.sched_setaffinity(0, ALL_CORES)
    yield
    os.sched_setaffinity(0, share)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The third-party datasets beside the project (never copied into it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it sits beside the project checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory, worker_id) -> Path:
    """One cache for the whole run, shared by the pytest-xdist processes as a sweep's concurrent
    trials share theirs (entries and generated sets are published atomically; two processes that
    race for one keep the first): each synthetic set is generated, and each representation
    computed, once per run rather than once per process."""
    base = tmp_path_factory.getbasetemp()
    path = (base.parent if worker_id != "master" else base) / "fer-cache"
    path.mkdir(exist_ok=True)
    return path


TINY_FACE_SPACE = """
schema: 1
modality: face
budget: {samples: 3, max_epochs: 1}
scheduler: {name: fifo}
fixed: {data.image_size: 32, model.name: fer_cnn}
params:
  optim.lr: {float: [1.0e-3, 1.0e-2], log: true}
"""


@pytest.fixture
def tiny_face_space(tmp_path) -> Path:
    """A 3-trial, 1-epoch fer_cnn space at 32 px: the sweep the benchmark tests retrain."""
    path = tmp_path / "space.yaml"
    path.write_text(TINY_FACE_SPACE)
    return path


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for model builds and small forward passes: the test machine's 2
    cores are shared, and oversubscribed torch threads made these tests 10x slower there."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# The end-to-end tests that take minutes (kill/resume, benchmarks, the pinned demo): run first, so
# that on two test processes (pytest-xdist) the long ones overlap each other and the many short
# tests fill in around them, instead of one long test running alone at the end.
LONG_FIRST = ("test_sweep_endings", "test_benchmark_resume", "test_pinned_numbers", "test_fusion_from_best",
              "test_resume", "test_sweep_budget", "test_cluster", "test_ddp_trials", "test_benchmark",
              "test_ensemble")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rsplit(".", 1)[-1], len(LONG_FIRST))
               if item.module is not None else len(LONG_FIRST))
    # The fast stage's few Ray tests share one test process (``--dist loadgroup``): two Rays starting
    # side by side on 2 cores took each ~3x its time alone, while the other process's plain tests
    # lose little beside one. (The slow stage is mostly Ray tests: there they spread.)
    for item in items:
        if item.get_closest_marker("ray") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.xdist_group("fast-ray"))
