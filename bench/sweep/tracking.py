"""MLflow tracking of sweeps and benchmarks (``--mlflow URI``), beside the TensorBoard files Tune
always writes: every trial is an MLflow run (its config as params, every reported epoch as
metrics, through Ray Tune's ``MLflowLoggerCallback``), and every record fer-bench appends is one
more run (its test and validation scores, what it is, and its record id).

MLflow 3 keeps its file store in maintenance mode (it refuses new ``file:`` stores), so a local
path means an SQLite store: ``runs/`` -> ``sqlite:///<abs>/runs/mlflow.db``, ``x.db`` ->
``sqlite:///<abs>/x.db``. ``sqlite:``, ``http(s):`` and ``databricks`` URIs pass unchanged.
"""
from __future__ import annotations

from pathlib import Path

from bench.errors import UserError

_SCHEMES = ("sqlite:", "http://", "https://", "databricks", "postgresql", "mysql")


def tracking_uri(text: str) -> str:
    """The MLflow tracking URI of ``--mlflow``: a store URI as it is, a local path as SQLite."""
    text = text.strip()
    if not text:
        raise UserError("--mlflow needs a tracking URI (sqlite:///runs.db, http://host:5000) or a local path")
    if text.startswith(_SCHEMES):
        return text
    if "://" in text or text.startswith("file:"):
        raise UserError(f"--mlflow {text!r}: use an SQLite file or folder (MLflow 3 no longer creates file: "
                        f"stores), an http(s):// tracking server, or sqlite:///path.db")
    path = Path(text).expanduser().resolve()
    if path.suffix != ".db":
        path = path / "mlflow.db"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--mlflow {text!r}: cannot create {str(path.parent)!r} ({exc.strerror or exc})") from None
    return f"sqlite:///{path}"


def _require_mlflow():
    try:
        import mlflow
    except ImportError:
        raise UserError("--mlflow needs the mlflow client: pip install mlflow-skinny") from None
    return mlflow


def mlflow_callback(uri: str, experiment: str):
    """Ray Tune's MLflow logger: one MLflow run per trial in the experiment ``experiment``."""
    _require_mlflow()
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    return MLflowLoggerCallback(tracking_uri=uri, experiment_name=experiment, tags={"fer_bench": "trial"})


def log_record(uri: str, experiment: str, record: dict) -> str:
    """One MLflow run for an appended record (``Record.to_dict()``): what it is as params, its
    test and validation scores as metrics; returns the run id."""
    _require_mlflow()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    run = client.create_run(experiment_id, run_name=f"record {record.get('id')}",
                            tags={"fer_bench": "record", "fer_bench.record_id": str(record.get("id"))})
    run_id = run.info.run_id
    for key in ("kind", "dataset", "modality", "model", "fold", "seed", "run", "benchmark_run", "objective",
                "selection", "id"):
        if record.get(key) is not None:
            client.log_param(run_id, key, record[key])
    for split in ("test", "val"):
        for name, value in (record.get(split) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                client.log_metric(run_id, f"{split}/{name}", float(value))
    client.set_terminated(run_id)
    return run_id
