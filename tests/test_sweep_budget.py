"""Real (tiny) sweeps: a configuration error ends its trial once, without retries (faults are
retried: tests/test_resume.py); --time-budget ends a sweep cleanly with a record and a leaderboard."""
import json

import pytest

from bench.cli import main

SPACE = """
schema: 1
modality: face
budget: {samples: SAMPLES, max_epochs: EPOCHS}
searcher: {name: optuna, sampler: random, seed: 3}
scheduler: {name: fifo}
fixed: {data.image_size: 32, model.name: fer_cnn}
params:
  task.name: {choice: TASKS}
  optim.lr:  {float: [1.0e-3, 1.0e-2], log: true}
"""

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def sweep(tmp_path, cache_dir, name, *extra, samples=4, epochs=1, tasks="[classification, bogus]"):
    space = tmp_path / f"{name}.yaml"
    space.write_text(SPACE.replace("SAMPLES", str(samples)).replace("EPOCHS", str(epochs)).replace("TASKS", tasks))
    return main(["search", "face", "--dataset", "synthetic", "--space", str(space), "--name", name,
                 "--cache-dir", str(cache_dir), "--results-dir", str(tmp_path / "results"), "--quiet", *extra])


def trials(run_dir):
    """trial folder -> (its config, its result rows, whether Ray logged an error for it)."""
    out = {}
    for folder in sorted(p for p in run_dir.iterdir() if p.is_dir() and p.name.startswith("fer_trial")):
        rows = [json.loads(line) for line in (folder / "result.json").read_text().splitlines() if line.strip()]
        config = json.loads((folder / "params.json").read_text())
        out[folder.name] = (config, rows, (folder / "error.txt").exists())
    return out


def records(tmp_path):
    return [json.loads(line) for line in (tmp_path / "results" / "records.jsonl").read_text().splitlines()]


def test_config_errors_are_not_retried_and_are_counted(tmp_path, cache_dir, capsys):
    assert sweep(tmp_path, cache_dir, "cfg") == 0
    out = capsys.readouterr().out
    found = trials(tmp_path / "results" / "runs" / "cfg")
    bogus = {k: v for k, v in found.items() if v[0]["task.name"] == "bogus"}
    assert bogus and len(bogus) < len(found)  # the seed draws both values
    for _config, rows, logged_error in bogus.values():
        assert len(rows) == 1 and not logged_error  # one attempt, ended by its own report
        assert rows[0]["config_error"].startswith("ValueError: unknown task 'bogus'")
    (record,) = records(tmp_path)
    assert record["budget"]["errored"] == len(bogus) and record["config"]["task.name"] == "classification"
    assert out.count("errored trial: config error, not retried: ValueError: unknown task 'bogus'") == len(bogus)


def test_time_budget_ends_the_sweep_with_a_record_and_a_leaderboard(tmp_path, cache_dir, capsys):
    assert sweep(tmp_path, cache_dir, "budget", "--time-budget", "1m", samples=40, epochs=30,
                 tasks="[classification]") == 0
    out = capsys.readouterr().out
    assert "Estimated sweep time: about" in out and "more than its time budget of 60 s" in out
    assert "stopped by its 60 s time budget" in out
    (record,) = records(tmp_path)
    budget = record["budget"]
    assert budget["time_budget_s"] == 60 and budget["ended_by_time_budget"] is True
    assert budget["epochs"] < 40 * 30 and record["test"]["samples"] > 0
    low, high = budget["estimated_range"]  # the printed estimate, and where ASHA's stops alone put it
    assert low <= budget["estimated_seconds"] <= high and budget["estimated_seconds"] > 60
    assert main(["leaderboard", "--results-dir", str(tmp_path / "results")]) == 0
    assert "| 1 | fer_cnn |" in (tmp_path / "results" / "leaderboard.md").read_text()
