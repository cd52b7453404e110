"""`fer-bench reproduce RECORD_ID`: a synthetic record re-run from its stored config, fold and seed."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from bench.api import _test_fields
from bench.cli import main
from bench.data import get_adapter
from bench.results.store import append_record, provenance
from bench.sweep.reproduce import provenance_warnings
from bench.training.evaluation import evaluate_checkpoint
from bench.training.trainable import run_trial

# two epochs, the first one kept (as if it had the best validation score): the re-run must stop at
# the recorded epoch, not simply train to the end
CONFIG = {"model.name": "fer_cnn", "data.dataset": "synthetic", "data.image_size": 32, "data.fold": 1,
          "train.batch_size": 64, "optim.lr": 3e-3, "train.max_epochs": 2, "train.seed": 7}


@pytest.mark.slow
def test_a_synthetic_record_reproduces_exactly(tmp_path, cache_dir, capsys):
    keep = tmp_path / "models" / "first-epoch"

    def report(metrics, directory):
        if metrics["epoch"] == 1:
            shutil.copytree(directory, keep)

    run_trial(CONFIG, cache_dir=cache_dir, report=report)
    test = evaluate_checkpoint(keep, split="test", cache_dir=cache_dir)
    record = {"kind": "search", **_test_fields(get_adapter("synthetic"), CONFIG, test), "dataset": "synthetic",
              "modality": "face", "seed": 7, "objective": "val/uar", "objective_mode": "max", "selection": "val",
              "checkpoint": str(keep), "run": "tiny", "threads": torch.get_num_threads()}
    append_record(tmp_path / "results", record)
    assert record["checkpoint_epoch"] == 1 and record["split_sizes"]["test"] == test["samples"]
    shutil.rmtree(keep)  # the recorded epoch must come from the record, not from the old checkpoint

    code = main(["reproduce", record["id"][:7], "--results-dir", str(tmp_path / "results"),
                 "--cache-dir", str(cache_dir), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["exact"] and out["epoch"] == 1 and out["id"] == record["id"]
    assert out["new"] == out["old"] and set(out["difference"].values()) == {0}


def test_unknown_record_and_changed_environment_are_said(tmp_path, capsys):
    evaluation_only = {"kind": "cross_corpus", "dataset": "a", "selection": "val"}
    append_record(tmp_path, evaluation_only)
    assert main(["reproduce", "nope", "--results-dir", str(tmp_path)]) == 2
    assert "no record with id 'nope'" in capsys.readouterr().err
    assert main(["reproduce", evaluation_only["id"], "--results-dir", str(tmp_path)]) == 2
    assert "reproduce re-runs trained records" in capsys.readouterr().err
    now = provenance()
    old = {"commit": "0000000", "versions": {**now["versions"], "torch": "0.1"}, "hardware": now["hardware"]}
    warnings = provenance_warnings(old, now)
    assert any("commit 0000000" in w for w in warnings) and any(w.startswith("torch was 0.1") for w in warnings)
    assert provenance_warnings(now, now) == []
