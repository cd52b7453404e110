import pytest

from bench.leaderboard import build_rows, to_csv, to_markdown


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
