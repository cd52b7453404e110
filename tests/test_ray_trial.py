"""The report adapter every Ray trial (single-process and DDP) runs through, and the sweep's one
RunConfig builder and best-epoch rule, without starting Ray."""
import pandas as pd
import pytest

from bench.errors import UserError
from bench.sweep.ray_trial import CONFIG_ERROR, FIXED_JOB_KEY, RaySession, run_reported_trial
from bench.sweep.trials import TrialHistory, best_row
from bench.sweep.tune_backend import SweepSettings, run_config
from bench.training import trainable


class FakeCheckpoint(str):
    pass


def session(reports, rank0=True):
    return RaySession(report=lambda metrics, checkpoint=None: reports.append((metrics, checkpoint)),
                      get_checkpoint=lambda: None,
                      attach=lambda directory: FakeCheckpoint(directory) if rank0 else None,
                      extra={"node_id": "n1"})


def run(monkeypatch, body, reports, fault_marker=None, config=None, rank0=True):
    monkeypatch.setattr(trainable, "run_trial", body)
    run_reported_trial(config or {"model.name": "m"}, session(reports, rank0), cache_dir="c", data_root=None,
                       threads=1, fault_marker=fault_marker, objectives=(("val/uar", "max"), ("val/loss", "min")))


def test_each_epoch_is_reported_with_the_session_extras_and_its_checkpoint(monkeypatch, tmp_path):
    seen = {}

    def body(config, *, report, resume_state, prepare, **_):
        seen["config"] = config
        for epoch in (1, 2):
            report({"epoch": epoch, "val/uar": 0.5}, tmp_path)

    reports = []
    run(monkeypatch, body, reports, config={FIXED_JOB_KEY: {"model.name": "m"}})
    assert seen["config"] == {"model.name": "m"}  # a benchmark grid's wrapped config is unwrapped
    assert [m["epoch"] for m, _ in reports] == [1, 2] and all(m["node_id"] == "n1" for m, _ in reports)
    assert reports[0][1] == str(tmp_path)
    reports.clear()
    run(monkeypatch, body, reports, rank0=False)
    assert [c for _, c in reports] == [None, None]  # a DDP worker other than rank 0 uploads nothing


def test_a_config_error_ends_the_trial_with_one_worst_score_report(monkeypatch):
    def body(config, **_):
        raise UserError("train.batch_size must be positive\nmore detail")

    reports = []
    run(monkeypatch, body, reports)
    [(metrics, checkpoint)] = reports
    assert checkpoint is None and metrics["node_id"] == "n1"
    assert metrics["val/uar"] == 0.0 and metrics["val/loss"] == 1e9
    assert metrics[CONFIG_ERROR] == "UserError: train.batch_size must be positive"


def test_a_value_error_after_a_report_is_a_fault_and_raises(monkeypatch, tmp_path):
    def body(config, *, report, **_):
        report({"epoch": 1}, tmp_path)
        raise ValueError("late")

    reports = []
    with pytest.raises(ValueError, match="late"):
        run(monkeypatch, body, reports)
    assert len(reports) == 1


def test_the_fault_marker_fails_the_trial_at_its_next_report(monkeypatch, tmp_path):
    marker = tmp_path / "fault"
    marker.write_text("x")

    def body(config, *, report, **_):
        report({"epoch": 1}, tmp_path)

    reports = []
    with pytest.raises(RuntimeError, match="fault injected"):
        run(monkeypatch, body, reports, fault_marker=str(marker))
    assert reports == []


def test_best_row_takes_the_first_best_epoch_and_skips_missing_scores():
    frame = pd.DataFrame({"training_iteration": [1, 2, 3, 4], "val/uar": [0.2, 0.6, None, 0.6],
                          "val/loss": [1.0, 0.4, None, 0.5]})
    assert best_row(frame, "val/uar", "max")["training_iteration"] == 2
    assert best_row(frame, "val/loss", "min")["training_iteration"] == 2
    trial = TrialHistory("t", {}, frame, "completed")
    assert trial.best("val/uar") == 0.6 and trial.best("val/loss", "min") == 0.4 and trial.best("nope") is None


def test_run_config_keeps_one_best_checkpoint_and_the_retries_for_tune_and_train():
    from ray import train, tune

    settings = SweepSettings(name="s", storage="/tmp/fer-bench-runs", samples=1, max_epochs=1, max_failures=3)
    for ray_train, library in ((False, tune), (True, train)):
        config = run_config(settings, "val/loss", "min", ray_train=ray_train, name="other")
        assert isinstance(config, library.RunConfig) and config.name == "other"
        assert config.failure_config.max_failures == 3
        assert config.checkpoint_config.num_to_keep == 1
        assert (config.checkpoint_config.checkpoint_score_attribute,
                config.checkpoint_config.checkpoint_score_order) == ("val/loss", "min")
