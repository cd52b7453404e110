"""``benchmark --nested``: the estimate without selection bias. An ordinary benchmark chooses the
hyperparameters on fold 0's validation subjects, who are test subjects of other folds; a nested
one runs the whole procedure inside each outer fold: a search (the space's own budget) that sees
only that fold's training subjects, then the refit of its winner on that fold's train + val,
tested once on its test subjects. Each outer fold may pick a different configuration: the
leaderboard shows the procedure as one row (marked nested), not a configuration.

Which folds are left and how the parts are named; the api runs the searches and refits (on Ray,
like every sweep and benchmark). Ray-free."""
from __future__ import annotations

from bench.errors import UserError
from bench.results.record import Record


def check_nested_request(*, top_k: int, ensemble: int, eval_dataset: str | None, refit: bool) -> None:
    if eval_dataset:
        raise UserError("--nested estimates the procedure on this dataset's folds; it does not combine with "
                        "--eval-dataset")
    if top_k > 1 or ensemble:
        raise UserError("--nested refits each outer fold's own winner; it does not combine with --top-k above 1 "
                        "or --ensemble")
    if not refit:
        raise UserError("--nested refits each fold's winner on its train + val; it does not combine with --no-refit")


def fold_run(name: str, fold: int) -> str:
    """The search of outer fold ``fold`` of the nested benchmark ``name``."""
    return f"{name}-fold{fold}"


def searched(records: list[Record], name: str, run: str) -> bool:
    """Whether that fold's search is recorded (a rerun goes straight to its refit)."""
    return any(r.kind == "search" and r.nested == name and r.run == run and not r.interrupted for r in records)


def folds_to_run(records: list[Record], name: str, num_folds: int, seeds: int) -> list[int]:
    """The outer folds whose refit is not recorded for every seed yet."""
    done: dict[int, set] = {}
    for r in records:
        if r.kind == "benchmark" and r.nested == name:
            done.setdefault(r.fold, set()).add(r.seed)
    return [f for f in range(num_folds) if len(done.get(f, set())) < seeds]


def nested_records(records: list[Record], name: str) -> list[Record]:
    """The nested benchmark's test runs: each outer fold's refit."""
    return [r for r in records if r.kind == "benchmark" and r.nested == name]
