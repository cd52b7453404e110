import csv
import io
import json

import pytest

from bench.reports.leaderboard import build_leaderboard, build_rows, to_csv, to_html, to_markdown
from bench.results.record import config_id
from bench.results.store import append_record, best_record, find_record, load_records, record_id


def record(model, uar, seed=0, fold=0, selection="val", lr=0.01):
    return {"dataset": "synthetic", "modality": "face", "protocol": "p", "model": model,
            "config": {"model.name": model, "optim.lr": lr, "train.seed": seed, "data.fold": fold},
            "searched": ["model.name", "optim.lr"], "selection": selection,
            "test": {"accuracy": uar, "uar": uar, "macro_f1": uar},
            "budget": {"trials": 4, "epochs": 10, "wall_seconds": 90}}


def test_repeats_of_one_config_aggregate_to_mean_and_std():
    tables = build_rows([record("a", 0.5, seed=0), record("a", 0.7, seed=1), record("b", 0.65)])
    rows = tables[("synthetic", "face")]
    assert [r["model"] for r in rows] == ["b", "a"]  # 0.65 beats the mean 0.6
    a = next(r for r in rows if r["model"] == "a")
    assert a["n"] == 2 and a["uar"] == pytest.approx(0.6) and a["uar_std"] == pytest.approx(0.1414, abs=1e-3)
    assert rows[0]["rank"] == 1 and rows[0]["uar"] >= rows[1]["uar"]
    md = to_markdown(tables)
    assert "60.0 ± 14.1" in md and "lr=0.01" in md
    assert to_csv(tables).count("\n") == 3


def test_records_not_selected_on_validation_never_rank():
    tables = build_rows([record("a", 0.5), record("cheat", 0.99, selection="test")])
    assert [r["model"] for r in tables[("synthetic", "face")]] == ["a"]


def test_empty_store_says_how_to_start():
    assert "fer-bench search face --dataset synthetic" in to_markdown({})


def benchmark_runs(model, uars, lr=0.01, folds=3, fold_offset=0, split_sizes=None):
    """One config retrained on ``folds`` folds x len(uars)//folds seeds, with these test UARs."""
    out = []
    for i, uar in enumerate(uars):
        r = record(model, uar, seed=i // folds, fold=fold_offset + i % folds, lr=lr)
        r.update(kind="benchmark", fold=fold_offset + i % folds, seed=i // folds)
        r["test"]["samples"] = 30
        if split_sizes:
            r["split_sizes"] = split_sizes
        out.append(r)
    return out


LEADER = [0.80, 0.62, 0.71, 0.77, 0.66, 0.74]


def rows_by_model(records):
    return {r["model"]: r for r in build_rows(records)[("synthetic", "face")]}


def test_an_identical_row_ties_with_the_leader_and_a_far_worse_one_does_not():
    sizes = {"train": 120, "val": 30, "test": 30}
    rows = rows_by_model(benchmark_runs("lead", LEADER, split_sizes=sizes)
                         + benchmark_runs("twin", LEADER, lr=0.02, split_sizes=sizes)
                         + benchmark_runs("worse", [u - 0.3 + 0.02 * (i % 3) for i, u in enumerate(LEADER)],
                                                        lr=0.03, split_sizes=sizes))
    assert rows["lead"]["tied_with_leader"] == "leader" and rows["lead"]["p_vs_leader"] is None
    assert rows["twin"]["tied_with_leader"] == "yes" and rows["twin"]["p_vs_leader"] == 1.0
    assert rows["worse"]["tied_with_leader"] == "no" and rows["worse"]["p_vs_leader"] < 0.05
    assert rows["lead"]["test_train_ratio"] == pytest.approx(0.25)
    low, high = rows["lead"]["uar_ci_low"], rows["lead"]["uar_ci_high"]
    assert low < rows["lead"]["uar"] < high


def test_a_noisy_small_gap_is_a_tie_and_the_correction_widens_the_interval():
    noisy = [u - 0.01 + (0.06 if i % 2 else -0.06) for i, u in enumerate(LEADER)]
    rows = rows_by_model(benchmark_runs("lead", LEADER) + benchmark_runs("close", noisy, lr=0.02))
    assert rows["close"]["tied_with_leader"] == "yes" and rows["close"]["p_vs_leader"] > 0.05
    # a larger n_test/n_train means more overlap between training sets: a wider interval
    narrow = rows_by_model(benchmark_runs("lead", LEADER, split_sizes={"train": 300, "test": 30}))["lead"]
    wide = rows_by_model(benchmark_runs("lead", LEADER, split_sizes={"train": 30, "test": 30}))["lead"]
    assert wide["uar_ci_high"] - wide["uar_ci_low"] > narrow["uar_ci_high"] - narrow["uar_ci_low"]


def test_rows_on_other_folds_are_not_paired_and_a_lucky_sweep_run_ranks_below_benchmarked_rows():
    rows = rows_by_model(benchmark_runs("lead", LEADER) + benchmark_runs("elsewhere", LEADER, lr=0.02, fold_offset=3)
                         + [record("single", 0.95, lr=0.03)])
    assert rows["elsewhere"]["p_vs_leader"] == rows["elsewhere"]["tied_with_leader"] == "not paired"
    # 0.95 on the sweep's one test run beats every mean, yet it was never measured on the protocol
    assert rows["single"]["rank"] == 3 and rows["lead"]["rank"] == 1
    assert rows["single"]["tied_with_leader"] == "sweep only" and rows["single"]["uar_ci_low"] is None
    md = to_markdown({("synthetic", "face"): list(rows.values())})
    assert "not paired" in md and "| sweep only |" in md and "Nadeau & Bengio" in md
    csv_rows = list(csv.DictReader(io.StringIO(to_csv({("synthetic", "face"): list(rows.values())}))))
    assert {r["model"]: r["tied_with_leader"] for r in csv_rows} == {
        "lead": "leader", "elsewhere": "not paired", "single": "sweep only"}


def test_without_any_benchmark_the_sweeps_rank_among_themselves():
    rows = rows_by_model([record("a", 0.5), record("b", 0.7, lr=0.02)])
    assert (rows["b"]["rank"], rows["a"]["rank"]) == (1, 2)
    assert rows["a"]["tied_with_leader"] == "sweep only"


def sweep_and_its_refit(uar=0.9, model="lead", lr=0.01, uars=LEADER):
    """The issue's scenario: a sweep's own test run, and the benchmark's refit of the same
    configuration (which adds data.refit and train.stop_epoch) on 3 folds x 2 seeds."""
    sweep = record(model, uar, lr=lr)
    sweep["config"].update({"train.max_epochs": 3, "data.dataset": "synthetic"})
    sweep["id"] = f"sweep-{model}"
    runs = benchmark_runs(model, uars, lr=lr)
    for i, r in enumerate(runs):
        r["config"].update({"train.max_epochs": 3, "data.dataset": "synthetic", "data.refit": True,
                            "train.stop_epoch": 2})
        r["id"] = f"bench-{model}-{i}"
        r["benchmark_run"], r["benchmark_wall_seconds"] = "b1", 450.0
    return [sweep, *runs]


def test_a_sweeps_test_run_and_the_benchmark_repeats_of_its_configuration_are_one_row():
    other = benchmark_runs("other", [u - 0.01 for u in LEADER], lr=0.02)
    rows = build_rows(sweep_and_its_refit() + other)[("synthetic", "face")]
    assert [r["model"] for r in rows] == ["lead", "other"]  # one row each
    lead = rows[0]
    assert (lead["n"], lead["folds"], lead["seeds"], lead["kinds"]) == (6, 3, 2, "benchmark")
    assert lead["uar"] == pytest.approx(sum(LEADER) / 6)  # the lucky 0.9 is not a repeat of the protocol
    assert lead["ids"] == ["sweep-lead"] + [f"bench-lead-{i}" for i in range(6)]  # every run listed
    assert lead["benchmark_wall_s"] == 450.0
    # the row measured on the leader's folds x seeds has a number, not "not paired"
    assert isinstance(rows[1]["p_vs_leader"], float) and rows[1]["tied_with_leader"] in ("yes", "no")


def test_a_row_on_more_seeds_than_the_leader_is_paired_on_the_leaders_runs():
    lead = benchmark_runs("lead", LEADER[:3])  # 3 folds x 1 seed
    wider = benchmark_runs("wider", [u - 0.2 for u in LEADER], lr=0.02)  # 3 folds x 2 seeds
    rows = rows_by_model(lead + wider)
    assert rows["lead"]["rank"] == 1
    assert isinstance(rows["wider"]["p_vs_leader"], float)


def test_config_id_ignores_what_only_the_refit_sets_and_keeps_every_hyperparameter():
    base = {"model.name": "fer_cnn", "optim.lr": 0.01, "train.max_epochs": 3}
    refit = {**base, "data.refit": True, "train.stop_epoch": 2, "train.seed": 1, "data.fold": 4}
    assert config_id(base) == config_id(refit)
    assert config_id(base) != config_id({**base, "optim.lr": 0.02})
    assert config_id(base) != config_id({**base, "train.max_epochs": 4})


def test_summary_comes_first_with_the_leader_and_its_yardstick_and_the_legend_last():
    published = [{"paper": "Doe, Roe. A paper", "year": 2020, "dataset": "synthetic", "modality": "face",
                  "method": "BigNet (x)", "protocol": "p", "metric": "accuracy", "value": 88.5,
                  "selected_on_test": "no", "source": "table", "verified": True}]
    board = build_leaderboard(sweep_and_its_refit() + benchmark_runs("other", LEADER, lr=0.02), published)
    md = to_markdown(board)
    assert md.index("## Summary") < md.index("## synthetic — face") < md.index("Legend:")
    summary = md[md.index("## Summary"):md.index("## synthetic — face")]
    line = next(x for x in summary.splitlines() if x.startswith("| synthetic"))
    assert "lead" in line and "| 6 |" in line and "88.5 accuracy, BigNet (Doe et al. 2020, face)" in line
    assert "benchmark 7.5 min" in line
    page = to_html(board)
    assert page.index("<h2>Summary</h2>") < page.index("<h2>synthetic — face</h2>") < page.index("class='legend'")
    assert "<details><summary>more</summary>" in page and "sweep-lead" in page  # provenance a click away
    # without a published number the yardstick is chance
    board = build_leaderboard(sweep_and_its_refit())
    board.tables[("synthetic", "face")][0]["class_names"] = list("abcd")
    assert "chance: UAR 25.0" in to_markdown(board)


def test_tied_rows_carry_a_mark_in_markdown_and_html():
    records = benchmark_runs("lead", LEADER) + benchmark_runs("twin", LEADER, lr=0.02)
    board = build_leaderboard(records)
    assert "| ≈ p=1 |" in to_markdown(board)
    assert ">≈ p=1</td>" in to_html(board)


def test_best_record_selects_on_validation_never_test_and_respects_the_mode():
    a = {**record("a", 0.9), "val": {"uar": 0.5, "loss": 0.4}}
    b = {**record("b", 0.6), "val": {"uar": 0.7, "loss": 0.9}}
    cheat = {**record("c", 0.99, selection="test"), "val": {"uar": 0.99, "loss": 0.1}}
    assert best_record([a, b, cheat], "synthetic", "face").model == "b"
    assert best_record([a, b, cheat], "synthetic", "face", metric="val/loss").model == "a"  # minimised
    assert best_record([a, b], "synthetic", "face", where=lambda r: r.model == "a").model == "a"
    assert best_record([a, b], "synthetic", "voice") is None


def test_records_get_a_stable_id_when_written_or_loaded(tmp_path):
    old = record("a", 0.5)
    (tmp_path / "records.jsonl").write_text(json.dumps(old) + "\n")
    first, again = load_records(tmp_path)[0].id, load_records(tmp_path)[0].id
    assert first == again == record_id(old) and len(first) == 10
    new = record("b", 0.6)
    append_record(tmp_path, new)
    assert [r.id for r in load_records(tmp_path)] == [first, new["id"]] and new["id"] != first
    assert find_record(load_records(tmp_path), new["id"][:6]).model == "b"
