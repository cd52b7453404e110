"""--workers-per-trial: each trial is a Ray Train run (DistributedDataParallel over N workers)."""
import json

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
def test_two_worker_trials_train_with_ddp_and_record_a_result(tmp_path, cache_dir):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    results = tmp_path / "results"
    assert main(["search", "face", "--dataset", "synthetic", "--space", str(space), "--name", "ddp",
                 "--workers-per-trial", "2", "--cache-dir", str(cache_dir), "--results-dir", str(results),
                 "--quiet"]) == 0
    rows = [json.loads(line) for path in (results / "runs" / "ddp").glob("fer_ddp_trial_*/result.json")
            for line in path.read_text().splitlines() if line.strip()]
    assert rows and {r["world_size"] for r in rows} == {2}
    (record,) = [json.loads(line) for line in (results / "records.jsonl").read_text().splitlines()]
    assert record["budget"]["trials"] == 2 and 0 <= record["test"]["uar"] <= 1
    assert (results / "models" / "ddp" / "checkpoint.pt").is_file()


def test_more_workers_than_the_cluster_holds_is_one_sentence(tmp_path, capsys):
    code = main(["search", "face", "--dataset", "synthetic", "--workers-per-trial", "64", "--samples", "1",
                 "--results-dir", str(tmp_path), "--quiet"])
    assert code == 2
    assert "--workers-per-trial 64 needs 64 CPUs per trial" in capsys.readouterr().err
