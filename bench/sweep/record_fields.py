"""The fields every test-evaluation record shares: a search's winner and each benchmark retrain."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from bench.data.base import DatasetAdapter
from bench.results.store import provenance


def tested_fields(adapter: DatasetAdapter, config: dict, test: dict, results: Path | None = None) -> dict:
    """The fields every test-evaluation record shares (search winners and benchmark retrains), by
    their ``bench.results.record.Record`` names (also the JSON keys)."""
    from bench.sweep.init_refs import record_fields

    return {
        **record_fields(config, results),  # where model.init started it (nothing without one)
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "protocol": adapter.protocol, "fold": config.get("data.fold", 0),
        "model": config["model.name"], "config": config, "class_names": list(adapter.class_names),
        "test": {k: test[k] for k in ("accuracy", "uar", "macro_f1", "confusion", "loss", "samples")},
        # train/val/test sample counts: the paired test's n_test/n_train and a reproduction's sanity check
        "split_sizes": test.get("split_sizes"),
        "checkpoint_epoch": test.get("epoch"),  # the epoch whose weights were tested (reproduce stops there)
        "params": test["params"], "inference_ms_per_sample": test["inference_ms_per_sample"],
        "provenance": provenance(),
    }
