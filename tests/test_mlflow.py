"""--mlflow: every trial's params and per-epoch metrics and the final record, in a real local MLflow
store (SQLite), read back with MLflow's own client; TensorBoard files are still written."""
import pytest

from bench.cli import main
from bench.errors import UserError
from bench.sweep.tracking import tracking_uri

SPACE = """
schema: 1
modality: face
budget: {samples: 2, max_epochs: 2}
scheduler: {name: fifo}
fixed: {data.image_size: 32, model.name: fer_cnn, train.batch_size: 64}
params:
  optim.lr: {float: [1.0e-3, 1.0e-2], log: true}
"""


def test_tracking_uri_turns_a_path_into_an_sqlite_store(tmp_path):
    assert tracking_uri(str(tmp_path / "ml")) == f"sqlite:///{tmp_path / 'ml' / 'mlflow.db'}"
    assert tracking_uri(str(tmp_path / "x.db")) == f"sqlite:///{tmp_path / 'x.db'}"
    assert tracking_uri("http://mlflow.example:5000") == "http://mlflow.example:5000"
    with pytest.raises(UserError, match="no longer creates file: stores"):
        tracking_uri(f"file://{tmp_path}")


def test_a_file_store_uri_is_one_sentence(tmp_path, capsys):
    assert main(["search", "face", "--dataset", "synthetic", "--mlflow", "file:///tmp/x",
                 "--results-dir", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.ray
def test_search_logs_trials_epochs_and_the_record_to_mlflow(tmp_path, cache_dir):
    from mlflow.tracking import MlflowClient

    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    results = tmp_path / "results"
    assert main(["search", "face", "--dataset", "synthetic", "--space", str(space), "--name", "tracked",
                 "--cache-dir", str(cache_dir), "--results-dir", str(results), "--quiet",
                 "--mlflow", str(tmp_path / "mlflow")]) == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    trials = [r for r in runs if r.data.tags.get("fer_bench") == "trial"]
    (record,) = [r for r in runs if r.data.tags.get("fer_bench") == "record"]
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
    for run in trials:
        assert run.data.params["model.name"] == "fer_cnn" and "optim.lr" in run.data.params
        history = client.get_metric_history(run.info.run_id, "val/uar")
        assert [m.step for m in history] == [1, 2]  # one value per epoch
    import json

    (line,) = (results / "records.jsonl").read_text().splitlines()
    stored = json.loads(line)
    assert record.data.params["id"] == stored["id"] and record.data.params["kind"] == "search"
    assert record.data.metrics["test/uar"] == pytest.approx(stored["test"]["uar"])
    assert list((results / "runs" / "tracked").rglob("events.out.tfevents*"))  # TensorBoard stays
