"""The benchmark stage: top-k configs chosen on validation, retrained on every fold x seed."""
import json

import pytest

from bench.cli import main
from bench.errors import UserError
from bench.sweep.benchmark import expand_jobs, source_search_record


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
def test_benchmark_retrains_top_k_on_every_fold(tmp_path, cache_dir, capsys, tiny_face_space):
    space = tiny_face_space
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
def test_refit_retrains_on_train_plus_val_up_to_the_sweeps_best_epoch(tmp_path, cache_dir, capsys,
                                                                    tiny_face_space):
    space = tiny_face_space
    space.write_text(space.read_text().replace("samples: 3, max_epochs: 1", "samples: 2, max_epochs: 3"))
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


def _nested(kind, fold, uar, model="fer_cnn", lr=0.01):
    from bench.results.record import Record

    return Record(kind=kind, dataset="synthetic", family="face", protocol="p", model=model, fold=fold, seed=0,
                  run=f"n-fold{fold}", nested="n", selection="val",
                  config={"model.name": model, "optim.lr": lr, "data.fold": fold, "train.seed": 0},
                  test={"accuracy": uar, "uar": uar, "macro_f1": uar}, budget={"trials": 2, "wall_seconds": 10.0})


def test_nested_folds_form_one_marked_row_however_many_configs_they_chose():
    from bench.reports.leaderboard import build_rows, to_markdown
    from bench.results.record import Record

    records = [_nested("search", 0, 0.5, lr=0.01), _nested("benchmark", 0, 0.6, lr=0.01),
               _nested("search", 1, 0.4, lr=0.02), _nested("benchmark", 1, 0.7, lr=0.02, model="timm/resnet10t"),
               Record(kind="benchmark", dataset="synthetic", family="face", protocol="p", model="fer_cnn", fold=0,
                      seed=0, selection="val", config={"model.name": "fer_cnn", "optim.lr": 0.01, "data.fold": 0},
                      test={"accuracy": 0.9, "uar": 0.9, "macro_f1": 0.9})]
    rows = build_rows(records)[("synthetic", "face")]
    nested = next(r for r in rows if r["nested"])
    assert len(rows) == 2 and nested["n"] == 2 and nested["uar"] == pytest.approx(0.65)  # the two refits
    assert nested["model"] == "nested search (fer_cnn, timm/resnet10t)" and nested["trials"] == 4
    assert "nested search" in to_markdown(build_rows(records))


def test_nested_runs_only_the_folds_not_yet_refit_and_refuses_what_it_cannot_do():
    from bench.sweep.nested import check_nested_request, folds_to_run, searched

    records = [_nested("search", 0, 0.5), _nested("benchmark", 0, 0.6), _nested("search", 1, 0.4)]
    assert folds_to_run(records, "n", 3, seeds=1) == [1, 2]
    assert folds_to_run(records, "other", 3, seeds=1) == [0, 1, 2]
    assert searched(records, "n", "n-fold1") and not searched(records, "n", "n-fold2")
    with pytest.raises(UserError, match="--ensemble"):
        check_nested_request(top_k=1, ensemble=3, eval_dataset=None, refit=True)
    with pytest.raises(UserError, match="--no-refit"):
        check_nested_request(top_k=1, ensemble=0, eval_dataset=None, refit=False)


@pytest.mark.slow
@pytest.mark.ray
def test_nested_benchmark_searches_inside_each_outer_fold(tmp_path):
    """On a fake TESS (2 outer folds, one speaker each) with a scikit-learn head: fitted in seconds."""
    from bench.data import get_adapter, load_splits

    root = get_adapter("tess").make_fake(tmp_path / "tess")
    space = tmp_path / "space.yaml"
    space.write_text("schema: 1\nmodality: voice\nbudget: {samples: 2, max_epochs: 1}\nscheduler: {name: fifo}\n"
                     "fixed: {model.name: sk_logreg, model.features: egemaps}\n"
                     "params:\n  model.C: {float: [1.0e-3, 1.0e+2], log: true}\n")
    results, cache = tmp_path / "results", tmp_path / "cache"
    common = ["--data-root", str(root), "--cache-dir", str(cache), "--results-dir", str(results), "--quiet"]
    argv = ["benchmark", "--dataset", "tess", "--modality", "voice", "--nested", "--space", str(space), "--name", "n"]
    assert main([*argv, *common]) == 0
    records = [json.loads(line) for line in (results / "records.jsonl").read_text().splitlines()]
    searches = {r["fold"]: r for r in records if r["kind"] == "search"}
    refits = {r["fold"]: r for r in records if r["kind"] == "benchmark"}
    assert sorted(searches) == sorted(refits) == [0, 1] and all(r["nested"] == "n" for r in records)
    for fold, search in searches.items():
        _, _, splits = load_splits("tess", fold, root, cache)
        test_speaker = {s.subject for s in splits["test"]}
        # the fold's search trained and validated on its training speaker only, and was tested on its test one
        assert search["split_sizes"]["test"] == len(splits["test"]) and len(test_speaker) == 1
        assert search["split_sizes"]["train"] + search["split_sizes"]["val"] == \
            len(splits["train"]) + len(splits["val"])
        assert refits[fold]["config"]["model.C"] == search["config"]["model.C"]  # its own winner, refit
        assert refits[fold]["config"]["data.refit"] is True
    # run again: every fold is recorded, nothing reruns
    assert main([*argv, *common]) == 0
    assert len((results / "records.jsonl").read_text().splitlines()) == len(records)
