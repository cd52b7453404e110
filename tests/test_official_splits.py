"""An official test split stays whole through a real sweep: RAF-DB with a training image that is a
byte copy of a test image sweeps (it used to stop with a leakage error), says what it dropped, and
its record keeps the count."""
import json
import shutil

import pytest

from bench.cli import main
from bench.data import get_adapter

SPACE = """
schema: 1
modality: face
budget: {samples: 1, max_epochs: 1}
scheduler: {name: fifo}
fixed: {data.image_size: 32, model.name: fer_cnn}
params:
  optim.lr: {float: [1.0e-3, 1.0e-2], log: true}
"""


@pytest.mark.slow
@pytest.mark.ray
def test_a_sweep_on_raf_with_a_training_copy_of_a_test_image_runs_and_records_the_drop(tmp_path, capsys):
    root = get_adapter("raf").make_fake(tmp_path / "data")
    aligned = root / "basic" / "Image" / "aligned"
    shutil.copyfile(aligned / "test_00001_aligned.jpg", aligned / "train_00001_aligned.jpg")
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    results = tmp_path / "results"
    code = main(["search", "face", "--dataset", "raf", "--data-root", str(root), "--space", str(space),
                 "--cache-dir", str(tmp_path / "cache"), "--results-dir", str(results), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Dropped 1 training/validation item(s)" in out and "train_00001_aligned.jpg" in out
    record = json.loads((results / "records.jsonl").read_text().splitlines()[-1])
    assert record["split_sizes"]["dropped_copies"] == 1
    assert record["split_sizes"]["test"] == 14  # the fake's whole official test split (2 per class)
    assert main(["leaderboard", "--results-dir", str(results)]) == 0
    assert "1 training copies of test items dropped" in (results / "leaderboard.md").read_text()
