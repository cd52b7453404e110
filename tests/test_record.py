"""The typed, versioned results record and the store's one query (``results.best_record``)."""
import json

import pytest

from bench.errors import UserError
from bench.results.record import SCHEMA_VERSION, Record
from bench.results.store import append_record, best_record, load_records, record_id

# a sweep record as fer-bench wrote them before records had a schema_version (and objective_mode)
UNVERSIONED = {"kind": "search", "dataset": "synthetic", "modality": "face", "run": "old", "model": "fer_cnn",
               "config": {"model.name": "fer_cnn", "optim.lr": 0.01}, "fold": 0, "seed": 0, "protocol": "p",
               "objective": "val/loss", "selection": "val", "val": {"uar": 0.5, "loss": 0.7},
               "test": {"accuracy": 0.6, "uar": 0.55, "macro_f1": 0.5}, "budget": {"trials": 3, "max_epochs": 2},
               "checkpoint": "models/old", "provenance": {"commit": "abc1234"}}


def sweep(name, val, *, objective="val/uar", mode=None, dataset="synthetic", family="face", kind="search",
          selection="val", test_uar=0.5):
    return Record(kind=kind, dataset=dataset, family=family, run=name, model=name, selection=selection,
                  objective=objective, objective_mode=mode, val=val, test={"uar": test_uar})


def test_round_trip_keeps_every_key_including_unknown_ones():
    data = {**UNVERSIONED, "id": "0123456789", "objective_mode": "min", "schema_version": SCHEMA_VERSION,
            "added_by_a_later_version": {"nested": [1, 2]}}
    record = Record.from_dict(data)
    assert record.family == "face" and record.extra == {"added_by_a_later_version": {"nested": [1, 2]}}
    assert record.to_dict() == data
    assert Record.from_dict(record.to_dict()) == record


def test_an_unversioned_line_loads_with_its_old_id_and_a_derived_mode(tmp_path):
    (tmp_path / "records.jsonl").write_text(json.dumps(UNVERSIONED) + "\n")
    (record,) = load_records(tmp_path)
    assert record.id == record_id(UNVERSIONED)  # the id it had before records were versioned
    assert record.objective == "val/loss" and record.objective_mode == "min"  # from the metric
    assert record.val_score("val/loss") == 0.7 and record.budget["max_epochs"] == 2
    # written again it carries the version; the fields are the same
    line = record.to_dict()
    assert line["schema_version"] == SCHEMA_VERSION and line["modality"] == "face"
    assert {k: v for k, v in line.items() if k not in ("schema_version", "id", "objective_mode")} == UNVERSIONED


def test_a_newer_schema_version_is_one_sentence_naming_the_file(tmp_path):
    (tmp_path / "records.jsonl").write_text(json.dumps({**UNVERSIONED, "schema_version": SCHEMA_VERSION + 1}) + "\n")
    with pytest.raises(UserError) as info:
        load_records(tmp_path)
    message = str(info.value)
    assert "records.jsonl, line 1" in message and f"schema_version {SCHEMA_VERSION + 1}" in message
    assert "upgrade fer-bench" in message and message.count(". ") == 0


def test_append_writes_the_version_and_an_id_and_accepts_a_dict(tmp_path):
    typed = sweep("typed", {"uar": 0.6})
    append_record(tmp_path, typed)
    plain = dict(UNVERSIONED)
    append_record(tmp_path, plain)
    lines = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert all(line["schema_version"] == SCHEMA_VERSION for line in lines)
    assert [line["id"] for line in lines] == [typed.id, plain["id"]] and typed.id != plain["id"]
    assert lines[0]["objective_mode"] == "max" and "eval_dataset" not in lines[0]  # unset fields stay out
    assert [r.run for r in load_records(tmp_path)] == ["typed", "old"]


def test_the_query_selects_on_validation_never_test():
    a, b = sweep("a", {"uar": 0.5}, test_uar=0.9), sweep("b", {"uar": 0.7}, test_uar=0.4)
    cheat = sweep("cheat", {"uar": 0.99}, selection="test", test_uar=0.99)
    assert best_record([a, b, cheat], "synthetic", "face").run == "b"
    assert best_record([a, b], "synthetic", ("voice", "face")).run == "b"
    assert best_record([a, b], "synthetic", "face", kinds=("benchmark",)) is None
    assert best_record([a, b], "other", "face") is None
    assert best_record([a, b], "synthetic", "face", where=lambda r: r.run == "a").run == "a"


def test_the_query_honours_a_minimised_objective_stored_in_the_records():
    low = sweep("low-loss", {"uar": 0.4, "loss": 0.3}, objective="val/loss")
    high = sweep("high-loss", {"uar": 0.8, "loss": 0.9}, objective="val/loss")
    assert low.objective_mode == "min"
    assert best_record([low, high], "synthetic", "face").run == "low-loss"
    # a mode stored against the metric's usual direction is the record's own: it is honoured
    maximised = [sweep(r.run, r.val, objective="val/loss", mode="max") for r in (low, high)]
    assert best_record(maximised, "synthetic", "face").run == "high-loss"
    # an explicit metric overrides the stored objective
    assert best_record([low, high], "synthetic", "face", metric="val/uar").run == "high-loss"


def test_a_nan_score_never_wins_and_ties_go_to_the_latest():
    nan_first = sweep("nan", {"uar": float("nan")})
    a, b = sweep("a", {"uar": 0.6}), sweep("b", {"uar": 0.6})
    assert best_record([nan_first, a], "synthetic", "face").run == "a"
    assert best_record([a, nan_first], "synthetic", "face").run == "a"
    assert best_record([nan_first], "synthetic", "face") is None
    assert best_record([a, b, nan_first], "synthetic", "face").run == "b"
    low_nan = sweep("nan-loss", {"loss": float("nan")}, objective="val/loss")
    assert best_record([low_nan, sweep("l", {"loss": 2.0}, objective="val/loss")], "synthetic", "face").run == "l"


def test_one_best_of_rule_ranks_trials_and_records():
    from bench.results.selection import best_of, ranked

    scores = {"t1": 0.5, "t2": float("nan"), "t3": 0.7, "t4": None, "t5": 0.7}
    assert ranked(scores, scores.get, "max") == ["t3", "t5", "t1"]  # ties keep the given order
    assert ranked(scores, scores.get, "min") == ["t1", "t3", "t5"]
    assert best_of(["t2", "t4"], scores.get, "max") is None
    with pytest.raises(ValueError, match="mode"):
        ranked(scores, scores.get, "maximise")
