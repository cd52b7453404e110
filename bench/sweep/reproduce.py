"""``fer-bench reproduce RECORD_ID``: re-run one record's exact configuration, fold and seed from
its stored provenance, test the result once, and compare with the recorded metrics.

Training is deterministic under a seed on one device (``bench.training.trainable.run_trial`` seeds data
order and augmentation per epoch), so on the same code, packages and hardware the difference is
expected to be zero; anything else is reported next to what changed."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import UserError
from bench.results.record import Record
from bench.results.store import find_record, provenance
from bench.training.checkpoint import CHECKPOINT_FILE, load_checkpoint

COMPARED = ("accuracy", "uar", "macro_f1", "loss")
REPRODUCIBLE_KINDS = ("search", "benchmark")


class _Done(Exception):
    """Raised from the report callback once the recorded epoch is kept: later epochs cannot change it."""


@dataclass
class Reproduction:
    record: Record
    epoch: int | None  # the 1-based epoch whose checkpoint was tested (None: the run never got there)
    epoch_source: str
    old: dict
    new: dict
    warnings: list[str] = field(default_factory=list)

    @property
    def differences(self) -> dict:
        return {k: self.new[k] - self.old[k] for k in COMPARED
                if isinstance(self.old.get(k), (int, float)) and isinstance(self.new.get(k), (int, float))}

    @property
    def exact(self) -> bool:
        return bool(self.differences) and all(d == 0 for d in self.differences.values())

    def as_dict(self) -> dict:
        return {"id": self.record.id, "epoch": self.epoch, "epoch_source": self.epoch_source,
                "old": self.old, "new": self.new, "difference": self.differences, "exact": self.exact,
                "warnings": self.warnings}


def provenance_warnings(recorded: dict | None, now: dict) -> list[str]:
    """What differs between the environment that produced the record and this one."""
    recorded = recorded or {}
    out = []
    if recorded.get("commit") and recorded["commit"] != now.get("commit"):
        out.append(f"the record was produced at commit {recorded['commit']}, this is {now.get('commit')}")
    for name, version in sorted((recorded.get("versions") or {}).items()):
        if version != (now.get("versions") or {}).get(name, version):
            out.append(f"{name} was {version}, now {now['versions'][name]}")
    old_hw, new_hw = recorded.get("hardware") or {}, now.get("hardware") or {}
    for key in ("gpu", "machine"):
        if key in old_hw and old_hw[key] != new_hw.get(key):
            out.append(f"hardware {key} was {old_hw[key]}, now {new_hw.get(key)}")
    return out


def init_warnings(record: Record) -> list[str]:
    """The re-run starts from the weights the record's ``model.init`` names (the config keeps the
    folder): say so when that file is gone or no longer the one the record started from."""
    from bench.training.init import digest, is_none

    value = record.config.get("model.init")
    if is_none(value) or not record.init_hash:
        return []
    now = digest(str(value))
    if now is None:
        raise UserError(f"record {record.id} started from model.init={value}, which no longer exists; "
                        f"restore that checkpoint to reproduce it")
    if now != record.init_hash:
        return [f"model.init={value} changed since the record (content hash {record.init_hash}, now {now})"]
    return []


def recorded_epoch(record: Record) -> tuple[int | None, str]:
    """The 1-based epoch whose checkpoint the record tested: stored in the record, else read from
    its checkpoint when that is still on disk, else unknown (then the re-run selects on validation)."""
    if record.checkpoint_epoch is not None:
        return int(record.checkpoint_epoch), "record"
    folder = record.checkpoint
    if folder and (Path(folder) / CHECKPOINT_FILE).is_file():
        return int(load_checkpoint(folder)["epoch"]) + 1, "checkpoint"
    return None, "validation"


def retrain(config: dict, keep: Path, *, cache_dir: Path, data_root: str | None, epoch: int | None,
            metric: str, mode: str) -> int | None:
    """Train ``config`` and keep the checkpoint of ``epoch`` (stopping there), or when it is None
    the one with the best validation ``metric``, as the sweep chose. Returns the epoch kept."""
    from bench.training.trainable import run_trial

    kept: dict = {}

    def report(metrics: dict, directory: Path) -> None:
        current = int(metrics.get("epoch", 0))
        if epoch is None:
            score = metrics.get(metric)
            better = score is not None and ("score" not in kept or
                                            (score > kept["score"] if mode == "max" else score < kept["score"]))
            if better:
                shutil.copytree(directory, keep, dirs_exist_ok=True)
                kept.update(score=score, epoch=current)
        elif current == epoch:
            shutil.copytree(directory, keep, dirs_exist_ok=True)
            kept["epoch"] = current
            raise _Done

    try:
        run_trial(config, cache_dir=cache_dir, report=report, data_root=data_root)
    except _Done:
        pass
    return kept.get("epoch")


def reproduce(records: list[Record], record_id: str, *, cache_dir: Path, data_root: str | None = None) -> Reproduction:
    from bench.training.evaluation import evaluate_checkpoint

    record = find_record(records, record_id)
    if record is None:
        raise UserError(f"no record with id {record_id!r}; the ids are in the leaderboard's provenance (each "
                        f"row's `more`) and leaderboard.csv's record_ids")
    if record.kind not in REPRODUCIBLE_KINDS or not record.config:
        raise UserError(f"record {record_id!r} is a {record.kind!r} record; reproduce re-runs trained "
                        f"records ({', '.join(REPRODUCIBLE_KINDS)}): reproduce the one it evaluated")
    warnings = provenance_warnings(record.provenance, provenance()) + init_warnings(record)
    config = dict(record.config)
    root = data_root or config.get("data.data_root")
    epoch, source = recorded_epoch(record)
    metric, mode = record.objective, record.objective_mode
    import torch

    threads = torch.get_num_threads()
    # as the trial ran (Ray gave it cpus_per_trial threads): CPU reductions depend on the count
    torch.set_num_threads(int(record.threads or 1))
    try:
        with tempfile.TemporaryDirectory(prefix="fer-reproduce-") as tmp:
            keep = Path(tmp) / "checkpoint"
            kept = retrain(config, keep, cache_dir=Path(cache_dir), data_root=root, epoch=epoch, metric=metric,
                           mode=mode)
            if kept is None:
                raise UserError(f"the re-run of record {record_id!r} never reached epoch {epoch} (train."
                                f"max_epochs={config.get('train.max_epochs')}); the record's config is inconsistent")
            test = evaluate_checkpoint(keep, split="test", cache_dir=Path(cache_dir), data_root=root)
    finally:
        torch.set_num_threads(threads)
    old = {k: record.test.get(k) for k in COMPARED}
    new = {k: test.get(k) for k in COMPARED}
    if record.split_sizes and test.get("split_sizes") and record.split_sizes != test["split_sizes"]:
        warnings.append(f"the splits differ: recorded {record.split_sizes}, now {test['split_sizes']} "
                        f"(different data under the data root?)")
    return Reproduction(record, kept, source, old, new, warnings)


_EPOCH_SOURCE = {"record": "as recorded", "checkpoint": "as in the recorded checkpoint",
                 "validation": "best on validation: the record does not say which epoch it tested"}


def format_text(rep: Reproduction) -> str:
    r = rep.record
    fold = r.fold if r.fold is not None else r.config.get("data.fold", 0)
    lines = [f"record {r.id}: {r.kind} {r.model} on {r.dataset} "
             f"fold {fold} seed {r.config.get('train.seed', 0)}, "
             f"tested at epoch {rep.epoch} ({_EPOCH_SOURCE[rep.epoch_source]})"]
    lines += [f"warning: {w}" for w in rep.warnings]
    lines.append(f"{'metric':<10} {'recorded':>10} {'now':>10} {'difference':>11}")
    for k in COMPARED:
        old, new = rep.old.get(k), rep.new.get(k)
        if old is None or new is None:
            continue
        lines.append(f"{k:<10} {old:>10.4f} {new:>10.4f} {new - old:>+11.4f}")
    lines.append("reproduced exactly" if rep.exact else "NOT reproduced exactly (see the differences above)")
    return "\n".join(lines)
