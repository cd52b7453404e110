"""A benchmark that survives: each fold x seed is recorded as soon as it is tested, a SIGKILLed
driver loses no finished fold, and --resume runs only the rest (through Tuner.restore)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cli import main
from bench.sweep.resources import local_cores

SPACE = """
schema: 1
modality: face
budget: {samples: 1, max_epochs: 3}
scheduler: {name: fifo}
fixed: {data.image_size: 32, model.name: fer_cnn, train.batch_size: 64}
params:
  optim.lr: {float: [1.0e-3, 1.0e-2], log: true}
"""


def _records(results: Path) -> list[dict]:
    path = results / "records.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _benchmark_cli(results: Path, cache_dir: Path, *extra, wait=True):
    # every core of this process per run: one fold at a time, so the kill lands between folds
    cores = local_cores()
    argv = [sys.executable, "-m", "bench.cli", "benchmark", "--dataset", "synthetic", "--cache-dir", str(cache_dir),
            "--results-dir", str(results), "--cpus-per-trial", str(cores), "--quiet", *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if wait:
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def test_resume_of_a_benchmark_that_does_not_exist_is_one_sentence(tmp_path, capsys):
    from bench.results.record import Record
    from bench.results.store import append_record

    results = tmp_path / "results"
    append_record(results, Record(kind="search", dataset="synthetic", family="face", run="s", selection="val",
                                  objective="val/uar", objective_mode="max", val={"uar": 0.5}))
    assert main(["benchmark", "--dataset", "synthetic", "--results-dir", str(results), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"fer-bench: error: no benchmark of sweep 's' to resume under {str(results / 'runs')!r}; "
                   "run it without --resume, or give the same --storage / --results-dir"]
    assert main(["benchmark", "--dataset", "synthetic", "--results-dir", str(results), "--resume",
                 "--name", "nope"]) == 2
    assert "no benchmark named 'nope' to resume" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.ray
def test_sigkilled_benchmark_keeps_finished_folds_and_resume_runs_only_the_rest(tmp_path, cache_dir):
    results = tmp_path / "results"
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    assert main(["search", "face", "--dataset", "synthetic", "--space", str(space), "--name", "s",
                 "--cache-dir", str(cache_dir), "--results-dir", str(results), "--quiet"]) == 0
    driver = _benchmark_cli(results, cache_dir, "--name", "bm", wait=False)
    deadline = time.time() + 600
    while time.time() < deadline:  # wait for the first recorded fold
        if any(r["kind"] == "benchmark" for r in _records(results)):
            break
        assert driver.poll() is None, driver.stdout.read()
        time.sleep(0.5)
    else:
        pytest.fail("no fold recorded within 10 minutes")
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and every Ray process it started
    driver.wait()
    time.sleep(2)
    kept = [r for r in _records(results) if r["kind"] == "benchmark"]
    assert 1 <= len(kept) < 5, "killed too late"  # the finished folds survived the kill
    run_dir = results / "runs" / "bm"
    finished = {p.parent.name: p.read_bytes() for p in run_dir.glob("fer_trial_*/result.json")
                if p.read_text().count("\n") == 3}  # one line per epoch: all three done

    resumed = _benchmark_cli(results, cache_dir, "--resume")  # no --name: the sweep's latest benchmark
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # the folds that had not started when the driver died are no warning of Ray's on the resume
    assert "Failed to fetch metrics" not in resumed.stdout + resumed.stderr, resumed.stderr
    bench = [r for r in _records(results) if r["kind"] == "benchmark"]
    assert sorted(r["fold"] for r in bench) == [0, 1, 2, 3, 4]  # every fold once, none repeated
    assert bench[:len(kept)] == kept  # the records written before the kill are untouched
    assert all(r["benchmark_run"] == "bm" for r in bench)
    assert all(r.get("resumed") for r in bench[len(kept):])
    for name, content in finished.items():  # a finished fold was not trained again
        assert (run_dir / name / "result.json").read_bytes() == content, f"{name} was re-run"
    assert "5 record(s) in the store for benchmark bm" in resumed.stdout


@pytest.mark.slow
@pytest.mark.ray
def test_a_fault_mid_benchmark_is_retried_and_every_fold_recorded(tmp_path, cache_dir):
    results = tmp_path / "results"
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.replace("max_epochs: 3", "max_epochs: 2"))
    assert main(["search", "face", "--dataset", "synthetic", "--space", str(space), "--name", "s",
                 "--cache-dir", str(cache_dir), "--results-dir", str(results), "--quiet"]) == 0
    marker = tmp_path / "fail-now"
    marker.write_text("every retrain fails while this exists")
    argv = [sys.executable, "-m", "bench.cli", "benchmark", "--dataset", "synthetic", "--cache-dir", str(cache_dir),
            "--results-dir", str(results), "--cpus-per-trial", "1", "--quiet", "--name", "faulty"]
    driver = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "FER_BENCH_FAULT_MARKER": str(marker)})
    run_dir = results / "runs" / "faulty"
    deadline = time.time() + 300
    while not list(run_dir.glob("fer_trial_*/error.txt")):  # the first retrain has failed once
        assert time.time() < deadline and driver.poll() is None, driver.stdout.read()
        time.sleep(0.2)
    marker.unlink()  # the fault is over: Ray's retry (FailureConfig) continues from the last checkpoint
    out, _ = driver.communicate(timeout=900)
    assert driver.returncode == 0, out
    bench = [r for r in _records(results) if r["kind"] == "benchmark"]
    assert sorted(r["fold"] for r in bench) == [0, 1, 2, 3, 4], out
    assert "fault injected" in (next(run_dir.glob("fer_trial_*/error.txt"))).read_text()
