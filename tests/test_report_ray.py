"""`fer-bench report` on a real (tiny) Ray Tune sweep: ASHA stops some trials, the page shows them."""
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
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory, cache_dir):
    """One real 3-trial sweep for this module's tests (each sweep costs the fast stage ~30 s)."""
    tmp_path = tmp_path_factory.mktemp("report")
    space = tmp_path / "tiny.yaml"
    space.write_text(SPACE)
    results = tmp_path / "results"
    assert main(["search", "face", "--dataset", "synthetic", "--space", str(space), "--name", "tiny-report",
                 "--cache-dir", str(cache_dir), "--results-dir", str(results), "--quiet"]) == 0
    return results


@pytest.mark.ray
def test_report_of_a_real_sweep_shows_space_trials_best_config_and_plots(tiny_sweep, capsys):
    results = tiny_sweep
    record = json.loads((results / "records.jsonl").read_text().splitlines()[0])

    assert main(["report", "tiny-report", "--results-dir", str(results)]) == 0
    page_dir = results / "reports" / "tiny-report"
    md = (page_dir / "report.md").read_text()
    for heading in ("## Search space", "## Trials", "## Best configuration", "## Plots"):
        assert heading in md
    trial_lines = [line for line in md.split("## Trials")[1].split("##")[0].splitlines()
                   if line.startswith("| ") and not line.startswith("| trial")]
    assert len(trial_lines) == record["budget"]["trials"] == 3
    assert f"| optim.lr | {record['config']['optim.lr']:.4g} |" in md
    for name in ("sweep-curves.png", "confusion.png"):
        data = (page_dir / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 5000
        assert f"]({name})" in md
    html = (page_dir / "report.html").read_text()
    assert html.count("src='data:image/png;base64,") >= 2 and "<table class='sortable'>" in html

    # the leaderboard finds the leader's sweep folder and adds its learning curves
    assert main(["leaderboard", "--results-dir", str(results)]) == 0
    assert "(plots/synthetic-face-leader-curves.png)" in (results / "leaderboard.md").read_text()
    capsys.readouterr()

    assert main(["report", "no-such-sweep", "--results-dir", str(results)]) == 2
    assert "tiny-report" in capsys.readouterr().err


@pytest.mark.ray
def test_a_broken_result_line_loses_only_that_line(tiny_sweep, tmp_path):
    """A driver killed mid-write leaves half a line in a trial's result.json (a resumed sweep then
    appends after it): Ray's reader drops that trial; ours keeps every whole line."""
    import shutil

    from bench.sweep.trials import read_trials

    run_dir = tmp_path / "broken"
    shutil.copytree(tiny_sweep / "runs" / "tiny-report", run_dir)  # the module's sweep stays whole
    # the first trial to reach ASHA's rung always goes on: one trial ran both epochs
    result_file = next(p for p in sorted(run_dir.glob("*/result.json")) if len(p.read_text().splitlines()) == 2)
    (before,) = [t for t in read_trials(run_dir) if t.trial_id in result_file.parent.name]
    lines = result_file.read_text().splitlines()
    result_file.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2] + "\n" + "\n".join(lines[1:]) + "\n")

    (after,) = [t for t in read_trials(run_dir) if t.trial_id in result_file.parent.name]
    assert after.epochs == before.epochs == 2
    assert after.history["val/uar"].tolist() == before.history["val/uar"].tolist()
