"""--workers-per-trial: each trial is a Ray Train run (DistributedDataParallel over N workers)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bench.cli import main

SPACE = """
schema: 1
modality: face
budget: {samples: 2, max_epochs: 2}
scheduler: {name: asha, grace_period: 1, reduction_factor: 2}
fixed: {data.image_size: 32, model.name: fer_cnn}
params:
  optim.lr: {float: [1.0e-3, 1.0e-2], log: true}
"""


@pytest.mark.slow
@pytest.mark.ray
def test_two_worker_trials_train_with_ddp_and_record_a_result(tmp_path, cache_dir, all_cores):
    """In a subprocess with its own Ray temp dir whose `ray_current_cluster` names a cluster long
    gone (what `ray start` leaves behind): Ray Train's placement-group cleaner once followed it and
    the sweep hung forever; a hang now fails here instead of stalling CI."""
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    results = tmp_path / "results"
    ray_tmp = Path(tempfile.mkdtemp(prefix="fbddp", dir="/tmp"))  # short: Ray's socket paths have a length limit
    (ray_tmp / "ray").mkdir()
    (ray_tmp / "ray" / "ray_current_cluster").write_text("192.0.2.2:6391")  # TEST-NET-1: nothing answers
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.cli", "search", "face", "--dataset", "synthetic", "--space", str(space),
             "--name", "ddp", "--workers-per-trial", "2", "--cache-dir", str(cache_dir), "--results-dir",
             str(results), "--quiet"],
            env={**os.environ, "RAY_TMPDIR": str(ray_tmp)}, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail("a two-worker sweep did not finish within 10 minutes (hung)")
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [json.loads(line) for path in (results / "runs" / "ddp").glob("fer_ddp_trial_*/result.json")
            for line in path.read_text().splitlines() if line.strip()]
    assert rows and {r["world_size"] for r in rows} == {2}
    (record,) = [json.loads(line) for line in (results / "records.jsonl").read_text().splitlines()]
    assert record["budget"]["trials"] == 2 and 0 <= record["test"]["uar"] <= 1
    assert (results / "models" / "ddp" / "checkpoint.pt").is_file()


@pytest.mark.ray  # it starts Ray to ask how many CPUs the cluster has
def test_more_workers_than_the_cluster_holds_is_one_sentence(tmp_path, capsys):
    code = main(["search", "face", "--dataset", "synthetic", "--workers-per-trial", "64", "--samples", "1",
                 "--results-dir", str(tmp_path), "--quiet"])
    assert code == 2
    assert "--workers-per-trial 64 needs 64 CPUs per trial" in capsys.readouterr().err
