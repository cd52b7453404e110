"""`benchmark --ensemble K`: up to K members and weights chosen by ensemble selection on the
sweep's validation probabilities, their weighted-average probabilities tested as one row;
`predict` and `export` take the ensemble's folder."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import fer_models
from bench.cli import main
from bench.errors import UserError
from bench.reports.leaderboard import build_rows
from bench.results.record import Record, config_id
from bench.sweep.ensemble import (
    ensemble_record,
    evaluate_members,
    member_groups,
    member_probabilities,
    ranked_config_ids,
)
from bench.training.checkpoint import save_checkpoint
from bench.training.ensemble import (
    EnsembleModel,
    average_probabilities,
    ensemble_metrics,
    ensemble_selection,
    load_model_or_ensemble,
    write_ensemble,
)
from bench.training.metrics import classification_metrics


def _checkpoint(folder, seed, *, hidden=64, image_size=32):
    """An untrained fer_cnn on synthetic faces (the averaging needs no training)."""
    torch.manual_seed(seed)
    model = fer_models.create_model("fer_cnn", num_classes=7, image_size=image_size, hidden=hidden)
    config = {"model.name": "fer_cnn", "model.hidden": hidden, "data.dataset": "synthetic",
              "data.image_size": image_size, "data.fold": 0, "train.seed": seed}
    save_checkpoint(folder, model=model, epoch=0, config=config)
    return folder


def _member(checkpoint, hidden, fold=0, seed=0, uar=0.5, ms=1.5, rid=None):
    return Record(kind="benchmark", id=rid or f"m{hidden}-{fold}-{seed}", dataset="synthetic", family="face",
                  run="sweep", benchmark_run="b", model="fer_cnn", fold=fold, seed=seed, protocol="p",
                  config={"model.name": "fer_cnn", "model.hidden": hidden, "data.fold": fold, "train.seed": seed,
                          "data.refit": True},
                  selection="val", test={"accuracy": uar, "uar": uar, "macro_f1": uar, "samples": 10},
                  checkpoint=str(checkpoint), params=1000, inference_ms_per_sample=ms,
                  budget={"trials": 3, "retrain_device_seconds": 10.0}, split_sizes={"train": 40, "test": 10})


def test_averaged_probabilities_are_the_members_mean_and_metrics_follow_them():
    a = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    b = np.array([[0.3, 0.7], [0.4, 0.6], [0.1, 0.9]])
    assert np.allclose(average_probabilities([a, b]), [[0.6, 0.4], [0.3, 0.7], [0.35, 0.65]])
    metrics = ensemble_metrics([a, b], np.array([0, 1, 0]))
    # the mean's argmax (0, 1, 1), not either member's: two of three right
    assert metrics["accuracy"] == pytest.approx(2 / 3) and metrics["samples"] == 3
    assert metrics["loss"] == pytest.approx(-np.mean(np.log([0.6, 0.7, 0.35])))
    with pytest.raises(ValueError, match="differently shaped"):
        average_probabilities([a, b[:, :1]])


def _onehot(labels, classes=3, confidence=0.8):
    """Probabilities that put ``confidence`` on each sample's label, the rest spread evenly."""
    p = np.full((len(labels), classes), (1 - confidence) / (classes - 1))
    p[np.arange(len(labels)), labels] = confidence
    return p


def test_selection_drops_a_near_uniform_candidate_and_keeps_a_leader_no_mix_beats():
    targets = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    leader = _onehot(targets)  # right on every sample
    uniform = np.full((8, 3), 1 / 3) + np.array([0.01, 0, -0.01])  # near chance, leaning to class 0
    weights = ensemble_selection([leader, uniform], targets, "val/uar", "max", max_members=3)
    assert weights == [1.0, 0.0]
    # the same with the loss as the objective: adding anything to a perfect leader raises its log-loss
    assert ensemble_selection([leader, uniform], targets, "val/loss", "min", max_members=3) == [1.0, 0.0]


def test_selection_mixes_complementary_members_and_respects_the_member_cap():
    targets = np.array([0, 1, 2, 0, 1, 2])

    def wrong_on(bad):
        return _onehot(np.where(np.isin(np.arange(6), bad), (targets + 1) % 3, targets), confidence=0.6)

    a, b, c = wrong_on([0, 1]), wrong_on([2, 3]), wrong_on([4, 5])  # each wrong on a different third
    weights = ensemble_selection([a, b, c], targets, "val/accuracy", "max", max_members=3)
    # any two are wrong where only one of them errs, so a mix of all three is right everywhere
    mixed = average_probabilities([a, b, c], weights)
    assert (mixed.argmax(1) == targets).all()
    assert weights == pytest.approx([1 / 3] * 3)  # the earliest round that is right everywhere: one of each
    capped = ensemble_selection([a, b, c], targets, "val/accuracy", "max", max_members=2)
    assert sum(w > 0 for w in capped) == 2 and capped[2] == 0.0  # ties go to the better-ranked candidates
    with pytest.raises(ValueError, match="not 'val/ccc'"):
        ensemble_selection([a], targets, "val/ccc", "max", max_members=2)


def test_weighted_members_give_the_weighted_mean_in_metrics_and_in_the_loaded_model(tmp_path):
    a = np.array([[0.9, 0.1], [0.2, 0.8]])
    b = np.array([[0.1, 0.9], [0.7, 0.3]])
    assert np.allclose(average_probabilities([a, b], [0.75, 0.25]), [[0.7, 0.3], [0.325, 0.675]])
    assert ensemble_metrics([a, b], np.array([0, 1]), [0.75, 0.25])["accuracy"] == 1.0
    assert ensemble_metrics([a, b], np.array([0, 1]), [0.25, 0.75])["accuracy"] == 0.0
    paths = [_checkpoint(tmp_path / f"c{i}", seed=i) for i in range(2)]
    model, _, _ = load_model_or_ensemble(write_ensemble(tmp_path / "ens", paths, ["a", "b"], [0.8, 0.2]))
    x = torch.randn(4, *model.input_spec.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = model(x)["logits"].softmax(-1)
        singles = [load_model_or_ensemble(p)[0](x)["logits"].softmax(-1) for p in paths]
    assert torch.allclose(got, 0.8 * singles[0] + 0.2 * singles[1], atol=1e-6)


def test_ensemble_test_is_the_mean_of_members_probabilities_on_the_same_inputs(tmp_path, cache_dir):
    members = [_member(_checkpoint(tmp_path / f"c{i}", seed=i, hidden=h), h) for i, h in enumerate((64, 96, 128))]
    own = [member_probabilities(m.checkpoint, split="test", cache_dir=cache_dir) for m in members]
    assert all(np.array_equal(t, own[0][1]) for _, t in own)  # the same test samples, in the same order
    test = evaluate_members(members, cache_dir=cache_dir)
    mean = np.mean([p for p, _ in own], axis=0)
    want = classification_metrics(own[0][1], mean.argmax(1), 7)
    assert test["confusion"] == want["confusion"] and test["uar"] == pytest.approx(want["uar"])
    # the ensemble's folder, loaded as one model (predict, export): softmax of its logits = that mean
    folder = write_ensemble(tmp_path / "ens", [m.checkpoint for m in members], [m.id for m in members])
    model, cfg, state = load_model_or_ensemble(folder)
    assert isinstance(model, EnsembleModel) and cfg.model.name == "fer_cnn"
    x = torch.randn(5, *model.input_spec.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = model(x)["logits"].softmax(-1)
        singles = [load_model_or_ensemble(m.checkpoint)[0](x)["logits"].softmax(-1) for m in members]
    assert torch.allclose(got, torch.stack(singles).mean(0), atol=1e-6)


def test_predict_and_export_take_an_ensemble_folder(tmp_path, cache_dir):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from bench.inference.export import PARITY_TOLERANCE, export_onnx
    from bench.inference.predict import Predictor

    paths = [_checkpoint(tmp_path / f"c{i}", seed=i) for i in range(2)]
    folder = write_ensemble(tmp_path / "ens", paths, ["a", "b"])
    predictor = Predictor(folder, cache_dir=cache_dir)
    x = torch.randn(3, *predictor.spec.input_size, generator=torch.Generator().manual_seed(1))
    singles = [Predictor(p, cache_dir=cache_dir).probabilities(x) for p in paths]
    assert predictor.name == "ensemble(fer_cnn+fer_cnn)"
    assert np.allclose(predictor.probabilities(x), np.mean(singles, axis=0), atol=1e-6)
    report = export_onnx(folder, tmp_path / "ens.onnx")
    assert report.ok and report.max_abs_diff < PARITY_TOLERANCE and report.model == "ensemble(fer_cnn+fer_cnn)"
    # members that read different inputs cannot share one predictor: one sentence
    other = write_ensemble(tmp_path / "mixed", [paths[0], _checkpoint(tmp_path / "big", 2, image_size=48)], ["a", "c"])
    with pytest.raises(UserError, match="image sizes"):
        Predictor(other, cache_dir=cache_dir)


def test_members_are_grouped_by_fold_in_rank_order_and_incomplete_folds_wait():
    jobs = [{"model.name": "fer_cnn", "model.hidden": h, "data.fold": f, "train.seed": 0}
            for h in (96, 64) for f in range(2)]
    ranked = ranked_config_ids(jobs)
    assert ranked == [config_id(jobs[0]), config_id(jobs[2])]  # 96 ranked first, as the jobs list it
    records = [_member("x", 64, fold=0), _member("x", 96, fold=0), _member("x", 96, fold=1)]
    groups = member_groups(records, "b", ranked)
    assert list(groups) == [(0, 0)]  # fold 1 lacks the second member
    assert [m.config["model.hidden"] for m in groups[(0, 0)]] == [96, 64]


def test_ensemble_row_sums_costs_names_members_and_is_paired_with_the_single_leader(tmp_path):
    records = []
    uars = {64: [0.60, 0.70, 0.65, 0.72], 96: [0.62, 0.66, 0.61, 0.70]}
    for fold in range(4):
        group = [_member("x", h, fold=fold, uar=uars[h][fold]) for h in (64, 96)]
        records += group
        test = {"accuracy": 0.8, "uar": uars[64][fold] + 0.05, "macro_f1": 0.8, "confusion": [[1]],
                "loss": 0.5, "samples": 10}
        records.append(ensemble_record(group, test, folder=tmp_path, benchmark_run="b", wall_seconds=5.0))
    ens = records[-1]
    assert ens.kind == "ensemble" and ens.members == ["m64-3-0", "m96-3-0"]
    assert ens.inference_ms_per_sample == pytest.approx(3.0) and ens.params == 2000
    assert Record.from_dict(json.loads(json.dumps(ens.to_dict()))).members == ens.members  # round trip
    rows = build_rows(records)[("synthetic", "face")]
    assert [r["kinds"] for r in rows] == ["ensemble", "benchmark", "benchmark"]
    leader, single = rows[0], rows[1]
    assert leader["n"] == 4 and leader["tier"] == 0 and leader["members"] == ["m64-3-0", "m96-3-0"]
    assert single["model"] == "fer_cnn" and isinstance(single["p_vs_leader"], float)  # paired over the 4 folds


@pytest.mark.slow
@pytest.mark.ray
def test_benchmark_ensemble_records_one_row_per_fold_beside_its_members(tmp_path, cache_dir, capsys,
                                                                      tiny_face_space):
    from bench.sweep.ensemble import select_members
    from bench.sweep.trials import read_trials

    space = tiny_face_space
    results = tmp_path / "results"
    common = ["--cache-dir", str(cache_dir), "--results-dir", str(results), "--quiet"]
    assert main(["search", "face", "--dataset", "synthetic", "--space", str(space), "--name", "e", *common]) == 0
    sweep = results / "runs" / "e"
    assert all(t.checkpoint for t in read_trials(sweep, checkpoints=("val/uar", "max")))  # one kept a trial
    # what the benchmark will choose, computed beside it from the sweep's checkpoints
    chosen = select_members(sweep, "val/uar", "max", 2, cache_dir=cache_dir)
    assert len(chosen.members) == 2, "this seeded sweep's validation favours a mix of two"
    assert sum(chosen.weights) == pytest.approx(1.0) and chosen.val_ensemble >= chosen.val_leader
    assert main(["benchmark", "--dataset", "synthetic", "--ensemble", "2", *common]) == 0
    assert "Ensemble selection (up to 2 of the sweep's 3 best configurations" in capsys.readouterr().out
    records = [json.loads(line) for line in (results / "records.jsonl").read_text().splitlines()]
    members = {r["id"]: r for r in records if r["kind"] == "benchmark"}
    ensembles = [r for r in records if r["kind"] == "ensemble"]
    assert len(members) == 2 * 5 and sorted(r["fold"] for r in ensembles) == list(range(5))
    for ens in ensembles:
        assert ens["config"]["ensemble.members"] == chosen.member_ids
        assert ens["config"]["ensemble.weights"] == pytest.approx(chosen.weights, abs=1e-6)
        assert [members[i]["fold"] for i in ens["members"]] == [ens["fold"]] * 2
        assert ens["inference_ms_per_sample"] == pytest.approx(
            sum(members[i]["inference_ms_per_sample"] for i in ens["members"]))
        # its test is the members' weighted mean, not their plain mean
        group = [Record.from_dict(members[i]) for i in ens["members"]]
        want = evaluate_members(group, cache_dir=cache_dir, weights=chosen.weights)
        assert ens["test"]["confusion"] == want["confusion"]
    # the ensemble's folder is a model reference: export reads it like a checkpoint
    assert main(["export", ensembles[0]["checkpoint"], "--onnx", str(tmp_path / "e.onnx")]) == 0
    rows = build_rows([Record.from_dict(r) for r in records])[("synthetic", "face")]
    assert sorted(r["kinds"] for r in rows) == ["benchmark", "benchmark", "ensemble"]
    assert all(r["n"] == 5 for r in rows)
