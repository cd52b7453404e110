"""A real (tiny) Ray Tune sweep, end to end: space -> Tune -> best on val -> test -> record -> table."""
import json

import pytest

from bench.cli import main

SPACE = """
schema: 1
modality: face
budget: {samples: 3, max_epochs: 2}
searcher: {name: optuna, sampler: tpe, seed: 0}
scheduler: {name: asha, grace_period: 1, reduction_factor: 2}
fixed: {data.image_size: 32}
params:
  model.name: {choice: [fer_cnn]}
  optim.lr:   {float: [1.0e-3, 1.0e-2], log: true}
  train.batch_size: {choice: [64, 128]}
"""


@pytest.mark.ray
def test_tiny_sweep_records_a_test_result_and_a_leaderboard(tmp_path, cache_dir, capsys):
    space = tmp_path / "tiny.yaml"
    space.write_text(SPACE)
    results = tmp_path / "results"
    code = main(["search", "face", "--dataset", "synthetic", "--space", str(space), "--name", "tiny",
                 "--cache-dir", str(cache_dir), "--results-dir", str(results), "--quiet"])
    assert code == 0
    records = [json.loads(line) for line in (results / "records.jsonl").read_text().splitlines()]
    assert len(records) == 1
    record = records[0]
    assert record["selection"] == "val" and record["model"] == "fer_cnn"
    assert record["budget"]["trials"] == 3 and 3 <= record["budget"]["epochs"] <= 6
    assert 0.0 <= record["test"]["uar"] <= 1.0 and record["test"]["samples"] > 0
    assert record["space_hash"] and record["provenance"]["versions"]["ray"]
    assert (results / "runs" / "tiny").is_dir()
    # the estimate timed the very configurations the sweep's searcher then drew, in its order
    from bench.sweep.budget import representative_configs
    from bench.sweep.spaces import load_space

    ran = []
    for folder in sorted((results / "runs" / "tiny").glob("fer_trial_*"), key=lambda f: int(f.name.split("_")[3])):
        config = json.loads((folder / "result.json").read_text().splitlines()[0])["config"]
        ran.append({k: config[k] for k in ("model.name", "optim.lr", "train.batch_size")})
    drawn = representative_configs(load_space(space), {}, draws=3, seed=0)
    assert ran == [{k: c[k] for k in ("model.name", "optim.lr", "train.batch_size")} for c in drawn]
    assert (results / "models" / "tiny" / "checkpoint.pt").is_file()

    capsys.readouterr()
    assert main(["leaderboard", "--results-dir", str(results)]) == 0
    table = (results / "leaderboard.md").read_text()
    assert "## synthetic — face" in table and "| 1 | fer_cnn |" in table
    assert f"{100 * record['test']['uar']:.1f}" in table
    assert (results / "leaderboard.csv").read_text().startswith("dataset,modality,protocol,rank")
