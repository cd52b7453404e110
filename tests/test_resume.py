"""Resume with real processes: marker-file fault injection, then what a resume refuses. (A
SIGKILLed driver and its resume: tests/test_sweep_endings.py, the thrice-interrupted sweep.)"""
import json
import os
import subprocess
import sys

import pytest

SPACE = """
schema: 1
modality: face
budget: {samples: 4, max_epochs: 3}
searcher: {name: optuna, sampler: tpe, seed: 0}
scheduler: {name: fifo}
fixed: {data.image_size: 32, model.name: fer_cnn}
params:
  optim.lr:         {float: [1.0e-3, 1.0e-2], log: true}
  train.batch_size: {choice: [64, 128]}
"""

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def cli(tmp_path, cache_dir, *extra, env=None):
    space = tmp_path / "space.yaml"
    if not space.exists():
        space.write_text(SPACE)
    argv = [sys.executable, "-m", "bench.cli", "search", "face", "--dataset", "synthetic", "--space", str(space),
            "--cache-dir", str(cache_dir), "--results-dir", str(tmp_path / "results"), "--quiet", *extra]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=600)


def records(tmp_path):
    path = tmp_path / "results" / "records.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_marker_file_faults_then_resume_errored(tmp_path, cache_dir):
    marker = tmp_path / "fail-now"
    marker.write_text("every trial fails while this exists")
    env = {"FER_BENCH_FAULT_MARKER": str(marker)}
    failed = cli(tmp_path, cache_dir, "--name", "faulty", "--samples", "2", "--max-epochs", "1", env=env)
    assert failed.returncode == 2
    # Ray logs each trial's traceback as it fails (that is the debugging record); the run itself
    # ends with one sentence naming the cause.
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("fer-bench: error: every trial failed") and "fault injected" in last
    errors = list((tmp_path / "results" / "runs" / "faulty").glob("fer_trial_*/error.txt"))
    assert len(errors) == 2  # a fault is retried (a config error is not: tests/test_sweep_budget.py)
    assert all("Failure # 3" in e.read_text() for e in errors)  # max_failures=2: a try, two retries

    marker.unlink()
    resumed = cli(tmp_path, cache_dir, "--name", "faulty", "--resume", env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    (record,) = records(tmp_path)
    assert record["budget"]["trials"] == 2 and record["budget"]["errored"] == 0

    # the finished sweep cannot be resumed with another space, nor started again under its name
    (tmp_path / "space.yaml").write_text(SPACE.replace("1.0e-2", "2.0e-2"))
    again = cli(tmp_path, cache_dir, "--name", "faulty", "--resume")
    assert again.returncode == 2
    assert "changed since sweep 'faulty' began" in again.stderr
    same_name = cli(tmp_path, cache_dir, "--name", "faulty")
    assert same_name.returncode == 2 and "already exists" in same_name.stderr
