"""The benchmark stage: top-k configs chosen on validation, retrained on every fold x seed."""
import json

import pytest

from bench.cli import main
from bench.errors import UserError
from bench.sweep.benchmark import expand_jobs, source_search_record

SPACE = """
schema: 1
modality: face
budget: {samples: 3, max_epochs: 1}
scheduler: {name: fifo}
fixed: {data.image_size: 32, model.name: fer_cnn}
params:
  optim.lr: {float: [1.0e-3, 1.0e-2], log: true}
"""


def test_jobs_cover_every_fold_and_seed_of_each_config():
    jobs = expand_jobs([{"model.name": "a"}, {"model.name": "b"}], folds=3, seeds=2)
    assert len(jobs) == 12
    assert {(j["model.name"], j["data.fold"], j["train.seed"]) for j in jobs} == {
        (m, f, s) for m in "ab" for f in range(3) for s in range(2)}


def test_benchmark_without_a_sweep_says_which_command_to_run():
    with pytest.raises(UserError, match="run `fer-bench search face --dataset synthetic` first"):
        source_search_record([], "synthetic", "face")


@pytest.mark.slow
@pytest.mark.ray
def test_benchmark_retrains_top_k_on_every_fold(tmp_path, cache_dir, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    common = ["--cache-dir", str(cache_dir), "--results-dir", str(tmp_path / "results"), "--quiet"]
    assert main(["search", "face", "--dataset", "synthetic", "--space", str(space), "--name", "b", *common]) == 0
    assert main(["benchmark", "--dataset", "synthetic", "--top-k", "2", "--no-refit", *common]) == 0
    records = [json.loads(line) for line in (tmp_path / "results" / "records.jsonl").read_text().splitlines()]
    search, retrains = records[0], records[1:]
    assert len(retrains) == 2 * 5 and {r["kind"] for r in retrains} == {"benchmark"}
    assert all(r["selection"] == "val" and r["budget"]["trials"] == 3 for r in retrains)
    best_lr = search["config"]["optim.lr"]
    assert {r["fold"] for r in retrains if r["config"]["optim.lr"] == best_lr} == set(range(5))
    # fold 0, seed 0 of the search winner is the same training run: identical test result
    again = next(r for r in retrains if r["config"]["optim.lr"] == best_lr and r["fold"] == 0)
    assert again["test"]["uar"] == pytest.approx(search["test"]["uar"])
    capsys.readouterr()
    assert main(["leaderboard", "--results-dir", str(tmp_path / "results")]) == 0
    assert "| 5 |" in capsys.readouterr().out  # n = 5 folds per config


@pytest.mark.slow
@pytest.mark.ray
def test_refit_retrains_on_train_plus_val_up_to_the_sweeps_best_epoch(tmp_path, cache_dir, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.replace("samples: 3, max_epochs: 1", "samples: 2, max_epochs: 3"))
    results = tmp_path / "results"
    common = ["--cache-dir", str(cache_dir), "--results-dir", str(results), "--quiet"]
    assert main(["search", "face", "--dataset", "synthetic", "--space", str(space), "--name", "r", *common]) == 0
    assert main(["benchmark", "--dataset", "synthetic", *common]) == 0  # refit is the default
    records = [json.loads(line) for line in (results / "records.jsonl").read_text().splitlines()]
    search, refits = records[0], records[1:]
    from bench.sweep.trials import read_trials

    trials = read_trials(results / "runs" / "r")
    winner = next(t for t in trials if t.config["optim.lr"] == search["config"]["optim.lr"])
    best_epoch = winner.best_epoch("val/uar", "max")
    assert len(refits) == 5 and all(r["config"]["data.refit"] is True for r in refits)
    assert {r["config"]["train.stop_epoch"] for r in refits} == {best_epoch}
    # trained to that epoch and tested there: validation is training data now, so it selects nothing
    assert {r["checkpoint_epoch"] for r in refits} == {best_epoch}
    assert all("val" not in r for r in refits)
    # each fold trained on train + val
    assert all(r["split_sizes"]["train"] > search["split_sizes"]["train"] for r in refits if r["fold"] == 0)
    # the scenario: the sweep's test run and the refit repeats of its configuration are one row
    from bench.reports.leaderboard import build_rows
    from bench.results.store import load_records

    rows = build_rows(load_records(results))[("synthetic", "face")]
    assert len(rows) == 1 and (rows[0]["n"], rows[0]["kinds"]) == (5, "benchmark")
    assert rows[0]["ids"] == [r["id"] for r in records]  # the sweep's record and all five repeats
