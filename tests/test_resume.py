"""Resume with real processes: a SIGKILLed driver, and marker-file fault injection."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def cli(tmp_path, cache_dir, *extra, env=None, wait=True):
    space = tmp_path / "space.yaml"
    if not space.exists():
        space.write_text(SPACE)
    argv = [sys.executable, "-m", "bench.cli", "search", "face", "--dataset", "synthetic", "--space", str(space),
            "--cache-dir", str(cache_dir), "--results-dir", str(tmp_path / "results"), "--quiet", *extra]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if wait:
        return subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=600)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env,
                            start_new_session=True)


def progress(run_dir: Path) -> dict[str, list[int]]:
    """Trial folder -> the training iterations it reported, in order."""
    out = {}
    for result in sorted(run_dir.glob("fer_trial_*/result.json")):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        out[result.parent.name] = [r["training_iteration"] for r in rows]
    return out


def records(tmp_path):
    path = tmp_path / "results" / "records.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_sigkilled_driver_resumes_without_rerunning_finished_trials(tmp_path, cache_dir):
    run_dir = tmp_path / "results" / "runs" / "killed"
    driver = cli(tmp_path, cache_dir, "--name", "killed", wait=False)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until one trial has finished all its epochs
        if any(iters and iters[-1] == 3 for iters in progress(run_dir).values()):
            break
        assert driver.poll() is None, driver.stdout.read()
        time.sleep(0.5)
    else:
        pytest.fail("no trial finished within 5 minutes")
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and every process it started
    driver.wait()
    time.sleep(2)
    before = progress(run_dir)
    finished_before = {name: (run_dir / name / "result.json").read_bytes()
                       for name, iters in before.items() if iters and iters[-1] == 3}
    assert finished_before
    # a trial that had started but not yet reported has an empty result.json
    assert len(before) < 4 or any(not iters or iters[-1] < 3 for iters in before.values()), "killed too late"
    assert records(tmp_path) == []  # the killed sweep recorded nothing

    resumed = cli(tmp_path, cache_dir, "--name", "killed", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = progress(run_dir)
    assert len(after) == 4  # the requested number of samples, no more
    for name, iters in after.items():
        assert iters == sorted(set(iters)), f"{name} repeated an epoch: {iters}"
        assert iters[-1] == 3
    for name, content in finished_before.items():
        assert (run_dir / name / "result.json").read_bytes() == content, f"finished {name} was re-run"
    (record,) = records(tmp_path)
    assert record["resumed"] is True and record["budget"]["trials"] == 4
    assert record["budget"]["epochs"] == 12 and 0 <= record["test"]["uar"] <= 1


def test_marker_file_faults_then_resume_errored(tmp_path, cache_dir):
    marker = tmp_path / "fail-now"
    marker.write_text("every trial fails while this exists")
    env = {"FER_BENCH_FAULT_MARKER": str(marker)}
    failed = cli(tmp_path, cache_dir, "--name", "faulty", "--samples", "2", env=env)
    assert failed.returncode == 2
    # Ray logs each trial's traceback as it fails (that is the debugging record); the run itself
    # ends with one sentence naming the cause.
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("fer-bench: error: every trial failed") and "fault injected" in last

    marker.unlink()
    resumed = cli(tmp_path, cache_dir, "--name", "faulty", "--resume", env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    (record,) = records(tmp_path)
    assert record["budget"]["trials"] == 2 and record["budget"]["errored"] == 0


def test_resume_refuses_a_changed_space(tmp_path, cache_dir):
    first = cli(tmp_path, cache_dir, "--name", "fixed", "--samples", "1", "--max-epochs", "1")
    assert first.returncode == 0, first.stderr
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.replace("1.0e-2", "2.0e-2"))
    again = cli(tmp_path, cache_dir, "--name", "fixed", "--resume")
    assert again.returncode == 2
    assert "changed since sweep 'fixed' began" in again.stderr
    same_name = cli(tmp_path, cache_dir, "--name", "fixed")
    assert same_name.returncode == 2 and "already exists" in same_name.stderr
