"""The results record: one test evaluation (a sweep's winner, a benchmark retrain, a cross-corpus
evaluation) as a typed, versioned dataclass, and its JSON form (one line of ``records.jsonl``).

A leaf module (no torch, no Ray): the store (``bench.results.store``), the renderers and the CLI all read
records through it. Version history of the JSON form:

- unversioned (before ``schema_version`` existed): the same keys; ``objective_mode`` may be absent
  (derived from the metric) and so may ``id`` (derived from the content, as ``record_id`` does);
- 2: ``schema_version: 2`` in every line.

On disk the search family keeps its historical key ``modality`` (readers of the JSON, scripts and
older fer-bench versions use it); in Python it is ``Record.family``, since "modality" also names the
data modality and the model registry's modality.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

from bench.errors import UserError

SCHEMA_VERSION = 2

# How each metric a sweep may optimise is read: larger is better, except losses and costs.
OBJECTIVE_MODES = {"val/uar": "max", "val/accuracy": "max", "val/macro_f1": "max", "val/loss": "min",
                   "latency_ms": "min", "params": "min"}


def metric_mode(metric: str) -> str:
    return OBJECTIVE_MODES.get(metric, "min" if metric.endswith("loss") else "max")


def record_id(content: dict) -> str:
    """A stable id from a record's JSON content (everything but the id itself): the same record
    always gets the same id, so records written before ids existed get one when loaded."""
    content = {k: v for k, v in content.items() if k != "id"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:10]


# Config keys that vary between repeats of one configuration (fold, seed, where files live), not
# between configurations.
REPEAT_KEYS = {"train.seed", "data.fold", "data.data_root", "data.cache_dir", "train.num_workers"}
# Keys only a benchmark's refit adds (``sweep.benchmark.refit_config``): retraining on train + val,
# stopped at the epoch the sweep's validation peaked at. The refit repeats the configuration the
# sweep found, so its records and the sweep's are one configuration (one leaderboard row).
REFIT_KEYS = {"data.refit", "train.stop_epoch"}


def config_id(flat: dict) -> str:
    """One configuration's id across its repeats (folds, seeds, the benchmark's refit): what the
    leaderboard groups records by and the benchmark dedupes its top-k by. It hashes the config
    alone, so ids of stored records never change."""
    kept = {k: v for k, v in flat.items() if k not in REPEAT_KEYS and k not in REFIT_KEYS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:8]


# Attribute -> JSON key, where they differ.
_JSON_KEYS = {"family": "modality"}


@dataclass
class Record:
    """One test evaluation. Fields left ``None`` (or empty) were not recorded and are not written."""

    kind: str = "search"  # search | benchmark | ensemble | cross_corpus; unversioned records without it are sweeps
    id: str | None = None  # content hash, given by the store when the record is appended
    time: str | None = None  # ISO 8601, UTC
    dataset: str | None = None
    family: str | None = None  # the search family (face, video, mic, voice, fusion); JSON key "modality"
    run: str | None = None  # the sweep's name
    model: str | None = None
    config: dict = field(default_factory=dict)  # the flat dotted config that was trained
    fold: int | None = None
    seed: int | None = None
    protocol: str | None = None
    class_names: list | None = None
    # what the record was selected on, and its direction; every sweep so far stored its objective,
    # so a record without one (hand-written, or a cross-corpus one) is read as val/uar
    objective: str = "val/uar"
    objective_mode: str | None = None  # derived from the metric when not given
    selection: str | None = None  # "val": chosen on validation data; anything else never ranks
    val: dict = field(default_factory=dict)  # validation metrics without their "val/" prefix
    test: dict = field(default_factory=dict)  # accuracy, uar, macro_f1, confusion, loss, samples
    budget: dict = field(default_factory=dict)  # what the sweep (and a retrain) spent
    checkpoint: str | None = None  # the folder holding checkpoint.pt
    checkpoint_epoch: int | None = None  # the 1-based epoch whose weights were tested
    split_sizes: dict | None = None  # train/val/test sample counts
    params: int | None = None
    inference_ms_per_sample: float | None = None
    provenance: dict = field(default_factory=dict)  # commit, package versions, hardware
    run_path: str | None = None  # the Ray experiment folder of the sweep
    space_hash: str | None = None
    space_path: str | None = None
    searched: list = field(default_factory=list)  # the keys the sweep searched
    threads: int | None = None  # torch threads per trial (CPU sums depend on them)
    resumed: bool | None = None
    # what stopped the sweep before its end: "SIGINT", "SIGTERM" or "error: <Type>: <message>"; None
    # when it ran to its end (or to its time budget: budget["ended_by_time_budget"]). `--resume` continues it.
    interrupted: str | None = None
    # one sweep, one current record: a resumed sweep's record names the ids of the earlier records
    # of that sweep it replaces; the store's loader sets superseded_by on those (records.jsonl is append-only)
    supersedes: list = field(default_factory=list)
    superseded_by: str | None = None
    objectives: list = field(default_factory=list)  # a multi-objective sweep's metrics
    pareto: list = field(default_factory=list)  # ... and its Pareto front (validation)
    benchmark_run: str | None = None  # kind "benchmark": the retrain grid's name
    benchmark_wall_seconds: float | None = None
    members: list = field(default_factory=list)  # kind "ensemble": its members' record ids, in rank order
    # a nested benchmark's name: this record is one outer fold's search or refit inside it (its
    # search saw only that fold's training subjects); the leaderboard shows the procedure as one row
    nested: str | None = None
    eval_dataset: str | None = None  # kind "cross_corpus": the dataset tested on
    train_dataset: str | None = None
    shared_classes: list | None = None
    source_run: str | None = None
    # model.init: the record whose checkpoint the model started from, its dataset, and the content
    # hash of the weights file (bench.training.init.digest); None for a model trained from scratch
    init_record: str | None = None
    init_dataset: str | None = None
    init_hash: str | None = None
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept on round trip

    def __post_init__(self) -> None:
        if self.objective_mode is None:
            self.objective_mode = metric_mode(self.objective)

    def val_score(self, metric: str) -> float | None:
        """The validation score of ``metric`` (``val/uar`` or ``uar``); None when not recorded."""
        key = metric.split("/", 1)[1] if metric.startswith("val/") else metric
        score = self.val.get(key)
        return None if score is None else float(score)

    def to_dict(self) -> dict:
        """The JSON form: ``schema_version``, every recorded field, and the unknown keys read in."""
        out: dict[str, Any] = dict(self.extra)
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None or (isinstance(value, (dict, list)) and not value):
                continue
            out[_JSON_KEYS.get(f.name, f.name)] = value
        out["schema_version"] = SCHEMA_VERSION
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Record:
        """A record from its JSON form, version 2 or unversioned; a newer version is an error (one
        sentence) rather than a silent misreading."""
        version = data.get("schema_version", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise UserError(f"a record has schema_version {version!r}, newer than this fer-bench reads "
                            f"({SCHEMA_VERSION}); upgrade fer-bench to read it")
        keys = {_JSON_KEYS.get(f.name, f.name): f.name for f in fields(cls) if f.name != "extra"}
        known, extra = {}, {}
        for key, value in data.items():
            if key == "schema_version":
                continue
            if key in keys:
                if value is not None:
                    known[keys[key]] = value
            else:
                extra[key] = value
        record = cls(**known, extra=extra)
        if record.id is None:
            record.id = record_id(data)  # as the content read, so an unversioned line keeps its id
        return record


def as_record(value: Record | dict) -> Record:
    """Readers take ``Record``s; a dict (an older caller, a test) is converted at the door."""
    return value if isinstance(value, Record) else Record.from_dict(value)
