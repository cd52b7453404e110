"""The numbers a refactor must not change: a small run of the demo sweep's space and the
benchmark that retrains its winner on every fold, pinned to the values the code gave before the
structure refactor (issue 14). Change the pin only in a commit that changes numbers on purpose,
and say so there.

One trial at a time (1 CPU for Ray, 1 per trial), so Optuna's suggestions and ASHA's decisions do
not depend on which trial reports first, and each trial's torch uses one thread: a thread count
changes the floats' summation order, so it is part of the pin (two threads until 2026-12-07, when
the pin was regenerated with one: the suite gives each test process one core).

The floats are those of one kind of CPU: the same code on an Intel Xeon gave other floats than on
the AMD EPYC the pin was made on (2026-12-07: there another trial of the
same three won), since torch's kernels differ by instruction set. So there is a pin per CPU vendor,
``golden/pinned_numbers/<vendor_id>.json``, each made by running this file on that CPU with the same
code, on one core as the suite runs it (``taskset -c 0 python tests/test_pinned_numbers.py``: with
two cores visible the benchmark's test loss differed in the 8th digit). The Intel one: numbers
identical for the commit before and after that session's changes."""
import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def cpu_vendor() -> str:
    """/proc/cpuinfo's vendor_id (GenuineIntel, AuthenticAMD), else the machine's architecture."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine() or "unknown"


PIN = Path(__file__).parent / "golden" / "pinned_numbers" / f"{cpu_vendor()}.json"
# Two of the synthetic protocol's five folds: the refit's code path is the same on every fold, and
# the suite's two processes spent ~5 minutes on all five (the two-thread numbers of these two were
# those of the five-fold pin of commit ed26a43).
PINNED_FOLDS = [0, 3]


def pinned_view(record: dict) -> dict:
    """What the pin compares: the chosen configuration and every number derived from training."""
    record = record.to_dict() if hasattr(record, "to_dict") else record  # a typed Record or its JSON line
    return {
        "model": record["model"], "fold": record["fold"], "seed": record["seed"],
        "config": {k: v for k, v in record["config"].items() if k not in ("data.data_root",)},
        "val": record.get("val", {}), "test": record["test"], "checkpoint_epoch": record.get("checkpoint_epoch"),
        "params": record["params"],
    }


def run_pinned(cache_dir: Path, results: Path) -> dict:
    import ray

    from bench import api
    from bench.sweep import tune_backend

    if ray.is_initialized():
        ray.shutdown()
    tune_backend.connect(None, num_cpus=1)
    try:
        space = Path(__file__).parents[1] / "search_spaces" / "face" / "synthetic.yaml"
        found = api.search("face", "synthetic", space_path=str(space), samples=3, max_epochs=3,
                           cpus_per_trial=1, name="pinned", cache_dir=str(cache_dir),
                           results_dir=str(results), verbose=0, estimate=False)
        retrained = api.benchmark("synthetic", "face", cpus_per_trial=1, cache_dir=str(cache_dir),
                                  results_dir=str(results), verbose=0, folds=PINNED_FOLDS)
    finally:
        ray.shutdown()
    return {"search": pinned_view(found.record),
            "benchmark": sorted((pinned_view(r) for r in retrained), key=lambda r: r["fold"])}


def test_demo_sweep_and_benchmark_numbers_are_pinned(tmp_path, cache_dir):
    if not PIN.exists():
        pytest.skip(f"no pinned numbers for this CPU ({cpu_vendor()}): a pin holds one kind of CPU's exact "
                    f"floats; `python tests/test_pinned_numbers.py` on the unchanged code makes {PIN.name}")
    got = json.loads(json.dumps(run_pinned(cache_dir, tmp_path / "results")))  # tuples -> lists
    want = json.loads(PIN.read_text())
    assert got["search"]["config"] == want["search"]["config"]
    assert [r["fold"] for r in got["benchmark"]] == [r["fold"] for r in want["benchmark"]]
    assert _close(got, want)


def _close(got, want, path="") -> bool:
    """Equal structure; floats equal to 1e-9 (the same code on the same kind of CPU gives the same bits)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), f"{path}: keys {sorted(got)} != {sorted(want)}"
        return all(_close(got[k], want[k], f"{path}.{k}") for k in want)
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: length"
        return all(_close(g, w, f"{path}[{i}]") for i, (g, w) in enumerate(zip(got, want)))
    if isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), f"{path}: {got} != {want}"
        return True
    assert got == want, f"{path}: {got!r} != {want!r}"
    return True


if __name__ == "__main__":  # regenerate the pin (only in a commit that changes numbers on purpose)
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp) / "cache"
        PIN.write_text(json.dumps(run_pinned(cache, Path(tmp) / "results"), indent=1, sort_keys=True) + "\n")
    print(f"wrote {PIN}")
