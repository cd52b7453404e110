"""Records -> leaderboard tables. Pure functions: records (and published rows) in, text out;
``bench.reports.outputs`` writes the files and ``bench.reports.plots`` draws the figures."""
from __future__ import annotations

import csv
import html
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field

from bench.results.record import Record, as_record, config_id

METRICS = ("accuracy", "uar", "macro_f1")
# Kinds that measure a configuration on its own dataset's test split; cross-corpus ones get their own table.
MAIN_KINDS = {"search", "benchmark", "ensemble"}
# Kinds measured on the protocol's designed folds x seeds (an ensemble: its retrained members' averaged probabilities).
RETRAINED_KINDS = {"benchmark", "ensemble"}
# Short, below the tables; the test, the interval and the ranking rule are in docs/leaderboard.md.
LEGEND = ("Legend: test metrics in %, mean ± std over n test runs (folds × seeds) of one configuration chosen on "
          "validation data; UAR = unweighted average recall; ms = inference per sample at batch 1. Ranks restart "
          "per protocol; configurations benchmarked on the protocol's full folds rank first. vs #1: p of the "
          "corrected resampled t-test (Nadeau & Bengio 2003) against the leader on its folds × seeds; ≈ = not "
          "distinguishable at the 5 % level; sweep only = seen only on the sweep's test run (listed below the "
          "benchmarked rows); not paired = not measured on the leader's folds × seeds. *published* rows are "
          "never ranked (⚠ = selected on test, ? = not stated, unverified = not checked in the paper's text). "
          "Commit, space hash, selection rule and record ids are under each table; the CSV has every column. "
          "Details: docs/leaderboard.md.")


def _mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.2g}" if abs(value) < 0.01 or abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def key_hyperparameters(record: Record) -> str:
    flat = record.config
    keys = [k for k in record.searched if k not in ("model.name", "model.init") and k in flat]
    return ", ".join([*init_label(record), *(f"{k.split('.', 1)[1]}={_short(flat[k])}" for k in keys)])


def init_label(record: Record) -> list[str]:
    """``init: fer2013 (<record id>)`` for a model fine-tuned from another (model.init): where it
    started, rather than the weights' path in its config; nothing for one trained from scratch."""
    value = record.config.get("model.init")
    if value in (None, "none"):
        return []
    where = record.init_dataset or str(value).rstrip("/").rsplit("/", 1)[-1]
    return [f"init: {where}" + (f" ({record.init_record})" if record.init_record else "")]


def _repeats(records: list[Record]) -> list[Record]:
    """The test runs that count for one configuration: benchmark retrains when there are any (the
    designed folds x seeds), else the sweep's own test runs; one run per (fold, seed), the latest,
    so a re-run replaces rather than double-counts. A refit and a train-only retrain of one
    configuration measure different things: only the latest benchmark's kind counts."""
    bench = [r for r in records if r.kind == "benchmark"]
    if bench:
        refit = bool(bench[-1].config.get("data.refit"))
        bench = [r for r in bench if bool(r.config.get("data.refit")) == refit]
    chosen = bench or records
    by_split = {_split_key(r): r for r in chosen}
    return list(by_split.values())


def _split_key(r: Record) -> tuple:
    return (r.fold if r.fold is not None else r.config.get("data.fold", 0),
            r.seed if r.seed is not None else r.config.get("train.seed", 0))


def _test_train_ratio(runs: list[Record]) -> float | None:
    """n_test / n_train of the runs (mean), from the sample counts each record stores; None when
    no record says how many training samples it had (records written before split sizes were kept)."""
    ratios = []
    for r in runs:
        n_test = r.test.get("samples")
        n_train = (r.split_sizes or {}).get("train")
        if n_test and n_train:
            ratios.append(float(n_test) / float(n_train))
    return sum(ratios) / len(ratios) if ratios else None


# The ratio assumed when records lack their split sizes: larger than any k-fold protocol's, so the
# corrected variance is overstated (wider intervals, fewer "differs" verdicts), never understated.
FALLBACK_RATIO = 1.0
ALPHA = 0.05


def corrected_variance_factor(n_pairs: int, ratio: float | None) -> float:
    """Nadeau & Bengio (2003): Var(mean) ≈ (1/J + n_test/n_train) · s², not s²/J, because the J
    train/test splits share training data and their scores are correlated."""
    return 1.0 / n_pairs + (FALLBACK_RATIO if ratio is None else ratio)


def corrected_t_test(differences: list[float], ratio: float | None) -> float:
    """Two-sided p-value of the corrected resampled t-test that the mean difference is zero."""
    from scipy import stats

    n = len(differences)
    mean, std = _mean_std(differences)
    if std == 0.0:  # identical differences: no noise to test against
        return 1.0 if mean == 0.0 else 0.0
    t = mean / math.sqrt(corrected_variance_factor(n, ratio) * std ** 2)
    return float(2 * stats.t.sf(abs(t), df=n - 1))


def mean_interval(values: list[float], ratio: float | None, level: float = 0.95) -> tuple[float, float] | None:
    """The mean's confidence interval under the same corrected variance; None for a single run."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return None
    mean, std = _mean_std(values)
    half = stats.t.ppf(0.5 + level / 2, df=n - 1) * math.sqrt(corrected_variance_factor(n, ratio)) * std
    return mean - half, mean + half


def _summed_confusion(records: list[Record]) -> list[list[int]] | None:
    mats = [r.test.get("confusion") for r in records]
    if not mats or any(m is None for m in mats) or len({len(m) for m in mats}) != 1:
        return None
    size = len(mats[0])
    return [[sum(int(m[i][j]) for m in mats) for j in range(size)] for i in range(size)]


def _aggregate(rs: list[Record]) -> dict:
    """One row from the repeats of one configuration."""
    runs = _repeats(rs)
    latest = runs[-1]
    # the sweep that found the configuration: its budget, run and Pareto front (retrains carry their own)
    searched = [r for r in rs if r.kind == "search"]
    sweep = searched[-1] if searched else latest
    budget = sweep.budget
    row = {
        "model": latest.model, "hyperparameters": key_hyperparameters(latest),
        "config_id": config_id(latest.config),
        "n": len(runs), "folds": len({r.fold or 0 for r in runs}), "seeds": len({r.seed or 0 for r in runs}),
        "kinds": "+".join(sorted({r.kind for r in runs})),
        "params": latest.params,
        "trials": budget.get("trials"), "errored": budget.get("errored", 0), "epochs": budget.get("epochs"),
        "device_s": budget.get("device_seconds"), "device": budget.get("device", "cpu"),
        "wall_s": budget.get("wall_seconds"),
        "inference_ms": latest.inference_ms_per_sample,
        "selection": f"best {latest.objective} on validation",
        "space_hash": latest.space_hash, "commit": latest.provenance.get("commit"),
        "run": sweep.run,
        "space_path": latest.space_path, "objective": latest.objective,
        "class_names": latest.class_names, "confusion": _summed_confusion(runs),
        "pareto": sweep.pareto, "objectives": sweep.objectives,
    }
    for m in METRICS:
        row[m], row[m + "_std"] = _mean_std([float(r.test[m]) for r in runs])
    # per (fold, seed) test UARs: what the paired comparison with the leader pairs up
    row["per_run"] = {_split_key(r): float(r.test["uar"]) for r in runs}
    row["test_train_ratio"] = _test_train_ratio(runs)
    interval = mean_interval(list(row["per_run"].values()), row["test_train_ratio"])
    row["uar_ci_low"], row["uar_ci_high"] = interval if interval else (None, None)
    # every record of the configuration (the sweep's test run and the benchmark's repeats), oldest first
    row["ids"] = list(dict.fromkeys(r.id for r in rs if r.id))
    row["run_ids"] = [r.id for r in runs if r.id]  # the runs the numbers are the mean of
    row["benchmarked"] = any(r.kind in RETRAINED_KINDS for r in runs)
    row["members"] = list(latest.members)
    row["nested"] = latest.nested
    if latest.nested:  # the procedure, not one configuration: what each outer fold chose
        chosen = sorted({r.model for r in runs})
        row["model"] = f"nested search ({', '.join(chosen)})"
        row["hyperparameters"] = f"chosen inside each of {row['folds']} outer folds ({latest.nested})"
        row["config_id"] = f"nested:{latest.nested}"
        row["selection"] = f"best {latest.objective} on each outer fold's own validation split (nested)"
        folds_searched = [r for r in rs if r.kind == "search"]  # every outer fold's search: the whole cost
        for key, field_ in (("trials", "trials"), ("epochs", "epochs"), ("device_s", "device_seconds"),
                            ("wall_s", "wall_seconds")):
            values = [r.budget.get(field_) for r in folds_searched]
            row[key] = sum(values) if values and None not in values else row[key]
    row["benchmark_runs"] = sorted({r.benchmark_run for r in runs if r.benchmark_run})
    walls = {r.benchmark_run: r.benchmark_wall_seconds for r in runs
             if r.benchmark_run and r.benchmark_wall_seconds is not None}
    row["benchmark_wall_s"] = sum(walls.values()) if walls else None
    row["dropped_copies"] = (latest.split_sizes or {}).get("dropped_copies")
    return row


def _tiers(rows: list[dict], scope) -> None:
    """Within ``scope(row)``, once any configuration was benchmarked: tier 0 = benchmarked on the
    protocol's full folds (the most folds a benchmarked row of the scope has), 1 = benchmarked on
    fewer folds, 2 = seen only on the sweep's test fold ("sweep only"). A lucky single run never
    ranks above a configuration measured under the full protocol."""
    full: dict = {}
    for r in rows:
        if r["benchmarked"]:
            full[scope(r)] = max(full.get(scope(r), 0), r["folds"])
    for r in rows:
        if scope(r) not in full:
            r["tier"] = 0  # nothing benchmarked here: the sweeps' runs rank among themselves
        elif not r["benchmarked"]:
            r["tier"] = 2
        else:
            r["tier"] = 0 if r["folds"] >= full[scope(r)] else 1


def _rank(rows: list[dict], scope) -> None:
    """Rank within ``scope(row)`` (rows under different protocols, or train/eval pairs, are never
    ranked against each other): by tier (``_tiers``), then mean test UAR, then accuracy."""
    _tiers(rows, scope)
    rows.sort(key=lambda r: (scope(r), r["tier"], -r["uar"], -r["accuracy"]))
    counters: dict = defaultdict(int)
    for row in rows:
        counters[scope(row)] += 1
        row["rank"] = counters[scope(row)]
    _compare_with_leaders(rows, scope)


NOT_PAIRED = "not paired"
SWEEP_ONLY = "sweep only"


def _compare_with_leaders(rows: list[dict], scope) -> None:
    """Each row against the rank-1 row of its scope: a paired corrected t-test on the test UARs of
    the leader's (fold, seed) runs, for every row measured on all of them (at least two)."""
    leaders = {scope(r): r for r in rows if r["rank"] == 1}
    for row in rows:
        leader = leaders[scope(row)]
        if row is leader:
            row["p_vs_leader"], row["tied_with_leader"] = None, "leader"
            continue
        splits = set(leader["per_run"])
        if len(splits) < 2 or not splits <= set(row["per_run"]):
            mark = SWEEP_ONLY if row["kinds"] == "search" else NOT_PAIRED
            row["p_vs_leader"], row["tied_with_leader"] = mark, mark
            continue
        differences = [leader["per_run"][k] - row["per_run"][k] for k in sorted(splits)]
        ratios = [x for x in (row["test_train_ratio"], leader["test_train_ratio"]) if x is not None]
        p = corrected_t_test(differences, max(ratios) if ratios else None)
        row["p_vs_leader"], row["tied_with_leader"] = p, "yes" if p >= ALPHA else "no"


def build_rows(records: list[Record]) -> dict[tuple[str, str], list[dict]]:
    """Group test records by (dataset, search family), aggregate repeats of each config
    (folds x seeds) into mean and std, and rank by mean test UAR within each protocol."""
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for r in map(as_record, records):
        if r.selection != "val":
            continue  # a number chosen on test data never reaches the leaderboard
        if r.kind not in MAIN_KINDS:
            continue
        # a nested benchmark is one procedure (each outer fold chose its own configuration): one row
        key = (r.dataset, r.family, r.protocol or "", f"nested:{r.nested}" if r.nested else config_id(r.config))
        groups[key].append(r)
    tables: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for (dataset, modality, protocol, _), rs in groups.items():
        tables[(dataset, modality)].append({"dataset": dataset, "modality": modality, "protocol": protocol,
                                            **_aggregate(rs)})
    for rows in tables.values():
        _rank(rows, lambda r: r["protocol"])
    return dict(sorted(tables.items()))


def build_cross_corpus(records: list[Record]) -> list[dict]:
    """Train on A, test on B's classes shared with A: one row per (A, B, config), ranked within (A, B)."""
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for r in map(as_record, records):
        if r.kind != "cross_corpus" or r.selection != "val":
            continue
        key = (r.dataset, r.eval_dataset, r.family or "", config_id(r.config))
        groups[key].append(r)
    rows = []
    for (dataset, eval_dataset, modality, _), rs in groups.items():
        row = {"dataset": dataset, "eval_dataset": eval_dataset, "modality": modality,
               "protocol": rs[-1].protocol or "", "shared_classes": list(rs[-1].shared_classes or []),
               **_aggregate(rs)}
        rows.append(row)
    _rank(rows, lambda r: (r["dataset"], r["eval_dataset"]))
    return rows


@dataclass
class Leaderboard:
    tables: dict[tuple[str, str], list[dict]]
    published: list[dict] = field(default_factory=list)
    cross_corpus: list[dict] = field(default_factory=list)

    def published_for(self, dataset: str) -> list[dict]:
        return [p for p in self.published if p["dataset"] == dataset]

    def published_elsewhere(self) -> list[dict]:
        """Published rows for datasets fer-bench has no results on yet."""
        ours = {d for d, _ in self.tables}
        return [p for p in self.published if p["dataset"] not in ours]


def build_leaderboard(records: list[Record], published: list[dict] | None = None) -> Leaderboard:
    return Leaderboard(build_rows(records), list(published or []), build_cross_corpus(records))


# ---- formatting ------------------------------------------------------------------------------

def _pct(row: dict, metric: str) -> str:
    mean, std = 100 * row[metric], 100 * row[metric + "_std"]
    return f"{mean:.1f} ± {std:.1f}" if row["n"] > 1 else f"{mean:.1f}"


def _duration(seconds) -> str:
    if seconds is None:
        return ""
    seconds = float(seconds)
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _params(n) -> str:
    if n is None:
        return ""
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.0f}k"


def format_ms(value) -> str:
    if value is None:
        return ""
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"


_SELECTION_MARK = {"yes": " ⚠", "no": "", "not stated": " ?"}


def protocol_labels(rows: list[dict]) -> dict[str, str]:
    """Letters for the protocols of one table when there are several (ranks restart per protocol)."""
    protocols = sorted({r["protocol"] for r in rows})
    return {p: chr(ord("A") + i) for i, p in enumerate(protocols)} if len(protocols) > 1 else {}


def _short_citation(pub: dict) -> str:
    authors = pub["paper"].split(".", 1)[0]
    first = authors.split(",")[0].strip()
    return f"{first}{' et al.' if ',' in authors else ''} {pub['year']}"


def protocol_note(pub: dict, our_protocols: list[str], our_modality: str | None) -> str:
    """Their protocol, and how it differs from ours (the reason the row is not ranked)."""
    notes = [pub["protocol"]]
    if our_modality and pub["modality"] != our_modality:
        notes.append(f"their model reads {pub['modality']}, these rows {our_modality}")
    if our_protocols:
        same = pub["protocol"] in our_protocols
        notes.append("same protocol as ours" if same else f"differs from ours ({'; '.join(our_protocols)})")
    return "; ".join(notes)


MD_COLUMNS = ("rank", "model", "key hyperparameters", "acc %", "UAR %", "macro-F1 %", "UAR 95 % CI", "vs #1",
              "n", "params", "ms", "budget")


def _interval(row: dict) -> tuple:
    if row.get("uar_ci_low") is None:
        return ("", None)
    return (f"{100 * row['uar_ci_low']:.1f}–{100 * row['uar_ci_high']:.1f}", row["uar_ci_low"])


def _versus(row: dict) -> tuple:
    """The mark of the paired comparison with the leader: ≈ = not distinguishable from it."""
    tied, p = row.get("tied_with_leader"), row.get("p_vs_leader")
    if tied == "leader":
        return ("leader", None)
    if tied in (None, NOT_PAIRED, SWEEP_ONLY):
        return (tied or NOT_PAIRED, None)
    return (f"{'≈ ' if tied == 'yes' else ''}p={p:.2g}", p)


def provenance(row: dict) -> str:
    """Where a row's numbers come from: one click away in the HTML page, a list under each Markdown
    table, every field a column of the CSV."""
    parts = [f"config {row['config_id']}", f"selection: {row['selection']}"]
    if row.get("commit"):
        parts.append(f"commit {row['commit']}")
    if row.get("space_hash"):
        parts.append(f"space {row['space_hash']}")
    if row.get("run"):
        parts.append(f"sweep {row['run']}")
    if row.get("benchmark_runs"):
        parts.append(f"benchmark {', '.join(row['benchmark_runs'])}")
    if row.get("dropped_copies"):
        parts.append(f"{row['dropped_copies']} training copies of test items dropped (official split kept whole)")
    ids = row.get("ids") or []
    if ids:
        # the latest run first: what `fer-bench reproduce ID` takes
        parts.append(f"records ({len(ids)}): {', '.join(reversed(ids))}")
    return " · ".join(parts)


def _budget(row: dict) -> str:
    parts = []
    if row.get("trials") is not None:
        errored = f" ({row['errored']} errored)" if row.get("errored") else ""
        parts.append(f"{row['trials']} trials{errored}")
    if row.get("epochs") is not None:
        parts.append(f"{row['epochs']} ep")
    if row.get("device_s") is not None:
        parts.append(f"{_duration(row['device_s'])} {row.get('device') or 'cpu'}")
    return ", ".join(parts)


def _our_cells(row: dict, labels: dict[str, str]) -> list:
    """Cells of one of our rows; (text, sort value) where the text alone would sort wrongly."""
    rank = f"{row['rank']}" + (f" [{labels[row['protocol']]}]" if labels else "")
    return [(rank, row["rank"]), row["model"], row["hyperparameters"] or "—",
            (_pct(row, "accuracy"), row["accuracy"]), (_pct(row, "uar"), row["uar"]),
            (_pct(row, "macro_f1"), row["macro_f1"]), _interval(row), _versus(row), row["n"],
            (_params(row["params"]), row["params"]),
            (format_ms(row["inference_ms"]), row["inference_ms"]), (_budget(row), row.get("device_s"))]


def _published_value(pub: dict) -> str:
    """As printed in the paper (98.95 stays 98.95), with the test-selection mark and, when the
    number was not read in the paper's own text, an unverified mark."""
    unverified = "" if pub.get("verified", True) else " (unverified)"
    return f"{pub['value']:.2f}".rstrip("0").rstrip(".") + _SELECTION_MARK[pub["selected_on_test"]] + unverified


def _published_cells(pub: dict, number: int) -> list:
    cells = [("—", None), f"*published* {pub['method'].split(' (')[0]} [{number}]", _short_citation(pub)]
    for m in METRICS:
        text = _published_value(pub) if pub["metric"] == m else ""
        cells.append((text, pub["value"] / 100 if pub["metric"] == m else None))
    return cells + ["", "not ranked", "—", "", "", ""]


@dataclass
class Section:
    """One table, renderer-neutral: Markdown and HTML draw the same cells. ``details`` holds each
    row's provenance (None for published rows): a click away in HTML, a list under the Markdown table."""
    title: str
    intro: list[str]
    columns: tuple[str, ...]
    rows: list[list]
    row_classes: list[str]
    notes: list[str]
    key: tuple = ()
    details: list[str | None] = field(default_factory=list)
    detail_labels: list[str] = field(default_factory=list)  # "#1 fer_cnn": whose details a Markdown line is


SUMMARY_COLUMNS = ("dataset", "family", "best configuration", "acc %", "UAR %", "n", "wall time",
                   "best published / yardstick")


def _wall(row: dict) -> tuple:
    """The wall time behind a row's numbers: the sweep that found it, plus its benchmark."""
    sweep, bench = row.get("wall_s"), row.get("benchmark_wall_s")
    if sweep is None and bench is None:
        return ("", None)
    text = " + ".join(x for x in (_duration(sweep) and f"sweep {_duration(sweep)}",
                                  _duration(bench) and f"benchmark {_duration(bench)}") if x)
    return (text, (sweep or 0) + (bench or 0))


def _yardstick(board: Leaderboard, dataset: str, row: dict) -> tuple:
    """The best published number of the dataset (any protocol: read its row below), else chance."""
    pubs = board.published_for(dataset)
    if pubs:
        best = max(pubs, key=lambda p: p["value"])
        return (f"{_published_value(best)} {best['metric']}, {best['method'].split(' (')[0]} "
                f"({_short_citation(best)}, {best['modality']})", best["value"] / 100)
    classes = len(row.get("class_names") or []) or None
    if classes:
        return (f"chance: UAR {100 / classes:.1f} ({classes} classes; nothing published listed)", 1 / classes)
    return ("—", None)


def summary_section(board: Leaderboard) -> Section | None:
    """The first table: per dataset and family, each protocol's leader and what it compares with."""
    cells, details = [], []
    for (dataset, modality), rows in board.tables.items():
        labels = protocol_labels(rows)
        for leader in (r for r in rows if r["rank"] == 1):
            letter = f" [{labels[leader['protocol']]}]" if labels else ""
            hyper = f" ({leader['hyperparameters']})" if leader["hyperparameters"] else ""
            n = (f"{leader['n']}" + (" sweep only" if leader["kinds"] == "search" else ""), leader["n"])
            cells.append([dataset, modality + letter, f"{leader['model']}{hyper}",
                          (_pct(leader, "accuracy"), leader["accuracy"]), (_pct(leader, "uar"), leader["uar"]), n,
                          _wall(leader), _yardstick(board, dataset, leader)])
            details.append(f"protocol: {leader['protocol']} · " + provenance(leader))
    if not cells:
        return None
    return Section("Summary", ["The leader of each dataset and search family (rank 1 of its table below)."],
                   SUMMARY_COLUMNS, cells, ["ours"] * len(cells), [], ("summary",), details,
                   [f"{c[0]} — {c[1]}" for c in cells])


def sections(board: Leaderboard) -> list[Section]:
    out = []
    summary = summary_section(board)
    if summary:
        out.append(summary)
    for (dataset, modality), rows in board.tables.items():
        labels = protocol_labels(rows)
        protocols = sorted({r["protocol"] for r in rows})
        if labels:
            intro = ["Protocols (ranks restart per protocol): "
                     + "; ".join(f"[{labels[p]}] {p}" for p in protocols)]
        else:
            intro = [f"Protocol: {protocols[0]}"]
        cells = [_our_cells(r, labels) for r in rows]
        classes = ["ours"] * len(rows)
        details: list[str | None] = [provenance(r) for r in rows]
        names = [f"#{r['rank']}" + (f" [{labels[r['protocol']]}]" if labels else "") + f" {r['model']}" for r in rows]
        notes = []
        for number, pub in enumerate(board.published_for(dataset), 1):
            cells.append(_published_cells(pub, number))
            classes.append("published")
            details.append(None)
            notes.append(_published_note(pub, number, protocols, modality))
        notes += [pareto_note(r) for r in rows if r.get("pareto")]
        out.append(Section(f"{dataset} — {modality}", intro, MD_COLUMNS, cells, classes, notes, (dataset, modality),
                           details, names))
    if board.cross_corpus:
        columns = ("rank", "train", "eval", "shared classes", "model", "key hyperparameters", "acc %", "UAR %",
                   "macro-F1 %", "UAR 95 % CI", "vs #1", "n")
        cells = [[(str(r["rank"]), r["rank"]), r["dataset"], r["eval_dataset"], ", ".join(r["shared_classes"]),
                  r["model"], r["hyperparameters"] or "—", (_pct(r, "accuracy"), r["accuracy"]),
                  (_pct(r, "uar"), r["uar"]), (_pct(r, "macro_f1"), r["macro_f1"]), _interval(r), _versus(r),
                  r["n"]]
                 for r in board.cross_corpus]
        out.append(Section("Cross-corpus", [
            "Trained on one dataset (selected on its validation data), tested on another dataset's classes that "
            "both share; ranked only within one train → eval pair."], columns, cells,
            ["ours"] * len(cells), [], ("cross_corpus",), [provenance(r) for r in board.cross_corpus],
            [f"#{r['rank']} {r['dataset']} → {r['eval_dataset']} {r['model']}" for r in board.cross_corpus]))
    elsewhere = board.published_elsewhere()
    if elsewhere:
        columns = ("dataset", "modality", "paper", "method", "metric", "value %", "protocol", "selected on test",
                   "source", "note")
        cells = [[p["dataset"], p["modality"], _short_citation(p), p["method"], p["metric"],
                  (_published_value(p), p["value"]), p["protocol"], p["selected_on_test"],
                  p["source"] + ("" if p.get("verified", True) else " (unverified)"),
                  " ".join(x for x in (p.get("note") or "", p.get("url") or "") if x) or "—"] for p in elsewhere]
        out.append(Section("Published results on datasets without fer-bench runs yet", [
            "Not ranked: each row is under its paper's own protocol."], columns, cells,
            ["published"] * len(cells), [], ("published",)))
    return out


def pareto_note(row: dict) -> str:
    """A multi-objective sweep's Pareto front (validation scores), so the trade-off is visible."""
    objectives = row["objectives"]
    points = "; ".join(
        f"{p.get('model')} (" + ", ".join(f"{m}={_short(float(p[m]))}" for m in objectives if m in p) + ")"
        for p in row["pareto"])
    return f"Pareto front of sweep {row.get('run')} over {' vs '.join(objectives)} (validation): {points}"


def _published_note(pub: dict, number: int, our_protocols: list[str], modality: str) -> str:
    link = f" {pub['url']}" if pub.get("url") else ""
    extra = f" {pub['note']}." if pub.get("note") else ""
    return (f"[{number}] {pub['paper']}, {pub['year']}.{link} Protocol: "
            f"{protocol_note(pub, our_protocols, modality)}. Metric: {pub['metric']}. Selected on test: "
            f"{pub['selected_on_test']}. Source of the number: {pub['source']}"
            f"{'' if pub.get('verified', True) else ' (unverified: not checked against the paper text)'}.{extra}")


def _text(cell) -> str:
    text = cell[0] if isinstance(cell, tuple) else cell
    return str(text).replace("|", "\\|")


def to_markdown(tables: dict[tuple[str, str], list[dict]] | Leaderboard,
                plots: dict[tuple, list[tuple[str, str]]] | None = None) -> str:
    """The leaderboard as Markdown (the summary first, the legend last); ``plots`` maps a section
    key to (caption, relative path) links."""
    board = tables if isinstance(tables, Leaderboard) else Leaderboard(tables)
    out = ["# fer-bench leaderboard", ""]
    if not board.tables and not board.cross_corpus:
        out += ["No results yet: run `fer-bench search face --dataset synthetic`.", ""]
        if not board.published:
            return "\n".join(out)
    for section in sections(board):
        out += [f"## {section.title}", ""]
        for line in section.intro:
            out += [line, ""]
        out.append("| " + " | ".join(section.columns) + " |")
        out.append("|" + "|".join("---" for _ in section.columns) + "|")
        for cells in section.rows:
            out.append("| " + " | ".join(_text(c) for c in cells) + " |")
        out.append("")
        for note in section.notes:
            out += [note, ""]
        listed = [(label, text) for label, text in zip(section.detail_labels, section.details) if text]
        if listed:  # GitHub and most viewers fold a <details> block; plain viewers show the list
            out += ["<details><summary>Provenance: commit, space hash, selection rule, record ids</summary>", ""]
            out += [f"- {label}: {text}" for label, text in listed]
            out += ["", "</details>", ""]
        links = (plots or {}).get(section.key, [])
        if links:
            out += ["Plots: " + " · ".join(f"[{caption}]({path})" for caption, path in links), ""]
    if board.tables or board.cross_corpus:
        out += [LEGEND, ""]
    return "\n".join(out)


CSV_COLUMNS = ("dataset", "modality", "protocol", "rank", "model", "hyperparameters", "config_id", "n",
               "accuracy", "accuracy_std", "uar", "uar_std", "macro_f1", "macro_f1_std", "params",
               "inference_ms", "trials", "errored", "epochs", "device_s", "wall_s", "selection",
               "space_hash", "commit",
               # appended, so readers of the first columns keep working
               "table", "folds", "seeds", "kinds", "device", "eval_dataset", "shared_classes",
               "paper", "year", "selected_on_test", "source",
               "uar_ci_low", "uar_ci_high", "p_vs_leader", "tied_with_leader", "test_train_ratio", "record_ids",
               "verified", "note", "url",
               "run", "benchmark_runs", "benchmark_wall_s", "dropped_copies", "run_ids")


def _csv_value(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return value


def to_csv(tables: dict[tuple[str, str], list[dict]] | Leaderboard) -> str:
    """Our rows (table=main), cross-corpus rows, then published rows (no rank; metrics as fractions)."""
    board = tables if isinstance(tables, Leaderboard) else Leaderboard(tables)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for rows in board.tables.values():
        for r in rows:
            writer.writerow({k: _csv_value(v) for k, v in {**r, "table": "main", "record_ids": r["ids"]}.items()})
    for r in board.cross_corpus:
        writer.writerow({k: _csv_value(v) for k, v in {**r, "table": "cross_corpus", "record_ids": r["ids"]}.items()})
    for p in board.published:
        writer.writerow({"table": "published", "dataset": p["dataset"], "modality": p["modality"],
                         "protocol": p["protocol"], "model": p["method"], "paper": p["paper"], "year": p["year"],
                         p["metric"]: _csv_value(p["value"] / 100), "selected_on_test": p["selected_on_test"],
                         "source": p["source"], "verified": "yes" if p.get("verified", True) else "no",
                         "note": p.get("note") or "", "url": p.get("url") or ""})
    return buf.getvalue()


def to_html(board: Leaderboard, images: dict[tuple, list[tuple[str, bytes]]] | None = None,
            title: str = "fer-bench leaderboard") -> str:
    """A self-contained page: the summary first, sortable tables whose provenance folds into a
    details cell, plots embedded as data: URIs, the legend last; no network needed."""
    from bench.reports.html_page import figure, inline, page, table

    parts = [f"<h1>{html.escape(title)}</h1>"]
    if not board.tables and not board.cross_corpus:
        parts.append("<p>No results yet: run <code>fer-bench search face --dataset synthetic</code>.</p>")
    for section in sections(board):
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += [f"<p>{html.escape(line)}</p>" for line in section.intro]
        parts.append(table(section.columns, section.rows, section.row_classes, details=section.details or None))
        parts += [f"<p class='note'>{html.escape(note)}</p>" for note in section.notes]
        figures = [figure(png, caption) for caption, png in (images or {}).get(section.key, [])]
        if figures:
            parts.append("<div class='figures'>" + "".join(figures) + "</div>")
    if board.tables or board.cross_corpus:
        parts.append(f"<p class='legend'>{inline(LEGEND)}</p>")
    return page(title, "\n".join(parts))
